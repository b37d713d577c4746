"""The on-disk input listing of ``ingest`` (``deepvs30.file_spool``): the same files, groups
and orders as the in-memory ``walk`` + ``group_files`` it replaces, shards that carry the
groups in that order, and Python memory that does not grow with the number of files."""

from __future__ import annotations

import os
import pathlib
import tracemalloc
from contextlib import closing
from pathlib import Path

import pytest

from deepvs30 import file_spool
from deepvs30.file_spool import ARCHIVE, DATA, SIDECAR, FileListing, slices
from deepvs30.ingest import plain_shard_tasks, walk
from deepvs30.readers import group_files
from deepvs30.readers.archives import is_archive

# Names chosen so that part-wise path order and plain string order disagree ("a-b/..." sorts
# after "a/..." as parts, before it as text), with hidden files, sidecars, an archive, non-ASCII
# names, a K-NET record in 3 files and one file whose format cannot be told.
TREE = [
    "a/ST1.NS",
    "a/ST1.EW",
    "a/ST1.UD",
    "a-b/ST2.NS",
    "a-b/ST2.EW",
    "a-b/ST2.UD",
    "a/z/ST3.NS",
    "a/.hidden/ST4.NS",
    "a/.ST5.NS",
    "a/notes.md",
    "a/station.xml",
    "ev.knt.tar.gz",
    "é/ST6.NS",
    "Z/ST7.UD",
]


def _tree(root: Path) -> Path:
    for name in TREE:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / "linked").symlink_to(root / "a", target_is_directory=True)  # not followed
    return root


def _listing(tmp_path: Path, paths: list, fmt: str = "knet") -> FileListing:
    listing = FileListing(tmp_path / "listing.sqlite")
    listing.walk(paths)
    listing.classify(fmt)
    return listing


@pytest.mark.parametrize("relative", [False, True])
def test_listing_finds_and_orders_files_as_walk_does(tmp_path: Path, monkeypatch, relative) -> None:
    root = _tree(tmp_path / "in")
    if relative:
        monkeypatch.chdir(root)
    paths = [Path("."), "a/ST1.NS", "nope"] if relative else [root, root / "a" / "ST1.NS"]
    data, sidecars, missing = walk(paths)
    with closing(FileListing(tmp_path / "listing.sqlite")) as listing:
        found_missing = listing.walk(paths)
        listed = list(listing.paths(DATA, ARCHIVE, SIDECAR))
        assert listed == [str(p) for p in sorted(data + sidecars)]
        assert found_missing == missing
        assert listing.count(SIDECAR) == len(sidecars) == 2
        assert listing.count(ARCHIVE) == sum(map(is_archive, data)) == 1
        assert listing.count(DATA) == len(data) - 1
    assert not any(".hidden" in p or "/.ST5" in p or "linked" in p for p in listed)
    # part-wise order, not text order: a/ and a/z/ before a-b/
    names = [Path(p).relative_to(root).as_posix() if not relative else p for p in listed]
    assert names.index("a/z/ST3.NS") < names.index("a-b/ST2.EW")


@pytest.mark.parametrize("fmt", ["knet", "auto"])
def test_listing_groups_are_those_of_group_files(tmp_path: Path, fmt: str) -> None:
    root = _tree(tmp_path / "in")
    data, _, _ = walk([root])
    plain = [p for p in data if not is_archive(p)]
    groups, rejected = group_files(plain, fmt)
    with closing(_listing(tmp_path, [root], fmt)) as listing:
        assert list(listing.groups()) == groups
        assert list(listing.rejected()) == [(str(p), e.reason) for p, e in rejected]
        assert (listing.n_groups(), listing.n_rejected()) == (len(groups), len(rejected))
    if fmt == "knet":  # one 3-file record, its files sorted as paths
        st1 = next(g for g in groups if g.files[0].parent.name == "a")
        assert st1.files == tuple(sorted(root / "a" / f"ST1.{c}" for c in ["NS", "EW", "UD"]))
        assert len(groups) == 5 and not rejected
    else:  # b"x" is no known format: every file is rejected with the reason
        assert not groups and len(rejected) == len(plain)


