"""The synthetic corpus is byte-stable across CPUs, math libraries and thread counts.

Last-bit differences are simulated two ways: other code paths of this machine (numpy's SIMD
dispatch switched off, glibc's FMA variants of exp/sin/... switched off, one thread instead of
two), and every transcendental result moved by one ulp, as another libm or SVML would round.
The tiny corpus (params.yaml's seed, 10 stations and 10 events: 7 records) is one where the
unrounded generator's bytes did change under the first (a complex product's last bit reached
a float32 sample) and under the second (stations.csv's noise level printed to 17 digits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from deepvs30.synth import generate as gen
from deepvs30.synth import profiles, site_response, stochastic
from deepvs30.synth.params import SynthParams

TINY = dataclasses.replace(SynthParams(), n_stations=10, n_events=10)
GENERATE = (
    "import dataclasses, sys\n"
    "from deepvs30.synth.generate import generate\n"
    "from deepvs30.synth.params import SynthParams\n"
    "generate(dataclasses.replace(SynthParams(), n_stations=10, n_events=10), sys.argv[1])\n"
)


def _md5s(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def _simd_dispatch_targets() -> str:
    """Every SIMD target numpy dispatches to above its baseline (X86_V3, X86_V4, ... on x86)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # numpy 1.x names
        return "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX2 FMA3"
    return " ".join(__cpu_dispatch__)


def _generate_in_subprocess(out: Path, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", GENERATE, str(out)],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_bytes_identical_across_cpu_code_paths(tmp_path):
    """Two runs that differ in every switch: numpy SIMD on / off, glibc FMA off / on, 2 / 1
    threads (numpy's switch alone changed a waveform sample of the unrounded generator)."""
    _generate_in_subprocess(
        tmp_path / "simd",
        GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX2,-FMA",  # ignored by other C libraries
        OMP_NUM_THREADS="2",
        OPENBLAS_NUM_THREADS="2",
        MKL_NUM_THREADS="2",
    )
    _generate_in_subprocess(
        tmp_path / "baseline",
        NPY_DISABLE_CPU_FEATURES=_simd_dispatch_targets(),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    assert _md5s(tmp_path / "simd") == _md5s(tmp_path / "baseline")


class _OneUlpUp:
    """numpy, with exp, log, sin... results moved one ulp up (real and imaginary parts)."""

    FUNCTIONS = ("exp", "log", "log10", "log2", "sin", "cos", "arcsin", "power", "geomspace")

    def __getattr__(self, name):
        value = getattr(np, name)
        return _one_ulp_up(value) if name in self.FUNCTIONS else value


def _one_ulp_up(func):
    def nudged(*args, **kwargs):
        out = func(*args, **kwargs)
        if np.iscomplexobj(out):
            return np.nextafter(out.real, np.inf) + 1j * np.nextafter(out.imag, np.inf)
        return np.nextafter(out, np.inf)

    return nudged


def test_bytes_identical_under_one_ulp_math(tmp_path, monkeypatch):
    gen.generate(TINY, tmp_path / "libm")
    for module in (gen, stochastic, site_response, profiles):
        monkeypatch.setattr(module, "np", _OneUlpUp())
    gen.generate(TINY, tmp_path / "nudged")
    assert _md5s(tmp_path / "libm") == _md5s(tmp_path / "nudged")


def test_hdf5_has_no_timestamps(tmp_path):
    gen.generate(dataclasses.replace(TINY, n_stations=4, n_events=4), tmp_path / "c")
    times = []
    with h5py.File(tmp_path / "c" / "waveforms.hdf5", "r") as h5:
        for obj in [h5, *_objects(h5)]:
            info = h5py.h5o.get_info(obj.id)
            times.append((obj.name, info.atime, info.mtime, info.ctime, info.btime))
    assert all(t == 0 for _, *ts in times for t in ts), times


def _objects(group: h5py.Group) -> list:
    found = []
    group.visit(lambda name: found.append(group[name]))
    return found
