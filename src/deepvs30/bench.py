"""``deepvs30 bench``: speed, memory and scaling where users feel them (``make bench``).

Writes ``<out>/results.json`` and ``<out>/results.md``. Shared machines are noisy, so the
figures are rates and ratios measured side by side in one run: compare numbers of one
results.json, not across runs or machines. Sections:

- ``ingest``: records/s of K-NET ASCII and AFAD .mat (the real samples replicated in a temporary
  folder), and of the synthetic generator;
- ``prepare``: records/s through preprocessing, H/V and the memory map, and the peak memory of
  the largest scaling size (36,000 records of 60 s by default, the AFAD archive of the method);
- ``training``: samples/s of our loop (``_train_epoch`` over ``WindowDataset`` on the memory
  map) against a bare torch loop over the same pre-materialised tensors and the same model;
- ``inference``: records/s in batch, latency of one record (pyfunc ``predict_frame``,
  ``deepvs30 predict`` beside the imports every prediction needs);
- ``tuning``: trials/hour with and without pruning (one in-process tune worker in a child);
- ``workers``: training steps/s of 1, 2, ... local processes side by side (bench_workers);
- ``scaling``: prepare and one training epoch at each size, with log-log exponents.

Every measured step runs in its own child process, forked from a server that has already
imported the libraries (imports are not timed). A step reports ``peak_rss_mb`` (the child's
VmHWM, reset at the step start; it includes file pages of memory maps the step touched, which
the kernel can reclaim), ``peak_anon_mb`` (peak anonymous memory, the heap, sampled every
20 ms: what must stay bounded) and ``base_rss_mb`` (RSS at the step start: interpreter and
libraries). Large temporary data lives in one temporary folder, removed at the end.
Sections that need the real samples are skipped with a ``skipped`` note. results.md is the
flat table of :func:`results_frame` (section, what, value, unit, note). Nothing here asserts
a timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deepvs30 import bench_ingest as bench_ingest_module
from deepvs30 import bench_workers as bench_workers_module
from deepvs30 import threads
from deepvs30.config import from_dict, load_params, section
from deepvs30.errors import ConfigError
from deepvs30.readers.knet import shift_record_time
from deepvs30.segment import FeatureParams
from deepvs30.threads import NumThreads
from deepvs30.train import ModelParams, TrainParams

log = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SECTIONS = (
    "ingest", "prepare", "training", "inference", "tuning", "workers", "faults", "scaling",
)  # fmt: skip
# Imported once by the fork server, so that no measured step pays for imports.
PRELOAD = [
    "numpy",
    "scipy.signal",
    "scipy.io",
    "pandas",
    "h5py",
    "torch",
    "obspy",
    "seisbench.data",
    "deepvs30.ingest",
    "deepvs30.prepare",
    "deepvs30.train",
    "deepvs30.pyfunc",
    "deepvs30.synth.generate",
    "deepvs30.bench",
]
KNET_SAMPLE = ("knet_strong_motion_web_viewer", "KNG0012408091957")
AFAD_SAMPLES = "afad_cnnlstm_deepeq"
NO_REALDATA = "real samples not found (set DEEPVS30_REALDATA)"


# --quick (CI smoke run, about a minute on a quiet machine); params.yaml bench.quick overrides.
QUICK = {
    "knet_records": 8,
    "afad_files": 24,
    "synth_stations": 40,
    "synth_events": 6,
    "scaling_records": [60, 180],
    "train_samples": 64,
    "train_repeats": 1,
    "inference_records": 64,
    "latency_repeats": 3,
    "tune_trials": 0,
    "worker_counts": [1, 2],
    "worker_seconds": 3.0,
    "ingest_scale_records": [16, 48],
}


@dataclass(frozen=True)
class BenchParams:
    """The ``bench:`` section of params.yaml; ``quick`` overrides any key for ``--quick``."""

    out: str = "bench"
    tmp_dir: str = ""  # parent of the temporary folder ("" = the system's)
    knet_records: int = 1000  # replicas of the K-NET sample (3 files each)
    afad_files: int = 3000  # replicas of the AFAD .mat samples
    synth_stations: int = 120  # timed generator run, also the base of the replicated datasets
    synth_events: int = 20
    record_s: float = 60.0  # length of the generated records
    scaling_records: list[int] = field(default_factory=lambda: [1000, 5000, 36000])
    train_samples: int = 1024  # samples per timed training pass (ours and bare torch)
    train_repeats: int = 3  # passes, ours and bare interleaved batch by batch; median kept
    inference_records: int = 1024
    latency_repeats: int = 20
    tune_records: int = 300  # replicated records prepared for the tiny search
    tune_trials: int = 4
    tune_epochs: int = 2
    worker_counts: list[int] = field(default_factory=lambda: [1, 2, 4])  # local processes
    worker_seconds: float = 20.0  # timed steps per layout
    # ingest at archive size (bench_ingest): replicated K-NET records; ~9 and 24 GB of files
    ingest_scale_records: list[int] = field(default_factory=lambda: [36000, 100000])
    quick: dict = field(default_factory=lambda: dict(QUICK))

    def quick_mode(self) -> BenchParams:
        values = {k: v for k, v in asdict(self).items() if k != "quick"}
        return from_dict({**values, **self.quick}, BenchParams, "bench.quick")


@dataclass(frozen=True)
class Setup:
    """What every section needs: parameters, the temporary folder, the training config."""

    bench: BenchParams
    tmp: Path
    features: FeatureParams
    model: ModelParams
    train: TrainParams
    params: dict
    realdata: Path | None


# ---------------------------------------------------------------- measured child processes


class _AnonSampler(threading.Thread):
    """Peak anonymous RSS (kB) of this process, sampled every ``period_s``."""

    def __init__(self, period_s: float = 0.02):
        super().__init__(daemon=True)
        self.period_s = period_s
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon") or 0)
            self._stop_event.wait(self.period_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak_kb = max(self.peak_kb, _status_kb("RssAnon") or 0)
        return self.peak_kb


def _status_kb(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (None off Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is this step's."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _measured(fn: Callable[..., dict], kwargs: dict) -> dict:
    """Run in the child: the step's own result plus its memory figures."""
    reset = _reset_peak_rss()
    base_kb = _status_kb("VmRSS")
    sampler = _AnonSampler()
    sampler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(**kwargs)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    anon_kb = sampler.stop()
    peak_kb = _status_kb("VmHWM")
    if peak_kb is None or not reset:  # not Linux: the lifetime peak of the child
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
    result["peak_rss_mb"] = round(peak_kb / 1024, 1)
    result["peak_anon_mb"] = round(anon_kb / 1024, 1) if anon_kb else None
    result["base_rss_mb"] = round(base_kb / 1024, 1) if base_kb else None
    result["cpu_use"] = round(cpu_s / wall_s, 2) if wall_s > 0 else None  # CPUs busy on average
    return result


