"""Transfer-learning experiments: ``deepvs30 experiment NAME``, the dvc.yaml stage ``exp_NAME``.

- ``transfer_curve``: target-only training vs pre-training on a source region + fine-tuning, as
  the labelled target stations shrink (10, 25, 50, 100 % via ``train_station_fraction``). Source
  and target are two synthetic corpora with different seeds and physics (Q, stress drop, kappa
  scatter, cluster site conditions): "another region".
- ``cross_cluster``: pre-train on the other regional clusters of one corpus, fine-tune on a few
  stations of the held-out cluster, test on the rest of it (plus the zero-shot source model).
- ``synth_to_real``: pre-train on the synthetic corpus; evaluate zero-shot on the real records
  of ``$DEEPVS30_REALDATA`` and fine-tune station-disjoint (k-fold over stations, out-of-fold
  predictions for every station); reports spread of predictions and correlation with truth.
- ``ps_ablation``: with and without the P/S channel, from scratch and after label-free pretext
  pre-training (S−P time, magnitude, ln distance; no P/S channel while pre-training).
- ``synth_realism``: one synthetic corpus per variant of ``experiments.realism`` (the synth
  realism options: pre-event lengths, picking errors, non-1-D site scatter), each scored
  zero-shot on every labelled real station by the two models that transfer: the ridge on the
  ln H/V curve (:func:`deepvs30.realbench.ridge_model`) and the pipeline's CNN-LSTM. A variant
  that moves the real bias or Spearman ρ towards the truth narrows the synthetic-to-real gap.

Sizes come from params.yaml's ``experiments`` section (``quick`` for --quick), everything else
from the pipeline's own sections: the default synthetic corpus size (200 stations, 140
events), its segmentation (P-centred 40 s with the P/S channel) and its CNN-LSTM, trained 12
epochs; every experiment is repeated over ``--seeds`` training seeds (initialisation, batch
order and the station subsets of ``transfer_curve``), the corpora and splits staying fixed.
Each writes ``<out>/<name>.csv`` (one row per arm and seed), ``<out>/<name>_summary.csv``
(mean and standard deviation over seeds), ``<out>/<name>.json`` (each arm's MAPE: the
stage's DVC metrics) and ``<out>/<name>.png`` (the summary, with error bars), and logs one
parent MLflow run (experiment ``deepvs30-experiments``) holding one nested run per seed,
which holds every training as a nested run (fine-tuned runs carry ``parent_model_uri``).
``--quick`` is a seconds-long smoke run. Data and prepared folders are cached under
``<out>/work/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.config import from_dict, load_params, section
from deepvs30.inference import ModelBundle
from deepvs30.metrics import summary_metrics
from deepvs30.prepare import PrepareParams, prepare
from deepvs30.segment import FeatureParams
from deepvs30.split import derive_split, station_split
from deepvs30.tracking import MlflowParams
from deepvs30.train import ModelParams, TrainParams
from deepvs30.transfer import TransferParams

log = logging.getLogger(__name__)

MLFLOW = MlflowParams(experiment="deepvs30-experiments")
# "another region": weaker Q, lower stress drop, more kappa scatter, stiffer clusters, and
# its own network (its stations are not the source corpus' stations: lineage checks names)
REGION_B = {
    "network_code": "SB",
    "q0": 110.0,
    "q_eta": 0.6,
    "stress_drop_median_bar": 40.0,
    "kappa_sigma_ln": 0.5,
    "vs0_soft_mps": 200.0,
    "vs0_stiff_mps": 520.0,
}
# synth_realism: each realism option of deepvs30.synth alone, then all of them
REALISM = {
    "baseline": {},
    "pre_event": {"pre_event_range_s": [1.0, 15.0]},
    "pick_error": {"p_pick_error_s": 0.3, "s_pick_error_s": 1.0},
    "site_scatter": {"site_scatter_sigma_ln": 0.3, "site_scatter_record_sigma_ln": 0.3},
    "all": {"pre_event_range_s": [1.0, 15.0], "p_pick_error_s": 0.3, "s_pick_error_s": 1.0,
            "site_scatter_sigma_ln": 0.3, "site_scatter_record_sigma_ln": 0.3},
}  # fmt: skip
# --quick: seconds-long smoke runs (tests)
QUICK = {
    "stations": 24,
    "events": 10,
    "epochs": 2,
    "patience": 2,
    "realism": {"baseline": {}, "site_scatter": {"site_scatter_record_sigma_ln": 0.3}},
    "realism_stations": 24,
    "realism_events": 10,
    "pretrain_epochs": 2,
    "folds": 2,
    "fractions": [0.25, 1.0],
    "seeds": 1,
    "window_s": 20.0,
    "hparams": {"conv_channels": 8, "n_conv_blocks": 3, "lstm_hidden": 16},
}


@dataclass
class ExperimentsParams:
    """The ``experiments:`` section of params.yaml; ``quick`` overrides any key for --quick.

    Segmentation, model family, learning rate, synthetic physics, preprocessing and fine-tuning
    options are the pipeline's own sections (features, model, train, synth, prepare, transfer,
    pretrain); this section holds only what the experiments change."""

    out: str = "reports/experiments"
    stations: int = 200  # each synthetic corpus of the transfer experiments
    events: int = 140
    epochs: int = 12
    batch_size: int = 32
    patience: int = 4
    pretrain_epochs: int = 8
    folds: int = 3  # synth_to_real: station k-fold over the real records
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    seeds: int = 3  # training seeds; corpora and splits fixed
    window_s: float | None = None  # null: features.window_s
    hparams: dict | None = None  # null: model.hparams
    region_b: dict = field(default_factory=lambda: dict(REGION_B))  # synth overrides
    realism: dict = field(default_factory=lambda: dict(REALISM))  # variant: synth overrides
    realism_stations: int = 100  # each synth_realism corpus (stations, events)
    realism_events: int = 80
    quick: dict = field(default_factory=lambda: dict(QUICK))

    def quick_mode(self) -> ExperimentsParams:
        values = {k: v for k, v in asdict(self).items() if k != "quick"}
        return from_dict({**values, **self.quick}, ExperimentsParams, "experiments.quick")


@dataclass(frozen=True)
class Setup:
    """Everything one experiment run reads: its sizes and the pipeline's sections."""

    out: Path
    params: dict  # params.yaml (the sections below are read from it)
    stations: int
    events: int
    features: FeatureParams
    model: ModelParams
    train: TrainParams
    fine_tune: TransferParams
    pretrain_epochs: int
    folds: int
    fractions: tuple[float, ...]
    seeds: int
    region_b: dict
    realism: dict = field(default_factory=dict)
    realism_size: tuple[int, int] = (100, 80)  # stations, events of a synth_realism corpus
    seed_index: int = 0  # which repetition runs: training seeds are train.seed + seed_index

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def runs(self) -> Path:
        return self.work / "runs" / f"seed{self.seed_index}"


