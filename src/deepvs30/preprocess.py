"""Waveform preprocessing shared by training and prediction (one copy, stored with the model).

Demean, linear detrend, cosine taper, zero-phase Butterworth band-pass, polyphase resampling
to a common rate. Zero-phase filtering keeps P and S arrival samples where they were.
Input and output are acceleration in m/s², components ZNE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class PreprocessParams:
    target_fs_hz: float = 100.0
    freqmin_hz: float = 0.1
    freqmax_hz: float = 25.0
    filter_order: int = 4
    taper_fraction: float = 0.05  # of the record length, at each end
    max_record_s: float = 90.0  # records are cropped to this length after resampling

    def to_dict(self) -> dict:
        return asdict(self)


def resample_ratio(fs_hz: float, target_fs_hz: float) -> Fraction:
    """up/down factors for resample_poly; sampling rates of strong-motion data are rational."""
    return Fraction(target_fs_hz / fs_hz).limit_denominator(1000)


def preprocess_record(
    waveform_mps2: np.ndarray, fs_hz: float, params: PreprocessParams
) -> np.ndarray:
    """Return the preprocessed record, float32 (3, n) at ``params.target_fs_hz``, in m/s²."""
    x = np.asarray(waveform_mps2, dtype=np.float64)
    x = signal.detrend(x - x.mean(axis=1, keepdims=True), axis=1, type="linear")
    x = x * _taper(x.shape[1], params.taper_fraction)
    nyquist_hz = 0.5 * min(fs_hz, params.target_fs_hz)
    freqmax_hz = min(params.freqmax_hz, 0.9 * nyquist_hz)  # anti-alias before decimation
    sos = signal.butter(
        params.filter_order,
        [params.freqmin_hz, freqmax_hz],
        btype="bandpass",
        fs=fs_hz,
        output="sos",
    )
    x = signal.sosfiltfilt(sos, x, axis=1)
    ratio = resample_ratio(fs_hz, params.target_fs_hz)
    if ratio != 1:
        x = signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
    max_samples = int(round(params.max_record_s * params.target_fs_hz))
    return np.ascontiguousarray(x[:, :max_samples], dtype=np.float32)


def rescale_sample(sample: float | None, fs_hz: float, target_fs_hz: float) -> float | None:
    """An arrival sample index at ``fs_hz`` expressed at ``target_fs_hz`` (None stays None)."""
    if sample is None or not np.isfinite(sample):
        return None
    return float(sample) * target_fs_hz / fs_hz


def _taper(n_samples: int, fraction: float) -> np.ndarray:
    if fraction <= 0:
        return np.ones(n_samples)
    return signal.windows.tukey(n_samples, alpha=min(1.0, 2 * fraction))
