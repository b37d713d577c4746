"""evaluate stage: the model beside its baselines, on the station-disjoint test split.

Per record and per station (median of a station's ln predictions): MAPE, bias and std of
ln(pred/true), R², spread of predictions and their correlation with the truth, NEHRP class
accuracy and confusion, coverage of the 16–84% interval; broken down by NEHRP class and by
regional cluster; residual trends with magnitude and distance (shortcut-learning check).
Baselines on the same stations: the training median, and an H/V regression (ln Vs30 on the
ln peak frequency and ln peak amplitude of the S-window H/V, fitted on training stations).
Writes ``metrics.json`` (DVC metrics), tables and plots under ``evaluate.out``, and logs all of
it into the training run in MLflow.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.config import section
from deepvs30.device import resolve as resolve_device
from deepvs30.inference import ModelBundle
from deepvs30.metrics import (
    confusion,
    grouped_metrics,
    nehrp_class,
    station_predictions,
    summary_metrics,
    trend_slope,
)
from deepvs30.prepare import PrepareParams, load_prepared
from deepvs30.split import check_unseen, select_split
from deepvs30.train import TrainParams, predict_dataset
from deepvs30.windows import WindowDataset, usable_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateParams:
    out: str = "reports"
    metrics_file: str = "metrics.json"
    split: str = "test"  # the part evaluated: test (or val while developing)


# --- baselines --------------------------------------------------------------------------


def median_baseline(train_stations: pd.DataFrame) -> float:
    """Vs30 (m/s) every station gets from the training median (of stations, not records)."""
    return float(np.exp(np.median(np.log(train_stations["vs30_mps"]))))


def hv_features(records: pd.DataFrame) -> pd.DataFrame:
    """Per station: median ln f0 and ln amplitude of its records' S-window H/V peaks."""
    frame = records.assign(
        ln_f0=np.log(records["hv_f0_hz"]), ln_amp=np.log(np.maximum(records["hv_amplitude"], 1e-3))
    )
    return frame.groupby("station").agg(
        ln_f0=("ln_f0", "median"), ln_amp=("ln_amp", "median"), vs30_mps=("vs30_mps", "first")
    )


def fit_hv_baseline(train_records: pd.DataFrame) -> np.ndarray:
    """Least squares ln Vs30 = a + b ln f0 + c ln A over training stations."""
    feats = hv_features(train_records)
    design = np.column_stack([np.ones(len(feats)), feats["ln_f0"], feats["ln_amp"]])
    coef, *_ = np.linalg.lstsq(design, np.log(feats["vs30_mps"].to_numpy()), rcond=None)
    return coef


def predict_hv_baseline(coef: np.ndarray, records: pd.DataFrame) -> pd.Series:
    feats = hv_features(records)
    ln_pred = coef[0] + coef[1] * feats["ln_f0"] + coef[2] * feats["ln_amp"]
    return np.exp(ln_pred).rename("pred_mps")


# --- evaluation -------------------------------------------------------------------------


def evaluate(
    bundle: ModelBundle, prepared_dir: str | Path, train: TrainParams, part: str = "test"
) -> dict:
    """Predictions, metrics and tables of the model and its baselines on one split part."""
    bundle.to(resolve_device(train.device))
    waves, records, summary = load_prepared(prepared_dir)
    fs_hz = float(summary["fs_hz"])
    usable, skipped = usable_records(waves, records, fs_hz, bundle.features)
    parts = select_split(usable, train.split_column, train.train_station_fraction, train.seed)
    target = parts[part].reset_index(drop=True)
    # the model's own record of its training stations, not this params.yaml's split
    where = f"evaluate {bundle.model_name} on {prepared_dir} ({train.split_column}: {part})"
    check_unseen(bundle.provenance, target["station"], where, include_val=part != "val")
    ln_pred, sigma = predict_dataset(
        bundle, WindowDataset(waves, target, fs_hz, bundle.features, bundle.normaliser)
    )
    rec = target.assign(ln_pred=ln_pred, sigma_ln=sigma, pred_mps=np.exp(ln_pred))
    stations = station_predictions(rec)
    stations["pred_mps"] = np.exp(stations["ln_pred"])

    train_stations = parts["train"].groupby("station")["vs30_mps"].first().to_frame()
    median_mps = median_baseline(train_stations)
    hv_coef = fit_hv_baseline(parts["train"])
    stations["median_baseline_mps"] = median_mps
    stations["hv_baseline_mps"] = (
        predict_hv_baseline(hv_coef, rec).reindex(stations["station"]).to_numpy()
    )
    stations["true_class"] = nehrp_class(stations["vs30_mps"])
    rec["true_class"] = nehrp_class(rec["vs30_mps"])
    resid = rec["ln_pred"] - np.log(rec["vs30_mps"])

    metrics = {
        "split": part,
        "split_column": train.split_column,
        "n_stations": int(len(stations)),
        "n_records": int(len(rec)),
        "station": summary_metrics(
            stations["vs30_mps"], stations["pred_mps"], stations["sigma_ln"]
        ),
        "record": summary_metrics(rec["vs30_mps"], rec["pred_mps"], rec["sigma_ln"]),
        "baseline_median": {
            **summary_metrics(stations["vs30_mps"], stations["median_baseline_mps"]),
            "vs30_mps": median_mps,
        },
        "baseline_hv": {
            **summary_metrics(stations["vs30_mps"], stations["hv_baseline_mps"]),
            "coef_ln_f0": float(hv_coef[1]),
            "coef_ln_amp": float(hv_coef[2]),
        },
        "residual_trend": {
            "magnitude": trend_slope(resid, rec["magnitude"]),
            "ln_distance": trend_slope(resid, np.log(rec["hyp_distance_km"])),
        },
        "records_skipped_by_segmentation": int(len(skipped)),
    }
    model_mape = metrics["station"]["mape_pct"]
    metrics["beats_baselines"] = bool(
        model_mape < metrics["baseline_median"]["mape_pct"]
        and model_mape < metrics["baseline_hv"]["mape_pct"]
    )
    tables = {
        "station_predictions": stations,
        "record_predictions": rec.drop(columns=["row"], errors="ignore"),
        "by_class": grouped_metrics(stations, "true_class"),
        "by_cluster": grouped_metrics(stations, "cluster") if "cluster" in stations else None,
        "confusion": confusion(stations["vs30_mps"], stations["pred_mps"]),
        "skipped": skipped,
    }
    return {"metrics": metrics, "tables": tables}