def make_setup(
    out: str | Path | None = None, quick: bool = False, params: dict | None = None, **sizes: int
) -> Setup:
    """The sizes of params.yaml's ``experiments`` (or its ``quick`` block) over the pipeline's
    sections; ``sizes`` may override stations, events, epochs and seeds."""
    params = params if params is not None else load_params()
    exp = section(params, "experiments", ExperimentsParams)
    exp = exp.quick_mode() if quick else exp
    overrides = {k: v for k, v in sizes.items() if v}
    exp = replace(exp, **{k: overrides[k] for k in ("stations", "events", "epochs", "seeds")
                          if k in overrides})  # fmt: skip
    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    train = section(params, "train", TrainParams)
    return Setup(
        out=Path(out or exp.out),
        params=params,
        stations=exp.stations,
        events=exp.events,
        features=replace(features, window_s=exp.window_s or features.window_s),
        model=replace(model, hparams=exp.hparams if exp.hparams is not None else model.hparams),
        train=replace(train, epochs=exp.epochs, batch_size=exp.batch_size, patience=exp.patience),
        fine_tune=section(params, "transfer", TransferParams),
        pretrain_epochs=exp.pretrain_epochs,
        folds=exp.folds,
        fractions=tuple(exp.fractions),
        seeds=exp.seeds,
        region_b=dict(exp.region_b),
        realism=dict(exp.realism),
        realism_size=(exp.realism_stations, exp.realism_events),
    )


