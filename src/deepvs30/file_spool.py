"""The input file listing of ``deepvs30 ingest`` on disk, so that memory does not grow with the
number of files: the walked files, and the plain files' formats and file groups, are rows of an
SQLite file in the work folder (``<out>.partial/listing.sqlite``, made anew by each run).

Orders are those of :func:`deepvs30.ingest.walk` and :func:`deepvs30.readers.group_files`:
files sorted as :class:`pathlib.Path` sorts them (part by part), groups by the text of their
first file. Both are byte orders of the rows' BLOBs (UTF-8, ``surrogatepass``: code point
order, as Python compares strings); a path's sort key is its parts joined by NUL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from pathlib import Path

from deepvs30.errors import ReaderError
from deepvs30.readers import FileGroup, classify_files, is_sidecar_name
from deepvs30.readers.archives import is_archive
from deepvs30.scratch_db import scratch_db

LISTING_FILE = "listing.sqlite"
DATA, ARCHIVE, SIDECAR = 0, 1, 2  # kinds of walked files
PAGE_ROWS = 4096  # rows read per query while classifying


def _blob(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogatepass")


def _path_of(key: bytes) -> str:
    """The path text of a sort key (parts joined by NUL; a root part ``/`` stays one part)."""
    parts = _text(key).split("\0")
    head = parts[0] if parts[0].endswith("/") else parts[0] + "/"
    return parts[0] if len(parts) == 1 else head + "/".join(parts[1:])


def _hidden(key: str) -> bool:
    """As ``walk``: a file found in a folder is skipped if one of its last 3 path parts starts
    with a dot."""
    return any(part.startswith(".") for part in key.rsplit("\0", 3)[-3:])


def _kind(name: str) -> int:
    if is_sidecar_name(name):
        return SIDECAR
    return ARCHIVE if is_archive(name) else DATA


def walk_keys(paths: Iterable[str | Path], missing: list[Path]) -> Iterator[str]:
    """The sort key of every file that ``walk`` finds under ``paths``, in no order (a file may
    come twice); paths that do not exist are appended to ``missing``."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _tree_keys(str(path), "\0".join(path.parts))
        elif path.is_file():
            yield "\0".join(path.parts)
        else:
            missing.append(path)


def _tree_keys(root: str, root_key: str) -> Iterator[str]:
    """The files under folder ``root`` as ``Path.rglob`` finds them (symbolic links to folders
    not followed, unreadable folders skipped), hidden ones left out; one folder's entries at a
    time."""
    folders = [(root, root_key)]
    while folders:
        folder, key = folders.pop()
        prefix = "" if folder == "." else folder if folder.endswith("/") else folder + "/"
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    child = f"{key}\0{entry.name}" if key else entry.name
                    if entry.is_dir() and not entry.is_symlink():
                        folders.append((prefix + entry.name, child))
                    elif entry.is_file() and not _hidden(child):
                        yield child
        except PermissionError:
            continue


def slices(items: Iterable, n: int) -> Iterator[list]:
    """``items`` in lists of ``n`` (the last one shorter), taken as they are needed."""
    items = iter(items)
    while chunk := list(islice(items, n)):
        yield chunk


def _columns(
    name: str | ReaderError, group_key: str | None
) -> tuple[str | None, bytes | None, str | None]:
    """The (format, group key, reason) columns of one classified file."""
    if isinstance(name, ReaderError):
        return None, None, name.reason
    return name, _blob(group_key), None


