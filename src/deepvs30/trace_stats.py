"""Per-record waveform statistics, computed by streaming a canonical dataset one record at a time.

The statistics are plain measurements (no thresholds): the validate stage turns them into
expectations, and ingest may use them to quarantine records. Columns follow the
``category_parameter_unit`` naming of the metadata table; waveforms are in m/s².
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepvs30.dataset import COMPONENT_ORDER, CanonicalDataset, record_ids

# Samples within this relative distance of the peak |value| count as "at the peak" (clipping).
DEFAULT_CLIP_REL_TOL = 1.0e-6

STAT_COLUMNS: tuple[str, ...] = (
    "trace_n_samples",
    "trace_duration_s",
    "trace_finite_fraction",
    *(f"trace_pga_{c.lower()}_mps2" for c in COMPONENT_ORDER),
    "trace_pga_mps2",
    *(f"trace_std_{c.lower()}_mps2" for c in COMPONENT_ORDER),
    "trace_min_std_mps2",
    "trace_longest_constant_run_s",
    "trace_peak_sample_count",
    "trace_component_length_spread_samples",
)


def longest_constant_run(x: np.ndarray) -> int:
    """Length (samples) of the longest run of consecutive equal samples; NaN breaks a run."""
    if x.size < 2:
        return int(x.size)
    changes = np.flatnonzero(np.diff(x) != 0)
    edges = np.concatenate(([-1], changes, [x.size - 1]))
    return int(np.diff(edges).max())


def peak_sample_count(x: np.ndarray, rel_tol: float = DEFAULT_CLIP_REL_TOL) -> int:
    """Number of samples whose |value| is within ``rel_tol`` of the peak |value|.

    An unclipped record reaches its peak once; a clipped one sits on the rail for many samples.
    A component without any finite non-zero sample counts 0 (it is flat, not clipped).
    """
    magnitude = np.abs(x[np.isfinite(x)])
    if magnitude.size == 0:
        return 0
    peak = magnitude.max()
    if peak == 0:
        return 0
    return int(np.count_nonzero(magnitude >= peak * (1.0 - rel_tol)))


def _last_finite_index(x: np.ndarray) -> int:
    finite = np.flatnonzero(np.isfinite(x))
    return int(finite[-1]) if finite.size else -1


def _nan_stat(func, x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(func(finite)) if finite.size else float("nan")


def waveform_statistics(
    waveform_mps2: np.ndarray,
    sampling_rate_hz: float,
    clip_rel_tol: float = DEFAULT_CLIP_REL_TOL,
) -> dict[str, float]:
    """Statistics of one (3, n_samples) ZNE record in m/s² (see :data:`STAT_COLUMNS`)."""
    waveform_mps2 = np.asarray(waveform_mps2, dtype=np.float64)
    n_samples = int(waveform_mps2.shape[-1])
    valid_rate = bool(np.isfinite(sampling_rate_hz) and sampling_rate_hz > 0)
    dt_s = 1.0 / sampling_rate_hz if valid_rate else float("nan")
    stats: dict[str, float] = {
        "trace_n_samples": n_samples,
        "trace_duration_s": n_samples * dt_s,
        "trace_finite_fraction": (
            float(np.isfinite(waveform_mps2).mean()) if waveform_mps2.size else 0.0
        ),
    }
    pgas, stds, runs, peaks, ends = [], [], [], [], []
    for component, x in zip(COMPONENT_ORDER.lower(), waveform_mps2, strict=True):
        pga = _nan_stat(lambda v: np.abs(v).max(), x)
        std = _nan_stat(np.std, x)
        stats[f"trace_pga_{component}_mps2"] = pga
        stats[f"trace_std_{component}_mps2"] = std
        pgas.append(pga)
        stds.append(std)
        runs.append(longest_constant_run(x))
        peaks.append(peak_sample_count(x, clip_rel_tol))
        ends.append(_last_finite_index(x))
    stats["trace_pga_mps2"] = float(np.max(pgas))  # NaN if any component has no finite sample
    stats["trace_min_std_mps2"] = float(np.min(stds))
    stats["trace_longest_constant_run_s"] = max(runs) * dt_s
    stats["trace_peak_sample_count"] = max(peaks)
    stats["trace_component_length_spread_samples"] = max(ends) - min(ends)
    return stats


def trace_statistics(
    dataset: CanonicalDataset, clip_rel_tol: float = DEFAULT_CLIP_REL_TOL
) -> pd.DataFrame:
    """One row of statistics per record, in metadata row order, streamed record by record.

    Columns: ``trace_name`` (the record's stable name, see :func:`record_ids`) then
    :data:`STAT_COLUMNS`.
    """
    rates_hz = pd.to_numeric(dataset.metadata["trace_sampling_rate_hz"], errors="coerce")
    rows = []
    for i, waveform in dataset.iter_waveforms():
        rows.append(waveform_statistics(waveform, float(rates_hz.iat[i]), clip_rel_tol))
    stats = pd.DataFrame(rows, columns=list(STAT_COLUMNS))
    stats.insert(0, "trace_name", record_ids(dataset.metadata).to_numpy())
    return stats