# --- data -----------------------------------------------------------------------------------


def synth_corpus(setup: Setup, seed: int, physics: dict | None = None) -> Path:
    """A prepared synthetic corpus (cached by its parameters)."""
    from deepvs30.synth import SynthParams
    from deepvs30.synth.generate import generate

    params = replace(
        section(setup.params, "synth", SynthParams),
        n_stations=setup.stations,
        n_events=setup.events,
        seed=seed,
        **(physics or {}),
    )
    digest = hashlib.sha1(json.dumps(physics, sort_keys=True).encode()).hexdigest()[:8]
    key = f"synth_s{setup.stations}_e{setup.events}_seed{seed}{f'_{digest}' if physics else ''}"
    data_dir, prepared_dir = setup.work / "data" / key, setup.work / "prepared" / key
    if not (data_dir / "metadata.csv").is_file():
        generate(params, data_dir)
    return _prepared(setup, data_dir, prepared_dir)


def real_corpus(setup: Setup) -> Path:
    """The labelled real records of $DEEPVS30_REALDATA, ingested and prepared (cached)."""
    from deepvs30.ingest import IngestParams, ingest_paths

    root = Path(os.environ.get("DEEPVS30_REALDATA", "../shared/realdata")).resolve()
    data_dir = setup.work / "data" / "real"
    if not (data_dir / "metadata.csv").is_file():
        params = section(setup.params, "ingest", IngestParams)  # station tables of params.yaml
        ingest_paths([root], data_dir, params=params)
    return _prepared(setup, data_dir, setup.work / "prepared" / "real")


def _prepared(setup: Setup, data_dir: Path, prepared_dir: Path) -> Path:
    if not (prepared_dir / "records.csv").is_file():
        prepare(data_dir, prepared_dir, section(setup.params, "prepare", PrepareParams))
    return prepared_dir


# --- one arm --------------------------------------------------------------------------------


@dataclass
class Arm:
    bundle: ModelBundle
    model_uri: str | None
    row: dict
    stations: pd.DataFrame  # station predictions on the evaluated part


def train_arm(
    setup: Setup,
    name: str,
    prepared_dir: Path,
    features: FeatureParams | None = None,
    train: TrainParams | None = None,
    init: Arm | None = None,
    transfer: TransferParams | None = None,
    score: bool = True,
    model: ModelParams | None = None,
) -> Arm:
    """train_and_log (a nested MLflow run) then, if ``score``, evaluate on the test part."""
    from deepvs30.train import train_and_log

    model = model or setup.model
    features = features or setup.features
    train = train or setup.train
    out_dir = setup.runs / name
    train = replace(train, out=str(out_dir), checkpoint=str(out_dir / "checkpoint.pt"),
                    seed=train.seed + setup.seed_index)  # fmt: skip
    result = train_and_log(
        prepared_dir, features, model, train, MLFLOW, str(prepared_dir), out_dir,
        init=init.bundle if init else None, init_uri=init.model_uri if init else None,
        run_name=name, nested=True, transfer=transfer if init else None,
    )  # fmt: skip
    run_info = json.loads((out_dir / "run.json").read_text())
    if score:
        arm = evaluate_arm(name, result.bundle, prepared_dir, train)
    else:
        arm = Arm(result.bundle, None, {"arm": name}, pd.DataFrame())
    arm.model_uri = run_info["model_uri"]
    arm.row.update(best_epoch=result.best_epoch, train_seconds=round(result.seconds, 1))
    return arm


