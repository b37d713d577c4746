"""Preprocessing, segmentation, H/V, splits and metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import signal

from deepvs30.errors import ConfigError
from deepvs30.hvsr import HvParams, hv_curve, hv_peak
from deepvs30.metrics import nehrp_class, station_predictions, summary_metrics, trend_slope
from deepvs30.preprocess import PreprocessParams, preprocess_record
from deepvs30.segment import FeatureParams, SkipRecord, make_input
from deepvs30.split import SplitParams, make_splits


def test_preprocess_resamples_and_keeps_passband():
    fs_hz = 200.0
    t = np.arange(int(60 * fs_hz)) / fs_hz
    sine = 0.5 * np.sin(2 * np.pi * 2.0 * t)
    rec = np.stack([sine + 0.3, sine + 0.01 * t, sine])  # offset and drift removed
    out = preprocess_record(rec, fs_hz, PreprocessParams(target_fs_hz=100.0, max_record_s=90))
    assert out.dtype == np.float32 and out.shape == (3, 6000)
    middle = out[:, 1000:5000]
    np.testing.assert_allclose(np.abs(middle).max(axis=1), 0.5, rtol=0.03)
    assert abs(float(middle.mean())) < 0.01


def test_preprocess_removes_out_of_band():
    fs_hz = 100.0
    t = np.arange(6000) / fs_hz
    rec = np.tile(np.sin(2 * np.pi * 40.0 * t), (3, 1))  # above the 25 Hz corner
    out = preprocess_record(rec, fs_hz, PreprocessParams())
    assert np.abs(out[:, 500:-500]).max() < 0.01


def test_windows_p_centred_with_ps_channel():
    fs = 100.0
    rec = np.zeros((3, 6000), dtype=np.float32)
    rec[1, 3000] = 2.0  # just outside the window [1000, 3000)
    rec[0, 1500] = 0.5
    params = FeatureParams(segmentation="p_centred", window_s=20, ps_channel=True, sp_scalar=True)
    x, s = make_input(rec, fs, params, p_sample=2000.0, s_sample=2500.0)
    assert x.shape == (4, 2000)
    # window starts at P - 10 s = sample 1000; P/S mask from 1000 to 1500 in the window
    assert x[3, 999] == 0 and x[3, 1000] == 1 and x[3, 1499] == 1 and x[3, 1500] == 0
    assert x[0, 500] == 1.0 and x[:3].max() == 1.0  # normalised by the in-window peak
    assert s[0] == pytest.approx(5.0)


def test_windows_pga_centred_and_per_record_amplitude():
    rec = np.zeros((3, 6000), dtype=np.float32)
    rec[2, 4000] = -8.0
    rec[0, 4000] = 2.0
    x, _ = make_input(
        rec,
        100.0,
        FeatureParams(segmentation="pga_centred", window_s=10, ps_channel=False),
        None,
        None,
    )
    assert x.shape == (3, 1000)
    assert x[2, 500] == -1.0 and x[0, 500] == 0.25  # ratio between components kept


def test_window_skips_with_reasons():
    rec = np.ones((3, 1000), dtype=np.float32)
    with pytest.raises(SkipRecord, match="no P/S arrivals"):
        make_input(rec, 100.0, FeatureParams(ps_channel=True), None, None)
    with pytest.raises(SkipRecord, match="no S arrival"):
        make_input(rec, 100.0, FeatureParams(segmentation="s_start", ps_channel=False), 5, None)
    with pytest.raises(SkipRecord, match="S arrival not after P"):
        make_input(rec, 100.0, FeatureParams(ps_channel=True), 500.0, 400.0)
    with pytest.raises(ConfigError, match="segmentation"):
        FeatureParams(segmentation="middle")


def test_hv_peak_finds_resonance():
    fs = 100.0
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((3, 4000))
    b, a = signal.iirpeak(3.0, Q=5, fs=fs)
    rec = noise.copy()
    rec[1:] += 4 * signal.lfilter(b, a, noise[1:], axis=1)
    freqs, hv = hv_curve(rec, fs, 0, HvParams(window_s=40.0))
    peak = hv_peak(freqs, hv)
    assert peak.f0_hz == pytest.approx(3.0, rel=0.15)
    assert peak.amplitude > 3.0


def _stations(n=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        vs30 = float(np.exp(rng.uniform(np.log(150), np.log(1500))))
        for e in range(3):
            rows.append(
                {
                    "station_network_code": "XX",
                    "station_code": f"S{k}",
                    "station_latitude_deg": 36 + (k % 4) * 2 + rng.normal(0, 0.1),
                    "station_longitude_deg": 28 + (k % 4) * 3 + rng.normal(0, 0.1),
                    "station_vs30_mps": vs30,
                    "source_id": f"e{e}",
                }
            )
    return pd.DataFrame(rows)


def test_splits_are_station_disjoint_and_stratified():
    stations = make_splits(_stations(), SplitParams(n_clusters=4))
    counts = stations["split"].value_counts()
    assert counts["train"] == pytest.approx(42, abs=5) and counts["test"] == pytest.approx(9, abs=4)
    assert stations["station"].is_unique
    test_ln = np.log(stations.loc[stations["split"] == "test", "vs30_mps"])
    assert test_ln.max() - test_ln.min() > 1.2  # the test set spans the Vs30 range
    held = stations.loc[stations["split_cluster"] == "test", "cluster"].unique()
    assert len(held) == 1
    assert held[0] not in set(stations.loc[stations["split_cluster"] != "test", "cluster"])


def test_metrics_numbers():
    true = np.array([200.0, 400.0, 800.0, 1600.0])
    pred = np.array([220.0, 360.0, 800.0, 2000.0])
    m = summary_metrics(true, pred, sigma_ln=np.full(4, 0.12))
    assert m["mape_pct"] == pytest.approx(100 * (0.1 + 0.1 + 0 + 0.25) / 4)
    assert m["coverage_68"] == pytest.approx(0.75)  # |ln 1.1|, |ln .9|, 0 < .12 < |ln 1.25|
    assert m["class_accuracy"] == pytest.approx(0.75)  # 360 m/s is D, its truth 400 is C
    const = summary_metrics(true, np.full(4, 521.0))
    assert const["pearson_r_ln"] == 0.0 and const["pred_std_ln"] == 0.0
    assert list(nehrp_class([100, 180, 200, 360.5, 761, 1501])) == list("EEDCBA")


def test_station_aggregation_median_of_ln():
    recs = pd.DataFrame(
        {
            "station": ["A"] * 3 + ["B"],
            "vs30_mps": [300.0] * 3 + [900.0],
            "ln_pred": np.log([250.0, 300.0, 400.0, 1000.0]),
            "sigma_ln": [0.2, 0.3, 0.4, 0.4],
        }
    )
    st = station_predictions(recs).set_index("station")
    assert np.exp(st.loc["A", "ln_pred"]) == pytest.approx(300.0)
    assert st.loc["A", "n_records"] == 3
    # records of one station share their error: σ is their mean, it does not shrink as 1/√n
    assert st.loc["A", "sigma_ln"] == pytest.approx(0.3)
    assert st.loc["B", "sigma_ln"] == pytest.approx(0.4)


def test_trend_slope_detects_dependence():
    x = np.linspace(4, 7, 50)
    assert trend_slope(0.2 * x, x)["slope"] == pytest.approx(0.2)
    flat = trend_slope(np.zeros(50), x)
    assert flat["slope"] == pytest.approx(0.0)
