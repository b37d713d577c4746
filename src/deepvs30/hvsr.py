"""Earthquake H/V spectral ratio of the S-wave window (Lermo & Chávez-García 1993), SESAME style.

The horizontal/vertical Fourier ratio of the S window peaks near the site's fundamental
frequency f0 ≈ V̄s/(4H), because the vertical is amplified much less than the horizontals at
S-wave resonance. Its peak frequency and amplitude are the physics baseline of the evaluation.

Processing follows hvsrpy 2.1 (Vantassel), the reference implementation of SESAME (2004) H/V,
step for step, so that our curve equals ``hvsrpy.process`` on the same window (tested to 1e-3):

1. window: ``window_s`` from ``pre_s_s`` before S (or centred on the PGA without an S pick);
   a record shorter than the window is used whole (``HvCurve.window_s`` says how long);
2. linear detrend, Tukey taper (10 %), |rfft| zero-padded to a power of two ≥ 2**15 samples;
3. horizontals combined per FFT bin (geometric mean √(|N||E|) by default, or quadratic mean);
4. Konno & Ohmachi (1998) smoothing, b = 40, truncated at |b·log10(f/fc)| ≤ 3, onto a log grid;
5. H/V = smoothed H / smoothed V; f0 = the highest interior local maximum (scipy ``find_peaks``).

We compute it ourselves (numpy, ≈4 ms a 40 s record) rather than calling hvsrpy at run time: hvsrpy
JIT-compiles its smoother with numba (seconds on first use in every worker), imports IPython, takes
~16 ms a record, and is GPL-3.0 while this project is MIT; it stays the test reference (dev extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
from scipy import signal, sparse

from deepvs30.errors import ConfigError

Horizontal = Literal["geometric_mean", "quadratic_mean"]
MIN_FFT_POINTS = 2**15  # hvsrpy pads every window to a power of two ≥ 32768 samples
TAPER_FRACTION = 0.1  # Tukey taper, 5 % at each end (hvsrpy / SESAME default)
KO_HALF_WIDTH = 3.0  # KO window kept where |b·log10(f/fc)| ≤ 3 (main lobe ends at π)


@dataclass(frozen=True)
class HvParams:
    window_s: float = 40.0  # S-wave window length (SESAME: ≥ 10 cycles of f0, so f0 > 0.25 Hz)
    pre_s_s: float = 1.0  # window starts this long before the S arrival
    fmin_hz: float = 0.5
    fmax_hz: float = 20.0
    n_freqs: int = 120  # log-spaced output grid
    ko_bandwidth: float = 40.0  # Konno-Ohmachi b
    horizontal: Horizontal = "geometric_mean"  # how |N| and |E| combine (SESAME: geometric)

    def __post_init__(self) -> None:
        if self.horizontal not in get_args(Horizontal):
            raise ConfigError(f"hv.horizontal {self.horizontal!r} not in {get_args(Horizontal)}")
        if not 0 < self.fmin_hz < self.fmax_hz:
            raise ConfigError(f"hv: need 0 < fmin_hz < fmax_hz, got {self.fmin_hz}, {self.fmax_hz}")
        if self.window_s <= 0 or self.n_freqs < 3 or self.ko_bandwidth <= 0:
            raise ConfigError("hv: window_s and ko_bandwidth must be > 0 and n_freqs ≥ 3")


@dataclass(frozen=True)
class HvPeak:
    f0_hz: float
    amplitude: float


@dataclass(frozen=True)
class SesameFlags:
    """The SESAME (2004) peak criteria that one window's curve can decide.

    The others (reliability iii, clarity iv–vi) need the spread over several windows: evaluate
    them per station over its records. Reliability ii (n_c > 200) is meant for ambient noise and
    fails for f0 < 5 Hz on a 40 s earthquake window.
    """

    enough_cycles: bool  # reliability i: f0 > 10 / window
    enough_total_cycles: bool  # reliability ii: n_c = window · f0 > 200 (one window)
    trough_below: bool  # clarity i: some f in (f0/4, f0) with A(f) < A0/2
    trough_above: bool  # clarity ii: some f in (f0, 4 f0) with A(f) < A0/2
    amplitude_above_2: bool  # clarity iii: A0 > 2

    @property
    def n_clarity(self) -> int:
        return int(self.trough_below) + int(self.trough_above) + int(self.amplitude_above_2)


@dataclass(frozen=True)
class HvCurve:
    freqs_hz: np.ndarray  # (n_freqs,) the fixed log grid of ``output_freqs``
    ln_hv: np.ndarray  # (n_freqs,) natural log of H/V
    peak: HvPeak
    sesame: SesameFlags
    window_s: float  # length actually used: less than params.window_s for a short record


def output_freqs(params: HvParams) -> np.ndarray:
    return np.geomspace(params.fmin_hz, params.fmax_hz, params.n_freqs)


def fft_points(n_samples: int) -> int:
    """hvsrpy's FFT length: the smallest power of two > n_samples, at least 2**15."""
    n_fft = MIN_FFT_POINTS
    while n_fft <= n_samples:
        n_fft *= 2
    return n_fft