def evaluate_arm(name: str, bundle: ModelBundle, prepared_dir: Path, train: TrainParams) -> Arm:
    from deepvs30.evaluate import evaluate

    result = evaluate(bundle, prepared_dir, train, "test")
    m = result["metrics"]
    row = {
        "arm": name,
        "test_stations": m["n_stations"],
        "station_mape_pct": m["station"]["mape_pct"],
        "station_pearson_r_ln": m["station"]["pearson_r_ln"],
        "pred_std_ln": m["station"]["pred_std_ln"],
        "true_std_ln": m["station"]["true_std_ln"],
        "median_baseline_mape_pct": m["baseline_median"]["mape_pct"],
    }
    return Arm(bundle, None, row, result["tables"]["station_predictions"])


def pretext_arm(setup: Setup, name: str, prepared_dir: Path) -> Arm:
    """Label-free pretext pre-training (nested MLflow run)."""
    from deepvs30.pretrain import PretrainParams, pretrain_and_log

    pretrain = section(setup.params, "pretrain", PretrainParams)
    params = replace(
        pretrain,
        seed=pretrain.seed + setup.seed_index,
        epochs=setup.pretrain_epochs,
        batch_size=setup.train.batch_size,
    )
    out_dir = setup.runs / name
    result = pretrain_and_log(
        prepared_dir, setup.features, setup.model, params, MLFLOW, out_dir, name, nested=True
    )
    run_info = json.loads((out_dir / "run.json").read_text())
    row = {"arm": name, **{k: round(v, 3) for k, v in result.val_metrics.items()}}
    return Arm(result.bundle, run_info["model_uri"], row, pd.DataFrame())


# --- the experiments -------------------------------------------------------------------------


def transfer_curve(setup: Setup) -> pd.DataFrame:
    source = synth_corpus(setup, seed=1)
    target = synth_corpus(setup, seed=2, physics=setup.region_b)
    pre = train_arm(setup, "source", source)
    rows = []
    for frac in setup.fractions:
        train = replace(setup.train, train_station_fraction=frac)
        scratch = train_arm(setup, f"target_only_{frac}", target, train=train)
        tuned = train_arm(setup, f"finetune_{frac}", target, train=train, init=pre,
                          transfer=setup.fine_tune)  # fmt: skip
        rows += [
            {**scratch.row, "method": "target only", "fraction": frac},
            {**tuned.row, "method": "pre-train + fine-tune", "fraction": frac},
        ]
    zero = evaluate_arm("source_zero_shot", pre.bundle, target, setup.train)
    rows.append({**zero.row, "method": "source only (zero-shot)", "fraction": 0.0})
    return pd.DataFrame(rows)


def cross_cluster(setup: Setup, tune_fraction: float = 0.3) -> pd.DataFrame:
    prepared_dir = synth_corpus(setup, seed=1)
    records = pd.read_csv(prepared_dir / "records.csv")
    held = int(records.loc[records["split_cluster"] == "test", "cluster"].iloc[0])
    in_held = records["cluster"] == held
    source = derive_split(
        prepared_dir, setup.work / "prepared" / "cc_source",
        lambda r: r["split"].where(r["cluster"] != held, "none").replace("test", "train"),
    )  # fmt: skip
    rng = np.random.default_rng(setup.train.seed)
    held_stations = list(rng.permutation(np.sort(records.loc[in_held, "station"].unique())))
    n_tune = max(1, round(tune_fraction * len(held_stations)))
    n_val = max(1, round(0.15 * len(held_stations)))
    parts = {
        "train": held_stations[:n_tune],
        "val": held_stations[n_tune : n_tune + n_val],
        "test": held_stations[n_tune + n_val :],
    }
    target = derive_split(
        prepared_dir, setup.work / "prepared" / "cc_target", lambda r: station_split(r, parts)
    )
    pre = train_arm(setup, "other_clusters", source, score=False)  # its test part is empty
    arms = [
        evaluate_arm("zero_shot", pre.bundle, target, setup.train),
        train_arm(setup, "held_cluster_only", target),
        train_arm(setup, "finetune", target, init=pre, transfer=setup.fine_tune),
        train_arm(setup, "finetune_freeze_cnn", target, init=pre,
                  transfer=replace(setup.fine_tune, freeze="cnn")),
    ]  # fmt: skip
    return pd.DataFrame([{**a.row, "held_cluster": held, "tune_stations": n_tune} for a in arms])


