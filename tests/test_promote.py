"""Champion/challenger promotion: the rule with numbers, and decisions in a real registry.

Two tiny registered models: ``good`` (trained two epochs) and ``bad`` (the same network with
every prediction 2.5x too high: same spread, far worse MAPE). Each test builds its own
registered-model history in one throwaway SQLite store and runs ``deepvs30 promote``.
"""

from __future__ import annotations

import json

import pytest

from deepvs30.cli import main
from deepvs30.promote import PromoteParams, Scores, decide
from model_fixture import BIAS_LN, TinyModels

PARAMS = PromoteParams(margin_pct=1.0, max_std_ln_increase=0.0)


def scores(version: int, mape: float, std: float) -> Scores:
    return Scores(version, mape, std, 30, "dvc:abc")


# --- the rule -----------------------------------------------------------------------------


def test_better_by_margin_and_no_wider_is_promoted() -> None:
    ok, reason = decide(scores(2, 30.0, 0.40), scores(1, 35.0, 0.40), PARAMS)
    assert ok
    assert "station MAPE 30.00% vs 35.00% (gain +5.00 points" in reason


def test_better_but_inside_margin_is_not() -> None:
    ok, reason = decide(scores(2, 34.5, 0.40), scores(1, 35.0, 0.40), PARAMS)
    assert not ok
    assert reason.startswith("MAPE not better by the margin")
    assert "gain +0.50 points, margin 1.00" in reason


def test_better_mape_but_wider_ln_scatter_is_not() -> None:
    ok, reason = decide(scores(2, 30.0, 0.45), scores(1, 35.0, 0.40), PARAMS)
    assert not ok
    assert reason.startswith("std ln worse")
    assert "change +0.050, max +0.000" in reason
    lenient = PromoteParams(margin_pct=1.0, max_std_ln_increase=0.1)
    assert decide(scores(2, 30.0, 0.45), scores(1, 35.0, 0.40), lenient)[0]


def test_worse_or_nan_challenger_is_not() -> None:
    assert not decide(scores(2, 40.0, 0.30), scores(1, 35.0, 0.40), PARAMS)[0]
    ok, reason = decide(scores(2, float("nan"), 0.3), scores(1, 35.0, 0.40), PARAMS)
    assert not ok and "not finite" in reason


def test_the_real_benchmarks_targets_come_before_the_mape_margin() -> None:
    """Real-model versions carry how many targets they meet: more wins inside the margin,
    fewer loses despite a large gain; without the tag on either side, the MAPE rule."""
    from dataclasses import replace

    same, meets_more = scores(2, 27.39, 0.345), scores(1, 27.43, 0.348)
    ok, reason = decide(replace(same, targets_met=7), replace(meets_more, targets_met=6), PARAMS)
    assert ok and reason.startswith("meets more of the real benchmark's targets (7 vs 6)")
    ok, reason = decide(replace(scores(2, 20.0, 0.30), targets_met=5),
                        replace(meets_more, targets_met=6), PARAMS)  # fmt: skip
    assert not ok and reason.startswith("meets fewer")
    ok, reason = decide(replace(same, targets_met=7), meets_more, PARAMS)
    assert not ok and reason.startswith("MAPE not better by the margin")
    tied = decide(replace(same, targets_met=7), replace(meets_more, targets_met=7), PARAMS)
    assert not tied[0] and tied[1].startswith("MAPE not better by the margin")


def test_a_champion_without_the_targets_tag_gets_it_from_the_same_benchmark() -> None:
    from types import SimpleNamespace

    from deepvs30.realmodel import backfill_champion_targets

    class Client:
        def __init__(self, tags):
            self.version = SimpleNamespace(version="1", tags=tags)
            self.set = {}

        def get_model_version_by_alias(self, name, alias):
            return self.version

        def set_model_version_tag(self, name, version, key, value):
            self.set[key] = value

    basis = {"data_version": "dvc:abc", "split": "real-benchmark:station_kfold out-of-fold"}
    new = {"version": 2, "tags": basis}
    client = Client({**basis, "arm": "hv_curve_mlp_gmm"})
    assert backfill_champion_targets(client, "deepvs30-real", new, {"hv_curve_mlp_gmm": 6}) == "6"
    assert client.set["test.targets_met"] == "6" and "v2" in client.set["targets_met_from"]
    other_data = Client({**basis, "data_version": "dvc:old", "arm": "hv_curve_mlp_gmm"})
    assert backfill_champion_targets(other_data, "x", new, {"hv_curve_mlp_gmm": 6}) is None
    tagged = Client({**basis, "arm": "hv_curve_mlp_gmm", "test.targets_met": "5"})
    assert backfill_champion_targets(tagged, "x", new, {"hv_curve_mlp_gmm": 6}) is None
    assert other_data.set == tagged.set == {}