_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        _CONTEXT = multiprocessing.get_context(method or "spawn")
        if method:
            _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def in_child(fn: Callable[..., dict], **kwargs: Any) -> dict:
    """Run ``fn(**kwargs)`` in a fresh child process; its result plus memory figures."""
    with ProcessPoolExecutor(1, mp_context=_context(), max_tasks_per_child=1) as pool:
        return pool.submit(_measured, fn, kwargs).result()


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def _threads(num_threads: NumThreads) -> int:
    """Apply this process's thread budget (threads.py); the intra-op threads it got."""
    import torch

    threads.apply(threads.resolve(num_threads))
    return torch.get_num_threads()


def _torch_device(train: TrainParams):
    """Where the training steps run: ``train.device`` resolved (device.py)."""
    from deepvs30.device import resolve

    return resolve(train.device)


def _sync(device) -> None:
    """Wait for queued GPU work, so that a timer reads finished work (no-op on the CPU)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _device(device) -> dict:
    import torch

    return {"device": str(device), "cuda_available": bool(torch.cuda.is_available())}


# ---------------------------------------------------------------- replicated inputs


def replicate_knet(realdata: Path, out_dir: Path, n_records: int) -> int:
    """``n_records`` copies of the K-NET sample, each with its own stem and record time
    (otherwise ingest would quarantine them as duplicates). Returns the number of files."""
    folder, stem = KNET_SAMPLE
    sources = sorted(p for p in (realdata / folder).glob(f"{stem}.*") if p.suffix != ".md")
    texts = {p.suffix: p.read_text() for p in sources}
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_records):
        for suffix, text in texts.items():
            shifted = shift_record_time(text, timedelta(minutes=i))
            (out_dir / f"R{i:06d}{suffix}").write_text(shifted)
    return n_records * len(texts)


def replicate_afad(realdata: Path, out_dir: Path, n_files: int) -> int:
    """``n_files`` copies of the AFAD .mat samples, the origin time in the name shifted (the
    reader takes the time from the name, so every copy is a distinct record)."""
    sources = sorted((realdata / AFAD_SAMPLES).glob("*.mat"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        src = sources[i % len(sources)]
        stamp, station = src.stem.split("_", 1)
        when = datetime.strptime(stamp, "%Y%m%d%H%M%S") + timedelta(minutes=i // len(sources))
        shutil.copyfile(src, out_dir / f"{when:%Y%m%d%H%M%S}_{station}.mat")
    return n_files


def replicated_records(base_dir: str | Path, n: int) -> Iterator[tuple[dict, np.ndarray]]:
    """``n`` canonical records cycling over a base dataset (streamed; names made unique)."""
    from deepvs30.dataset import CanonicalDataset, record_ids

    with CanonicalDataset(base_dir) as base:
        names = record_ids(base.metadata).tolist()
        rows = base.metadata.drop(columns=["trace_name_original"], errors="ignore")
        rows = rows.to_dict("records")
        waves = [base.waveform(i).astype(np.float32) for i in range(len(base))]
    for k in range(n):
        i = k % len(rows)
        yield {**rows[i], "trace_name": f"{names[i]}.r{k // len(rows)}"}, waves[i]


# ---------------------------------------------------------------- steps (run in children)


def _ingest_params(setup: Setup) -> Any:
    from deepvs30.ingest import IngestParams

    return section(setup.params, "ingest", IngestParams) if "ingest" in setup.params else None


def step_synth(synth_params: Any, out: str) -> dict:
    from deepvs30.synth.generate import generate

    summary = generate(synth_params, out)
    return {
        "records": summary.n_records,
        "stations": summary.n_stations,
        "events": summary.n_events,
        "seconds": round(summary.elapsed_s, 2),
        "records_per_s": summary.records_per_s,
    }


def step_build_dataset(base: str, out: str, n: int) -> dict:
    from deepvs30.dataset import write_dataset

    t0 = time.perf_counter()
    write_dataset(out, replicated_records(base, n), total=n)
    seconds = time.perf_counter() - t0
    return {"records": n, "seconds": round(seconds, 2), "records_per_s": _rate(n, seconds)}


def step_prepare(data: str, out: str, prepare_params: Any) -> dict:
    from deepvs30.prepare import WAVEFORMS, prepare

    t0 = time.perf_counter()
    summary = prepare(data, out, prepare_params)
    seconds = time.perf_counter() - t0
    n = summary["counts"]["records_prepared"]
    return {
        "records": n,
        "seconds": round(seconds, 2),
        "records_per_s": _rate(n, seconds),
        "memmap_gb": round((Path(out) / WAVEFORMS).stat().st_size / 1e9, 2),
    }


def _train_records(prepared: str, features: FeatureParams, train: TrainParams) -> tuple:
    """The memory map, the usable records of the training split (as fit() takes them), fs."""
    from deepvs30.prepare import load_prepared
    from deepvs30.split import select_split
    from deepvs30.windows import usable_records

    waves, records, summary = load_prepared(prepared)
    fs_hz = float(summary["fs_hz"])
    records, _ = usable_records(waves, records, fs_hz, features)
    return waves, select_split(records, train.split_column, 1.0, train.seed)["train"], fs_hz


def _train_set(prepared: str, features: FeatureParams, train: TrainParams, limit: int | None):
    """WindowDataset of the training split (first ``limit`` records), and the setup time."""
    from deepvs30.windows import Normaliser, WindowDataset

    t0 = time.perf_counter()
    waves, part, fs_hz = _train_records(prepared, features, train)
    part = part.iloc[:limit] if limit else part
    normaliser = Normaliser.fit(waves, part, fs_hz, features)
    dataset = WindowDataset(waves, part, fs_hz, features, normaliser)
    return dataset, fs_hz, time.perf_counter() - t0


def _network(model: ModelParams, features: FeatureParams, fs_hz: float, seed: int, device):
    import torch

    from deepvs30.inference import ModelBundle

    torch.manual_seed(seed)
    return ModelBundle.build_network(model.name, model.hparams, features, fs_hz).to(device)


def _optimiser(network, train: TrainParams):
    import torch

    return torch.optim.AdamW(network.parameters(), lr=train.lr, weight_decay=train.weight_decay)


class _Interleaved:
    """Our DataLoader, with one bare-torch batch run (and timed apart) before each of our
    batches: both loops see the same machine load, batch by batch (shared machines drift)."""

    def __init__(self, loader, bare_step: Callable[[int], None]):
        self.loader = loader
        self.bare_step = bare_step
        self.bare_seconds = 0.0
        self.bare_cpu_seconds = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for k, batch in enumerate(self.loader):
            t0, c0 = time.perf_counter(), time.process_time()
            self.bare_step(k)
            self.bare_seconds += time.perf_counter() - t0
            self.bare_cpu_seconds += time.process_time() - c0
            yield batch


def _bare_step(tensors: tuple, dataset, model: ModelParams, train: TrainParams):
    """One step of a bare torch loop over pre-materialised tensors, batch ``k`` of a seeded
    permutation: the same model, loss, clipping and optimiser as ours."""
    import torch

    from deepvs30.train import loss_fn

    device = _torch_device(train)
    x, s, y = (t.to(device) for t in tensors)  # the bare loop's data wait on the device
    network = _network(model, dataset.features, dataset.fs_hz, train.seed, device)
    optimiser = _optimiser(network, train)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(train.seed))
    network.train()

    def step(k: int) -> None:
        idx = order[k * train.batch_size : (k + 1) * train.batch_size]
        optimiser.zero_grad(set_to_none=True)
        out = network(x[idx], s[idx] if s.shape[1] else None)
        loss = loss_fn(train.loss, out, y[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimiser.step()
        _sync(device)

    return step


def _epoch_seconds(dataset, model: ModelParams, train: TrainParams, bare=None) -> tuple:
    """One epoch of our loop (DataLoader over WindowDataset into ``train._train_epoch``, as
    ``fit`` builds it); with ``bare`` steps interleaved. Returns wall seconds (ours, bare)
    and CPU seconds of the process (ours, bare): CPU time is less sensitive to other jobs."""
    import torch

    from deepvs30.train import _train_epoch

    device = _torch_device(train)
    network = _network(model, dataset.features, dataset.fs_hz, train.seed, device)
    optimiser = _optimiser(network, train)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=train.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(train.seed),
    )
    loader = _Interleaved(loader, bare) if bare is not None else loader
    t0, c0 = time.perf_counter(), time.process_time()
    _train_epoch(network, optimiser, loader, train.loss, device)
    _sync(device)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    bare_s = loader.bare_seconds if bare is not None else 0.0
    bare_cpu = loader.bare_cpu_seconds if bare is not None else 0.0
    return (total - bare_s, bare_s), (cpu - bare_cpu, bare_cpu)


def _warm_up(dataset, model: ModelParams, train: TrainParams) -> None:
    """First calls of a shape are slow (kernel set-up): run each batch shape once."""
    import torch

    sizes = {min(train.batch_size, len(dataset)), len(dataset) % train.batch_size} - {0}
    x, s, y = (torch.stack(t) for t in zip(*(dataset[i] for i in range(max(sizes))), strict=True))
    for size in sizes:
        _bare_step((x[:size], s[:size], y[:size]), dataset, model, train)(0)


def _materialise(dataset) -> tuple[tuple, float]:
    """All items stacked as tensors, and the mean time of one ``dataset[i]`` (ms)."""
    import torch

    t0 = time.perf_counter()
    items = [dataset[i] for i in range(len(dataset))]
    item_ms = 1000 * (time.perf_counter() - t0) / max(len(items), 1)
    return tuple(torch.stack(parts) for parts in zip(*items, strict=True)), item_ms


def step_training(
    prepared: str,
    features: FeatureParams,
    model: ModelParams,
    train: TrainParams,
    samples: int,
    repeats: int,
    bundle_out: str,
    checkpoint: str,
) -> dict:
    """Ours vs bare torch, interleaved batch by batch; then fit() for one epoch."""
    from deepvs30.train import fit

    n_threads = _threads(train.num_threads)
    dataset, _, _ = _train_set(prepared, features, train, samples)
    tensors, item_ms = _materialise(dataset)
    n = len(dataset)
    _warm_up(dataset, model, train)
    ours_s, bare_s, ratios, cpu_ratios = [], [], [], []
    for _ in range(repeats):
        bare = _bare_step(tensors, dataset, model, train)
        (ours, bare_time), (ours_cpu, bare_cpu) = _epoch_seconds(dataset, model, train, bare)
        ours_s.append(ours)
        bare_s.append(bare_time)
        ratios.append(bare_time / ours)
        cpu_ratios.append(bare_cpu / ours_cpu)
    bare_rate = _rate(n, statistics.median(bare_s))
    fit_params = dataclasses.replace(train, epochs=1, checkpoint=checkpoint)
    result = fit(prepared, features, model, fit_params, progress=False)
    result.bundle.save(bundle_out)
    n_fit = len(_train_records(prepared, features, train)[1])  # samples of one fit() epoch
    compute_ms = 1000 * statistics.median(bare_s) / n
    return {
        **_device(_torch_device(train)),
        "torch_num_threads": n_threads,
        "batch_size": train.batch_size,
        "model": model.name,
        "samples": n,
        "ours_samples_per_s": _rate(n, statistics.median(ours_s)),
        "bare_samples_per_s": bare_rate,
        "ratio": statistics.median(ratios),
        "ratio_runs": [round(r, 3) for r in ratios],
        "cpu_time_ratio": statistics.median(cpu_ratios),
        "cpu_time_ratio_runs": [round(r, 3) for r in cpu_ratios],
        "window_ms_per_item": round(item_ms, 3),
        "compute_ms_per_sample": round(compute_ms, 3),
        "expected_ratio_from_item_cost": compute_ms / (compute_ms + item_ms),
        "fit_one_epoch_samples": n_fit,
        "fit_one_epoch_seconds": round(result.seconds, 2),
        "fit_one_epoch_samples_per_s": _rate(n_fit, result.seconds),
        "fit_ratio": _rate(n_fit, result.seconds) / bare_rate,
    }


def step_epoch(
    prepared: str, features: FeatureParams, model: ModelParams, train: TrainParams
) -> dict:
    """One training epoch over the training split, as ``fit`` runs it (setup timed apart)."""
    n_threads = _threads(train.num_threads)
    dataset, _, setup_s = _train_set(prepared, features, train, None)
    _warm_up(dataset, model, train)
    (seconds, _), (cpu_s, _) = _epoch_seconds(dataset, model, train)
    return {
        "samples": len(dataset),
        "setup_seconds": round(setup_s, 2),
        "seconds": round(seconds, 2),
        "samples_per_s": _rate(len(dataset), seconds),
        "cpu_seconds": round(cpu_s, 2),
        "torch_num_threads": n_threads,
    }


def _raw_records(base: str, n: int) -> list[dict]:
    """Raw records as ``predict_records`` takes them (waveform in m/s², arrivals in s)."""
    from deepvs30.dataset import CanonicalDataset, arrival_sample_or_none

    def arrival_s(value: object, fs_hz: float) -> float | None:
        sample = arrival_sample_or_none(value)
        return None if sample is None else sample / fs_hz

    out = []
    with CanonicalDataset(base) as data:
        meta = data.metadata
        for i in range(min(n, len(data))):
            fs_hz = float(meta["trace_sampling_rate_hz"].iat[i])
            out.append(
                {
                    "waveform_mps2": data.waveform(i),
                    "sampling_rate_hz": fs_hz,
                    "p_arrival_s": arrival_s(meta["trace_p_arrival_sample"].iat[i], fs_hz),
                    "s_arrival_s": arrival_s(meta["trace_s_arrival_sample"].iat[i], fs_hz),
                }
            )
    return out


def _frame(record: dict):
    import pandas as pd

    z, n, e = (record["waveform_mps2"][c].tolist() for c in range(3))
    return pd.DataFrame(
        [
            {
                "record_id": "bench",
                "station": "XX.BENCH",
                "sampling_rate_hz": record["sampling_rate_hz"],
                "p_arrival_s": record["p_arrival_s"],
                "s_arrival_s": record["s_arrival_s"],
                "z": z,
                "n": n,
                "e": e,
            }
        ]
    )


def _batch_inputs(bundle, prepared: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from deepvs30.prepare import load_prepared
    from deepvs30.segment import SkipRecord
    from deepvs30.windows import window_of

    waves, records, summary = load_prepared(prepared)
    xs, ss = [], []
    for _, rec in records.iterrows():
        if len(xs) == n:
            break
        try:
            x, s = window_of(waves, rec, float(summary["fs_hz"]), bundle.features)
        except SkipRecord:
            continue
        x, s = bundle.normaliser.inputs(x, s)
        xs.append(x)
        ss.append(s)
    return np.stack(xs), np.stack(ss)


def step_inference(
    bundle_dir: str, prepared: str, base: str, n: int, repeats: int, num_threads: NumThreads
) -> dict:
    from deepvs30.inference import ModelBundle
    from deepvs30.pyfunc import predict_frame

    used = _threads(num_threads)
    bundle = ModelBundle.load(bundle_dir)
    x, s = _batch_inputs(bundle, prepared, n)
    bundle.predict_inputs(x[:8], s[:8])  # warm-up
    t0 = time.perf_counter()
    bundle.predict_inputs(x, s)
    batch_s = time.perf_counter() - t0
    raw = _raw_records(base, min(n, 256))
    t0 = time.perf_counter()
    bundle.predict_records(raw)
    raw_s = time.perf_counter() - t0
    frame = _frame(raw[0])
    t0 = time.perf_counter()
    predict_frame(bundle, frame)
    first_ms = 1000 * (time.perf_counter() - t0)
    latencies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_frame(bundle, frame)
        latencies.append(1000 * (time.perf_counter() - t0))
    return {
        **_device(bundle.device),  # a loaded bundle is on the CPU
        "torch_num_threads": used,
        "batch_records": len(x),
        "batch_records_per_s": _rate(len(x), batch_s),
        "raw_records": len(raw),
        "raw_records_per_s": _rate(len(raw), raw_s),
        "pyfunc_latency_ms": statistics.median(latencies),
        "pyfunc_latency_p90_ms": float(np.percentile(latencies, 90)),
        "pyfunc_first_call_ms": first_ms,
        "record_s": raw[0]["waveform_mps2"].shape[1] / raw[0]["sampling_rate_hz"],
    }


# ---------------------------------------------------------------- sections


def _skip(reason: str) -> dict:
    log.info("bench: skipped: %s", reason)
    return {"skipped": reason}


def bench_ingest(setup: Setup) -> dict:
    """K-NET and AFAD records/s (real samples replicated) and the synthetic generator's; the
    archive-size runs (``scale``) come at the end of the bench (:func:`run_bench`)."""
    # the generator first: its records are the base of every later dataset
    base = str(setup.tmp / "base")
    synth = in_child(step_synth, synth_params=_synth_params(setup), out=base)
    if setup.realdata is None:
        replicas = dict.fromkeys(("knet", "afad_mat"), _skip(NO_REALDATA))
    else:
        replicas = _ingest_replicas(setup, setup.realdata)
    return {"synth": synth, **replicas}


def _ingest_replicas(setup: Setup, realdata: Path) -> dict:
    """``ingest_paths`` over the replicated K-NET and AFAD .mat samples, one child each."""
    b, ingest, out = setup.bench, _ingest_params(setup), {}
    for key, replicate, count in (
        ("knet", replicate_knet, b.knet_records),
        ("afad_mat", replicate_afad, b.afad_files),
    ):
        inputs, dataset = setup.tmp / key, setup.tmp / f"{key}_ds"
        replicate(realdata, inputs, count)
        out[key] = in_child(
            bench_ingest_module.step, inputs=str(inputs), out=str(dataset), ingest_params=ingest
        )
        shutil.rmtree(inputs, ignore_errors=True)
        shutil.rmtree(dataset, ignore_errors=True)
    return out


def _synth_params(setup: Setup) -> Any:
    from deepvs30.synth.params import SynthParams

    synth = section(setup.params, "synth", SynthParams) if "synth" in setup.params else None
    b = setup.bench
    return dataclasses.replace(
        synth or SynthParams(),
        n_stations=b.synth_stations,
        n_events=b.synth_events,
        min_record_s=b.record_s,
        max_record_s=b.record_s,
    )


def _build_and_prepare(setup: Setup, prep: Any, n: int) -> tuple[Path, dict, dict]:
    """``n`` records replicated from the base and prepared, two child steps: the prepared
    folder and each step's figures (the raw dataset is removed)."""
    data, prepared = setup.tmp / f"data_{n}", setup.tmp / f"prepared_{n}"
    base = str(setup.tmp / "base")
    build = in_child(step_build_dataset, base=base, out=str(data), n=n)
    prepare = in_child(step_prepare, data=str(data), out=str(prepared), prepare_params=prep)
    shutil.rmtree(data, ignore_errors=True)
    return prepared, build, prepare