class FileListing:
    """The files of one ingest: walked once (:meth:`walk`), the plain files classified and
    grouped when they must be read (:meth:`classify`)."""

    def __init__(self, path: Path) -> None:
        self.db = scratch_db(
            path,
            "CREATE TABLE files (key BLOB PRIMARY KEY, kind INTEGER) WITHOUT ROWID;"
            "CREATE TABLE classified (key BLOB PRIMARY KEY, path BLOB, fmt TEXT, gkey BLOB,"
            " reason TEXT) WITHOUT ROWID;"
            "CREATE TABLE grp (n INTEGER PRIMARY KEY, fmt TEXT, gkey BLOB);"
            "CREATE TABLE archive (source INTEGER PRIMARY KEY, key BLOB, size_bytes INTEGER);",
        )

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- walk

    def walk(self, paths: Iterable[str | Path]) -> list[Path]:
        """List every file under ``paths`` (duplicates once); returns the missing paths."""
        missing: list[Path] = []
        rows = ((_blob(key), _kind(key.rsplit("\0", 1)[-1])) for key in walk_keys(paths, missing))
        self.db.executemany("INSERT OR IGNORE INTO files VALUES (?, ?)", rows)
        self.db.commit()
        return missing

    def count(self, *kinds: int) -> int:
        marks = ",".join("?" * len(kinds))
        query = f"SELECT COUNT(*) FROM files WHERE kind IN ({marks})"
        return self.db.execute(query, kinds).fetchone()[0]

    def paths(self, *kinds: int) -> Iterator[str]:
        """The files of ``kinds`` in walk order (sorted as paths)."""
        marks = ",".join("?" * len(kinds))
        query = f"SELECT key FROM files WHERE kind IN ({marks}) ORDER BY key"
        return (_path_of(key) for (key,) in self.db.execute(query, kinds))

    def archives_largest_first(self) -> Iterator[tuple[int, str]]:
        """``(source, path)`` of each archive, numbered from 1 in walk order, the largest (in
        bytes, now) first."""
        self.db.execute("DELETE FROM archive")
        rows = (
            (source, _blob(path), os.stat(path).st_size)
            for source, path in enumerate(self.paths(ARCHIVE), start=1)
        )
        self.db.executemany("INSERT INTO archive VALUES (?, ?, ?)", rows)
        self.db.commit()
        found = self.db.execute("SELECT source, key FROM archive ORDER BY size_bytes DESC, source")
        return ((source, _text(path)) for source, path in found)

    # ---------------------------------------------------------------- plain files

    def classify(self, fmt: str = "auto") -> None:
        """Classify the plain data files (:func:`deepvs30.readers.classify_files`), one page of
        rows at a time, and number their groups in the order ``group_files`` gives them."""
        self.db.executescript("DELETE FROM classified; DELETE FROM grp;")
        for page in self._pages(DATA):
            found = classify_files(map(_path_of, page), fmt)
            rows = [
                (key, _blob(str(path)), *_columns(name, group_key))
                for key, (path, name, group_key) in zip(page, found, strict=True)
            ]
            self.db.executemany("INSERT INTO classified VALUES (?, ?, ?, ?, ?)", rows)
        self.db.executescript(
            "CREATE INDEX IF NOT EXISTS by_group ON classified (fmt, gkey, key);"
            # bare column `path` with MIN(): the path of the group's first file
            "INSERT INTO grp (fmt, gkey) SELECT fmt, gkey FROM ("
            " SELECT fmt, gkey, MIN(key), path FROM classified WHERE reason IS NULL"
            " GROUP BY fmt, gkey) ORDER BY path;"
        )
        self.db.commit()

    def _pages(self, kind: int) -> Iterator[list[bytes]]:
        """The keys of the files of ``kind`` in walk order, ``PAGE_ROWS`` at a time."""
        after = b""
        query = "SELECT key FROM files WHERE kind = ? AND key > ? ORDER BY key LIMIT ?"
        while page := [k for (k,) in self.db.execute(query, (kind, after, PAGE_ROWS))]:
            yield page
            after = page[-1]

    def n_groups(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM grp").fetchone()[0]

    def n_rejected(self) -> int:
        query = "SELECT COUNT(*) FROM classified WHERE reason IS NOT NULL"
        return self.db.execute(query).fetchone()[0]

    def rejected(self) -> Iterator[tuple[str, str]]:
        """``(file, reason)`` of the files that could not be classified, in walk order."""
        query = "SELECT path, reason FROM classified WHERE reason IS NOT NULL ORDER BY key"
        return ((_text(path), reason) for path, reason in self.db.execute(query))

    def groups(self) -> Iterator[FileGroup]:
        """The file groups, in :func:`deepvs30.readers.group_files`'s order, one at a time."""
        found = self.db.execute(
            "SELECT g.n, c.fmt, c.path FROM grp g JOIN classified c"
            " ON c.fmt = g.fmt AND c.gkey = g.gkey ORDER BY g.n, c.key"
        )
        for _, rows in groupby(found, key=lambda row: row[0]):
            rows = list(rows)
            yield FileGroup(rows[0][1], tuple(Path(_text(path)) for _, _, path in rows))
