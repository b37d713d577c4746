"""The real benchmark: folds that never share a station, the leave-one-event-out rule, the
scores it reports, and an end-to-end run of its arms on a tiny dataset."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from deepvs30.errors import ConfigError
from deepvs30.realbench import (
    RealParams,
    build_folds,
    region_of,
    score,
    sigma_scale,
    station_frame,
    stratified_station_folds,
)

REGIONS = {"japan": [24.0, 46.0, 122.0, 154.0], "turkiye": [35.5, 42.5, 25.5, 45.0]}


def toy_records(n_stations: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records of stations in two regions; event e0 is recorded by every other station."""
    rng = np.random.default_rng(seed)
    rows = []
    coords = {}
    for k in range(n_stations):
        station = f"XX.S{k:02d}"
        vs30 = float(np.exp(rng.uniform(np.log(150), np.log(1500))))
        coords[station] = (36.0, 140.0) if k % 2 else (39.0, 35.0)
        events = ["e0", "e1"] if k % 2 else ["e1", "e2"]
        for event in events:
            rows.append({"record_id": f"{station}.{event}", "station": station,
                         "vs30_mps": vs30, "source_id": event})  # fmt: skip
    records = pd.DataFrame(rows)
    coords_frame = pd.DataFrame(coords, index=["lat_deg", "lon_deg"]).T
    return records, station_frame(records, coords_frame, REGIONS)


def params(**kw) -> RealParams:
    return replace(RealParams(regions=REGIONS, min_region_stations=5, min_event_stations=5), **kw)


def test_region_boxes_and_other() -> None:
    assert region_of(35.7, 139.7, REGIONS) == "japan"
    assert region_of(37.0, 37.2, REGIONS) == "turkiye"
    assert region_of(42.0, 12.5, REGIONS) == "other"
    assert region_of(float("nan"), 10.0, REGIONS) == "other"


def test_stratified_folds_test_every_station_once_and_span_the_vs30_range() -> None:
    _, stations = toy_records(50)
    fold = stratified_station_folds(stations, 5, seed=1)
    assert sorted(fold.value_counts()) == [10] * 5
    ln_vs30 = np.log(stations["vs30_mps"])
    for k in range(5):  # every fold spans most of the range (blocks of 5 sorted stations)
        part = ln_vs30[fold == k]
        assert part.min() < ln_vs30.quantile(0.15) and part.max() > ln_vs30.quantile(0.85)


@pytest.mark.parametrize("scheme", ["station_kfold", "region", "event"])
def test_folds_never_share_a_station(scheme: str) -> None:
    records, stations = toy_records()
    folds = build_folds(records, stations, scheme, params())
    assert folds
    for fold in folds:
        parts = {p: set(records.loc[fold.split == p, "station"]) for p in ("train", "val", "test")}
        assert parts["test"] and parts["train"] and parts["val"]
        assert not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])
        assert not (parts["train"] & parts["val"])


def test_station_kfold_tests_each_station_exactly_once() -> None:
    records, stations = toy_records()
    folds = build_folds(records, stations, "station_kfold", params(folds=4))
    tested = pd.concat([records.loc[f.split == "test", "station"] for f in folds])
    assert tested.groupby(tested).size().index.size == len(stations)
    per_station_folds = {
        s: sum(s in set(records.loc[f.split == "test", "station"]) for f in folds)
        for s in stations["station"]
    }
    assert set(per_station_folds.values()) == {1}


def test_leave_one_event_out_keeps_the_event_stations_out_of_training() -> None:
    records, stations = toy_records()
    folds = {f.name: f for f in build_folds(records, stations, "event", params())}
    assert set(folds) == {"e0", "e2"}  # e1: every station recorded it, none left to train
    e0 = folds["e0"]
    at_e0 = set(records.loc[records["source_id"] == "e0", "station"])
    # the e0 stations' e1 records are neither trained on nor tested
    assert set(records.loc[e0.split.isin(["train", "val"]), "station"]).isdisjoint(at_e0)
    assert set(records.loc[e0.split == "test", "source_id"]) == {"e0"}
    assert (e0.split[(records["source_id"] == "e1") & records["station"].isin(at_e0)]
            == "none").all()  # fmt: skip