def _scale_one(setup: Setup, prep: Any, n: int, keep: bool) -> dict:
    """Build ``n`` replicated records, prepare them, train one epoch: three child steps."""
    log.info("bench: scaling at %d records", n)
    prepared, build, prepare = _build_and_prepare(setup, prep, n)
    epoch = in_child(
        step_epoch,
        prepared=str(prepared),
        features=setup.features,
        model=setup.model,
        train=setup.train,
    )
    if not keep:
        shutil.rmtree(prepared, ignore_errors=True)
    return {"records": n, "build_dataset": build, "prepare": prepare, "epoch": epoch}


def bench_scaling(setup: Setup, sizes: list[int], done: dict[int, dict]) -> dict:
    """Prepare and one training epoch at each size not in ``done`` (filled in place); the
    exponents over all of ``done``. The smallest prepared folder is kept for the training,
    inference and tuning sections."""
    from deepvs30.prepare import PrepareParams

    prep = section(setup.params, "prepare", PrepareParams)
    smallest = min(setup.bench.scaling_records)
    for n in sorted(sizes):
        if n not in done:
            done[n] = _scale_one(setup, prep, n, keep=n == smallest)
    measured = [done[n] for n in sorted(done)]
    records = [m["records"] for m in measured]
    prepares = [m["prepare"] for m in measured]
    epochs = [m["epoch"] for m in measured]
    return {
        "records": records,
        "record_s": setup.bench.record_s,
        "build_dataset": [m["build_dataset"] for m in measured],
        "prepare": prepares,
        "epoch": epochs,
        "exponents": _exponents(records, prepares, epochs),
    }


