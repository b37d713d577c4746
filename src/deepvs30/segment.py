"""How a preprocessed record becomes a model input window (shared by training and prediction).

Segmentation options of the method (arXiv 2503.05224) and one more:

- ``p_centred``: a window centred on the P arrival;
- ``pga_centred``: centred on the peak horizontal acceleration;
- ``s_start``: starting at the S arrival (the S-wave window carries most site response);
- ``whole``: the record from its start.

``offset_s`` shifts the window. Optional P/S information: a mask channel equal to 1 between
the P and S arrivals (as the method does) and/or the S−P time (s) as a scalar input.
Optional site physics: ``hv_bins`` > 0 adds the record's earthquake H/V curve (ln H/V at
``hv_bins`` log-spaced frequencies, 0.5–20 Hz, geometric mean of the horizontals,
Konno–Ohmachi b = 40; :mod:`deepvs30.hvsr`) as scalar inputs. Its window is
``hv_window_s`` long from ``hv_pre_pga_s`` before the PGA: strong-motion PGA falls in the
S-wave train, so this is an S window that needs no picks (predict never skips a record for it).
With ``amplitude: per_record`` each window is divided by its own peak, so that absolute
amplitude (which carries magnitude and distance, not site) is not a shortcut; the ratios
between components (H/V) are kept.

``gmm_scalars`` adds the record's magnitude, ln hypocentral distance (km) and ln PGA (m/s²,
peak horizontal vector acceleration of the preprocessed record) as scalars: the covariates of a
ground-motion model, with which a model can read the station's amplification relative to what
the event and distance predict (the site term, through which Vs30 enters ground-motion
models) instead of amplitude alone. A record without magnitude or distance is skipped with
that reason (``predict --fallback-model`` answers it with a model that does not need them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The earthquake-H/V standard band and smoothing (SESAME 2004; Konno & Ohmachi 1998).
HV_FMIN_HZ, HV_FMAX_HZ, HV_KO_BANDWIDTH = 0.5, 20.0, 40.0
SEGMENTATIONS = ("p_centred", "pga_centred", "s_start", "whole")
REPRESENTATIONS = ("waveform", "spectrogram")
AMPLITUDES = ("per_record", "absolute")
N_GMM_SCALARS = 3  # magnitude, ln hypocentral distance (km), ln PGA (m/s²)
MISSING_SOURCE = "no magnitude or hypocentral distance (features.gmm_scalars)"


class SkipRecord(Exception):  # noqa: N818 - a control-flow signal with a reason, not an error
    """A record that this segmentation cannot use (the reason is counted and reported)."""


def needs_other_inputs(reason: str) -> bool:
    """A skip reason that a model without P/S information or without the ground-motion
    covariates would not have (such a record goes to a fallback model)."""
    arrivals = "P/S" in reason or "no P arrival" in reason or "no S arrival" in reason
    return arrivals or "features.gmm_scalars" in reason


@dataclass(frozen=True)
class FeatureParams:
    segmentation: str = "p_centred"
    window_s: float = 40.0
    offset_s: float = 0.0
    ps_channel: bool = True
    sp_scalar: bool = False
    representation: str = "waveform"
    amplitude: str = "per_record"
    hv_bins: int = 0  # ln H/V curve at this many frequencies as scalars (0 = off)
    hv_window_s: float = 40.0
    hv_pre_pga_s: float = 5.0
    gmm_scalars: bool = False  # magnitude, ln hypocentral distance (km), ln PGA (m/s²)

    def __post_init__(self) -> None:
        from deepvs30.errors import ConfigError

        for value, allowed, key in (
            (self.segmentation, SEGMENTATIONS, "segmentation"),
            (self.representation, REPRESENTATIONS, "representation"),
            (self.amplitude, AMPLITUDES, "amplitude"),
        ):
            if value not in allowed:
                raise ConfigError(f"features.{key}: {value!r} is not one of {list(allowed)}")
        if self.window_s <= 0:
            raise ConfigError(f"features.window_s: must be positive, got {self.window_s}")
        if self.hv_bins < 0 or self.hv_window_s <= 0:
            raise ConfigError(
                f"features.hv_bins must be >= 0 and hv_window_s > 0, got "
                f"{self.hv_bins} and {self.hv_window_s}"
            )

    @property
    def in_channels(self) -> int:
        return 3 + int(self.ps_channel)

    @property
    def n_scalars(self) -> int:
        return int(self.sp_scalar) + self.hv_bins + N_GMM_SCALARS * int(self.gmm_scalars)

    def n_samples(self, fs_hz: float) -> int:
        return int(round(self.window_s * fs_hz))

    def to_dict(self) -> dict:
        return asdict(self)


def pga_sample(record: np.ndarray) -> int:
    """Sample of the peak of the horizontal vector acceleration (components N, E)."""
    horizontal = np.hypot(record[1], record[2])
    return int(np.argmax(horizontal))


def window_start(
    n_window: int,
    fs_hz: float,
    params: FeatureParams,
    p_sample: float | None,
    s_sample: float | None,
    pga_at: int | None,
) -> int:
    offset = int(round(params.offset_s * fs_hz))
    if params.segmentation == "p_centred":
        if p_sample is None:
            raise SkipRecord("no P arrival (p_centred window)")
        return int(round(p_sample)) - n_window // 2 + offset
    if params.segmentation == "pga_centred":
        return int(pga_at) - n_window // 2 + offset
    if params.segmentation == "s_start":
        if s_sample is None:
            raise SkipRecord("no S arrival (s_start window)")
        return int(round(s_sample)) + offset
    return offset  # whole


def window_span(
    record: np.ndarray,
    fs_hz: float,
    params: FeatureParams,
    p_sample: float | None,
    s_sample: float | None,
    pga_at: int | None = None,
) -> tuple[int, int]:
    """First sample (may be < 0: zero-padded) and length in samples of the model window of a
    preprocessed record; :class:`SkipRecord` when the segmentation needs a missing arrival."""
    n_window = params.n_samples(fs_hz)
    if pga_at is None and params.segmentation == "pga_centred":
        pga_at = pga_sample(record)
    return window_start(n_window, fs_hz, params, p_sample, s_sample, pga_at), n_window


def make_input(
    record: np.ndarray,
    fs_hz: float,
    params: FeatureParams,
    p_sample: float | None,
    s_sample: float | None,
    pga_at: int | None = None,
    ln_hv: np.ndarray | None = None,
    source: tuple[float | None, float | None] = (None, None),
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the model input from a preprocessed record (3, n) at ``fs_hz``.

    ``ln_hv``: the record's :func:`ln_hv_scalars`, when the caller has them cached.
    ``source``: the record's (magnitude, hypocentral distance in km), read by ``gmm_scalars``.
    Returns ``x`` float32 (in_channels, n_window) and ``scalars`` float32 (n_scalars,).
    Raises :class:`SkipRecord` with the reason when the record cannot be used.
    """
    if params.ps_channel or params.sp_scalar:
        if p_sample is None or s_sample is None:
            raise SkipRecord("no P/S arrivals (P/S information requested)")
        if s_sample <= p_sample:
            raise SkipRecord("S arrival not after P arrival")
    if params.gmm_scalars and not all(v is not None and np.isfinite(v) for v in source):
        raise SkipRecord(MISSING_SOURCE)
    if pga_at is None and (params.hv_bins or params.gmm_scalars):
        pga_at = pga_sample(record)  # once, for the window, the H/V window and ln PGA
    start, n_window = window_span(record, fs_hz, params, p_sample, s_sample, pga_at)
    x = np.zeros((params.in_channels, n_window), dtype=np.float32)
    x[:3] = _cut(record, start, n_window)
    if params.amplitude == "per_record":
        peak = float(np.max(np.abs(x[:3])))
        if not np.isfinite(peak) or peak <= 0:
            raise SkipRecord("window holds no signal")
        x[:3] /= peak
    if params.ps_channel:
        i0 = int(np.clip(round(p_sample) - start, 0, n_window))
        i1 = int(np.clip(round(s_sample) - start, 0, n_window))
        x[3, i0:i1] = 1.0
    scalars = np.zeros(params.n_scalars, dtype=np.float32)
    if params.sp_scalar:
        scalars[0] = (s_sample - p_sample) / fs_hz
    if params.hv_bins:
        if ln_hv is None:
            ln_hv = ln_hv_scalars(record, fs_hz, params, pga_at)
        scalars[int(params.sp_scalar) : int(params.sp_scalar) + params.hv_bins] = ln_hv
    if params.gmm_scalars:
        scalars[-N_GMM_SCALARS:] = gmm_covariates(record, pga_at, *source)
    return x, scalars


