"""Smoothed Fourier spectra and earthquake H/V of a record (for plots and corpus checks).

Earthquake H/V (Lermo & Chávez-García 1993): S-wave window, Konno-Ohmachi smoothing,
H = quadratic mean of the two horizontals, divided by the vertical.
"""

from __future__ import annotations

import numpy as np

KONNO_OHMACHI_B = 40.0


def hv_frequencies(fmin_hz: float = 0.2, fmax_hz: float = 25.0, n: int = 120) -> np.ndarray:
    return np.geomspace(fmin_hz, fmax_hz, n)


def konno_ohmachi_matrix(
    freq_hz: np.ndarray, centre_hz: np.ndarray, b: float = KONNO_OHMACHI_B
) -> np.ndarray:
    """Row-normalised Konno & Ohmachi (1998) weights, shape (len(centre), len(freq))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = b * np.log10(freq_hz[None, :] / centre_hz[:, None])
        w = (np.sin(x) / x) ** 4
    w[:, freq_hz <= 0] = 0.0
    w[np.isclose(x, 0.0)] = 1.0
    return w / w.sum(axis=1, keepdims=True)


def smoothed_spectra(
    waveform: np.ndarray, fs_hz: float, start: int, window_s: float, centre_hz: np.ndarray
) -> np.ndarray:
    """Konno-Ohmachi smoothed Fourier amplitude (m/s) of each component over
    ``[start, start + window_s)``, with a 5 % cosine taper; shape (n_comp, len(centre_hz))."""
    stop = min(waveform.shape[-1], start + int(round(window_s * fs_hz)))
    seg = waveform[..., max(start, 0) : stop]
    seg = seg - seg.mean(axis=-1, keepdims=True)
    n = seg.shape[-1]
    taper = np.ones(n)
    m = max(1, int(0.05 * n))
    ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
    taper[:m], taper[n - m :] = ramp, ramp[::-1]
    n_fft = 1 << int(np.ceil(np.log2(max(n, 2048))))
    amp = np.abs(np.fft.rfft(seg * taper, n=n_fft, axis=-1)) / fs_hz
    freq = np.fft.rfftfreq(n_fft, 1.0 / fs_hz)
    return amp @ konno_ohmachi_matrix(freq, centre_hz).T


def hv_ratio(
    waveform_zne: np.ndarray,
    fs_hz: float,
    s_sample: int,
    centre_hz: np.ndarray,
    window_s: float = 20.0,
) -> np.ndarray:
    """Earthquake H/V in the S window starting 1 s before the S arrival."""
    spec = smoothed_spectra(waveform_zne, fs_hz, s_sample - int(fs_hz), window_s, centre_hz)
    h = np.sqrt(0.5 * (spec[1] ** 2 + spec[2] ** 2))
    return h / np.maximum(spec[0], 1e-30)


def hv_peak_hz(hv: np.ndarray, centre_hz: np.ndarray) -> float:
    return float(centre_hz[int(np.argmax(hv))])
