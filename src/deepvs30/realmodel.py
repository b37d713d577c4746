"""``deepvs30 real-model``: the real-world model a user can take.

Trains the real benchmark's best arm (``reports/real/metrics.json``: lowest out-of-fold
station MAPE on the station-disjoint folds) on every labelled real station (its source model,
for a fine-tuned arm, the synthetic one), with a seeded ``real.val_fraction`` of the stations
held for early stopping. Its predicted sigma is scaled by the arm's out-of-fold calibration
factor, so that the 16–84% interval covers 68% of stations on the benchmark folds. The model
is registered as ``real_model.registered_model`` (``deepvs30-real``) with the benchmark's
figures as its metrics tags, and the promotion rule of ``deepvs30 promote`` (registered
metrics) decides whether it becomes ``champion``:

    deepvs30 predict --model models:/deepvs30-real@champion PATHS
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from deepvs30.config import section
from deepvs30.errors import DeepVs30Error
from deepvs30.prepare import load_prepared
from deepvs30.realbench import (
    ARMS,
    Context,
    RealParams,
    arm_features,
    arm_model,
    load_source,
    ridge_model,
    targets_met_by_arm,
    train_params,
    with_val,
)
from deepvs30.segment import FeatureParams
from deepvs30.split import derive_split
from deepvs30.tracking import MlflowParams
from deepvs30.train import ModelParams, TrainResult


@dataclass(frozen=True)
class RealModelParams:
    """The ``real_model:`` section of params.yaml."""

    registered_model: str = "deepvs30-real"
    out: str = "models/real"
    arm: str = "best"  # an arm of real.arms, or "best" (from the benchmark's metrics.json)


def all_stations_fold(prepared_dir: Path, out_dir: Path, params: RealParams) -> Path:
    """A prepared folder of every labelled real record: train, and val for early stopping."""
    _, records, _ = load_prepared(prepared_dir)
    split = pd.Series("train", index=records.index).where(records["vs30_mps"].notna(), "none")
    split = with_val(split, records, params.val_fraction, params.split_seed)
    return derive_split(prepared_dir, out_dir, lambda r: split.reindex(r.index))


def benchmark_figures(metrics: dict, arm: str) -> dict:
    """The arm's out-of-fold station metrics (station_kfold, mean over seeds), shaped like
    evaluate's metrics.json so that ``register`` tags them and ``promote`` compares them."""
    rows = [r for r in metrics["summary"] if r["scheme"] == "station_kfold"]
    by_arm = {r["arm"]: r for r in rows}

    def station(name: str) -> dict:
        r = by_arm.get(name, {})
        values = {k: r.get(f"{k}_mean") for k in ("mape_pct", "std_ln", "pearson_r_ln")}
        return {k: v for k, v in values.items() if v is not None}  # an arm not run: no tag

    return {
        "split": "station_kfold out-of-fold",
        "split_column": "real-benchmark",
        "station": station(arm),
        "baseline_median": station("median"),
        "baseline_hv": station("hv_f0"),
    }