def log_log_slope(xs: list[float], ys: list[float]) -> float:
    """Exponent b of y ~ x^b (least squares on logs); NaN with fewer than two points."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pairs) < 2:
        return math.nan
    lx, ly = np.log(np.array(pairs, dtype=float)).T
    return float(np.polyfit(lx, ly, 1)[0])


def _exponents(sizes: list[int], prepares: list[dict], epochs: list[dict]) -> dict:
    def slope(steps: list[dict], key: str) -> float:
        return round(log_log_slope(sizes, [s.get(key) for s in steps]), 3)

    return {
        "prepare_time": slope(prepares, "seconds"),
        "prepare_peak_rss": slope(prepares, "peak_rss_mb"),
        "prepare_peak_anon": slope(prepares, "peak_anon_mb"),
        "epoch_time": slope(epochs, "seconds"),
        "epoch_peak_rss": slope(epochs, "peak_rss_mb"),
        "epoch_peak_anon": slope(epochs, "peak_anon_mb"),
    }


def prepare_section(scaling: dict) -> dict:
    """Records/s and peak memory of the largest scaling size (where streaming matters)."""
    largest = scaling["prepare"][-1]
    return {
        **largest,
        "record_s": scaling["record_s"],
        "records_per_s_by_size": {
            str(n): round(p["records_per_s"], 2)
            for n, p in zip(scaling["records"], scaling["prepare"], strict=True)
        },
        "peak_anon_exponent": scaling["exponents"]["prepare_peak_anon"],
    }


def bench_training(setup: Setup, prepared: Path) -> dict:
    return in_child(
        step_training,
        prepared=str(prepared),
        features=setup.features,
        model=setup.model,
        train=setup.train,
        samples=setup.bench.train_samples,
        repeats=setup.bench.train_repeats,
        bundle_out=str(setup.tmp / "bundle"),
        checkpoint=str(setup.tmp / "checkpoint.pt"),
    )


def bench_workers(setup: Setup) -> dict:
    """Aggregate training steps/s of 1, 2, 4 local processes, each with its thread share."""
    b, cores = setup.bench, threads.machine_cores()
    return bench_workers_module.measure(
        _params_path(setup), cores, b.worker_counts, b.worker_seconds
    )


def bench_inference(setup: Setup, prepared: Path) -> dict:
    out = in_child(
        step_inference,
        bundle_dir=str(setup.tmp / "bundle"),
        prepared=str(prepared),
        base=str(setup.tmp / "base"),
        n=setup.bench.inference_records,
        repeats=setup.bench.latency_repeats,
        num_threads=setup.train.num_threads,
    )
    out["predict_cli"] = bench_predict_cli(setup)
    out["help_cli"] = bench_help_cli(setup)
    return out


def _cli(args: list[str], cwd: Path, timeout_s: float) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one ``deepvs30`` command in its own process (start-up included)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "deepvs30", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return time.perf_counter() - t0, done


def _params_path(setup: Setup) -> str:
    return str(Path(setup.params.get("__path__", "params.yaml")).resolve())


def bench_help_cli(setup: Setup) -> dict:
    """Wall time of ``deepvs30 --help`` and ``deepvs30 predict --help`` (target: under 1 s),
    median of 3 runs each, interpreter start-up included."""
    out = {}
    for name, args in (("help_s", ["--help"]), ("predict_help_s", ["predict", "--help"])):
        times = []
        for _ in range(3):
            seconds, done = _cli(args, setup.tmp, 120)
            if done.returncode != 0:
                return {"error": f"deepvs30 {' '.join(args)} failed: {done.stderr[-400:]}"}
            times.append(seconds)
        out[name] = statistics.median(times)
    return out


# what every prediction imports, whatever is made lazy: the network (torch), the input frame
# (pandas) and the shared preprocessing (scipy.signal)
PREDICT_IMPORTS = "import torch, pandas, scipy.signal"


def bench_predict_cli(setup: Setup) -> dict:
    """Wall time of ``deepvs30 predict`` on one real AFAD record, what a user waits for: median
    of 3 warm runs (after one unmeasured run that fills the file cache), beside the median time
    of :data:`PREDICT_IMPORTS` alone, the part no lazy import removes."""
    if setup.realdata is None:
        return _skip(NO_REALDATA)
    work = setup.tmp / "predict"
    work.mkdir(parents=True, exist_ok=True)
    record = work / sorted((setup.realdata / AFAD_SAMPLES).glob("*.mat"))[0].name
    shutil.copyfile(setup.realdata / AFAD_SAMPLES / record.name, record)
    args = ["--params", _params_path(setup), "predict", str(record)]
    args += ["--model", str(setup.tmp / "bundle"), "--out", str(work / "out.csv")]
    times = []
    for _ in range(4):
        seconds, done = _cli(args, work, 300)
        if done.returncode != 0:
            return {"error": f"deepvs30 predict failed: {done.stderr.strip()[-400:]}"}
        times.append(seconds)
    warm = times[1:]
    return {
        "latency_s": statistics.median(warm),
        "runs_s": [round(t, 2) for t in warm],
        "imports_s": _imports_seconds(work),
    }


def _imports_seconds(cwd: Path) -> float:
    """Median wall time of ``python -c PREDICT_IMPORTS`` (interpreter start-up included)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", PREDICT_IMPORTS], cwd=cwd, check=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_tuning(setup: Setup) -> dict:
    """Trials/hour of a tiny default-like search (the tune space of params.yaml, few trials
    and epochs, a small prepared set), with the configured pruner and without pruning."""
    b = setup.bench
    if "tune" not in setup.params:
        return _skip("params.yaml has no tune section")
    if b.tune_trials < 1:
        return _skip("bench.tune_trials is 0 (quick mode: a trial costs tens of seconds)")
    from deepvs30.prepare import PrepareParams

    data, prepared = setup.tmp / "tune_data", setup.tmp / "tune_prepared"
    in_child(step_build_dataset, base=str(setup.tmp / "base"), out=str(data), n=b.tune_records)
    prep = section(setup.params, "prepare", PrepareParams)
    in_child(step_prepare, data=str(data), out=str(prepared), prepare_params=prep)
    out: dict[str, Any] = {"records": b.tune_records, "trials": b.tune_trials}
    out["with_pruning"] = _tune_run(setup, prepared, prune=True)
    out["without_pruning"] = _tune_run(setup, prepared, prune=False)
    rates = [out[k].get("trials_per_hour") for k in ("with_pruning", "without_pruning")]
    if all(rates):
        out["pruning_speedup"] = rates[0] / rates[1]
    return out


