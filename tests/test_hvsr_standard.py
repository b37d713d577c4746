"""SESAME-style earthquake H/V: agreement with hvsrpy 2.1, a known resonance, and the two
horizontal combinations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from deepvs30.config import from_dict
from deepvs30.errors import ConfigError
from deepvs30.hvsr import (
    HvParams,
    hv_curve,
    hv_peak,
    output_freqs,
    record_hv_curve,
    record_hv_peak,
    smoothing_matrix,
    window_bounds,
)

FS_HZ = 100.0


def resonant_record(f0_hz: float, n_samples: int, seed: int, damping: float = 0.05) -> np.ndarray:
    """ZNE white noise whose horizontals pass a damped oscillator ω0²/(s² + 2ζω0 s + ω0²)
    (gain 1 below f0, 1/(2ζ) at f0); the vertical stays flat, so H/V peaks at f0."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((3, n_samples))
    w0 = 2 * np.pi * f0_hz
    b, a = signal.bilinear([w0**2], [1.0, 2 * damping * w0, w0**2], fs=FS_HZ)
    noise[1:] = signal.lfilter(b, a, noise[1:], axis=1)
    return noise


def hvsrpy_curve(window: np.ndarray, freqs_hz: np.ndarray, horizontal: str) -> np.ndarray:
    """hvsrpy 2.1 traditional H/V of one ZNE window (no splitting, linear detrend, Tukey 0.1)."""
    hvsrpy = pytest.importorskip("hvsrpy", reason="hvsrpy (dev extra) is the reference")
    n, e, z = (hvsrpy.TimeSeries(window[i].astype(np.float64), 1 / FS_HZ) for i in (1, 2, 0))
    pre = hvsrpy.HvsrPreProcessingSettings(window_length_in_seconds=None, detrend="linear")
    settings = hvsrpy.HvsrTraditionalProcessingSettings(
        window_type_and_width=["tukey", 0.1],
        method_to_combine_horizontals=horizontal,
        smoothing=dict(
            operator="konno_and_ohmachi", bandwidth=40, center_frequencies_in_hz=freqs_hz
        ),
    )
    result = hvsrpy.process(hvsrpy.preprocess(hvsrpy.SeismicRecording3C(n, e, z), pre), settings)
    return result.amplitude[0]


@pytest.mark.parametrize("horizontal", ["geometric_mean", "quadratic_mean"])
@pytest.mark.parametrize(("n_samples", "start"), [(9000, 1500), (1500, 0)])
def test_matches_hvsrpy(horizontal, n_samples, start):
    """Same window → same curve; the second case is a record shorter than the 40 s window."""
    record = resonant_record(2.5, n_samples, seed=3)
    record[1:] *= np.linspace(1.0, 3.0, n_samples)  # non-stationary horizontals
    params = HvParams(horizontal=horizontal)
    freqs_hz, hv = hv_curve(record, FS_HZ, start, params)
    window = record[:, window_bounds(n_samples, FS_HZ, start, params.window_s)]
    np.testing.assert_allclose(hv, hvsrpy_curve(window, freqs_hz, horizontal), rtol=1e-3)


def test_sesame_flags_match_hvsrpy():
    sesame = pytest.importorskip("hvsrpy.sesame", reason="hvsrpy (dev extra) is the reference")
    curve = record_hv_curve(resonant_record(2.5, 6000, seed=1), FS_HZ, 1000.0, 0, HvParams())
    hv, zero = np.exp(curve.ln_hv), np.zeros_like(curve.ln_hv)
    reliability = sesame.reliability(curve.window_s, 1, curve.freqs_hz, hv, zero, verbose=0)
    clarity = sesame.clarity(curve.freqs_hz, hv, zero, 0.0, verbose=0)
    flags = curve.sesame
    assert [flags.enough_cycles, flags.enough_total_cycles] == list(reliability[:2].astype(bool))
    assert [flags.trough_below, flags.trough_above, flags.amplitude_above_2] == list(
        clarity[:3].astype(bool)
    )


@pytest.mark.parametrize("seed", range(4))
def test_resonance_f0_within_5_percent(seed):
    record = resonant_record(2.5, 6000, seed=seed)
    curve = record_hv_curve(record, FS_HZ, s_sample=1000.0, pga_at=0, params=HvParams())
    assert curve.peak.f0_hz == pytest.approx(2.5, rel=0.05)
    assert curve.peak.amplitude > 4.0  # oscillator gain 10, flattened by KO smoothing
    assert curve.sesame.n_clarity == 3 and curve.sesame.enough_cycles
    assert curve.window_s == 40.0 and curve.ln_hv.shape == (120,)
    np.testing.assert_array_equal(curve.freqs_hz, output_freqs(HvParams()))
    assert record_hv_peak(record, FS_HZ, 1000.0, 0, HvParams()) == curve.peak


