"""``write_dataset`` with the metadata spooled to disk (:mod:`deepvs30.metadata_spool`): the
same metadata.csv and waveforms.hdf5 as SeisBench's own writer, byte for byte, whatever mix
of value types each column holds, Python memory that does not grow with the records, and held
waveforms capped in bytes whatever the spread of record lengths."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd

from deepvs30 import metadata_spool
from deepvs30.dataset import (
    METADATA_FILE,
    REQUIRED_COLUMNS,
    WAVEFORMS_FILE,
    CanonicalDataset,
    write_dataset,
)


def mixed_row(i: int, dates: bool = False) -> dict:
    """Record ``i``: columns whose whole-table dtype differs from that of most chunks
    (``dates``: and one that pandas formats as a whole: dates only, but for one time)."""
    row = {c: f"{c}-{i}" for c in REQUIRED_COLUMNS}
    row["trace_name"] = f"NET.STA{i % 7}$x" if i % 9 == 0 else f"NET.STA{i % 7}"
    row.update(
        int_then_float=i if i < 30 else i + 0.5,  # int64 in early chunks, float64 overall
        float32=np.float32(i / 3),  # float32 kept as float32 ...
        float32_or_blank=np.float32(i / 10) if i != 33 else "",  # ... or printed as object
        float32_or_float=np.float32(i / 7) if i != 5 else 0.25,  # float64 overall
        text_or_none=None if i % 5 == 0 else f"s{i}",
        bool_then_int=True if i < 35 else 1,  # object overall
        int_or_uint64=2**63 if i == 39 else i,  # uint64 overall
        int_or_nan=np.nan if i == 38 else i,  # float64 overall
        int32=np.int32(i),
    )
    if i >= 20:
        row["late_column"] = i  # missing (NaN) in the first 20 rows: float64 overall
    if dates:
        row["date"] = pd.Timestamp("2020-01-02") + pd.Timedelta(days=i, hours=int(i == 30))
    return row


def mixed_records(n: int = 40, dates: bool = False) -> list[tuple[dict, np.ndarray]]:
    """Two length classes, one of a single record (a bucket of one: no trace_name_original)."""
    rng = np.random.default_rng(0)
    lengths = [5000 if i == 17 else 100 + i for i in range(n)]
    return [
        (mixed_row(i, dates), rng.normal(size=(3, length)).astype(np.float32))
        for i, length in enumerate(lengths)
    ]


def seisbench_writer(
    metadata_path: Path, waveforms_path: Path, spool_path: Path, cache_bytes: int | None
):
    return sbd.WaveformDataWriter(metadata_path, waveforms_path)


@pytest.mark.parametrize("dates", [False, True])
def test_same_files_as_seisbench_writer(tmp_path: Path, monkeypatch, dates: bool) -> None:
    monkeypatch.setattr(metadata_spool, "CHUNK_ROWS", 3)
    spooled = write_dataset(tmp_path / "spooled", mixed_records(dates=dates), bucket_size=4)
    monkeypatch.setattr(metadata_spool, "SpooledWriter", seisbench_writer)
    reference = write_dataset(tmp_path / "seisbench", mixed_records(dates=dates), bucket_size=4)
    text = (reference / METADATA_FILE).read_text()
    assert "trace_name_original" in text and ",1.0," in text and ",0.1," in text
    assert not dates or ",2020-01-02 00:00:00," in text  # a time on every date, as a whole
    for name in (METADATA_FILE, WAVEFORMS_FILE):
        assert (spooled / name).read_bytes() == (reference / name).read_bytes(), name
    assert sorted(p.name for p in spooled.iterdir()) == [METADATA_FILE, WAVEFORMS_FILE]


def plain_records(n: int) -> Iterator[tuple[dict, np.ndarray]]:
    """``n`` records made one at a time: distinct metadata (~2 kB each as Python objects),
    tiny waveforms."""
    for i in range(n):
        yield {c: f"{c}-{i:08d}" for c in REQUIRED_COLUMNS}, np.zeros((3, 16), np.float32)


def traced_peak_mb(out: Path, n: int) -> float:
    """Peak Python allocations (MB) while ``n`` records are written."""
    tracemalloc.start()
    try:
        write_dataset(out, plain_records(n), total=n)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_written_metadata_is_not_held(tmp_path: Path) -> None:
    """4x the records, the same peak: SeisBench's writer alone holds every record's metadata
    to the end (~2 kB a record, +2 MB here) and then one table of it."""
    n_small = 300  # past the first bucket (256): both runs hold one open bucket at most
    small_mb = traced_peak_mb(tmp_path / "small", n_small)
    large_mb = traced_peak_mb(tmp_path / "large", 4 * n_small)
    growth_mb = large_mb - small_mb
    assert growth_mb < 0.5, f"peak grew {growth_mb:.2f} MB for {3 * n_small} more records"


N_CLASSES = 12  # record lengths 1.2x apart: one SeisBench bucket (length class) each


def spread_records(n: int) -> Iterator[tuple[dict, np.ndarray]]:
    """``n`` records, made one at a time, cycling through ``N_CLASSES`` length classes
    (1,000 to ~7,400 samples, 12-89 kB each in float32), each waveform its index."""
    for i in range(n):
        length = int(1000 * 1.2 ** (i % N_CLASSES))
        yield {c: f"{c}-{i:08d}" for c in REQUIRED_COLUMNS}, np.full((3, length), i, np.float32)


def traced_write_peak_mb(out: Path, n: int, cache_mb: float | None) -> float:
    """Peak Python allocations (numpy's buffers included) while ``n`` spread records are
    written with ``cache_mb``."""
    tracemalloc.start()
    try:
        write_dataset(out, spread_records(n), total=n, cache_mb=cache_mb)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_held_waveforms_are_capped_across_length_classes(tmp_path: Path) -> None:
    """240 records over 12 length classes fill no bucket of 256: SeisBench's writer holds all
    of them (~9 MB) to the end; with a 1 MB cap the peak stays near 1 MB and does not grow
    with the records."""
    n = 20 * N_CLASSES
    uncapped_mb = traced_write_peak_mb(tmp_path / "uncapped", n, cache_mb=None)
    capped_mb = traced_write_peak_mb(tmp_path / "capped", n, cache_mb=1.0)
    capped_4x_mb = traced_write_peak_mb(tmp_path / "capped4x", 4 * n, cache_mb=1.0)
    waveform_mb = sum(w.nbytes for _, w in spread_records(n)) / 1e6
    assert uncapped_mb > 0.9 * waveform_mb > 8  # the negative control: everything held
    assert capped_mb < 3.0, f"capped writer peaked at {capped_mb:.1f} MB"
    assert capped_4x_mb - capped_mb < 0.5, f"{capped_mb:.2f} -> {capped_4x_mb:.2f} MB"


def test_capped_writer_keeps_every_record_and_its_samples(tmp_path: Path) -> None:
    """Buckets written early are shorter, not lossy: every record, its metadata and its
    samples come back, in order, as from the uncapped writer."""
    n = 5 * N_CLASSES
    capped = CanonicalDataset(write_dataset(tmp_path / "c", spread_records(n), cache_mb=0.2))
    plain = CanonicalDataset(write_dataset(tmp_path / "p", spread_records(n), cache_mb=None))
    with capped, plain:
        assert len(capped) == len(plain) == n
        assert capped.h5["data"].keys() != plain.h5["data"].keys()  # the cap did write early
        columns = [c for c in REQUIRED_COLUMNS if c != "trace_name"]
        pd.testing.assert_frame_equal(capped.metadata[columns], plain.metadata[columns])
        for i, (_, waveform) in enumerate(spread_records(n)):
            np.testing.assert_array_equal(capped.waveform(i), waveform, err_msg=str(i))
