"""Aggregate training throughput of N local processes side by side (``make bench``, section
``workers``): what ``deepvs30 tune --workers N`` gets from the machine.

Each process is started as a local tune worker is (``threads.worker_env``: its share of the
cores set before torch is imported) and runs forward+backward+AdamW steps of the params.yaml
model on random inputs of the params.yaml window, for a fixed time. The oversubscribed
layout the old code used (every worker asking for every core) is measured beside it.

Worker entry point: ``python -m deepvs30.bench_workers --params P --threads N --seconds S``
prints one JSON line ``{"steps": ..., "seconds": ..., "threads": ...}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from deepvs30 import threads

BATCH_SIZE = 32


def layouts(cores: int, worker_counts: list[int]) -> list[dict]:
    """(processes, threads each) to measure: each worker count with its share, and the
    oversubscribed layout (2 processes x every core) for comparison."""
    out = [
        {"workers": n, "threads": threads.share_per_worker(n, cores), "rule": "share"}
        for n in worker_counts
    ]
    if cores > 1 and 2 in worker_counts:
        out.append({"workers": 2, "threads": cores, "rule": "oversubscribed"})
    return out


def measure(params_path: str, cores: int, worker_counts: list[int], seconds: float) -> dict:
    """Aggregate steps/s of each layout; ``speedup`` is relative to one worker."""
    rows = []
    for layout in layouts(cores, worker_counts):
        runs = run_side_by_side(params_path, layout["workers"], layout["threads"], seconds)
        per_worker = [r["steps"] / r["seconds"] for r in runs]
        rows.append({**layout, "steps_per_s_each": per_worker, "steps_per_s": sum(per_worker)})
    one = next((r["steps_per_s"] for r in rows if r["workers"] == 1), None)
    for row in rows:
        row["speedup"] = row["steps_per_s"] / one if one else None
    two = next((r for r in rows if r["workers"] == 2 and r["rule"] == "share"), None)
    return {
        "usable_cores": cores,
        "batch_size": BATCH_SIZE,
        "seconds_per_run": seconds,
        "layouts": rows,
        "two_worker_speedup": two["speedup"] if two else None,
        "two_worker_target": 1.3,
    }


def run_side_by_side(params_path: str, n_workers: int, n_threads: int, seconds: float) -> list:
    """Start ``n_workers`` step loops at once; each waits for a common start time so that
    their timed parts overlap (torch's import is not measured)."""
    start_at = time.time() + 8.0 + 0.5 * n_workers
    cmd = [sys.executable, "-m", "deepvs30.bench_workers", "--params", params_path]
    cmd += ["--threads", str(n_threads), "--seconds", str(seconds), "--start-at", str(start_at)]
    env = threads.worker_env(n_threads)
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n_workers)
    ]
    outputs = [proc.communicate(timeout=seconds + 300)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"bench worker exited {proc.returncode}: {out[-400:]}")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def step_loop(params_path: str, n_threads: int, seconds: float, start_at: float) -> dict:
    """Training steps of the params.yaml model for ``seconds``, after ``start_at``."""
    import torch

    from deepvs30.config import load_params, section
    from deepvs30.inference import ModelBundle
    from deepvs30.prepare import PrepareParams
    from deepvs30.segment import FeatureParams
    from deepvs30.train import ModelParams, TrainParams, loss_fn

    params = load_params(params_path)
    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    train = section(params, "train", TrainParams)
    fs_hz = section(params, "prepare", PrepareParams).preprocess.target_fs_hz
    budget = threads.apply(threads.resolve(n_threads))
    torch.manual_seed(0)
    network = ModelBundle.build_network(model.name, model.hparams, features, fs_hz)
    optimiser = torch.optim.AdamW(network.parameters(), lr=train.lr)
    x = torch.randn(BATCH_SIZE, features.in_channels, features.n_samples(fs_hz))
    s = torch.randn(BATCH_SIZE, features.n_scalars) if features.n_scalars else None
    y = torch.randn(BATCH_SIZE)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(train.loss, network(x, s), y).backward()
        optimiser.step()

    step()  # warm-up, before the common start
    time.sleep(max(0.0, start_at - time.time()))
    t0, n_steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n_steps += 1
    return {"steps": n_steps, "seconds": time.perf_counter() - t0, "threads": budget.intra_op}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds")
    args = parser.parse_args(argv)
    result = step_loop(str(Path(args.params)), args.threads, args.seconds, args.start_at)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