def test_geometric_vs_quadratic_mean():
    """√(|N||E|) ≤ √((|N|²+|E|²)/2) per bin, equal for N = E; for E = c N their ratio is
    √((1+c²)/(2c)) at every frequency (smoothing is linear, so it keeps the ratio)."""
    record = resonant_record(2.5, 6000, seed=0)
    gm, qm = (HvParams(horizontal=h) for h in ("geometric_mean", "quadratic_mean"))
    _, hv_gm = hv_curve(record, FS_HZ, 1000, gm)
    _, hv_qm = hv_curve(record, FS_HZ, 1000, qm)
    assert np.all(hv_gm <= hv_qm * (1 + 1e-12))
    same = record.copy()
    same[2] = same[1]
    np.testing.assert_allclose(
        hv_curve(same, FS_HZ, 1000, gm)[1], hv_curve(same, FS_HZ, 1000, qm)[1]
    )
    scaled = record.copy()
    scaled[2] = 2.0 * scaled[1]
    ratio = hv_curve(scaled, FS_HZ, 1000, qm)[1] / hv_curve(scaled, FS_HZ, 1000, gm)[1]
    np.testing.assert_allclose(ratio, np.sqrt(5.0 / 4.0), rtol=1e-9)


def test_short_record_uses_what_there_is():
    record = resonant_record(2.5, 1500, seed=2)  # 15 s < 40 s window
    curve = record_hv_curve(record, FS_HZ, s_sample=500.0, pga_at=700, params=HvParams())
    assert curve.window_s == 15.0
    np.testing.assert_allclose(np.exp(curve.ln_hv), hv_curve(record, FS_HZ, 0, HvParams())[1])
    assert curve.sesame.enough_cycles == (curve.peak.f0_hz > 10.0 / 15.0)


def test_window_placement():
    params = HvParams(window_s=40.0, pre_s_s=1.0)
    # S known: from 1 s before S; near the end the window shifts back to stay 40 s long
    assert window_bounds(9000, FS_HZ, 2000 - 100, params.window_s) == slice(1900, 5900)
    assert window_bounds(9000, FS_HZ, 7000, params.window_s) == slice(5000, 9000)
    # no S: centred on the PGA
    rng = np.random.default_rng(0)
    record = rng.standard_normal((3, 9000))
    centred = hv_curve(record, FS_HZ, 6000 - 2000, params)[1]
    no_s = record_hv_curve(record, FS_HZ, None, 6000, params)
    np.testing.assert_allclose(np.exp(no_s.ln_hv), centred)


def test_peak_is_interior_local_maximum():
    freqs_hz = np.geomspace(0.5, 20.0, 50)
    hv = 1.0 + 3.0 * np.exp(-(np.log(freqs_hz / 2.0) ** 2) / 0.05) + 0.2 * freqs_hz  # 20 Hz is max
    assert hv_peak(freqs_hz, hv).f0_hz == pytest.approx(2.0, rel=0.05)
    assert hv_peak(freqs_hz, freqs_hz).f0_hz == 20.0  # monotonic: the band edge


def test_smoothing_rows_are_normalised_and_local():
    params = HvParams()
    weights = smoothing_matrix(2**15, FS_HZ, params).toarray()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    freqs_hz = np.fft.rfftfreq(2**15, 1 / FS_HZ)
    for row, fc in zip(weights, output_freqs(params), strict=True):
        support = freqs_hz[row > 0]
        assert support.min() >= fc * 10 ** (-3 / 40) and support.max() <= fc * 10 ** (3 / 40)


def test_params_from_yaml_and_validation():
    old_section = dict(
        window_s=20.0, pre_s_s=1.0, fmin_hz=0.3, fmax_hz=20.0, n_freqs=120, ko_bandwidth=40.0
    )
    params = from_dict(old_section, HvParams, "prepare.hv")
    assert params.horizontal == "geometric_mean" and params.window_s == 20.0
    assert (
        from_dict({"horizontal": "quadratic_mean"}, HvParams, "hv").horizontal == "quadratic_mean"
    )
    with pytest.raises(ConfigError, match="horizontal"):
        from_dict({"horizontal": "arithmetic_mean"}, HvParams, "hv")
    with pytest.raises(ConfigError, match="horizontal"):
        HvParams(horizontal="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fmin_hz"):
        HvParams(fmin_hz=30.0)
    with pytest.raises(ValueError, match="Nyquist"):
        hv_curve(np.zeros((3, 4000)), 20.0, 0, HvParams())