def _tune_params(setup: Setup, run_dir: Path, prune: bool) -> Path:
    """params.yaml for one bench search: storage, outputs and MLflow inside ``run_dir``."""
    b = setup.bench
    params = {k: v for k, v in setup.params.items() if not k.startswith("__")}
    tune = dict(params["tune"])
    pruner = dict(tune.get("pruner") or {})
    if prune:  # a tiny study: let the pruner act after the first trial and epoch
        pruner.update(n_startup_trials=1, n_warmup_steps=1, min_resource=1)
    else:
        pruner["name"] = "none"
    tune.update(
        study_name="bench",
        n_trials=b.tune_trials,
        max_epochs=b.tune_epochs,
        storage=f"sqlite:///{run_dir / 'optuna.db'}",
        out=str(run_dir / "models"),
        pruner=pruner,
    )
    params["tune"] = tune
    params["mlflow"] = {
        **params.get("mlflow", {}),
        "tracking_uri": f"sqlite:///{run_dir / 'mlflow.db'}",
        "artifact_root": str(run_dir / "mlruns"),
    }
    path = run_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _tune_run(setup: Setup, prepared: Path, prune: bool) -> dict:
    run_dir = setup.tmp / f"tune_{'pruned' if prune else 'unpruned'}"
    run_dir.mkdir(parents=True, exist_ok=True)
    params_path = _tune_params(setup, run_dir, prune)
    try:
        return in_child(
            step_tune, params_path=str(params_path), prepared=str(prepared), cwd=str(run_dir)
        )
    except Exception as exc:  # noqa: BLE001 - one search failing must not hide the other
        return {"error": f"deepvs30 tune failed: {type(exc).__name__}: {exc}"}