def test_region_scheme_holds_out_whole_regions() -> None:
    records, stations = toy_records()
    folds = build_folds(records, stations, "region", params())
    assert [f.name for f in folds] == ["japan", "turkiye"]
    region = records["station"].map(dict(zip(stations["station"], stations["region"], strict=True)))
    for fold in folds:
        assert set(region[fold.split == "test"]) == {fold.name}
        assert fold.name not in set(region[fold.split == "train"])


def test_unknown_arm_or_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown arm"):
        RealParams(arms=["median", "oracle"])
    with pytest.raises(ConfigError, match="not in real.arms"):
        RealParams(arms=["median"], schemes={"event": ["hv_curve"]})


def test_score_flags_a_constant_and_reads_a_good_predictor() -> None:
    rng = np.random.default_rng(0)
    true = np.exp(rng.uniform(np.log(200), np.log(900), 200))
    constant = score(pd.DataFrame({"vs30_mps": true, "ln_pred": np.log(np.full(200, 450.0))}))
    assert constant["spread_ratio"] == pytest.approx(0, abs=1e-9)
    assert constant["spearman_rho"] == 0
    noisy = np.log(true) + rng.normal(0, 0.1, 200)
    good = score(pd.DataFrame({"vs30_mps": true, "ln_pred": noisy, "sigma_ln": 0.1}))
    assert good["spearman_rho"] > 0.9 and 0.9 < good["spread_ratio"] < 1.2
    assert good["coverage_68"] == pytest.approx(0.68, abs=0.08)


def test_sigma_scale_calibrates_the_interval_to_68_percent() -> None:
    rng = np.random.default_rng(1)
    true = np.exp(rng.uniform(5, 7, 2000))
    frame = pd.DataFrame({"vs30_mps": true, "ln_pred": np.log(true) + rng.normal(0, 0.3, 2000),
                          "sigma_ln": 0.1})  # fmt: skip
    assert sigma_scale(frame) == pytest.approx(3.0, rel=0.08)  # 0.3 / 0.1
    scaled = frame.assign(sigma_ln=frame["sigma_ln"] * sigma_scale(frame))
    assert score(scaled)["coverage_68"] == pytest.approx(0.6827, abs=0.01)


@pytest.mark.slow
def test_benchmark_end_to_end_on_a_tiny_dataset(tiny_dataset, tmp_path) -> None:
    """Baselines and the H/V arm on station folds of the tiny dataset: every station scored
    out of fold, the H/V arm beats the median there (its physics is a resonance), outputs
    written."""
    from deepvs30.prepare import PrepareParams, prepare
    from deepvs30.realbench import benchmark, write_outputs
    from deepvs30.segment import FeatureParams
    from deepvs30.train import ModelParams

    prepared = tmp_path / "prepared"
    prepare(tiny_dataset, prepared, PrepareParams())
    real = RealParams(data=str(tiny_dataset), prepared=str(prepared), out=str(tmp_path / "out"),
                      folds=3, seeds=1, arms=["median", "hv_f0", "hv_curve"], hv_epochs=60,
                      regions={"tiny": [30.0, 50.0, 20.0, 40.0]}, min_region_stations=100,
                      schemes={"event": ["median"]}, min_event_stations=10)  # fmt: skip
    result = benchmark(real, FeatureParams(), ModelParams())
    kfold = result["oof"]["station_kfold"]
    assert set(kfold.groupby("arm")["station"].nunique()) == {24}
    metrics = write_outputs(result, real)
    summary = {r["arm"]: r for r in metrics["summary"] if r["scheme"] == "station_kfold"}
    assert summary["hv_curve"]["mape_pct_mean"] < summary["median"]["mape_pct_mean"]
    assert summary["hv_curve"]["spearman_rho_mean"] > 0.25  # the median: 0
    assert "event" not in result["oof"]  # every station recorded every event: nothing to train
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["best_arm"] == "hv_curve" and written["n_stations"] == 24
    assert (tmp_path / "out" / "real_pred_vs_true.png").stat().st_size > 10_000