def gmm_covariates(
    record: np.ndarray, pga_at: int, magnitude: float, hyp_distance_km: float
) -> np.ndarray:
    """Magnitude, ln hypocentral distance (km) and ln PGA (m/s²) of a preprocessed record;
    PGA is the horizontal vector acceleration at ``pga_at`` (:func:`pga_sample`)."""
    pga_mps2 = float(np.hypot(record[1, pga_at], record[2, pga_at]))
    if not np.isfinite(pga_mps2) or pga_mps2 <= 0:
        raise SkipRecord("no horizontal signal (features.gmm_scalars)")
    ln_r = np.log(max(float(hyp_distance_km), 1.0))  # 1 km floor: a site on the hypocentre
    return np.array([magnitude, ln_r, np.log(pga_mps2)], dtype=np.float32)


def ln_hv_scalars(
    record: np.ndarray, fs_hz: float, params: FeatureParams, pga_at: int
) -> np.ndarray:
    """ln H/V at ``params.hv_bins`` frequencies (0.5–20 Hz) of the window from
    ``hv_pre_pga_s`` before the PGA; float32 (hv_bins,)."""
    from deepvs30.hvsr import HvParams, hv_curve

    hv = HvParams(
        window_s=params.hv_window_s, fmin_hz=HV_FMIN_HZ, fmax_hz=HV_FMAX_HZ,
        n_freqs=params.hv_bins, ko_bandwidth=HV_KO_BANDWIDTH,
    )  # fmt: skip
    _, ratio = hv_curve(record, fs_hz, hv_window_start(fs_hz, params, pga_at), hv)
    return np.log(np.maximum(ratio, 1e-6)).astype(np.float32)


def hv_window_start(fs_hz: float, params: FeatureParams, pga_at: int) -> int:
    """First sample of the window whose ln H/V are the scalars: ``hv_pre_pga_s`` before the PGA
    (:func:`deepvs30.hvsr.window_bounds` keeps it inside the record)."""
    return int(pga_at - round(params.hv_pre_pga_s * fs_hz))


def _cut(record: np.ndarray, start: int, n_window: int) -> np.ndarray:
    """record[:, start:start+n_window], zero-padded where the window leaves the record."""
    out = np.zeros((record.shape[0], n_window), dtype=np.float32)
    lo, hi = max(start, 0), min(start + n_window, record.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = record[:, lo:hi]
    return out
