"""Archives as users receive them: NIED ``<event>.knt.tar.gz`` / ``<event>.kik.tar.gz`` and AFAD
TADAS ``<event>.zip`` (also ``.tgz`` and plain ``.tar``), read in place: nothing is unpacked to
disk.

:func:`opened` opens an archive as an :class:`Archive`; :meth:`Archive.scan` lists its regular
members once, in archive order, with the first bytes of each (for format sniffing), and
:meth:`Archive.load` reads the bytes of one file group into memory as
:class:`~deepvs30.readers.base.MemberFile` objects, which the readers take like paths. Members
are named ``<archive>:<member>`` (the form INDEX.csv uses, e.g.
``20240623225400.kik.tar.gz:CHBH102406232254.EW2``).

Memory: the bytes of the group being read (each member at most
:data:`~deepvs30.readers.base.MAX_TEXT_BYTES`), the sidecars that :meth:`~Archive.scan` was asked
to keep (at most :data:`MAX_SIDECAR_BYTES`, refused beyond) and the member list (name, size,
position: about 0.5 kB a member, at most :data:`MAX_MEMBERS`). Zip members are read directly.
A tar.gz can only be read forward: :meth:`Archive.load` reads a group's members in archive
order, so groups asked for in archive order (name order in NIED archives) cost one
decompression pass after the scan; a group lying before the previous one restarts the
decompression from the start of the archive (slower, still correct).

A corrupt or truncated archive (bad gzip stream, missing zip directory), one with an unsafe
member path (absolute or ``..``), a member given twice, more than :data:`MAX_MEMBERS` members or
more than :data:`MAX_UNPACKED_BYTES` in all is refused as a whole with a ReaderError naming the
archive; a member that fails to read (zip CRC error, truncated data) is a ReaderError naming
``archive:member``. Directories, links and device entries are not data and are skipped.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepvs30.readers.base import MAX_TEXT_BYTES, MEMBER_SEPARATOR, MemberFile, Source, fail

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MAX_UNPACKED_BYTES = 8 * 1024**3  # a larger total is refused (decompression bomb guard)
MAX_MEMBERS = 200_000
MAX_SIDECAR_BYTES = 64 * 1024**2  # sidecars kept in memory for the readers (.metadata, .xml)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def is_archive(path: str | Path) -> bool:
    """True for names ending in one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def member_name(archive: str | Path, member: str) -> str:
    """``<archive>:<member>``, the name of an archive member in records and quarantine."""
    return f"{archive}{MEMBER_SEPARATOR}{member}"


def split_member(name: str | Path) -> tuple[Path, str] | None:
    """``(archive, member)`` for an ``<archive>:<member>`` name, else None."""
    text = str(name)
    lower = text.lower()
    for suffix in ARCHIVE_SUFFIXES:
        mark = suffix + MEMBER_SEPARATOR
        at = lower.find(mark)
        if at > 0:
            cut = at + len(suffix)
            return Path(text[:cut]), text[cut + 1 :]
    return None


def normalised(name: str) -> str:
    """A member path as records name it: ``/`` separators, no ``.`` parts (``./a\\b`` → ``a/b``)."""
    return PurePosixPath(name.replace("\\", "/")).as_posix()


@dataclass
class _Entry:
    file: MemberFile  # name and size, no data
    info: tarfile.TarInfo | zipfile.ZipInfo
    position: int  # where its data starts in the archive (the order reads should follow)