def test_real_model_figures_are_the_arms_out_of_fold_means_in_register_shape() -> None:
    """register tags test.station.* and promote compares them: the real model's tags must be
    its arm's station_kfold means, the baselines beside them."""
    from deepvs30.realmodel import benchmark_figures

    summary = [
        {"scheme": "station_kfold", "arm": "hv_curve", "mape_pct_mean": 30.5,
         "std_ln_mean": 0.38, "pearson_r_ln_mean": 0.6},
        {"scheme": "station_kfold", "arm": "median", "mape_pct_mean": 40.6,
         "std_ln_mean": 0.48, "pearson_r_ln_mean": 0.0},
        {"scheme": "event", "arm": "hv_curve", "mape_pct_mean": 99.0,
         "std_ln_mean": 9.9, "pearson_r_ln_mean": 0.1},
    ]  # fmt: skip
    figures = benchmark_figures({"summary": summary}, "hv_curve")
    assert figures["station"] == {"mape_pct": 30.5, "std_ln": 0.38, "pearson_r_ln": 0.6}
    assert figures["baseline_median"]["mape_pct"] == 40.6
    assert figures["baseline_hv"] == {}  # not run: no number invented


def test_pretext_arm_pretrains_on_each_folds_training_stations_only(tiny_dataset, tmp_path):
    """pretext_finetune: one label-free pretext model per fold and seed, trained on that fold's
    train stations and stopped on its val stations (never a test station), validated against
    the mean predictor, then fine-tuned; every station is still scored out of fold."""
    from deepvs30.prepare import PrepareParams, load_prepared, prepare
    from deepvs30.realbench import Context, arm_model, benchmark, write_outputs
    from deepvs30.segment import FeatureParams
    from deepvs30.train import ModelParams

    prepared = tmp_path / "prepared"
    prepare(tiny_dataset, prepared, PrepareParams())
    real = RealParams(data=str(tiny_dataset), prepared=str(prepared), out=str(tmp_path / "out"),
                      folds=3, seeds=1, arms=["median", "pretext_finetune"], epochs=2, patience=2,
                      regions={"tiny": [30.0, 50.0, 20.0, 40.0]}, min_region_stations=100,
                      schemes={}, min_event_stations=100)  # fmt: skip
    features = FeatureParams(window_s=10.0)
    model = ModelParams("cnn_lstm", {"conv_channels": 4, "n_conv_blocks": 2, "lstm_hidden": 4,
                                     "head_hidden": 8})  # fmt: skip
    result = benchmark(real, features, model)
    assert set(result["oof"]["station_kfold"].groupby("arm")["station"].nunique()) == {24}
    pretext = result["pretext"]
    assert len(pretext) == 3 and set(pretext["seed"]) == {real.split_seed}
    assert {"val_sp_time_mae", "val_sp_time_mae_mean_predictor"} <= set(pretext.columns)
    write_outputs(result, real)
    assert len(pd.read_csv(tmp_path / "out" / "pretext.csv")) == 3

    # the pretext model of a fold lists only that fold's train/val stations
    fold_dir = next((tmp_path / "out" / "work" / "folds").iterdir())
    _, records, _ = load_prepared(fold_dir)
    ctx = Context(real, prepared, tmp_path / "work2", features, model)
    bundle = arm_model(ctx, "pretext_finetune", fold_dir, 0)
    pre = ctx.fitted[(str(fold_dir), "pretext", 0)]
    test_stations = set(records.loc[records["split"] == "test", "station"])
    for b in (pre, bundle):
        seen = set(b.provenance["train_stations"]) | set(b.provenance["val_stations"])
        assert seen and not seen & test_stations