@lru_cache(maxsize=16)
def smoothing_matrix(n_fft: int, fs_hz: float, params: HvParams) -> sparse.csr_array:
    """Row-normalised Konno-Ohmachi weights from the rfft grid of ``n_fft`` points to the log
    grid, sparse (n_freqs, n_fft // 2 + 1); hvsrpy's truncation and its w = 1 at f = fc."""
    centres_hz = output_freqs(params)
    if centres_hz[-1] > 0.5 * fs_hz:
        raise ValueError(f"fmax_hz {params.fmax_hz} above the Nyquist frequency {0.5 * fs_hz}")
    freqs_hz = np.fft.rfftfreq(n_fft, 1.0 / fs_hz)[1:]  # f = 0 never contributes
    b = params.ko_bandwidth
    x = b * np.log10(freqs_hz[None, :] / centres_hz[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = (np.sin(x) / x) ** 4
    weights[np.abs(freqs_hz[None, :] - centres_hz[:, None]) < 1e-6] = 1.0
    weights[np.abs(x) > KO_HALF_WIDTH] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return sparse.csr_array(np.pad(weights, ((0, 0), (1, 0))))


def window_bounds(n_samples: int, fs_hz: float, start_sample: int, window_s: float) -> slice:
    """``window_s`` from ``start_sample``, shifted to lie inside the record; the whole record
    when it is shorter than the window."""
    n = int(round(window_s * fs_hz))
    start = int(np.clip(start_sample, 0, max(n_samples - n, 0)))
    return slice(start, min(start + n, n_samples))


def fourier_amplitude(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> np.ndarray:
    """|FFT| (m/s) of each detrended, tapered component over the window, (3, n_fft // 2 + 1)."""
    window = np.asarray(
        record[:, window_bounds(record.shape[1], fs_hz, start_sample, params.window_s)],
        dtype=np.float64,
    )
    window = signal.detrend(window, axis=1) * signal.windows.tukey(window.shape[1], TAPER_FRACTION)
    return np.abs(np.fft.rfft(window, n=fft_points(window.shape[1]), axis=1)) / fs_hz


def combine_horizontals(north: np.ndarray, east: np.ndarray, method: Horizontal) -> np.ndarray:
    if method == "geometric_mean":
        return np.sqrt(north * east)
    return np.sqrt(0.5 * (north**2 + east**2))


def _smooth(amplitude: np.ndarray, fs_hz: float, params: HvParams) -> np.ndarray:
    n_fft = 2 * (amplitude.shape[-1] - 1)
    return (smoothing_matrix(n_fft, fs_hz, params) @ np.atleast_2d(amplitude).T).T


def smoothed_spectra(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> tuple[np.ndarray, np.ndarray]:
    """Konno-Ohmachi smoothed Fourier amplitude (m/s) of each component over the window of
    ``params.window_s`` starting at ``start_sample``; (freqs_hz, spectra (3, n_freqs))."""
    amplitude = fourier_amplitude(record, fs_hz, start_sample, params)
    return output_freqs(params), _smooth(amplitude, fs_hz, params)


def hv_curve(
    record: np.ndarray, fs_hz: float, start_sample: int, params: HvParams
) -> tuple[np.ndarray, np.ndarray]:
    """H/V of the window starting at ``start_sample`` of a ZNE record; (freqs_hz, hv).
    H combines |N| and |E| per FFT bin (``params.horizontal``) before smoothing, as hvsrpy."""
    z, n, e = fourier_amplitude(record, fs_hz, start_sample, params)
    h_s, v_s = _smooth(np.stack([combine_horizontals(n, e, params.horizontal), z]), fs_hz, params)
    return output_freqs(params), h_s / np.maximum(v_s, 1e-12 * max(v_s.max(), 1e-30))


def hv_peak(freqs_hz: np.ndarray, hv: np.ndarray) -> HvPeak:
    """Highest interior local maximum (SESAME / hvsrpy); the global maximum if there is none,
    i.e. for a monotonic curve, whose peak lies outside the band."""
    maxima, _ = signal.find_peaks(hv)
    i = int(maxima[np.argmax(hv[maxima])]) if maxima.size else int(np.argmax(hv))
    return HvPeak(f0_hz=float(freqs_hz[i]), amplitude=float(hv[i]))


def sesame_flags(
    freqs_hz: np.ndarray, hv: np.ndarray, peak: HvPeak, window_s: float
) -> SesameFlags:
    f0, half = peak.f0_hz, 0.5 * peak.amplitude
    below = hv[(freqs_hz > f0 / 4) & (freqs_hz < f0)]
    above = hv[(freqs_hz > f0) & (freqs_hz < 4 * f0)]
    return SesameFlags(
        enough_cycles=bool(f0 > 10.0 / window_s),
        enough_total_cycles=bool(window_s * f0 > 200.0),
        trough_below=bool(np.any(below < half)),
        trough_above=bool(np.any(above < half)),
        amplitude_above_2=bool(peak.amplitude > 2.0),
    )


def window_start(fs_hz: float, s_sample: float | None, pga_at: int, params: HvParams) -> int:
    """First sample of the S window: ``pre_s_s`` before S, or centred on the PGA without S."""
    if s_sample is not None:
        return int(round(s_sample - params.pre_s_s * fs_hz))
    return int(pga_at - 0.5 * params.window_s * fs_hz)


def record_hv_curve(
    record: np.ndarray, fs_hz: float, s_sample: float | None, pga_at: int, params: HvParams
) -> HvCurve:
    """ln H/V on the fixed log grid, its peak and the single-window SESAME flags of a record."""
    start = window_start(fs_hz, s_sample, pga_at, params)
    used = window_bounds(record.shape[1], fs_hz, start, params.window_s)
    window_s = (used.stop - used.start) / fs_hz
    freqs_hz, hv = hv_curve(record, fs_hz, start, params)
    peak = hv_peak(freqs_hz, hv)
    ln_hv = np.log(np.maximum(hv, 1e-30))  # a silent record gives H/V = 0
    return HvCurve(freqs_hz, ln_hv, peak, sesame_flags(freqs_hz, hv, peak, window_s), window_s)


def record_hv_peak(
    record: np.ndarray, fs_hz: float, s_sample: float | None, pga_at: int, params: HvParams
) -> HvPeak:
    """Peak of the S-window H/V; without an S arrival the window is centred on the PGA."""
    return hv_peak(*hv_curve(record, fs_hz, window_start(fs_hz, s_sample, pga_at, params), params))