def synth_to_real(setup: Setup) -> pd.DataFrame:
    source = synth_corpus(setup, seed=1)
    real = real_corpus(setup)
    records = pd.read_csv(real / "records.csv")
    pre = train_arm(setup, "synthetic", source)
    stations = np.sort(records["station"].unique())
    folds = np.array_split(np.random.default_rng(0).permutation(stations), setup.folds)
    oof: dict[str, list[pd.DataFrame]] = {"target_only": [], "finetune": [], "zero_shot": []}
    for k, test in enumerate(folds):
        rest = [s for s in stations if s not in set(test)]
        n_val = max(2, len(rest) // 6)
        parts = {"test": list(test), "val": rest[:n_val], "train": rest[n_val:]}
        fold_dir = derive_split(
            real, setup.work / "prepared" / f"real_fold{k}", lambda r, p=parts: station_split(r, p)
        )
        train = replace(setup.train, batch_size=8)
        oof["target_only"].append(train_arm(setup, f"real_only_fold{k}", fold_dir, train=train)
                                  .stations)  # fmt: skip
        oof["finetune"].append(train_arm(setup, f"finetune_fold{k}", fold_dir, train=train,
                                         init=pre, transfer=setup.fine_tune).stations)  # fmt: skip
        oof["zero_shot"].append(evaluate_arm("zs", pre.bundle, fold_dir, train).stations)
    rows = [_oof_row(name, pd.concat(frames)) for name, frames in oof.items()]
    median = pd.concat(oof["target_only"])
    rows.append(_oof_row("median_of_train_folds", median, "median_baseline_mps"))
    return pd.DataFrame(rows)


def _oof_row(name: str, stations: pd.DataFrame, column: str = "pred_mps") -> dict:
    m = summary_metrics(stations["vs30_mps"], stations[column])
    return {
        "arm": name,
        "test_stations": m["n"],
        "station_mape_pct": m["mape_pct"],
        "station_pearson_r_ln": m["pearson_r_ln"],
        "pred_std_ln": m["pred_std_ln"],
        "true_std_ln": m["true_std_ln"],
        "bias_ln": m["bias_ln"],
    }


def ps_ablation(setup: Setup) -> pd.DataFrame:
    target = synth_corpus(setup, seed=2, physics=setup.region_b)
    pre = pretext_arm(setup, "pretext", target)
    rows = [pre.row]
    for ps in (False, True):
        features = replace(setup.features, ps_channel=ps)
        tag = "ps" if ps else "no_ps"
        scratch = train_arm(setup, f"scratch_{tag}", target, features=features)
        tuned = train_arm(setup, f"pretext_finetune_{tag}", target, features=features, init=pre,
                          transfer=setup.fine_tune)  # fmt: skip
        rows += [{**scratch.row, "ps_channel": ps}, {**tuned.row, "ps_channel": ps}]
    return pd.DataFrame(rows)


def synth_realism(setup: Setup) -> pd.DataFrame:
    """Zero-shot on the real records of corpora with and without each realism option."""
    from deepvs30.realbench import ARMS, RealParams, arm_features, predict_part, ridge_model, score

    real = derive_split(real_corpus(setup), setup.work / "prepared" / "real_all_test",
                        lambda r: pd.Series("test", index=r.index))  # fmt: skip
    stations, events = setup.realism_size
    sized = replace(setup, stations=stations, events=events)
    hv_bins = section(setup.params, "real", RealParams).hv_bins  # the real benchmark's curve
    hv_features = arm_features(ARMS["hv_curve"], setup.features, hv_bins)
    rows = []
    for variant, options in setup.realism.items():
        corpus = synth_corpus(sized, seed=1, physics=options)
        models = {
            "hv_ridge": ridge_model(corpus, hv_features),
            "cnn_lstm": train_arm(sized, f"realism_{variant}", corpus, score=False).bundle,
        }
        for model, bundle in models.items():
            m = score(predict_part(bundle, real))
            rows.append({"arm": variant, "model": model, "options": json.dumps(options),
                         "test_stations": m["n"], "station_mape_pct": m["mape_pct"],
                         "station_pearson_r_ln": m["pearson_r_ln"],
                         **{k: m[k] for k in REALISM_SCORES}})  # fmt: skip
    return pd.DataFrame(rows)


REALISM_SCORES = ("bias_ln", "std_ln", "spearman_rho", "spread_ratio", "pred_std_ln", "true_std_ln")


def pipeline_config(setup: Setup) -> tuple[Path, FeatureParams, ModelParams, TrainParams]:
    """params.yaml's prepared folder, features, model and train (--quick: 2 epochs)."""
    params = setup.params
    prepared = Path(section(params, "prepare", PrepareParams).out)
    if not (prepared / "records.csv").is_file():
        raise SystemExit(f"{prepared}: not prepared; run `make reproduce` first")
    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    train = section(params, "train", TrainParams)
    if setup.train.epochs < train.epochs and setup.train.epochs <= 2:  # --quick
        train = replace(train, epochs=setup.train.epochs)
    return prepared, features, model, train


HEADLINE_JSON = "headline.json"  # committed: the README's headline table (make headline)
HEADLINE = ("mape_pct", "bias_ln", "std_ln", "r2_ln", "pearson_r_ln", "pred_std_ln")


def headline(setup: Setup) -> pd.DataFrame:
    """The pipeline's model (params.yaml, exactly as `make reproduce` trains it) for each
    training seed, on the test split, beside the two baselines (which have no seed): the
    README's headline table is their mean and sd over seeds (``headline.json``)."""
    from deepvs30.evaluate import evaluate

    prepared, features, model, train = pipeline_config(setup)
    arm = train_arm(setup, "pipeline", prepared, features=features, train=train, model=model,
                    score=False)  # fmt: skip
    metrics = evaluate(arm.bundle, prepared, train, "test")["metrics"]
    rows = []
    for name, key in (("pipeline", "station"), ("baseline_hv", "baseline_hv"),
                      ("baseline_median", "baseline_median")):  # fmt: skip
        rows.append({"arm": name, "test_stations": metrics["n_stations"],
                     **{f"station_{m}": metrics[key].get(m) for m in HEADLINE},
                     "station_true_std_ln": metrics["station"]["true_std_ln"]})  # fmt: skip
    record = metrics["record"]
    rows[0].update(record_mape_pct=record["mape_pct"], record_coverage_68=record["coverage_68"],
                   station_coverage_68=metrics["station"]["coverage_68"],
                   class_accuracy=metrics["station"]["class_accuracy"],
                   best_epoch=arm.row["best_epoch"])  # fmt: skip
    return pd.DataFrame(rows)


def headline_json(table: pd.DataFrame, path: Path, params: dict) -> dict:
    """Mean and sd over seeds of every score of every arm, with the data version."""
    from deepvs30.config import data_path
    from deepvs30.tracking import data_version

    scores = [c for c in table.columns if c.startswith(("station_", "record_", "class_"))]
    out: dict = {
        "command": "make headline",
        "data_version": data_version(data_path(params)),
        "seeds": sorted(int(s) for s in table["seed"].unique()),
        "test_stations": int(table["test_stations"].iloc[0]),
    }
    for arm, rows in table.groupby("arm", sort=False):
        values = rows[scores].dropna(axis=1, how="all")
        out[arm] = {c: {"mean": round(float(values[c].mean()), 4),
                        "sd": round(float(values[c].std(ddof=1)), 4) if len(values) > 1 else 0.0}
                    for c in values.columns}  # fmt: skip
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


HEADLINE_ROWS = (("pipeline", "CNN-LSTM (params.yaml)"), ("baseline_hv", "H/V regression baseline"),
                 ("baseline_median", "training median baseline"))  # fmt: skip
HEADLINE_COLUMNS = (("mape_pct", "MAPE %", 1), ("bias_ln", "bias ln", 3), ("std_ln", "std ln", 3),
                    ("r2_ln", "R² ln", 2), ("pearson_r_ln", "r (ln)", 2),
                    ("pred_std_ln", "spread of predictions (ln sd)", 2))  # fmt: skip


def headline_table(summary: dict) -> str:
    """The README's headline table from ``headline.json`` (mean ± sd over training seeds;
    the baselines have no seed)."""
    n_seeds = len(summary["seeds"])
    head = [f"station level, {summary['test_stations']} test stations",
            *(label for _, label, _ in HEADLINE_COLUMNS)]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, label in HEADLINE_ROWS:
        cells = [f"{label}, {n_seeds} seeds" if arm == "pipeline" else label]
        for key, _, digits in HEADLINE_COLUMNS:
            value = summary[arm][f"station_{key}"]
            rounded = round(value["mean"], digits) or 0.0  # no "−0.00"
            mean = f"{rounded:.{digits}f}".replace("-", "−")
            cells.append(f"{mean} ± {value['sd']:.{digits}f}" if arm == "pipeline" else mean)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rivals(setup: Setup) -> pd.DataFrame:
    """The pipeline's own configuration (params.yaml, its prepared/ folder, split, seeds and
    epochs) beside the single-architecture rivals and without the P/S channel. Run
    `make reproduce` first; --quick shortens training to 2 epochs."""
    prepared, features, model, train = pipeline_config(setup)
    arms = [(model.name, features, model), ("no_ps_channel", replace(features, ps_channel=False),
                                            model)]  # fmt: skip
    arms += [(name, features, ModelParams(name)) for name in ("cnn", "lstm", "transformer")
             if name != model.name]  # fmt: skip
    rows = []
    for name, feats, mdl in arms:
        arm = train_arm(setup, name, prepared, features=feats, train=train, model=mdl)
        rows.append({**arm.row, "model": mdl.name, "ps_channel": feats.ps_channel})
    return pd.DataFrame(rows)


EXPERIMENTS: dict[str, Callable[[Setup], pd.DataFrame]] = {
    "headline": headline,
    "rivals": rivals,
    "transfer_curve": transfer_curve,
    "cross_cluster": cross_cluster,
    "synth_to_real": synth_to_real,
    "ps_ablation": ps_ablation,
    "synth_realism": synth_realism,
}


# --- plots and the runner ---------------------------------------------------------------------


SCORES = (
    "station_mape_pct",
    "station_pearson_r_ln",
    "pred_std_ln",
    "true_std_ln",
    "bias_ln",
    "spearman_rho",
    "spread_ratio",
)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: mean and standard deviation over seeds of the station scores (the
    arm's descriptive columns, e.g. method and fraction, kept)."""
    keys = [c for c in ("arm", "method", "fraction", "ps_channel", "model") if c in table]
    scored = table.dropna(subset=["station_mape_pct"])
    grouped = scored.groupby(keys, sort=False, dropna=False)
    summary = grouped.agg(
        seeds=("seed", "nunique"),
        **{f"{c}_mean": (c, "mean") for c in SCORES if c in scored},
        station_mape_pct_sd=("station_mape_pct", "std"),
    )
    if "median_baseline_mape_pct" in scored:
        summary["median_baseline_mape_pct"] = grouped["median_baseline_mape_pct"].mean()
    return summary.reset_index().round(3)


def run_experiment(
    name: str,
    out: str | Path | None = None,
    quick: bool = False,
    params: dict | None = None,
    **sizes: int,
) -> pd.DataFrame:
    """Run one experiment (each seed a nested MLflow run under one parent); returns the table
    of every arm and seed. The summary over seeds, its plot and ``<name>.json`` (the DVC
    metrics: mean and sd of each arm's station MAPE) are written beside it."""
    import mlflow

    from deepvs30 import plots, tracking

    setup = make_setup(out, quick, params, **sizes)
    shutil.rmtree(setup.work / "runs", ignore_errors=True)
    setup.out.mkdir(parents=True, exist_ok=True)
    mlflow_params = section(setup.params, "mlflow", MlflowParams)
    tracking.configure(replace(mlflow_params, experiment=MLFLOW.experiment))
    t0 = time.perf_counter()
    with tracking.start_run(run_name=f"exp-{name}{'-quick' if quick else ''}"):
        mlflow.set_tags({"experiment": name, "quick": str(quick),
                         "git_commit": tracking.git_commit()})  # fmt: skip
        logged = {"stations": setup.stations, "events": setup.events, "seeds": setup.seeds,
                  "epochs": setup.train.epochs, "window_s": setup.features.window_s}  # fmt: skip
        mlflow.log_params({**logged, **{f"model.{k}": v for k, v in setup.model.hparams.items()}})
        tables = []
        for index in range(setup.seeds):
            seeded = replace(setup, seed_index=index)
            with tracking.start_run(run_name=f"seed{index}", nested=True):
                part = EXPERIMENTS[name](seeded)
            tables.append(part.assign(seed=setup.train.seed + index))
            log.info("%s: seed %d of %d done", name, index + 1, setup.seeds)
        table = pd.concat(tables, ignore_index=True)
        table["seconds_total"] = round(time.perf_counter() - t0, 1)
        csv = setup.out / f"{name}{'_quick' if quick else ''}.csv"
        table.to_csv(csv, index=False)
        summary = summarise(table)
        summary_csv = csv.with_name(csv.stem + "_summary.csv")
        summary.to_csv(summary_csv, index=False)
        metrics = summary_metrics_json(summary, csv.with_suffix(".json"))
        png = plots.experiment_summary(name, summary, csv.with_suffix(".png"))
        for label, scores in metrics["arms"].items():
            mlflow.log_metric(f"mape.{label}", scores["station_mape_pct"])
            if scores["station_mape_pct_sd"] is not None:  # undefined for one seed
                mlflow.log_metric(f"mape_sd.{label}", scores["station_mape_pct_sd"])
        for path in (csv, summary_csv, csv.with_suffix(".json"), png):
            mlflow.log_artifact(str(path))
        if name == "headline" and not quick:
            headline_json(table, Path(HEADLINE_JSON), setup.params)
            mlflow.log_artifact(HEADLINE_JSON)
    return table


def summary_metrics_json(summary: pd.DataFrame, path: Path) -> dict:
    """Each arm's station MAPE (mean, sd over seeds) and r: what `dvc exp show` compares."""
    arms = {}
    for _, row in summary.iterrows():
        sd = row["station_mape_pct_sd"]
        arms[str(row["arm"])] = {
            "station_mape_pct": float(row["station_mape_pct_mean"]),
            "station_mape_pct_sd": None if pd.isna(sd) else float(sd),
            "station_pearson_r_ln": float(row["station_pearson_r_ln_mean"]),
            "seeds": int(row["seeds"]),
        }
    out = {"arms": arms}
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", choices=sorted(EXPERIMENTS))
    parser.add_argument("--out", help="output folder (default: experiments.out of params.yaml)")
    parser.add_argument("--quick", action="store_true", help="experiments.quick sizes (tests)")
    for size in ("stations", "events", "epochs", "seeds"):
        parser.add_argument(f"--{size}", type=int, help=f"override experiments.{size}")


def run(args: argparse.Namespace, params: dict) -> int:
    sizes = {k: getattr(args, k) for k in ("stations", "events", "epochs", "seeds")}
    table = run_experiment(args.name, args.out, args.quick, params, **sizes)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
        print(summarise(table).to_string(index=False))
    if args.name == "headline" and not args.quick:
        print(f"\n{HEADLINE_JSON} (the README's headline table):\n")
        print(headline_table(json.loads(Path(HEADLINE_JSON).read_text())))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m deepvs30.experiments NAME`` = ``deepvs30 experiment NAME``."""
    from deepvs30.cli import main as cli_main

    return cli_main(["experiment", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
