"""The ensemble arms of the real benchmark: one bundle averaging fitted members in ln Vs30,
each member keeping its own normaliser; the same numbers through save/load and the served
model; its provenance holds every member's stations; the benchmark fits each member once per
fold and seed; and the real model's arm is chosen by the targets it meets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.errors import ConfigError, LeakageError
from deepvs30.segment import FeatureParams

HV = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=10.0, hv_bins=8,
                   hv_window_s=10.0)  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tiny_dataset, tmp_path_factory) -> Path:
    from deepvs30.prepare import PrepareParams, prepare

    out = tmp_path_factory.mktemp("ens") / "prepared"
    prepare(tiny_dataset, out, PrepareParams())
    return out


@pytest.fixture(scope="module")
def members(prepared, tmp_path_factory):
    """Two ridge H/V models on different training stations: different weights and
    normalisers, the same inputs."""
    from deepvs30.prepare import load_prepared
    from deepvs30.realbench import ridge_model
    from deepvs30.split import derive_split

    _, records, _ = load_prepared(prepared)
    train_stations = np.sort(records.loc[records["split"] == "train", "station"].unique())
    half = set(train_stations[::2])
    subset = derive_split(
        prepared, tmp_path_factory.mktemp("ens") / "half",
        lambda r: r["split"].where(~((r["split"] == "train") & ~r["station"].isin(half)), "none"),
    )  # fmt: skip
    return ridge_model(prepared, HV), ridge_model(subset, HV)


def _predict_test(bundle, prepared: Path) -> tuple[np.ndarray, np.ndarray]:
    from deepvs30.prepare import load_prepared
    from deepvs30.train import predict_dataset
    from deepvs30.windows import WindowDataset

    waves, records, summary = load_prepared(prepared)
    test = records[records["split"] == "test"].reset_index(drop=True)
    dataset = WindowDataset(waves, test, float(summary["fs_hz"]), bundle.features,
                            bundle.normaliser)  # fmt: skip
    return predict_dataset(bundle, dataset)


def test_the_ensemble_is_the_ln_mean_of_its_members_with_the_mixture_sd(members, prepared):
    from deepvs30.inference import ensemble

    a, b = members
    b = replace(b, normaliser=replace(b.normaliser, sigma_scale=2.0))  # calibration is kept
    (mu_a, sd_a), (mu_b, sd_b) = _predict_test(a, prepared), _predict_test(b, prepared)
    assert np.abs(mu_a - mu_b).max() > 1e-3  # two different models
    mu, sd = _predict_test(ensemble([a, b]), prepared)
    np.testing.assert_allclose(mu, (mu_a + mu_b) / 2, atol=1e-5)
    mixture = np.sqrt((sd_a**2 + sd_b**2) / 2 + ((mu_a - mu_b) / 2) ** 2)
    np.testing.assert_allclose(sd, mixture, rtol=1e-4)
    assert not ensemble([a, b]).reads_waveform  # hv_mlp members read the scalars only


def test_a_saved_ensemble_serves_the_same_numbers(members, tmp_path):
    """After save/load, the served model (pyfunc frame of raw records) gives the mean of what
    each member serves."""
    from deepvs30.inference import ModelBundle, ensemble
    from deepvs30.pyfunc import predict_frame
    from test_gmm_scalars import known_and_unknown_magnitude

    loaded = ModelBundle.load(ensemble(list(members)).save(tmp_path / "ens"))
    assert loaded.model_name == "ensemble"
    frame = known_and_unknown_magnitude(seed=3)
    served = predict_frame(loaded, frame)
    each = [predict_frame(m, frame)["ln_vs30"].to_numpy() for m in members]
    assert (served["skipped"] == "").all()
    np.testing.assert_allclose(served["ln_vs30"], np.mean(each, axis=0), atol=1e-5)


def test_members_that_read_different_inputs_are_refused(members, prepared):
    from deepvs30.inference import ensemble
    from deepvs30.realbench import ridge_model

    other = ridge_model(prepared, replace(HV, hv_bins=6))
    with pytest.raises(ConfigError, match="members read different inputs"):
        ensemble([members[0], other])


def test_the_ensemble_has_seen_every_members_stations(members):
    from deepvs30.inference import ensemble
    from deepvs30.split import check_unseen

    a, b = members
    only_a = sorted(set(a.provenance["train_stations"]) - set(b.provenance["train_stations"]))
    assert only_a
    check_unseen(b.provenance, only_a, "member b")  # b never saw them
    with pytest.raises(LeakageError, match=only_a[0]):
        check_unseen(ensemble([b, a]).provenance, only_a, "the ensemble")


def test_the_benchmark_fits_each_member_once_per_fold_and_seed(members, prepared, monkeypatch):
    """An ensemble arm after its members (or before them) reuses their fits: the ridge once
    per fold, the network once per fold and seed."""
    from deepvs30 import realbench
    from deepvs30.train import ModelParams

    calls = []

    def fake_fit(ctx, name, fold_dir, seed):
        calls.append((name, seed))
        return members[len(calls) % 2]

    monkeypatch.setattr(realbench, "_fit_arm", fake_fit)
    ctx = realbench.Context(realbench.RealParams(), prepared, prepared.parent / "work", HV,
                            ModelParams())  # fmt: skip
    for seed in (42, 43):
        realbench.arm_model(ctx, "hv_curve_gmm_ens", prepared, seed)
        realbench.arm_model(ctx, "hv_curve_mlp_gmm", prepared, seed)
        realbench.arm_model(ctx, "hv_curve_gmm", prepared, seed)
    assert sorted(calls) == [("hv_curve_gmm", 42), ("hv_curve_mlp_gmm", 42),
                             ("hv_curve_mlp_gmm", 43)]  # fmt: skip


def _summary_and_breakdown(rows: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """station_kfold summary and per-region breakdown of made-up arms."""
    summary = pd.DataFrame([{"scheme": "station_kfold", "arm": arm, "mape_pct_mean": r["mape"],
                             "spread_ratio_mean": 0.7} for arm, r in rows.items()])  # fmt: skip
    breakdown = []
    for arm, r in {**rows, "median": {"mape": 45.0, "rho_tr": 0.0}}.items():
        for region, rho in (("japan", 0.7), ("turkiye", r["rho_tr"])):
            breakdown.append(
                {
                    "scheme": "station_kfold",
                    "arm": arm,
                    "by": "region",
                    "group": region,
                    "mape_pct": r["mape"],
                    "std_ln": 0.5 if arm == "median" else 0.3,
                    "spearman_rho": rho,
                    "bias_ln": 0.0,
                    "spread_ratio": 0.7,
                }
            )
    return summary, pd.DataFrame(breakdown)


def test_the_real_models_arm_meets_the_most_targets_then_has_the_lowest_mape():
    from deepvs30.realbench import best_arm

    summary, breakdown = _summary_and_breakdown({
        "pooled_best": {"mape": 27.0, "rho_tr": 0.45},  # misses Türkiye's rho >= 0.5
        "every_region": {"mape": 27.5, "rho_tr": 0.55},
        "also_every_region": {"mape": 28.0, "rho_tr": 0.60},
    })  # fmt: skip
    assert best_arm(summary, breakdown, list(summary["arm"])) == "every_region"
    assert best_arm(summary, breakdown, ["pooled_best", "also_every_region"]) == (
        "also_every_region"
    )


@pytest.mark.slow
def test_the_real_model_registers_an_ensemble_arm_with_its_ensemble_fallback(
    tiny_dataset, prepared, tmp_path, monkeypatch
):
    """make real-model with an ensemble arm: one registered bundle whose members and fallback
    (itself an ensemble) load back, calibrated by the benchmark's factors, its members' fits
    kept out of the model folder."""
    import json

    import yaml

    from deepvs30.inference import ModelBundle
    from deepvs30.realmodel import train_real_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    out = tmp_path / "real"
    params["real"].update(data=str(tiny_dataset), prepared=str(prepared), out=str(out),
                          hv_epochs=20, hv_bins=8)  # fmt: skip
    params["real_model"].update(out=str(tmp_path / "models" / "real"))
    params["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            artifact_root=str(tmp_path / "mlruns"))  # fmt: skip
    out.mkdir()
    summary = [{"scheme": "station_kfold", "arm": arm, "mape_pct_mean": mape, "std_ln_mean": 0.4,
                "pearson_r_ln_mean": 0.5}
               for arm, mape in (("hv_curve_gmm_ens", 30.0), ("median", 40.0))]  # fmt: skip
    (out / "metrics.json").write_text(json.dumps({
        "best_arm": "hv_curve_gmm_ens", "summary": summary,
        "sigma_scale": {"hv_curve_gmm_ens": 1.3, "hv_curve_ens": 1.1},
    }))  # fmt: skip
    summary_csv, breakdown = _summary_and_breakdown(
        {"hv_curve_gmm_ens": {"mape": 30.0, "rho_tr": 0.55}}
    )
    summary_csv.to_csv(out / "summary.csv", index=False)
    breakdown.to_csv(out / "breakdown.csv", index=False)
    info = train_real_model(params)
    assert info["arm"] == "hv_curve_gmm_ens" and info["fallback_arm"] == "hv_curve_ens"
    assert info["tags"]["test.targets_met"] == "6"  # what promotion compares first
    model_dir = tmp_path / "models" / "real"
    bundle = ModelBundle.load(model_dir)
    assert bundle.model_name == "ensemble" and bundle.features.gmm_scalars
    assert [m["model_name"] for m in bundle.hparams["members"]] == ["hv_mlp", "hv_mlp"]
    assert bundle.normaliser.sigma_scale == pytest.approx(1.3)
    assert bundle.fallback.model_name == "ensemble" and not bundle.fallback.features.gmm_scalars
    assert bundle.fallback.normaliser.sigma_scale == pytest.approx(1.1)
    assert not (model_dir / "runs").exists()
    assert (tmp_path / "models" / "real_members" / "runs" / "hv_curve_mlp_gmm").is_dir()