@pytest.mark.parametrize("shard_records", [1, 2, 3, 256])
def test_plain_shards_carry_rejected_files_then_groups_in_order(
    tmp_path: Path, shard_records: int
) -> None:
    root = _tree(tmp_path / "in")
    (root / "junk.bin").write_bytes(b"\0" * 10)  # no format: rejected under auto
    data, _, _ = walk([root])
    groups, rejected = group_files([p for p in data if not is_archive(p)], "auto")
    with closing(_listing(tmp_path, [root], "auto")) as listing:
        tasks = list(plain_shard_tasks(listing, shard_records))
    assert [t.chunk for t in tasks] == list(range(len(tasks)))
    assert {t.n_chunks for t in tasks} == {len(tasks)}
    assert all(len(t.groups) + len(t.rejected) <= shard_records for t in tasks)
    assert [r for t in tasks for r in t.rejected] == [(str(p), e.reason) for p, e in rejected]
    assert [g for t in tasks for g in t.groups] == groups
    assert tasks[0].counts["input_files"] == len(data) - 1  # the archive is its own source
    assert all(not any(t.counts.values()) for t in tasks[1:])


def test_an_empty_listing_still_makes_one_shard(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with closing(_listing(tmp_path, [tmp_path / "in"])) as listing:
        tasks = list(plain_shard_tasks(listing, 8))
    assert [(t.chunk, t.n_chunks, t.groups, t.rejected) for t in tasks] == [(0, 1, (), ())]


def test_slices_are_taken_lazily() -> None:
    taken = []

    def items():
        for i in range(7):
            taken.append(i)
            yield i

    chunks = slices(items(), 3)
    assert next(chunks) == [0, 1, 2] and taken == [0, 1, 2]
    assert list(chunks) == [[3, 4, 5], [6]]


def _records(folder: Path, n: int) -> None:
    """``n`` 3-file K-NET records (empty files: classified by name, with fmt given)."""
    for i in range(n):
        sub = folder / f"{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        for comp in ("NS", "EW", "UD"):
            (sub / f"ST{i:05d}.{comp}").touch()


def _intern_lines() -> list[tracemalloc.Filter]:
    """Filters that leave out the resizes of CPython's table of interned strings (pathlib
    interns every path part): one block of a few MB now and then, whatever the code holds."""
    lines = Path(pathlib.__file__).read_text().splitlines()
    found = [n for n, line in enumerate(lines, start=1) if "sys.intern(" in line]
    return [tracemalloc.Filter(False, pathlib.__file__, lineno=n) for n in found]


def _held_mb() -> float:
    """Python memory held now (MB), the interned-string table left out."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_intern_lines())
    return sum(stat.size for stat in snapshot.statistics("filename")) / 1e6


def _listing_held_mb(inputs: Path, db: Path) -> tuple[int, float]:
    """Groups found, and the most Python memory held (MB) after listing ``inputs``, after
    classifying it, and as each shard of its groups is taken."""
    tracemalloc.start()
    try:
        with closing(FileListing(db)) as listing:
            listing.walk([inputs])
            held = [_held_mb()]
            listing.classify("knet")
            held.append(_held_mb())
            n_groups = 0
            for task in plain_shard_tasks(listing, 64):
                n_groups += len(task.groups)
                held.append(_held_mb())
        return n_groups, max(held)
    finally:
        tracemalloc.stop()


def test_listing_memory_does_not_grow_with_the_number_of_files(tmp_path: Path, monkeypatch) -> None:
    """4x the files, the same memory held: the listing holds one shard of groups at a time
    (pages of 256 rows while classifying, so that both runs fill theirs)."""
    monkeypatch.setattr(file_spool, "PAGE_ROWS", 256)
    held_mb = []
    for n in (1000, 4000):
        _records(tmp_path / f"in{n}", n)
        n_groups, mb = _listing_held_mb(tmp_path / f"in{n}", tmp_path / f"l{n}.sqlite")
        assert n_groups == n
        held_mb.append(mb)
    growth_mb = held_mb[1] - held_mb[0]
    assert growth_mb < 0.3, f"held memory grew {growth_mb:.2f} MB for 3000 more records"


def test_in_memory_lists_would_fail_the_memory_check(tmp_path: Path) -> None:
    """The check above can fail: the lists of walk + group_files, held as the in-memory ingest
    held them, grow by ~1 kB a record (> 0.3 MB for 3000 more)."""
    held_mb = []
    for n in (1000, 4000):
        _records(tmp_path / f"in{n}", n)
        tracemalloc.start()
        data, _, _ = walk([tmp_path / f"in{n}"])
        groups, _ = group_files(data, "knet")
        held_mb.append(_held_mb())
        tracemalloc.stop()
        assert len(groups) == n
    assert held_mb[1] - held_mb[0] > 0.3, held_mb


def test_a_new_listing_replaces_the_old_file(tmp_path: Path) -> None:
    db = tmp_path / "listing.sqlite"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ST1.NS").touch()
    with closing(FileListing(db)) as listing:
        listing.walk([tmp_path / "in"])
    with closing(FileListing(db)) as listing:
        assert listing.count(DATA) == 0
    assert os.path.getsize(db) > 0