class Archive:
    """One open archive: :meth:`scan` it once, then :meth:`load` file groups from it."""

    def __init__(self, path: Path, handle: tarfile.TarFile | zipfile.ZipFile):
        self.path = path
        self._handle = handle
        self._entries: dict[str, _Entry] = {}
        self.sidecars: dict[str, MemberFile] = {}  # member path -> sidecar with its bytes

    def __contains__(self, member: str) -> bool:
        """Whether the scan listed regular member ``member`` (a normalised path)."""
        return member in self._entries

    def scan(
        self, head_bytes: int, keep: Callable[[MemberFile], bool] = lambda f: False
    ) -> Iterator[tuple[MemberFile, bytes]]:
        """Every regular member (no data) with its first ``head_bytes`` bytes, in archive order;
        the members ``keep`` selects are read whole and kept in :attr:`sidecars` (for the
        readers that look files up next to a record). Consume it to the end before
        :meth:`load`; a ReaderError naming the archive if it is corrupt or refused."""
        try:
            if isinstance(self._handle, zipfile.ZipFile):
                yield from self._scan_zip(self._handle, head_bytes, keep)
            else:
                yield from self._scan_tar(self._handle, head_bytes, keep)
        except _ARCHIVE_ERRORS as exc:
            raise fail(self.path, f"corrupt or truncated archive ({_describe(exc)})") from exc

    def _scan_zip(self, zf: zipfile.ZipFile, head_bytes: int, keep) -> Iterator:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        self._check_budget(len(infos), sum(i.file_size for i in infos))
        for info in infos:
            entry = self._add(info.filename, info.file_size, info, info.header_offset)
            yield entry.file, self._head(entry, head_bytes, keep)

    def _scan_tar(self, tf: tarfile.TarFile, head_bytes: int, keep) -> Iterator:
        total_bytes = 0
        for info in tf:  # streamed: a truncated gzip fails here, not silently
            if not info.isfile():
                continue
            total_bytes += info.size
            self._check_budget(len(self._entries) + 1, total_bytes)
            entry = self._add(info.name, info.size, info, info.offset_data)
            yield entry.file, self._head(entry, head_bytes, keep)

    def _add(self, name: str, size: int, info, position: int) -> _Entry:
        member = PurePosixPath(name.replace("\\", "/"))
        if member.is_absolute() or ".." in member.parts or not member.parts:
            raise fail(self.path, f"unsafe member path {name!r}")
        key = normalised(name)
        if key in self._entries:
            raise fail(self.path, f"member {name!r} given twice")
        entry = _Entry(MemberFile(self.path, key, size), info, position)
        self._entries[key] = entry
        return entry

    def _head(self, entry: _Entry, head_bytes: int, keep) -> bytes:
        """The first bytes of a member (all of it, kept, if ``keep`` selects it)."""
        if not keep(entry.file):
            with self._open(entry) as src:
                return src.read(head_bytes)
        held = sum(f.size for f in self.sidecars.values()) + entry.file.size
        if held > MAX_SIDECAR_BYTES:
            raise fail(self.path, f"sidecar files hold more than {MAX_SIDECAR_BYTES} bytes")
        sidecar = self._loaded(entry, {})
        self.sidecars[sidecar.member] = sidecar
        return sidecar.data[:head_bytes]

    def _open(self, entry: _Entry):
        if isinstance(self._handle, zipfile.ZipFile):
            return self._handle.open(entry.info)
        src = self._handle.extractfile(entry.info)
        if src is None:  # not a regular file (scan lists none)
            raise EOFError(f"member {entry.info.name} has no data")
        return src

    def _check_budget(self, n_members: int, n_bytes: int) -> None:
        if n_members > MAX_MEMBERS:
            raise fail(self.path, f"archive has more than {MAX_MEMBERS} members")
        if n_bytes > MAX_UNPACKED_BYTES:
            raise fail(self.path, f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")

    def load(self, files: Sequence[Source]) -> list[MemberFile]:
        """``files`` (members from :meth:`scan`) with their bytes, in the order given; read in
        archive order. Each can find the others and the kept sidecars next to it
        (:func:`~deepvs30.readers.base.sibling`). A ReaderError naming the member that fails."""
        nearby: dict[str, MemberFile] = dict(self.sidecars)
        entries = [self._entry(f) for f in files]
        for entry in sorted(entries, key=lambda e: e.position):
            nearby[entry.file.member] = self._loaded(entry, nearby)
        return [nearby[e.file.member] for e in entries]

    def _entry(self, file: Source) -> _Entry:
        entry = self._entries.get(file.member) if isinstance(file, MemberFile) else None
        if entry is None or entry.file.archive != file.archive:
            raise fail(file, "no such archive member")
        return entry

    def _loaded(self, entry: _Entry, nearby: dict[str, MemberFile]) -> MemberFile:
        file = entry.file
        if file.size > MAX_TEXT_BYTES:
            raise fail(file, f"file too large ({file.size} bytes)")
        try:
            with self._open(entry) as src:  # a zip member's CRC is checked when read to its end
                data = src.read()
        except _ARCHIVE_ERRORS as exc:
            raise fail(file, f"corrupt archive member ({_describe(exc)})") from exc
        if len(data) != file.size:
            reason = f"{len(data)} of {file.size} bytes: truncated"
            raise fail(file, f"corrupt archive member ({reason})")
        return MemberFile(file.archive, file.member, file.size, data, nearby)


@contextmanager
def opened(archive: str | Path) -> Iterator[Archive]:
    """``archive`` open for reading as long as the block lasts; a ReaderError naming it if it
    cannot be opened."""
    archive = Path(archive)
    if not archive.is_file():
        raise fail(archive, "no such archive")
    try:
        if _kind(archive) == "zip":
            handle: tarfile.TarFile | zipfile.ZipFile = zipfile.ZipFile(archive)  # noqa: SIM115
        else:
            handle = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed below
    except _ARCHIVE_ERRORS as exc:
        raise fail(archive, f"corrupt or truncated archive ({_describe(exc)})") from exc
    with handle:
        yield Archive(archive, handle)


def list_members(archive: str | Path) -> list[str]:
    """Names of the regular-file members (no data read); ReaderError if unreadable."""
    archive = Path(archive)
    try:
        if _kind(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        with tarfile.open(archive, mode="r:*") as tf:
            return [m.name for m in tf if m.isfile()]
    except _ARCHIVE_ERRORS as exc:
        raise fail(archive, f"corrupt or truncated archive ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or "unexpected end of data"
    return f"{type(exc).__name__}: {text}"


def _kind(archive: Path) -> str:
    return "zip" if archive.name.lower().endswith(".zip") else "tar"
