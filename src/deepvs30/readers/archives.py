"""Archives as users receive them: NIED ``<event>.knt.tar.gz`` / ``<event>.kik.tar.gz`` and AFAD
TADAS ``<event>.zip`` (also ``.tgz`` and plain ``.tar``).

:func:`unpacked` extracts the regular-file members into a temporary folder that is removed when
the ``with`` block ends (also on errors), so nothing is left behind; the record readers then read
the members like any other file. Members are named ``<archive>:<member>`` (the form INDEX.csv
uses, e.g. ``20240623225400.kik.tar.gz:CHBH102406232254.EW2``): :meth:`Unpacked.name` turns an
extracted path back into that name and :meth:`Unpacked.rename` does it inside reader messages.

A corrupt or truncated archive (bad gzip stream, missing zip directory, CRC error), one with an
unsafe member path (absolute or ``..``) or one that unpacks to more than
:data:`MAX_UNPACKED_BYTES` is refused as a whole with a ReaderError naming the archive.
Directories, links and device entries are not data and are skipped.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from deepvs30.readers.base import fail

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MEMBER_SEPARATOR = ":"
MAX_UNPACKED_BYTES = 8 * 1024**3  # a larger total is refused (decompression bomb guard)
MAX_MEMBERS = 200_000
_COPY_CHUNK_BYTES = 1024 * 1024
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


@dataclass(frozen=True)
class Unpacked:
    """The members of one archive, extracted under ``root`` for as long as the block lasts."""

    archive: Path
    root: Path
    files: tuple[Path, ...]  # extracted regular files, sorted

    def name(self, path: str | Path) -> str:
        """The ``archive:member`` name of an extracted file (other paths unchanged)."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return str(path)
        return member_name(self.archive, relative.as_posix())

    def rename(self, text: str) -> str:
        """``text`` with every extracted path in it written as ``archive:member``."""
        prefix = str(self.root) + os.sep
        return text.replace(prefix, f"{self.archive}{MEMBER_SEPARATOR}")

    def path(self, member: str) -> Path:
        """Where member ``member`` was extracted."""
        return self.root / PurePosixPath(member)


@contextmanager
def unpacked(archive: str | Path, tmp_dir: str | Path | None = None) -> Iterator[Unpacked]:
    """Extract ``archive`` into a temporary folder (under ``tmp_dir`` if given), removed on exit."""
    archive = Path(archive)
    if not archive.is_file():
        raise fail(archive, "no such archive")
    with tempfile.TemporaryDirectory(prefix="deepvs30-archive-", dir=tmp_dir) as tmp:
        root = Path(tmp)
        try:
            files = _extract(archive, root)
        except _ARCHIVE_ERRORS as exc:
            raise fail(archive, f"corrupt or truncated archive ({_describe(exc)})") from exc
        yield Unpacked(archive, root, tuple(sorted(files)))


def list_members(archive: str | Path) -> list[str]:
    """Names of the regular-file members (no extraction); ReaderError if unreadable."""
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


def _extract(archive: Path, root: Path) -> list[Path]:
    if _kind(archive) == "zip":
        return _extract_zip(archive, root)
    return _extract_tar(archive, root)


def _extract_zip(archive: Path, root: Path) -> list[Path]:
    files: list[Path] = []
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        _check_budget(archive, len(infos), sum(i.file_size for i in infos))
        for info in infos:
            target = _target(archive, root, info.filename)
            with zf.open(info) as src:  # the CRC is checked when the member is read to its end
                _copy(src, target)
            files.append(target)
    return files


def _extract_tar(archive: Path, root: Path) -> list[Path]:
    files: list[Path] = []
    total_bytes = 0
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:  # streamed: a truncated gzip fails here, not silently
            if not member.isfile():
                continue
            total_bytes += member.size
            _check_budget(archive, len(files) + 1, total_bytes)
            target = _target(archive, root, member.name)
            src = tf.extractfile(member)
            if src is None:
                continue
            with src:
                _copy(src, target)
            if target.stat().st_size != member.size:
                raise EOFError(f"member {member.name} truncated")
            files.append(target)
    return files


def _check_budget(archive: Path, n_members: int, n_bytes: int) -> None:
    if n_members > MAX_MEMBERS:
        raise fail(archive, f"archive has more than {MAX_MEMBERS} members")
    if n_bytes > MAX_UNPACKED_BYTES:
        raise fail(archive, f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")


def _target(archive: Path, root: Path, name: str) -> Path:
    """Where member ``name`` goes; absolute or ``..`` names are refused (path traversal)."""
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or not member.parts:
        raise fail(archive, f"unsafe member path {name!r}")
    target = root.joinpath(*member.parts)
    if target.exists():
        raise fail(archive, f"member {name!r} given twice")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy(src: IO[bytes], target: Path) -> None:
    with target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK_BYTES)
