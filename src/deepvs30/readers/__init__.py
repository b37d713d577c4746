"""Readers of real strong-motion archives. Public entry points:

- :func:`read_record` — one file (its sibling component files are found automatically) →
  list of :class:`RawRecord`;
- :func:`detect_format`, :func:`group_files`, :func:`read_group` — what ``deepvs30 ingest`` uses to
  read whole folders, each record once;
- :data:`FORMATS` — the registry by name (afad-mat, nsmn, esm, knet, kiknet, itaca, at2, sac,
  mseed, obspy);
- :func:`group_archive` — the same for the members of an archive opened with
  :func:`deepvs30.readers.archives.opened` (``.tar.gz``/``.tgz``/``.tar``/``.zip``), read in
  place, one file group at a time, never unpacked to disk; members are named
  ``archive:member``, a name :func:`read_record` also accepts.

Every failure is a :class:`deepvs30.errors.ReaderError`; readers never raise anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from deepvs30.errors import ReaderError
from deepvs30.readers import afad_mat, archives, at2, base, esm, itaca, knet, nsmn, seed
from deepvs30.readers.base import MemberFile, RawRecord, Source

__all__ = [
    "FORMATS",
    "SIDECAR_SUFFIXES",
    "FileGroup",
    "archives",
    "RawRecord",
    "ReaderError",
    "classify_files",
    "detect_format",
    "group_archive",
    "group_files",
    "read_group",
    "read_record",
]

# Files that describe records but are not records: consumed by the readers, never counted.
SIDECAR_SUFFIXES = (".metadata", ".rs", ".xml", ".json", ".md", ".csv", ".xlsx", ".yml", ".yaml")
# Of them, what readers look up next to a record file (ITACA .metadata, StationXML): inside an
# archive these are kept in memory for the readers of its file groups.
LOOKED_UP_SUFFIXES = (".metadata", ".xml")
HEAD_BYTES = 2048  # enough for an ESM header behind the AFAD TADAS preamble


def _own_folder(path: Path) -> list[Path]:
    return [path.parent]


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    read: Callable[[list[Path]], list[RawRecord]]
    group_key: Callable[[Path], str]
    looks_like: Callable[[Path, bytes], bool]
    search_dirs: Callable[[Path], list[Path]] = _own_folder  # where sibling components live


def _single(path: Path) -> str:
    return str(path)


FORMATS: dict[str, ReaderSpec] = {
    "afad-mat": ReaderSpec("afad-mat", afad_mat.read, _single, afad_mat.looks_like),
    "nsmn": ReaderSpec("nsmn", nsmn.read, _single, nsmn.looks_like),
    "esm": ReaderSpec("esm", esm.read, esm.group_key, esm.looks_like),
    "knet": ReaderSpec("knet", knet.read, knet.group_key, knet.looks_like),
    "kiknet": ReaderSpec("kiknet", knet.read, knet.group_key, knet.looks_like),
    "itaca": ReaderSpec("itaca", itaca.read, itaca.group_key, itaca.looks_like),
    "at2": ReaderSpec("at2", at2.read, at2.group_key, at2.looks_like),
    "mseed": ReaderSpec(
        "mseed",
        partial(seed.read, fmt=seed.FORMAT_MSEED),
        seed.group_key,
        seed.looks_like_mseed,
        seed.search_dirs,
    ),
    "sac": ReaderSpec(
        "sac", partial(seed.read, fmt=seed.FORMAT_SAC), seed.group_key, seed.looks_like_sac
    ),
    "obspy": ReaderSpec(
        "obspy", partial(seed.read, fmt=seed.FORMAT_OBSPY), seed.group_key, lambda p, h: False
    ),
}
# Content checks first (most specific), then extension-only checks.
_DETECT_ORDER = ("nsmn", "esm", "knet", "at2", "afad-mat", "itaca", "mseed", "sac")


@dataclass(frozen=True)
class FileGroup:
    """Files that together make one record (or several, for multi-channel files)."""

    fmt: str
    files: tuple[Source, ...]


def _head(path: Source) -> bytes:
    if isinstance(path, MemberFile):
        return base.read_bytes(path)[:HEAD_BYTES] if path.size else b""
    try:
        with path.open("rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError as exc:
        raise ReaderError(path, f"cannot open ({exc.strerror or exc})") from exc


def is_sidecar(path: Source) -> bool:
    return is_sidecar_name(path.name)


def is_sidecar_name(name: str) -> bool:
    """:func:`is_sidecar` of a file name."""
    return name.lower().endswith(SIDECAR_SUFFIXES) or name.startswith(".")


def _looked_up(path: Source) -> bool:
    return is_sidecar(path) and path.name.lower().endswith(LOOKED_UP_SUFFIXES)


def detect_format(path: str | Path | MemberFile, head: bytes | None = None) -> str:
    """The format name of ``path`` by content (``head``: its first bytes, read if not given),
    then extension; ReaderError if unrecognised."""
    path = path if isinstance(path, MemberFile) else Path(path)
    head = _head(path) if head is None else head
    if not head:
        raise ReaderError(path, "empty file")
    for name in _DETECT_ORDER:
        if FORMATS[name].looks_like(path, head):
            return knet.format_of(path) if name == "knet" else name
    raise ReaderError(path, "unsupported or unrecognised format")


def group_files(
    paths: Iterable[str | Path], fmt: str = "auto"
) -> tuple[list[FileGroup], list[tuple[Path, ReaderError]]]:
    """Group component files into records. Returns (groups, files that could not be classified)."""
    _check_format(fmt)
    return _grouped([(path, _classified(path, fmt)) for path in map(Path, paths)])


Classified = tuple[Path, "str | ReaderError", "str | None"]  # (file, format or error, group key)


def classify_files(paths: Iterable[str | Path], fmt: str = "auto") -> Iterator[Classified]:
    """The first step of :func:`group_files`, one file at a time: ``(path, format name or the
    ReaderError that says why none, group key or None)``; files of one format with the same
    key make one group."""
    _check_format(fmt)
    return (_with_key(path, _classified(path, fmt)) for path in map(Path, paths))


def _with_key(path: Path, name: str | ReaderError) -> Classified:
    if isinstance(name, ReaderError):
        return path, name, None
    return path, name, FORMATS[name].group_key(path)


def group_archive(
    archive: archives.Archive, fmt: str = "auto"
) -> tuple[list[FileGroup], list[tuple[MemberFile, ReaderError]], int, int]:
    """The data members of an open archive grouped into records as :func:`group_files` groups
    files on disk (each member's head read once, in archive order; the sidecars readers look
    up are kept in memory by ``archive``). Returns (groups, members that could not be
    classified, data members, sidecar members); a ReaderError naming the archive if it is
    corrupt or refused. Read a group with ``read_group(group, archive)``.
    """
    _check_format(fmt)
    classified: list[tuple[Source, str | ReaderError]] = []
    n_sidecars = 0
    for member, head in archive.scan(HEAD_BYTES, keep=_looked_up):
        if is_sidecar(member):
            n_sidecars += 1
        else:
            classified.append((member, _classified(member, fmt, head)))
    classified.sort(key=lambda item: item[0])  # the order of the same files on disk
    groups, rejected = _grouped(classified)
    return groups, rejected, len(classified), n_sidecars


def _check_format(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")


def _classified(path: Source, fmt: str, head: bytes | None = None) -> str | ReaderError:
    """The format name of ``path`` (``fmt`` unless auto), or the error that says why not."""
    if fmt != "auto":
        return fmt
    try:
        return detect_format(path, head)
    except ReaderError as exc:
        return exc


def _grouped(
    classified: Iterable[tuple[Source, str | ReaderError]],
) -> tuple[list[FileGroup], list[tuple[Source, ReaderError]]]:
    grouped: dict[tuple[str, str], list[Source]] = {}
    rejected: list[tuple[Source, ReaderError]] = []
    for path, name in classified:
        if isinstance(name, ReaderError):
            rejected.append((path, name))
            continue
        key = FORMATS[name].group_key(path)
        grouped.setdefault((name, key), []).append(path)
    groups = [FileGroup(name, tuple(sorted(files))) for (name, _), files in grouped.items()]
    return sorted(groups, key=lambda g: str(g.files[0])), rejected


def read_group(group: FileGroup, archive: archives.Archive | None = None) -> list[RawRecord]:
    """Read one group (its members' bytes read from ``archive`` now, for a group that
    :func:`group_archive` made); any failure becomes a ReaderError naming the first file."""
    files = list(group.files) if archive is None else archive.load(group.files)
    try:
        return FORMATS[group.fmt].read(files)
    except ReaderError:
        raise
    except Exception as exc:  # last line of defence: a reader bug must not stop an ingest
        raise ReaderError(
            group.files[0], f"{group.fmt} reader failed: {type(exc).__name__}: {exc}"
        ) from exc


def read_record(path: str | Path, fmt: str = "auto") -> list[RawRecord]:
    """Read the record(s) that ``path`` belongs to; sibling component files are found in its folder.

    K-NET/KiK-net, ESM, ITACA, AT2, SAC and miniSEED store one component per file: give any one
    of them and the other two are picked up from the same folder (or, for miniSEED in NIED
    channel folders ``EW2/``, ``NS2/``, ``UD2/``, from the sibling folders). ``path`` may name an
    archive member as ``archive.tar.gz:member``; the record's files are then named that way too.
    """
    inside = archives.split_member(path)
    if inside is not None:
        return _read_member(*inside, fmt=fmt)
    path = Path(path)
    if not path.is_file():
        raise ReaderError(path, "no such file")
    if archives.is_archive(path):
        raise ReaderError(path, "an archive: name one member as ARCHIVE:MEMBER, or ingest it")
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise ReaderError(path, f"unknown format {name!r}; known: {sorted(FORMATS)}")
    return read_group(FileGroup(name, tuple(sorted(_siblings(path, name)))))


def _siblings(path: Path, name: str) -> list[Path]:
    """``path`` and the files of the same record next to it (same group key)."""
    spec = FORMATS[name]
    key = spec.group_key(path)
    siblings = [path]
    if key == str(path):
        return siblings
    for folder in spec.search_dirs(path):
        for other in sorted(folder.iterdir()):
            if other != path and other.is_file() and not is_sidecar(other):
                try:
                    same = spec.group_key(other) == key
                except Exception:
                    same = False
                if same:
                    siblings.append(other)
    return siblings


def _read_member(archive: Path, member: str, fmt: str) -> list[RawRecord]:
    """The record(s) of the file group that ``member`` belongs to, read from the archive."""
    member = archives.normalised(member)
    with archives.opened(archive) as source:
        groups, rejected, _, _ = group_archive(source, fmt)
        for path, exc in rejected:
            if path.member == member:
                raise exc
        for group in groups:
            if any(f.member == member for f in group.files):
                return read_group(group, source)
        reason = "a sidecar file, not a record" if member in source else "no such archive member"
        raise ReaderError(archives.member_name(archive, member), reason)
