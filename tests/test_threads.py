"""The thread budget (threads.py): arithmetic with affinity and cgroup quota mocked, the
environment of spawned tune workers, and what train.fit applies. Nothing here is timed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deepvs30 import threads, tune
from deepvs30.config import load_params, section
from deepvs30.train import TrainParams

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(8, None, 8), (8, 2.0, 2), (8, 1.5, 2), (2, 16.0, 2), (4, 0.2, 1), (1, None, 1)],
)
def test_usable_cores_is_affinity_capped_by_quota(affinity, quota, expected):
    assert threads.usable_cores(affinity, quota) == expected


@pytest.mark.parametrize(
    ("cores", "workers", "share"), [(2, 1, 2), (2, 2, 1), (2, 4, 1), (16, 3, 5), (16, 4, 4)]
)
def test_local_workers_split_the_cores(cores, workers, share):
    assert threads.share_per_worker(workers, cores) == share
    assert share * workers <= max(cores, workers)  # never more threads than cores (or 1 each)


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == pytest.approx(3.0)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    assert threads.cgroup_cpu_limit(tmp_path / "absent") is None


def test_machine_cores_reads_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: 2.5)
    assert threads.machine_cores() == 3
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    assert threads.machine_cores() == 6


def test_auto_takes_the_whole_machine_without_a_share():
    budget = threads.resolve("auto", env={}, cores=6)
    assert (budget.intra_op, budget.inter_op, budget.loader_workers) == (6, 1, 0)


def test_a_launchers_share_bounds_auto_and_explicit_counts():
    env = {threads.THREADS_ENV: "2"}
    assert threads.resolve("auto", env=env, cores=16).intra_op == 2
    assert threads.resolve(8, env=env, cores=16).intra_op == 2  # capped at the share
    assert threads.resolve(1, env=env, cores=16).intra_op == 1  # below the share: honoured


def test_explicit_count_is_honoured_when_alone():
    assert threads.resolve(3, env={}, cores=16).intra_op == 3


def test_loader_workers_come_out_of_the_same_budget():
    budget = threads.resolve("auto", loader_workers=2, env={}, cores=6)
    assert (budget.intra_op, budget.loader_workers, budget.total) == (4, 2, 6)
    small = threads.resolve("auto", loader_workers=4, env={threads.THREADS_ENV: "2"}, cores=8)
    assert (small.intra_op, small.loader_workers) == (1, 1)  # one core stays with the compute


def test_worker_env_sets_the_share_for_torch_and_blas():
    env = threads.worker_env(3, {"PATH": "/bin", "OMP_NUM_THREADS": "16"})
    assert env["PATH"] == "/bin"
    assert env[threads.THREADS_ENV] == "3"
    assert all(env[name] == "3" for name in threads.BLAS_ENV)


def test_launched_tune_workers_get_their_share(monkeypatch):
    """``deepvs30 tune --workers 2`` on a (mocked) 4-core machine: 2 threads each, in the
    environment of the spawned processes, before they import torch."""
    spawned = []

    class FakeProcess:
        def __init__(self, cmd, env):
            spawned.append(env)

        def wait(self):
            return 0

    monkeypatch.setattr(threads, "machine_cores", lambda: 4)
    monkeypatch.setattr(tune.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    setup = SimpleNamespace(
        params_path="params.yaml",
        tune=SimpleNamespace(study_name="s", n_trials=4, timeout_s=None),
        prepared_dir="prepared",
        storage_url="sqlite:///optuna.db",
    )
    assert tune.launch_workers(setup, 2, verbose=False) == [0, 0]
    assert len(spawned) == 2
    for env in spawned:
        assert env[threads.THREADS_ENV] == "2"
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
        assert env[tune.STORAGE_ENV] == "sqlite:///optuna.db"


def test_a_spawned_worker_applies_its_share_to_torch():
    """In a fresh process with the worker environment, train's budget reaches torch."""
    code = (
        "from deepvs30.train import set_determinism; import torch; "
        "b = set_determinism(0, 'auto'); "
        "print(b.intra_op, torch.get_num_threads(), torch.get_num_interop_threads())"
    )
    env = threads.worker_env(1)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1"]


def test_params_yaml_default_is_auto():
    train = section(load_params(REPO / "params.yaml"), "train", TrainParams)
    assert train.num_threads == TrainParams().num_threads == "auto"
    assert train.loader_workers == TrainParams().loader_workers == 0


def test_apply_sets_intra_op_threads():
    before = torch.get_num_threads()
    try:
        threads.apply(threads.ThreadBudget(intra_op=1, inter_op=1, loader_workers=0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