def step_tune(params_path: str, prepared: str, cwd: str) -> dict:
    """One worker of ``deepvs30 tune --no-finalize`` in this child process (run in ``cwd``, as
    the command would be); the trial states are the study's counts after the run."""
    from deepvs30 import tune

    os.chdir(cwd)  # the child is used once: relative paths of params.yaml resolve in cwd
    args = argparse.Namespace(prepared=prepared, study=None, n_trials=None, timeout_s=None)
    setup = tune.load_setup(load_params(params_path), args)
    tune.configure_mlflow(setup.mlflow)
    t0 = time.perf_counter()
    states = tune.run_worker(setup)
    seconds = time.perf_counter() - t0
    finished = states["COMPLETE"] + states["PRUNED"]
    return {
        "seconds": round(seconds, 1),
        "complete": states["COMPLETE"],
        "pruned": states["PRUNED"],
        "fail": states["FAIL"],
        "trials_per_hour": 3600 * finished / seconds if finished else math.nan,
    }


# ---------------------------------------------------------------- report

COLUMNS = ["section", "what", "value", "unit", "note"]
# a number of results.json is a measurement (a row of results.md) when its key ends so, or
# when it is one of the exponents; ``what`` is its path in the section
MEASURED = ("_per_s", "_per_hour", "_per_1k_records", "_per_item", "_per_sample", "_ms", "_s",
            "seconds", "ratio", "speedup", "_gb", "_exponent")  # fmt: skip
NOT_MEASURED = {"section_seconds", "record_s", "seconds_per_run"}
NOTES = {
    "ratio": "ours / bare torch, wall time (target > 0.9)",
    "cpu_time_ratio": "ours / bare torch, CPU time",
    "fit_ratio": "fit() for 1 epoch / bare torch",
    "prepare_time": "≈1",
    "epoch_time": "≈1",
    "prepare_peak_anon": "≈0",
    "epoch_peak_anon": "≈0",
    "imports_s": PREDICT_IMPORTS,
}
# where a child step records its memory and CPU use (in_child): the note of its first row
STEP_FIGURES = {"peak_rss_mb": "peak RSS {:g} MB", "peak_anon_mb": "peak anon {:g} MB",
                "cpu_use": "CPU use {:g}"}  # fmt: skip


def _significant(value: Any, digits: int = 3) -> float | None:
    """A measurement rounded to ``digits`` significant digits; None where not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}") + 0.0  # + 0.0: no "-0"


def _unit(key: str) -> str:
    """``records_per_s`` -> ``records/s``, ``window_ms_per_item`` -> ``ms per item``,
    ``latency_ms`` -> ``ms``; "" for ratios and exponents."""
    if key.endswith("_mb_per_1k_records"):
        return "MB per 1,000 records"
    if "_ms_per_" in key:
        return f"ms per {key.rsplit('_', 1)[-1]}"
    if key.endswith(("_per_s", "_per_hour")):
        what, per = key.rsplit("_per_", 1)
        return f"{what.rsplit('_', 1)[-1]}/{per[0]}"
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("seconds", "s"), ("_gb", "GB")):
        if key.endswith(suffix):
            return unit
    return ""


def _unmeasured(node: dict) -> str | None:
    """``skipped: why`` or ``error: what`` of a step or section; None when it was measured."""
    for key in ("skipped", "error"):
        if key in node:
            return f"{key}: {node[key]}"
    return None


def _item_label(item: dict, index: int) -> str:
    """How an element of a list of steps is named in ``what``: its size or layout."""
    if "workers" in item:
        return f"{item['workers']}x{item['threads']} {item['rule']}"
    for key in ("records", "samples"):
        if key in item:
            return f"{item[key]} {key}"
    return str(index)


def _row(section_name: str, what: str, value: Any = None, unit: str = "", note: str = "") -> dict:
    return dict(zip(COLUMNS, (section_name, what, _significant(value), unit, note), strict=True))


def _rows(section_name: str, node: Any, path: str = "") -> list[dict]:
    """The measurements under ``node`` (a dict or list of results.json), one row each."""
    if isinstance(node, list):
        rows = []
        for i, item in enumerate(node):
            if isinstance(item, dict):
                rows += _rows(section_name, item, f"{path}[{_item_label(item, i)}]")
        return rows
    if reason := _unmeasured(node):
        return [_row(section_name, path, note=reason)]
    rows, below = [], []
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict | list):
            below += _rows(section_name, value, where)
        elif key not in NOT_MEASURED and (key.endswith(MEASURED) or path.endswith("exponents")):
            rows.append(_row(section_name, where, value, _unit(key), NOTES.get(key, "")))
    figures = [
        text.format(_significant(node[k])) for k, text in STEP_FIGURES.items() if node.get(k)
    ]
    if rows and figures:
        rows[0]["note"] = "; ".join(filter(None, [rows[0]["note"], ", ".join(figures)]))
    return rows + below


def results_frame(results: dict) -> Any:
    """The flat table of results.md (a pandas DataFrame of :data:`COLUMNS`): every
    measurement of every section, or the reason it was not measured."""
    import pandas as pd

    rows = [row for name in results if name != "meta" for row in _rows(name, results[name])]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["value"] = frame["value"].astype(object).where(frame["value"].notna(), None)
    return frame


def results_markdown(results: dict) -> str:
    meta = results["meta"]
    table = results_frame(results).to_markdown(
        index=False, floatfmt=",g", intfmt=",", missingval="–"
    )
    return f"""# deepvs30 bench{" (quick)" if meta["quick"] else ""}

