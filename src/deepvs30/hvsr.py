"""Earthquake H/V spectral ratio of the S-wave window (Lermo & Chávez-García 1993).

The horizontal/vertical Fourier ratio of the S window peaks near the site's fundamental
frequency f0 ≈ V̄s/(4H), because the vertical is amplified much less than the horizontals at
S-wave resonance. Its peak frequency and amplitude are the physics baseline of the evaluation.
Spectra are smoothed with the Konno & Ohmachi (1998) window (obspy) on a log frequency grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from obspy.signal.konnoohmachismoothing import konno_ohmachi_smoothing_window
from scipy import signal


@dataclass(frozen=True)
class HvParams:
    window_s: float = 20.0  # S-wave window length
    pre_s_s: float = 1.0  # window starts this long before the S arrival
    fmin_hz: float = 0.3
    fmax_hz: float = 20.0
    n_freqs: int = 120
    ko_bandwidth: float = 40.0


@dataclass(frozen=True)
class HvPeak:
    f0_hz: float
    amplitude: float


@lru_cache(maxsize=16)
def smoothing_matrix(n_window: int, fs_hz: float, params: HvParams) -> np.ndarray:
    """Row-normalised Konno-Ohmachi weights from the rfft grid of ``n_window`` samples to
    the log-spaced output grid, (n_freqs, n_window // 2 + 1). Cached: one per window length."""
    freqs_hz = np.fft.rfftfreq(n_window, 1.0 / fs_hz)
    centres_hz = output_freqs(params)
    return np.stack(
        [konno_ohmachi_smoothing_window(freqs_hz, fc, params.ko_bandwidth, normalize=True)
         for fc in centres_hz]
    )


def output_freqs(params: HvParams) -> np.ndarray:
    return np.geomspace(params.fmin_hz, params.fmax_hz, params.n_freqs)


def hv_curve(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> tuple[np.ndarray, np.ndarray]:
    """H/V of the window starting at ``start_sample`` of a ZNE record; (freqs_hz, hv)."""
    n = int(round(params.window_s * fs_hz))
    start = int(np.clip(start_sample, 0, max(record.shape[1] - n, 0)))
    window = np.asarray(record[:, start : start + n], dtype=np.float64)
    window = signal.detrend(window, axis=1) * signal.windows.tukey(window.shape[1], 0.1)
    spectra = np.abs(np.fft.rfft(window, axis=1))
    weights = smoothing_matrix(window.shape[1], fs_hz, params)
    vertical = weights @ spectra[0]
    horizontal = weights @ np.sqrt(0.5 * (spectra[1] ** 2 + spectra[2] ** 2))
    hv = horizontal / np.maximum(vertical, 1e-12 * max(vertical.max(), 1e-30))
    return output_freqs(params), hv


def hv_peak(freqs_hz: np.ndarray, hv: np.ndarray) -> HvPeak:
    i = int(np.argmax(hv))
    return HvPeak(f0_hz=float(freqs_hz[i]), amplitude=float(hv[i]))


def record_hv_peak(
    record: np.ndarray, fs_hz: float, s_sample: float | None, pga_at: int, params: HvParams
) -> HvPeak:
    """Peak of the S-window H/V; without an S arrival the window is centred on the PGA."""
    if s_sample is not None:
        start = int(round(s_sample - params.pre_s_s * fs_hz))
    else:
        start = int(pga_at - 0.5 * params.window_s * fs_hz)
    return hv_peak(*hv_curve(record, fs_hz, start, params))