# --- the registry -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def promote(models: TinyModels, name: str, *args: str, **sections) -> tuple[int, dict]:
    out = models.root / f"promotion_{name}.json"
    sections["promote"] = {"out": str(out), **sections.get("promote", {})}
    params = models.params_file(name, **sections)
    code = main(["--params", str(params), "promote", *args])
    return code, json.loads(out.read_text())


def client(models: TinyModels):
    import mlflow

    mlflow.set_tracking_uri(models.mlflow.tracking_uri)
    return mlflow.MlflowClient()


def champion(models: TinyModels, name: str) -> int:
    return int(client(models).get_model_version_by_alias(name, "champion").version)


def metrics(models: TinyModels, which: str) -> dict:
    model_dir = models.good if which == "good" else models.bad
    return json.loads((model_dir / "metrics.json").read_text())["station"]


def test_the_biased_model_is_clearly_worse(models) -> None:
    good, bad = metrics(models, "good"), metrics(models, "bad")
    assert bad["mape_pct"] > good["mape_pct"] + 20
    assert bad["bias_ln"] == pytest.approx(good["bias_ln"] + BIAS_LN, abs=1e-6)
    assert bad["std_ln"] == pytest.approx(good["std_ln"], abs=1e-6)


def test_better_challenger_is_promoted_with_the_numbers_recorded(models) -> None:
    name = "better"
    assert models.register("bad", name)["aliases"] == ["challenger", "champion"]
    models.register("good", name)
    code, decision = promote(models, name)
    assert code == 0
    assert decision["action"] == "promoted" and decision["version"] == 2
    assert champion(models, name) == 2
    good, bad = metrics(models, "good"), metrics(models, "bad")
    # re-evaluated on the same prepared test split: the numbers the evaluate stage wrote
    assert decision["challenger"]["mape_pct"] == pytest.approx(good["mape_pct"], rel=1e-9)
    assert decision["champion"]["mape_pct"] == pytest.approx(bad["mape_pct"], rel=1e-9)
    assert decision["basis"]["kind"] == "re-evaluated"

    c = client(models)
    v2 = c.get_model_version(name, "2")
    assert v2.tags["promotion.decision"] == "promoted"
    assert v2.tags["promotion.forced"] == "false"
    assert v2.tags["promotion.champion_before"] == "1"
    assert float(v2.tags["promotion.challenger.station_mape_pct"]) == pytest.approx(
        good["mape_pct"], abs=1e-4
    )
    assert float(v2.tags["promotion.champion.station_mape_pct"]) == pytest.approx(
        bad["mape_pct"], abs=1e-4
    )
    assert v2.tags["promotion.data_version"] == v2.tags["data_version"]
    assert v2.tags["promotion.split"] == "split:test"
    assert v2.tags["promotion.by"] and v2.tags["promotion.at_utc"].endswith("Z")
    assert "promoted" in v2.description and f"{good['mape_pct']:.2f}%" in v2.description
    assert c.get_model_version(name, "1").tags["promotion.replaced_by"] == "2"
    assert "replaced as champion by v2" in c.get_model_version(name, "1").description
    assert "v2: promoted" in c.get_registered_model(name).description


def test_worse_challenger_is_rejected_with_the_reason(models) -> None:
    name = "worse"
    models.register("good", name)
    models.register("bad", name)
    code, decision = promote(models, name)
    assert code == 0
    assert decision["action"] == "rejected"
    assert decision["reason"].startswith("MAPE not better by the margin")
    assert champion(models, name) == 1
    v2 = client(models).get_model_version(name, "2")
    assert v2.tags["promotion.decision"] == "rejected"
    assert "MAPE not better by the margin" in v2.tags["promotion.reason"]
    assert "rejected" in v2.description