{meta["started"]}, {meta["cpu_count"]} CPU, torch {meta["torch"]} ({meta["torch_num_threads"]} \
threads), device {meta["device"]} (CUDA available: {meta["cuda_available"]}), commit \
{meta["git_commit"]}, {meta["total_s"]:.0f} s, load average {meta["load_average_start"]} at the \
start and {meta["load_average_end"]} at the end. Rates and ratios are comparable within this \
run only.

{table}

Notes: peak RSS is the step's child process (VmHWM), including file pages of the memory maps it
touched, which the kernel can reclaim; peak anon is its heap (sampled every 20 ms), what must stay
bounded; CPU use is CPU seconds per wall second of the step (at most the torch threads for
training; less means other jobs shared the machine). Exponents: log-log slope over the scaling
sizes (≈1 for time, ≈0 for the heap). Details in results.json.
"""


# ---------------------------------------------------------------- run


def _meta(quick: bool, train: TrainParams) -> dict:
    import torch

    return {
        "quick": quick,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "usable_cores": threads.machine_cores(),
        "torch_num_threads": threads.resolve(train.num_threads).intra_op,
        "device": str(_torch_device(train)),  # the training steps'; inference: the CPU
        "cuda_available": bool(torch.cuda.is_available()),
        "git_commit": _git_commit(),
        "load_average_start": _load_average(),
        "command": "deepvs30 bench" + (" --quick" if quick else ""),
    }


def _load_average() -> list[float] | None:
    """1, 5 and 15 min load averages: how busy the shared machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str:
    try:
        from deepvs30.tracking import git_commit

        return git_commit()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def _realdata() -> Path | None:
    from deepvs30.ingest import default_realdata_dir

    path = default_realdata_dir()
    ok = (path / KNET_SAMPLE[0]).is_dir() and (path / AFAD_SAMPLES).is_dir()
    return path if ok else None


def _guarded(results: dict, name: str, fn: Callable[[], dict], write: Callable[[], None]) -> dict:
    """Run one section; an exception is recorded (and fails the run), not raised."""
    t0 = time.perf_counter()
    log.info("bench: %s", name)
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 - one section failing must not hide the others
        log.exception("bench: section %s failed", name)
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results[name]["section_seconds"] = round(time.perf_counter() - t0, 1)
    write()
    return results[name]


def bench_faults(setup: Setup, quick: bool) -> dict:
    """Mutated real files through the readers, and the inference section's bundle served to
    concurrent clients (deepvs30.bench_faults)."""
    from deepvs30 import bench_faults

    return bench_faults.bench_faults(setup.realdata, quick, setup.tmp / "bundle")


def run_bench(setup: Setup, out_dir: Path, quick: bool) -> dict:
    t0 = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(quick, setup.train)}

    def write() -> None:
        results["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
        results["meta"]["load_average_end"] = _load_average()
        write_results(results, out_dir)

    sizes = sorted(setup.bench.scaling_records)
    done: dict[int, dict] = {}
    prepared = setup.tmp / f"prepared_{sizes[0]}"
    _guarded(results, "ingest", lambda: bench_ingest(setup), write)
    # the smallest size first: training, inference and tuning use it; the long sizes last
    _guarded(results, "scaling", lambda: bench_scaling(setup, sizes[:1], done), write)
    _guarded(results, "training", lambda: bench_training(setup, prepared), write)
    _guarded(results, "inference", lambda: bench_inference(setup, prepared), write)
    _guarded(results, "tuning", lambda: bench_tuning(setup), write)
    _guarded(results, "workers", lambda: bench_workers(setup), write)
    _guarded(results, "faults", lambda: bench_faults(setup, quick), write)
    scaling = _guarded(results, "scaling", lambda: bench_scaling(setup, sizes, done), write)
    _guarded(results, "prepare", lambda: prepare_section(scaling), write)
    # ingest at archive size (records/s, peak RSS flat in N) last, as the long scaling sizes:
    # a run stopped during the longest steps has written every other figure
    run_ingest_scale(setup, results, write)
    results = {"meta": results["meta"], **{k: results[k] for k in SECTIONS}}
    write()
    return results


def run_ingest_scale(setup: Setup, results: dict, write: Callable[[], None]) -> dict:
    """The archive-size ingest into ``results["ingest"]["scale"]``, written after each size."""
    ingest = results.setdefault("ingest", {})

    def on_size(section: dict) -> None:
        ingest["scale"] = section
        write()

    scale = lambda: bench_ingest_module.bench_section(setup, on_size)  # noqa: E731
    return _guarded(ingest, "scale", scale, write)


def write_results(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS_JSON).write_text(json.dumps(results, indent=1, default=_json_default))
    if all(k in results for k in SECTIONS):
        (out_dir / RESULTS_MD).write_text(results_markdown(results))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="CI smoke run (bench.quick sizes)")
    parser.add_argument("--out", help="results folder (default: bench.out)")
    parser.add_argument("--tmp-dir", help="parent of the temporary folder (default: bench.tmp_dir)")
    parser.add_argument(
        "--ingest-scale-only", nargs="*", type=int, metavar="N",
        help="only the archive-size ingest (at these record counts, default "
             "bench.ingest_scale_records), into the existing results.json",
    )  # fmt: skip
    parser.add_argument(
        "--scaling-only", nargs="+", type=int, metavar="N",
        help="only build, prepare and one epoch at these record counts, added to the scaling "
             "sizes of the existing results.json (exponents and prepare section recomputed)",
    )  # fmt: skip
    parser.add_argument(
        "--cli-only", action="store_true",
        help="only the command-line latencies (predict on one file, --help), into the "
             "existing results.json",
    )  # fmt: skip


