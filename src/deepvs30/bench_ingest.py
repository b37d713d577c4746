"""Ingest at scale (``make bench``, inside the ``ingest`` section): records/s and peak memory of
``ingest_paths`` over the real K-NET sample replicated into N distinct records, for growing N.

Each size runs in its own child process (:func:`deepvs30.bench.in_child`: peak RSS reset at the
start, peak anonymous memory sampled), with the ``ingest:`` section of params.yaml (station
tables, picking, shard size, workers). The slopes of peak memory against N, in MB per 1,000
records, are what must stay near zero: ``waveform_mb_per_1k_records`` beside them is what
holding every record would cost (float32, as the dataset stores them). With ``workers`` > 1
the figures are the parent's; each worker, like the parent at ``workers: 1``, holds one record
at a time. Nothing here asserts a timing.

Sizes: ``bench.ingest_scale_records`` where params.yaml has it, else :data:`DEFAULT_SIZES`
(``--quick`` sizes; 36,000 and 100,000 records take about 9 and 24 GB of replicated files).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (1000, 4000)
FULL_SIZES = (36_000, 100_000)


def bench_section(setup: Any, on_size: Any = None) -> dict:
    """The hook for :func:`deepvs30.bench.run_bench`: sizes from ``setup.bench``;
    ``on_size(section)`` after each size, so a run stopped at a larger size keeps the others."""
    from deepvs30.bench import NO_REALDATA
    from deepvs30.config import section
    from deepvs30.ingest import IngestParams

    if setup.realdata is None:
        return {"skipped": NO_REALDATA}
    sizes = getattr(setup.bench, "ingest_scale_records", None) or DEFAULT_SIZES
    params = section(setup.params, "ingest", IngestParams) if "ingest" in setup.params else None
    return measure(setup.realdata, setup.tmp, sizes, params, on_size)


def measure(
    realdata: Path,
    tmp: Path,
    sizes: Sequence[int],
    ingest_params: Any = None,
    on_size: Any = None,
) -> dict:
    """Ingest ``n`` replicated K-NET records for each ``n`` of ``sizes``, each in a child;
    ``on_size(section so far)`` after each."""
    from deepvs30.bench import in_child, replicate_knet
    from deepvs30.ingest import IngestParams, worker_count

    ingest_params = ingest_params or IngestParams()
    rows = []
    for n in sorted(sizes):
        inputs, out = tmp / f"ingest_scale_{n}", tmp / f"ingest_scale_{n}_ds"
        replicate_knet(realdata, inputs, n)
        try:
            row = in_child(step, inputs=str(inputs), out=str(out), ingest_params=ingest_params)
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
        rows.append({**row, "records": n})
        section = {
            "source": "K-NET sample replicated (3 files per record, distinct record times)",
            "workers": worker_count(ingest_params.workers),
            "shard_records": ingest_params.shard_records,
            "pick": ingest_params.pick,
            "sizes": rows,
            "sizes_asked": sorted(sizes),
            **slopes(rows),
        }
        if on_size is not None:
            on_size(section)
    return section


def step(inputs: str, out: str, ingest_params: Any = None) -> dict:
    """Run in the child: one ingest, the station tables loaded and the readers warmed first
    (also the ``ingest`` steps of K-NET and AFAD .mat in :mod:`deepvs30.bench`)."""
    from deepvs30.ingest import (
        IngestParams,
        build_station_table,
        group_files,
        ingest_paths,
        picks_for,
    )
    from deepvs30.readers import read_group

    ingest_params = ingest_params or IngestParams()
    stations = build_station_table(ingest_params)
    for record in read_group(group_files(first_record_files(inputs))[0][0]):  # imports, TauP
        picks_for(record, ingest_params.pick, ingest_params.picking)
    t0 = time.perf_counter()
    summary = ingest_paths([inputs], out, params=ingest_params, stations=stations)
    seconds = time.perf_counter() - t0
    dataset_mb = (Path(out) / "waveforms.hdf5").stat().st_size / 1e6
    return {
        "records": summary.input_items,
        "ingested": summary.ingested,
        "quarantined": summary.quarantined,
        "files": summary.input_files,
        "shards": summary.shards,
        "seconds": round(seconds, 2),
        "records_per_s": _rate(summary.input_items, seconds),
        "files_per_s": _rate(summary.input_files, seconds),
        "dataset_mb": round(dataset_mb, 1),
    }


def first_record_files(folder: str) -> list[Path]:
    """The files of one record in ``folder`` (those of the first file's stem), found without
    holding the listing: a list of the whole folder (ingest's ``walk``) is ~0.6 MB per 1,000
    files, and it is the child's peak memory that is measured."""
    files: list[Path] = []
    first_stem = None
    with os.scandir(folder) as entries:
        for entry in entries:
            stem = entry.name.split(".")[0]
            first_stem = first_stem or stem
            if stem == first_stem:
                files.append(Path(entry.path))
    return sorted(files)


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def slopes(rows: Sequence[dict]) -> dict:
    """Peak memory against records between the smallest and the largest size, in MB per 1,000
    records, and the waveform megabytes that holding every record would add per 1,000."""
    if len(rows) < 2:
        return {}
    first, last = rows[0], rows[-1]
    per_1k = 1000 / (last["records"] - first["records"])
    out = {
        f"{key}_per_1k_records": round((last[key] - first[key]) * per_1k, 2)
        for key in ("peak_rss_mb", "peak_anon_mb")
        if first.get(key) is not None and last.get(key) is not None
    }
    out["waveform_mb_per_1k_records"] = round(last["dataset_mb"] / last["records"] * 1000, 1)
    return out