def test_equal_models_are_not_promoted_inside_the_margin(models) -> None:
    name = "same"
    models.register("good", name)
    models.register("good", name)
    _, decision = promote(models, name)
    assert decision["action"] == "rejected"
    assert "gain +0.00 points" in decision["reason"]
    _, decision = promote(models, name, promote={"margin_pct": 0.0})
    assert decision["action"] == "promoted"


def test_force_then_rollback_are_recorded(models) -> None:
    name = "force"
    models.register("good", name)
    models.register("bad", name)
    code, decision = promote(models, name, "--force", "--note", "demo")
    assert code == 0 and decision["action"] == "forced" and decision["forced"]
    assert champion(models, name) == 2
    c = client(models)
    v2 = c.get_model_version(name, "2")
    assert v2.tags["promotion.forced"] == "true"
    assert "although the rule says no" in v2.tags["promotion.reason"]
    assert "note: demo" in v2.description

    code, decision = promote(models, name, "--to", "1")
    assert code == 0 and decision["action"] == "rollback"
    assert champion(models, name) == 1
    v1 = c.get_model_version(name, "1")
    assert v1.tags["promotion.decision"] == "rollback"
    assert v1.tags["promotion.champion_before"] == "2"
    history = c.get_registered_model(name).description.splitlines()
    assert [line.split("] ", 1)[1].split(";")[0] for line in history] == [
        f"{name} v2: forced",
        f"{name} v1: rollback",
    ]
    assert main(["--params", str(models.params_file(name)), "promote", "--to", "9"]) == 2


def test_no_champion_yet_makes_the_challenger_champion(models) -> None:
    name = "nochamp"
    models.register("good", name)
    client(models).delete_registered_model_alias(name, "champion")
    _, decision = promote(models, name)
    assert decision["action"] == "first champion"
    assert champion(models, name) == 1
    _, decision = promote(models, name)
    assert decision["action"] == "unchanged"


def test_without_prepared_data_registered_metrics_are_compared_or_refused(models) -> None:
    name = "tags"
    models.register("bad", name)
    models.register("good", name)
    elsewhere = {"out": str(models.root / "no_prepared_here")}
    _, decision = promote(models, name, prepare=elsewhere)
    assert decision["action"] == "promoted"
    assert decision["basis"]["kind"] == "registered metrics"
    assert any("no prepared data" in n for n in decision["notes"])

    models.register("bad", name)  # v3, with a different data version on record
    client(models).set_model_version_tag(name, "3", "data_version", "dvc:other")
    code, decision = promote(models, name, prepare=elsewhere)
    assert code == 1 and decision["action"] == "refused"
    assert "differ in data_version" in decision["reason"]
    assert champion(models, name) == 2
    assert client(models).get_model_version(name, "3").tags["promotion.decision"] == "refused"


def test_registered_version_description_is_its_model_card(models) -> None:
    name = "carded"
    info = models.register("good", name)
    card = client(models).get_model_version(name, str(info["version"])).description
    full = json.loads((models.good / "metrics.json").read_text())
    row = [f"{full[k]['mape_pct']:.1f}" for k in ("station", "baseline_median", "baseline_hv")]
    assert card.startswith(f"### {name} v1")
    assert f"| station MAPE (%) | {' | '.join(row)} |" in card
    assert f"| std of ln residuals | {full['station']['std_ln']:.3f} |" in card
    assert "synthetic-trained: not for real records" in card
    assert f"MLflow run `{info['run_id']}`" in card and "params hash `unknown`" not in card
    assert f"version `{info['tags']['data_version']}`" in card
    assert "training stations unknown" not in card
    # the biased copy was logged without params or a prepared folder: the card says so
    bad = models.register("bad", name)
    bad_card = client(models).get_model_version(name, str(bad["version"])).description
    assert "training stations unknown" in bad_card and "params hash `unknown`" in bad_card
