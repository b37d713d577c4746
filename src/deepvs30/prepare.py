"""prepare stage: filter, resample, find PGA and H/V peaks, and split by station.

Reads the canonical dataset record by record and writes, under ``prepare.out``:

- ``waveforms.npy``: float32 memory map (n_records, 3, max_samples) of preprocessed records in
  m/s² at the common rate (zero-padded; true length in records.csv). Windows are cut from it at
  training time, so segmentation is a training option that the tuner can search without
  preparing again, and memory stays bounded whatever the archive size;
- ``records.csv``: one row per record (station, Vs30, arrivals in samples at the common rate,
  PGA, H/V peak, both split labels);
- ``stations.csv``: the split file, one row per station, reused by every run;
- ``skipped.csv``: records that could not be prepared, each with its reason;
- ``prepare.json``: counts and the parameters used.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30 import progress
from deepvs30.config import data_path, section
from deepvs30.dataset import (
    CanonicalDataset,
    arrival_sample_or_none,
    record_ids,
    replace_dir,
    staging_dir,
    station_key,
)
from deepvs30.hvsr import HvParams, record_hv_peak
from deepvs30.preprocess import PreprocessParams, preprocess_record, rescale_sample
from deepvs30.segment import pga_sample
from deepvs30.split import SplitParams, make_splits

WAVEFORMS = "waveforms.npy"
RECORDS = "records.csv"
STATIONS = "stations.csv"
SKIPPED = "skipped.csv"
SUMMARY = "prepare.json"


@dataclass(frozen=True)
class PrepareParams:
    out: str = "prepared"
    min_record_s: float = 10.0
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    hv: HvParams = field(default_factory=HvParams)
    split: SplitParams = field(default_factory=SplitParams)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="canonical dataset folder (default: data.path)")
    parser.add_argument("--out", help="output folder (default: prepare.out)")


def run(args: argparse.Namespace, params: dict) -> int:
    prep = section(params, "prepare", PrepareParams)
    data_dir = args.data or data_path(params)
    out_dir = Path(args.out or prep.out)
    summary = prepare(data_dir, out_dir, prep)
    print(json.dumps(summary["counts"], indent=1))
    return 0


def prepare(data_dir: str | Path, out_dir: str | Path, params: PrepareParams) -> dict:
    """Prepare ``data_dir`` into ``out_dir``, built under a temporary name and renamed at the
    end, so a failure leaves no half-written folder behind."""
    out_dir = Path(out_dir)
    tmp_dir = staging_dir(out_dir)  # and those of killed runs removed
    try:
        summary = _prepare_into(data_dir, tmp_dir, params)
        replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return summary


def _prepare_into(data_dir: str | Path, out_dir: Path, params: PrepareParams) -> dict:
    fs_hz = params.preprocess.target_fs_hz
    max_samples = int(round(params.preprocess.max_record_s * fs_hz))
    with CanonicalDataset(data_dir) as dataset:
        meta = dataset.metadata.reset_index(drop=True)
        labelled = pd.to_numeric(meta["station_vs30_mps"], errors="coerce").notna()
        skipped = [
            {"record_id": rid, "reason": "no Vs30 label"} for rid in record_ids(meta)[~labelled]
        ]
        rows = np.flatnonzero(labelled.to_numpy())
        waves = np.lib.format.open_memmap(
            out_dir / WAVEFORMS, mode="w+", dtype=np.float32, shape=(len(rows), 3, max_samples)
        )
        records, kept = [], []
        for i in progress.bar(rows, desc="prepare", unit="rec"):
            entry = _prepare_one(dataset, meta, int(i), params, max_samples, waves, len(kept))
            if "reason" in entry:
                skipped.append(entry)
            else:
                records.append(entry)
                kept.append(int(i))
        waves.flush()
        del waves
    _shrink(out_dir / WAVEFORMS, len(kept))
    records_df = pd.DataFrame(records)
    stations = make_splits(meta.iloc[kept].reset_index(drop=True), params.split)
    records_df = records_df.merge(
        stations[["station", "cluster", "split", "split_cluster"]], on="station", how="left"
    )
    records_df.to_csv(out_dir / RECORDS, index=False)
    stations.to_csv(out_dir / STATIONS, index=False)
    pd.DataFrame(skipped, columns=["record_id", "reason"]).to_csv(out_dir / SKIPPED, index=False)
    summary = {
        "data": str(data_dir),
        "fs_hz": fs_hz,
        "max_samples": max_samples,
        "counts": {
            "records_in": int(len(meta)),
            "records_prepared": int(len(records_df)),
            "records_skipped": len(skipped),
            "stations": int(len(stations)),
            **{f"stations_{k}": int(v) for k, v in stations["split"].value_counts().items()},
            **{f"records_{k}": int(v) for k, v in records_df["split"].value_counts().items()},
        },
        "skipped_reasons": pd.Series([s["reason"] for s in skipped], dtype=object)
        .value_counts()
        .to_dict(),
        "params": asdict(params),
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _prepare_one(
    dataset: CanonicalDataset,
    meta: pd.DataFrame,
    i: int,
    params: PrepareParams,
    max_samples: int,
    waves: np.ndarray,
    slot: int,
) -> dict:
    row = meta.iloc[i]
    rid = str(record_ids(meta.iloc[[i]]).iat[0])
    fs_in_hz = float(row["trace_sampling_rate_hz"])
    fs_hz = params.preprocess.target_fs_hz
    raw = dataset.waveform(i)
    if raw.shape[1] / fs_in_hz < params.min_record_s:
        return {"record_id": rid, "reason": f"shorter than {params.min_record_s} s"}
    if not np.all(np.isfinite(raw)):
        return {"record_id": rid, "reason": "non-finite samples"}
    record = preprocess_record(raw, fs_in_hz, params.preprocess)
    p_sample, s_sample = (
        rescale_sample(arrival_sample_or_none(row[f"trace_{ph}_arrival_sample"]), fs_in_hz, fs_hz)
        for ph in "ps"
    )
    if p_sample is not None and s_sample is not None and s_sample <= p_sample:
        return {"record_id": rid, "reason": "S arrival not after P arrival"}
    n = record.shape[1]
    waves[slot, :, :n] = record
    pga_at = pga_sample(record)
    peak = record_hv_peak(record, fs_hz, s_sample, pga_at, params.hv)
    return {
        "row": slot,
        "record_id": rid,
        "station": str(station_key(meta.iloc[[i]]).iat[0]),
        "vs30_mps": float(row["station_vs30_mps"]),
        "source_id": str(row["source_id"]),
        "magnitude": float(row["source_magnitude"]),
        "hyp_distance_km": float(row["path_hyp_distance_km"]),
        "n_samples": n,
        "p_sample": p_sample,
        "s_sample": s_sample,
        "pga_sample": pga_at,
        "pga_mps2": float(np.hypot(record[1], record[2]).max()),
        "hv_f0_hz": peak.f0_hz,
        "hv_amplitude": peak.amplitude,
    }


def _shrink(path: Path, n_rows: int) -> None:
    """Drop the unused tail rows of the memory map (records that were skipped)."""
    waves = np.load(path, mmap_mode="r")
    if waves.shape[0] == n_rows:
        return
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=waves.dtype, shape=(n_rows, *waves.shape[1:])
    )
    for start in range(0, n_rows, 1024):
        out[start : start + 1024] = waves[start : start + 1024]
    out.flush()
    del out, waves
    tmp.replace(path)


def load_prepared(prepared_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The memory-mapped waveforms, the records table and the summary of a prepared folder."""
    prepared_dir = Path(prepared_dir)
    waves = np.load(prepared_dir / WAVEFORMS, mmap_mode="r")
    records = pd.read_csv(prepared_dir / RECORDS)
    summary = json.loads((prepared_dir / SUMMARY).read_text())
    return waves, records, summary