def train_real_model(params: dict) -> dict:
    from mlflow import MlflowClient

    from deepvs30 import promote as promotion
    from deepvs30.model_card import real_use
    from deepvs30.register import register_model
    from deepvs30.train import train_and_log

    real = section(params, "real", RealParams)
    cfg = section(params, "real_model", RealModelParams)
    features = section(params, "features", FeatureParams)
    base_model = section(params, "model", ModelParams)
    metrics_file = Path(real.out) / "metrics.json"
    if not metrics_file.is_file():
        raise DeepVs30Error(f"{metrics_file}: missing; run the real benchmark first")
    bench = json.loads(metrics_file.read_text())
    arm = bench["best_arm"] if cfg.arm == "best" else cfg.arm
    spec = ARMS[arm]
    if spec.kind == "baseline":
        raise DeepVs30Error(f"real_model.arm: {arm!r} is a baseline, not a model")
    out_dir = Path(cfg.out)
    fold_dir = all_stations_fold(Path(real.prepared), out_dir.parent / "real_all_stations", real)
    ctx = Context(real, Path(real.prepared), out_dir, features, base_model)
    init = load_source(spec.init, real, features) if spec.init else None
    if spec.kind == "zero_shot":
        raise DeepVs30Error(f"real_model.arm: {arm!r} trains nothing (use the source model)")
    train = train_params(ctx, spec, real.split_seed, out_dir)
    model = ModelParams(spec.model or base_model.name, spec.hparams or dict(base_model.hparams))
    mlflow_params = replace(section(params, "mlflow", MlflowParams), experiment=real.experiment,
                            registered_model=cfg.registered_model)  # fmt: skip
    sigma_scale = calibration(bench, arm)
    arm_feats = arm_features(spec, features, real.hv_bins)
    fitter = None
    if spec.kind == "ridge":
        fitter = lambda: TrainResult(ridge_model(fold_dir, arm_feats), [], 0, {},  # noqa: E731
                                     pd.DataFrame(), 0.0)  # fmt: skip
    if spec.kind == "ensemble":  # its members' fits go beside the model folder too
        members_ctx = replace(ctx, work=out_dir.parent / "real_members")
        fitter = lambda: TrainResult(  # noqa: E731
            arm_model(members_ctx, arm, fold_dir, real.split_seed), [], 0, {}, pd.DataFrame(), 0.0
        )
    fallback = None
    if spec.fallback:  # its fits go beside the model folder, not into it (logged as is)
        fallback_ctx = replace(ctx, work=out_dir.parent / "real_fallback")
        fallback = fallback_model(fallback_ctx, spec.fallback, fold_dir, bench)
    result = train_and_log(
        fold_dir, arm_feats, model, train, mlflow_params, real.data, out_dir, init=init,
        run_name=f"real-model:{arm}", transfer=spec.transfer,
        sigma_scale=sigma_scale, fitter=fitter, fallback=fallback,
    )  # fmt: skip
    figures = out_dir / "benchmark_metrics.json"
    met = targets_met(Path(real.out))
    chosen_on = {**benchmark_figures(bench, arm), "targets_met": met.get(arm)}
    figures.write_text(json.dumps(chosen_on, indent=1))
    use = real_use(arm, chosen_on, arm == bench.get("best_arm"), sigma_scale)
    info = register_model(out_dir, figures, mlflow_params,
                          extra_tags={"arm": arm, "intended_use": "real records",
                                      "trained_on": "every labelled real station"},
                          intended_use=use)  # fmt: skip
    client = MlflowClient()
    backfill_champion_targets(client, cfg.registered_model, info, met)
    rule = section(params, "promote", promotion.PromoteParams)
    why = "the real model is scored on the benchmark folds"
    rule = replace(rule, reevaluate=False)
    decision = promotion.promote(client, cfg.registered_model, rule, None, why)
    return {**info, "arm": arm, "best_epoch": result.best_epoch, "sigma_scale": sigma_scale,
            "fallback_arm": spec.fallback or None,
            "promotion": decision.action, "reason": decision.reason}  # fmt: skip


def targets_met(out_dir: Path) -> dict[str, int]:
    """Targets met per trained arm, from the benchmark's summary.csv and breakdown.csv."""
    summary, breakdown = out_dir / "summary.csv", out_dir / "breakdown.csv"
    if not (summary.is_file() and breakdown.is_file()):
        return {}
    summary, breakdown = pd.read_csv(summary), pd.read_csv(breakdown)
    arms = [a for a in summary["arm"].unique() if a in ARMS and ARMS[a].kind != "baseline"]
    return targets_met_by_arm(summary, breakdown, arms)


def backfill_champion_targets(client, name: str, new: dict, met: dict[str, int]) -> str | None:
    """A champion registered before versions carried the targets tag gets it from this
    benchmark, when that measured its arm on the same data and folds as the new version; so
    promotion compares targets met, then MAPE. Returns the tag set, or None."""
    from deepvs30.promote import version_by_alias
    from deepvs30.register import CHAMPION, TARGETS_TAG

    champion = version_by_alias(client, name, CHAMPION)
    if champion is None or TARGETS_TAG in champion.tags or int(champion.version) == new["version"]:
        return None
    same = all(champion.tags.get(k) == new["tags"].get(k) for k in ("data_version", "split"))
    arm = champion.tags.get("arm")
    if not same or arm not in met:
        return None
    client.set_model_version_tag(name, champion.version, TARGETS_TAG, str(met[arm]))
    source = f"real benchmark of v{new['version']} (same data and folds)"
    client.set_model_version_tag(name, champion.version, "targets_met_from", source)
    return str(met[arm])


def fallback_model(ctx: Context, arm: str, fold_dir: Path, bench: dict):
    """The arm that answers the records the chosen one cannot read (e.g. miniSEED without
    event information for a model reading magnitude and distance), trained on the same
    stations and calibrated by its own out-of-fold factor; stored inside the real model."""
    bundle = arm_model(ctx, arm, fold_dir, ctx.params.split_seed)
    bundle.normaliser.sigma_scale = calibration(bench, arm)
    return bundle


def calibration(bench: dict, arm: str) -> float:
    """The arm's out-of-fold sigma factor from the benchmark's metrics (1 where it has none
    or it is NaN: not calibrated)."""
    scale = (bench.get("sigma_scale") or {}).get(arm) or 1.0
    return float(scale) if scale == scale else 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="the registration summary (default: <real_model.out>.json)")


def run(args: argparse.Namespace, params: dict) -> int:
    info = train_real_model(params)
    cfg = section(params, "real_model", RealModelParams)
    out = Path(args.out or f"{cfg.out}.json")
    out.write_text(json.dumps(info, indent=1, default=str))
    print(f"{info['name']} v{info['version']} ({info['arm']}): {info['promotion']}: "
          f"{info['reason']}")  # fmt: skip
    return 0
