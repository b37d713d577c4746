"""CPU thread budget: how many torch threads a process may use without oversubscribing.

torch's intra-op threads spin while they wait, so two processes that each ask for every
core crawl (measured on 2 cores: 2 workers x 2 threads gave 1.5 steps/s in all, 2 x 1 gave
11.4). The rule:

- The machine's usable cores are the CPUs this process may run on
  (``os.sched_getaffinity``), capped by a cgroup CPU quota (containers, CI runners).
- Local workers split them: each gets ``max(1, usable // workers)``. The launcher hands the
  share down in ``DEEPVS30_THREADS`` and in the BLAS/OpenMP variables, which must be set
  before torch is imported in the worker.
- A process with no share (one training run, or a tuning worker alone on its own machine)
  takes every usable core when ``train.num_threads`` is ``auto``; an explicit number is
  honoured, but never above a launcher's share.
- DataLoader workers come out of the same budget. torch's inter-op pool is set to its
  minimum (1): our models run eagerly and never fork inter-op tasks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

THREADS_ENV = "DEEPVS30_THREADS"  # a launcher's per-worker share of the cores
BLAS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")

NumThreads = int | Literal["auto"]


@dataclass(frozen=True)
class ThreadBudget:
    intra_op: int  # torch.set_num_threads
    inter_op: int  # torch.set_num_interop_threads
    loader_workers: int  # DataLoader worker processes

    @property
    def total(self) -> int:
        """Cores this budget keeps busy: compute threads plus loader processes."""
        return self.intra_op + self.loader_workers


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 cfs files); None if none."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text())  # -1: no quota
            return None if quota_us <= 0 else quota_us / int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return None


def affinity_cores() -> int:
    """CPUs this process may run on (all CPUs where the OS has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def usable_cores(affinity: int | None = None, quota_cpus: float | None = None) -> int:
    """Cores usable by compute: the affinity set, capped by the cgroup quota (rounded up:
    a 1.5-CPU quota still lets two threads run)."""
    n = affinity if affinity is not None else affinity_cores()
    if quota_cpus is not None:
        n = min(n, max(1, math.ceil(quota_cpus)))
    return max(1, n)


def machine_cores() -> int:
    return usable_cores(affinity_cores(), cgroup_cpu_limit())


def share_per_worker(n_workers: int, cores: int | None = None) -> int:
    """Threads each of ``n_workers`` local processes may use."""
    cores = machine_cores() if cores is None else cores
    if n_workers > cores:
        log.warning("%d local workers on %d usable cores: each gets 1 thread", n_workers, cores)
    return max(1, cores // max(1, n_workers))


def resolve(
    num_threads: NumThreads,
    loader_workers: int = 0,
    env: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> ThreadBudget:
    """This process's budget from ``train.num_threads`` and a launcher's share, if any."""
    env = os.environ if env is None else env
    share = int(env[THREADS_ENV]) if env.get(THREADS_ENV, "").strip() else None
    if num_threads == "auto":
        total = share if share is not None else (machine_cores() if cores is None else cores)
    else:
        total = int(num_threads)
        if share is not None and total > share:
            log.info("train.num_threads %d capped at this worker's share, %d", total, share)
            total = share
    total = max(1, total)
    loaders = min(max(0, loader_workers), total - 1)  # keep one core for the compute
    return ThreadBudget(intra_op=total - loaders, inter_op=1, loader_workers=loaders)


def apply(budget: ThreadBudget) -> ThreadBudget:
    """Set torch's pools to the budget; the inter-op pool can only be set once per process."""
    import torch

    torch.set_num_threads(budget.intra_op)
    # the inter-op pool can be set once, before parallel work; later calls leave it as it is
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(budget.inter_op)
    return budget


def worker_env(share: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a spawned local worker: its share, also for OpenMP/MKL/OpenBLAS,
    which read these variables once, when torch or numpy is imported."""
    env = dict(os.environ if base is None else base)
    env[THREADS_ENV] = str(share)
    for name in BLAS_ENV:
        env[name] = str(share)
    return env