def _earlier_results(out_dir: Path, what: str) -> dict:
    path = out_dir / RESULTS_JSON
    if not path.is_file():
        raise ConfigError(f"{path}: no results of a full bench to add the {what} to")
    return json.loads(path.read_text())


def _rerun_writer(
    results: dict, run: dict, command: str, train: TrainParams, out_dir: Path
) -> Callable[[], None]:
    """Fill ``run`` (a dict inside ``results``) with this partial rerun's commit, command and
    load average; the writer of ``results`` that adds its total time and closing load."""
    t0, meta = time.perf_counter(), _meta(False, train)
    run.clear()
    run.update({k: meta[k] for k in ("started", "git_commit", "load_average_start")})
    run["command"] = command

    def write() -> None:
        run["total_s"] = round(time.perf_counter() - t0, 1)
        run["load_average_end"] = _load_average()
        write_results(results, out_dir)

    return write


def ingest_scale_only(setup: Setup, out_dir: Path, sizes: list[int]) -> int:
    """Rerun the archive-size ingest alone (the bench's longest step) into the results.json
    of an earlier full run, its own commit and load average beside it."""
    results = _earlier_results(out_dir, "ingest scale")
    if sizes:
        setup = dataclasses.replace(
            setup, bench=dataclasses.replace(setup.bench, ingest_scale_records=sizes)
        )
    sizes_text = " ".join(map(str, sorted(setup.bench.ingest_scale_records)))
    run = results.setdefault("ingest", {}).setdefault("scale_run", {})
    command = f"deepvs30 bench --ingest-scale-only {sizes_text}"
    write = _rerun_writer(results, run, command, setup.train, out_dir)
    section = run_ingest_scale(setup, results, write)
    print(json.dumps(section, indent=1, default=_json_default))
    return 1 if "error" in section else 0


def load_setup_params(params: dict, quick: bool) -> BenchParams:
    if "bench" not in params:
        log.warning("params.yaml has no bench section; using the defaults of BenchParams")
        bench = BenchParams()
    else:
        bench = section(params, "bench", BenchParams)
    return bench.quick_mode() if quick else bench


def measured_scaling(scaling: dict) -> dict[int, dict]:
    """The per-size steps of a results.json ``scaling`` section, keyed by record count (as
    :func:`bench_scaling` fills them)."""
    steps = zip(
        scaling["records"], scaling["build_dataset"], scaling["prepare"], scaling["epoch"],
        strict=True,
    )  # fmt: skip
    return {
        n: {"records": n, "build_dataset": build, "prepare": prepare, "epoch": epoch}
        for n, build, prepare, epoch in steps
    }


def scaling_only(setup: Setup, out_dir: Path, sizes: list[int]) -> int:
    """Measure the scaling steps at ``sizes`` (archive-size prepare: the bench's second
    longest step) and add them to the sizes of an earlier full run's results.json, its own
    commit and load average beside them (``scaling_run``); sizes measured before and asked
    again are measured anew."""
    results = _earlier_results(out_dir, "scaling sizes")
    done = {n: m for n, m in measured_scaling(results["scaling"]).items() if n not in sizes}
    run = results.setdefault("scaling_run", {})
    command = f"deepvs30 bench --scaling-only {' '.join(map(str, sorted(sizes)))}"
    write = _rerun_writer(results, run, command, setup.train, out_dir)
    run["sizes"] = sorted(sizes)
    # the generator's records are the base that every size replicates
    in_child(step_synth, synth_params=_synth_params(setup), out=str(setup.tmp / "base"))
    scaling = _guarded(results, "scaling", lambda: bench_scaling(setup, sizes, done), write)
    if "error" in scaling:
        return 1
    prepare = _guarded(results, "prepare", lambda: prepare_section(scaling), write)
    print(json.dumps({"scaling": scaling, "prepare": prepare}, indent=1, default=_json_default))
    return 1 if "error" in prepare else 0


def cli_only(setup: Setup, out_dir: Path) -> int:
    """Remeasure the command-line latencies (``inference.predict_cli`` and ``help_cli``) into
    an earlier run's results.json, with a bundle trained as the training section trains it
    (on the smallest scaling size); commit and load average in ``inference.cli_run``."""
    from deepvs30.prepare import PrepareParams

    results = _earlier_results(out_dir, "CLI latencies")
    inference = results.setdefault("inference", {})
    run = inference.setdefault("cli_run", {})
    write = _rerun_writer(results, run, "deepvs30 bench --cli-only", setup.train, out_dir)
    in_child(step_synth, synth_params=_synth_params(setup), out=str(setup.tmp / "base"))
    prep = section(setup.params, "prepare", PrepareParams)
    prepared, _, _ = _build_and_prepare(setup, prep, min(setup.bench.scaling_records))
    bench_training(setup, prepared)  # writes the bundle the predict command loads
    inference["predict_cli"] = bench_predict_cli(setup)
    inference["help_cli"] = bench_help_cli(setup)
    write()
    got = {k: inference[k] for k in ("predict_cli", "help_cli")}
    print(json.dumps(got, indent=1, default=_json_default))
    return 1 if any("error" in v for v in got.values()) else 0


def run(args: argparse.Namespace, params: dict) -> int:
    bench = load_setup_params(params, args.quick)
    out_dir = Path(args.out or bench.out)
    tmp_parent = args.tmp_dir or bench.tmp_dir or None
    tmp = Path(tempfile.mkdtemp(prefix="deepvs30-bench-", dir=tmp_parent))
    try:
        setup = Setup(
            bench=bench,
            tmp=tmp,
            features=section(params, "features", FeatureParams),
            model=section(params, "model", ModelParams),
            train=section(params, "train", TrainParams),
            params=params,
            realdata=_realdata(),
        )
        if args.ingest_scale_only is not None:
            return ingest_scale_only(setup, out_dir, args.ingest_scale_only)
        if args.scaling_only:
            return scaling_only(setup, out_dir, args.scaling_only)
        if args.cli_only:
            return cli_only(setup, out_dir)
        results = run_bench(setup, out_dir, args.quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print((out_dir / RESULTS_MD).read_text())
    failed = [k for k in SECTIONS if "error" in results[k]]
    if failed:
        print(f"deepvs30 bench: section(s) failed: {failed}", file=sys.stderr)
    return 1 if failed else 0
