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
        [
            konno_ohmachi_smoothing_window(freqs_hz, fc, params.ko_bandwidth, normalize=True)
            for fc in centres_hz
        ]
    )


def output_freqs(params: HvParams) -> np.ndarray:
    return np.geomspace(params.fmin_hz, params.fmax_hz, params.n_freqs)


def smoothed_spectra(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> tuple[np.ndarray, np.ndarray]:
    """Konno-Ohmachi smoothed Fourier amplitude (m/s) of each component over the window of
    ``params.window_s`` starting at ``start_sample``; (freqs_hz, spectra (3, n_freqs))."""
    n = int(round(params.window_s * fs_hz))
    start = int(np.clip(start_sample, 0, max(record.shape[1] - n, 0)))
    window = np.asarray(record[:, start : start + n], dtype=np.float64)
    window = signal.detrend(window, axis=1) * signal.windows.tukey(window.shape[1], 0.1)
    amplitude = np.abs(np.fft.rfft(window, axis=1)) / fs_hz
    weights = smoothing_matrix(window.shape[1], fs_hz, params)
    return output_freqs(params), amplitude @ weights.T


def hv_curve(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> tuple[np.ndarray, np.ndarray]:
    """H/V of the window starting at ``start_sample`` of a ZNE record; (freqs_hz, hv).
    H is the quadratic mean of the two smoothed horizontal spectra."""
    freqs_hz, spectra = smoothed_spectra(record, fs_hz, start_sample, params)
    horizontal = np.sqrt(0.5 * (spectra[1] ** 2 + spectra[2] ** 2))
    vertical = spectra[0]
    return freqs_hz, horizontal / np.maximum(vertical, 1e-12 * max(vertical.max(), 1e-30))


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