# --- the stage --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model bundle folder (default: train.out)")
    parser.add_argument("--prepared", help="prepared folder (default: prepare.out)")
    parser.add_argument("--part", help="split part to evaluate (default: evaluate.split)")


def run(args: argparse.Namespace, params: dict) -> int:
    from deepvs30 import plots

    ev = section(params, "evaluate", EvaluateParams)
    train = section(params, "train", TrainParams)
    model_dir = Path(args.model or train.out)
    prepared_dir = args.prepared or section(params, "prepare", PrepareParams).out
    bundle = ModelBundle.load(model_dir)
    result = evaluate(bundle, prepared_dir, train, args.part or ev.split)
    out_dir = Path(ev.out)
    written = write_outputs(result, out_dir, Path(ev.metrics_file))
    written += plots.evaluation_plots(
        result["tables"], model_dir / "history.csv", out_dir / "plots"
    )
    _log_to_mlflow(params, model_dir, result["metrics"], written)
    print_summary(result["metrics"])
    return 0


def write_outputs(result: dict, out_dir: Path, metrics_file: Path) -> list[Path]:
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in result["tables"].items():
        if table is None:
            continue
        path = tables_dir / f"{name}.csv"
        table.to_csv(path, index=(name == "confusion"))
        written.append(path)
    tmp = metrics_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(result["metrics"], indent=1))
    tmp.replace(metrics_file)
    written.append(metrics_file)
    return written


def _log_to_mlflow(params: dict, model_dir: Path, metrics: dict, files: list[Path]) -> None:
    import mlflow

    from deepvs30 import tracking

    run_file = model_dir / "run.json"
    if not run_file.is_file():
        log.warning("%s missing: evaluation not logged to MLflow", run_file)
        return
    tracking.configure(section(params, "mlflow", tracking.MlflowParams))
    run_id = json.loads(run_file.read_text())["run_id"]
    flat = {
        k: float(v)
        for k, v in tracking.flatten("test", metrics).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(flat)
        mlflow.set_tag("beats_baselines", str(metrics["beats_baselines"]))
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="evaluation")


def print_summary(metrics: dict) -> None:
    rows = [
        ("model (station)", metrics["station"]),
        ("model (record)", metrics["record"]),
        ("training median", metrics["baseline_median"]),
        ("H/V regression", metrics["baseline_hv"]),
    ]
    print(
        f"{metrics['split']} split ({metrics['split_column']}): {metrics['n_stations']} "
        f"stations, {metrics['n_records']} records"
    )
    print(
        f"{'':18s} {'MAPE %':>7s} {'bias ln':>8s} {'std ln':>7s} {'R2 ln':>6s} "
        f"{'r':>5s} {'pred sd':>7s}"
    )
    for name, m in rows:
        print(
            f"{name:18s} {m['mape_pct']:7.1f} {m['bias_ln']:8.3f} {m['std_ln']:7.3f} "
            f"{m['r2_ln']:6.2f} {m['pearson_r_ln']:5.2f} {m['pred_std_ln']:7.3f}"
        )
    print(f"beats both baselines: {metrics['beats_baselines']}")
