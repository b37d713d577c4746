"""``deepvs30 real-benchmark``: the station-disjoint benchmark on real records.

Reads the prepared real records (``real.prepared``: ``deepvs30 ingest $DEEPVS30_REALDATA``
then ``deepvs30 prepare``) and scores every arm of ``real.arms`` on the same folds:

- ``station_kfold``: stations in ``real.folds`` folds, stratified by Vs30 (every station is
  tested once, out of fold);
- ``region``: leave one region out (regions from station coordinates, ``real.regions``),
  for regions with at least ``real.min_region_stations`` stations;
- ``event``: leave one event out for events recorded by at least ``real.min_event_stations``
  stations: the test stations are that event's stations (scored on that event's records),
  the training stations those that did not record it.

Within each fold, ``real.val_fraction`` of the training stations is held for early
stopping. Train, validation and test never share a station, and every model is refused
(LeakageError) on test stations its own provenance lists (:func:`deepvs30.split.check_unseen`).
Baselines on the same folds: the training median and the H/V-peak regression
(ln Vs30 = a + b ln f0 + c ln A, :mod:`deepvs30.evaluate`). Metrics are at station level
(the median of a station's ln predictions), overall, per region, per NEHRP class and per
event, as mean ± sd over ``real.seeds`` training seeds.

Writes ``real.out``: ``metrics.json`` (the targets of issue 13 as pass/fail, the best arm,
``sigma_scale`` per arm: the factor on the predicted sigma that makes the 16–84% interval cover
68% of stations out of fold), ``arms.csv`` (one row per scheme, arm and seed), ``summary.csv``
(mean and sd over seeds), ``breakdown.csv`` (per region, NEHRP class and fold/event),
``oof_<scheme>.csv`` (out-of-fold station predictions), ``pretext.csv`` (the validation of
each fold's label-free pretext model, when ``pretext_finetune`` runs), ``tables.md`` and plots;
all of it under one MLflow parent run (experiment ``deepvs30-real``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30 import progress
from deepvs30.config import section
from deepvs30.errors import ConfigError
from deepvs30.inference import ModelBundle
from deepvs30.metrics import nehrp_class, summary_metrics
from deepvs30.prepare import load_prepared
from deepvs30.segment import FeatureParams
from deepvs30.split import check_unseen, derive_split, provenance
from deepvs30.threads import NumThreads
from deepvs30.train import ModelParams, TrainParams
from deepvs30.transfer import TransferParams

log = logging.getLogger(__name__)

SCHEMES = ("station_kfold", "region", "event")
DETERMINISTIC = ("baseline", "ridge", "zero_shot")  # one run: a training seed changes nothing
OTHER_REGION = "other"


# The defaults of RealParams are params.yaml's real: values (tests/test_params_defaults.py).
# The default arms fit about 30 min on 2 CPU cores.
DEFAULT_ARMS = ("median", "hv_f0", "hv_curve", "hv_curve_mlp", "hv_curve_gmm",
                "hv_curve_mlp_gmm", "hv_curve_ens", "hv_curve_gmm_ens", "hv_curve_zero_shot",
                "hv_curve_finetune", "zero_shot", "real_only", "finetune")  # fmt: skip
OTHER_SCHEME_ARMS = ("median", "hv_f0", "hv_curve_mlp", "hv_curve_gmm", "hv_curve_mlp_gmm",
                     "hv_curve_gmm_ens", "hv_curve_finetune", "zero_shot")  # fmt: skip


def default_regions() -> dict[str, list[float]]:
    """Region boxes [lat_min, lat_max, lon_min, lon_max] (deg) of the real archive."""
    return {
        "japan": [24.0, 46.0, 122.0, 154.0],
        "turkiye": [35.5, 42.5, 25.5, 45.0],
        "italy": [36.0, 47.5, 6.0, 19.0],
        "usa": [18.0, 72.0, -170.0, -60.0],
        "new_zealand": [-48.0, -33.0, 165.0, 180.0],
    }


def default_schemes() -> dict[str, list[str]]:
    return {"region": list(OTHER_SCHEME_ARMS), "event": list(OTHER_SCHEME_ARMS)}


@dataclass(frozen=True)
class RealParams:
    """The ``real:`` section of params.yaml."""

    data: str = "data_real"  # canonical dataset of the ingested real records
    prepared: str = "prepared_real"
    out: str = "reports/real"
    folds: int = 5
    seeds: int = 3
    split_seed: int = 42
    val_fraction: float = 0.15
    min_region_stations: int = 20
    min_event_stations: int = 20
    # region name -> [lat_min, lat_max, lon_min, lon_max] (deg); stations elsewhere: "other"
    regions: dict = field(default_factory=default_regions)
    arms: list = field(default_factory=lambda: list(DEFAULT_ARMS))
    # scheme -> arms run on it (every arm of `arms` runs on station_kfold)
    schemes: dict = field(default_factory=default_schemes)
    synthetic_model: str = "models/current"  # zero-shot / pre-training source (train stage)
    synthetic_prepared: str = "prepared"  # the synthetic corpus, for H/V pre-training
    hv_bins: int = 24
    epochs: int = 12
    hv_epochs: int = 200
    batch_size: int = 32
    patience: int = 4
    hv_patience: int = 30
    lr: float = 1e-3  # sequence-model arms
    weight_decay: float = 1e-4
    hv_lr: float = 3e-3  # H/V-curve arms trained by gradient descent
    hv_weight_decay: float = 1e-2
    num_threads: NumThreads = "auto"  # threads.py
    experiment: str = "deepvs30-real"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown:
            raise ConfigError(f"real.arms: unknown arm(s) {unknown}; known: {sorted(ARMS)}")
        for scheme, arms in self.schemes.items():
            if scheme not in SCHEMES:
                raise ConfigError(f"real.schemes: unknown scheme {scheme!r}; known: {SCHEMES}")
            bad = sorted(set(arms) - set(self.arms))
            if bad:
                raise ConfigError(f"real.schemes.{scheme}: arm(s) {bad} are not in real.arms")
        if self.folds < 2:
            raise ConfigError(f"real.folds: need at least 2, got {self.folds}")


# --- stations, regions, folds ----------------------------------------------------------------


def region_of(lat_deg: float, lon_deg: float, regions: dict) -> str:
    """The first region whose [lat_min, lat_max, lon_min, lon_max] box holds the point."""
    if not (np.isfinite(lat_deg) and np.isfinite(lon_deg)):
        return OTHER_REGION
    for name, (lat0, lat1, lon0, lon1) in regions.items():
        if lat0 <= lat_deg <= lat1 and lon0 <= lon_deg <= lon1:
            return str(name)
    return OTHER_REGION


def station_frame(records: pd.DataFrame, coords: pd.DataFrame, regions: dict) -> pd.DataFrame:
    """One row per station: Vs30, region, number of records."""
    stations = records.groupby("station").agg(
        vs30_mps=("vs30_mps", "first"), n_records=("record_id", "size")
    )
    stations = stations.join(coords, how="left")
    stations["region"] = [
        region_of(lat, lon, regions)
        for lat, lon in zip(stations["lat_deg"], stations["lon_deg"], strict=True)
    ]
    return stations.reset_index()


def stratified_station_folds(stations: pd.DataFrame, n_folds: int, seed: int) -> pd.Series:
    """Fold number per station: stations sorted by Vs30 in blocks of ``n_folds``, each block
    dealt at random to the folds, so every fold spans the Vs30 range."""
    rng = np.random.default_rng(seed)
    order = stations.sort_values(["vs30_mps", "station"])["station"].to_numpy()
    fold = {}
    for start in range(0, len(order), n_folds):
        block = order[start : start + n_folds]
        for station, k in zip(block, rng.permutation(n_folds)[: len(block)], strict=True):
            fold[station] = int(k)
    return stations["station"].map(fold)


@dataclass
class Fold:
    """One train/val/test assignment: ``split`` per record (train, val, test or none)."""

    scheme: str
    name: str
    split: pd.Series  # indexed like records


def with_val(split: pd.Series, records: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """Move a seeded ``fraction`` of the training stations to validation."""
    train_stations = np.sort(records.loc[split == "train", "station"].unique())
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(fraction * len(train_stations))))
    val = set(rng.choice(train_stations, size=n_val, replace=False))
    return split.where(~(records["station"].isin(val) & (split == "train")), "val")


def build_folds(
    records: pd.DataFrame, stations: pd.DataFrame, scheme: str, params: RealParams
) -> list[Fold]:
    """The folds of one scheme (see the module doc)."""
    folds: list[Fold] = []
    if scheme == "station_kfold":
        fold_of = dict(
            zip(
                stations["station"],
                stratified_station_folds(stations, params.folds, params.split_seed),
                strict=True,
            )
        )
        k_of_record = records["station"].map(fold_of)
        for k in range(params.folds):
            split = pd.Series(np.where(k_of_record == k, "test", "train"), index=records.index)
            folds.append(Fold(scheme, f"fold{k}", split))
    elif scheme == "region":
        region = records["station"].map(
            dict(zip(stations["station"], stations["region"], strict=True))
        )
        counts = stations["region"].value_counts()
        for name in sorted(counts.index):
            if name == OTHER_REGION or counts[name] < params.min_region_stations:
                continue
            split = pd.Series(np.where(region == name, "test", "train"), index=records.index)
            folds.append(Fold(scheme, str(name), split))
    elif scheme == "event":
        per_event = records.groupby("source_id")["station"].nunique()
        for event in sorted(per_event[per_event >= params.min_event_stations].index):
            at_event = set(records.loc[records["source_id"] == event, "station"])
            test = (records["source_id"] == event).to_numpy()
            other = records["station"].isin(at_event).to_numpy()
            split = pd.Series(np.where(test, "test", np.where(other, "none", "train")),
                              index=records.index)  # fmt: skip
            folds.append(Fold(scheme, str(event), split))
    else:
        raise ConfigError(f"unknown scheme {scheme!r}; known: {SCHEMES}")
    folds = [f for f in folds if (f.split == "test").any() and _n_train_stations(records, f) >= 5]
    for i, fold in enumerate(folds):
        fold.split = with_val(fold.split, records, params.val_fraction, params.split_seed + i)
    return folds


def _n_train_stations(records: pd.DataFrame, fold: Fold) -> int:
    return int(records.loc[fold.split == "train", "station"].nunique())


# --- arms ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSpec:
    """How an arm gets its model on a fold: ``train`` from scratch, ``zero_shot`` (the
    synthetic model as is), ``finetune`` (from ``init``: "synthetic", "synthetic_hv", or
    "pretext": pre-trained without labels on the fold's own training records) or ``ensemble``
    (the ln-mean of the ``members`` arms fitted on the same fold and seed)."""

    kind: str  # baseline | ridge | train | zero_shot | finetune | ensemble
    model: str = ""
    features: dict = field(default_factory=dict)  # overrides of params.yaml `features`
    hparams: dict = field(default_factory=dict)
    transfer: TransferParams | None = None
    init: str = ""
    description: str = ""
    # the arm whose model answers the records this one cannot read (no magnitude or distance)
    fallback: str = ""
    members: tuple[str, ...] = ()  # ensemble: the arms averaged


HV_ONLY = {"segmentation": "pga_centred", "ps_channel": False, "window_s": 20.0}
# + magnitude, ln distance, ln PGA: the station's amplification relative to the event (site term)
HV_GMM = {**HV_ONLY, "gmm_scalars": True}
LINEAR = {"hidden": 0, "dropout": 0.0}
ARMS: dict[str, ArmSpec] = {
    "median": ArmSpec("baseline", description="median Vs30 of the training stations"),
    "hv_f0": ArmSpec("baseline", description="ln Vs30 = a + b ln f0 + c ln A (H/V peak)"),
    "hv_curve": ArmSpec("ridge", "hv_mlp", HV_ONLY, LINEAR,
                        description="ridge regression on the ln H/V curve (real only)"),
    "hv_curve_sgd": ArmSpec("train", "hv_mlp", HV_ONLY, LINEAR,
                            description="linear model on the ln H/V curve, trained like the "
                                        "networks (Gaussian NLL, early stopping)"),
    "hv_curve_mlp": ArmSpec("train", "hv_mlp", HV_ONLY, {"hidden": 16, "dropout": 0.2},
                            description="small dense network on the ln H/V curve (real only)"),
    "hv_curve_finetune": ArmSpec("finetune", "hv_mlp", HV_ONLY, {"hidden": 0, "dropout": 0.0},
                                 transfer=TransferParams(pretrained_lr_mult=1.0, warmup_epochs=0),
                                 init="synthetic_hv",
                                 description="linear H/V model pre-trained on the synthetic "
                                             "corpus, fine-tuned on real"),
    "hv_curve_gmm": ArmSpec("ridge", "hv_mlp", HV_GMM, LINEAR, fallback="hv_curve",
                            description="ridge on the ln H/V curve + magnitude, ln distance "
                                        "and ln PGA (real only)"),
    "hv_curve_mlp_gmm": ArmSpec("train", "hv_mlp", HV_GMM, {"hidden": 16, "dropout": 0.2},
                                fallback="hv_curve_mlp",
                                description="small dense network on the ln H/V curve + "
                                            "magnitude, ln distance and ln PGA (real only)"),
    # equal weights, fixed a priori: the members err differently (the ridge is linear in the
    # ln H/V curve, the network is not), so their errors partly cancel in the mean
    "hv_curve_ens": ArmSpec("ensemble", "hv_mlp", HV_ONLY, members=("hv_curve", "hv_curve_mlp"),
                            description="mean of hv_curve and hv_curve_mlp (ln Vs30)"),
    "hv_curve_gmm_ens": ArmSpec("ensemble", "hv_mlp", HV_GMM,
                                members=("hv_curve_gmm", "hv_curve_mlp_gmm"),
                                fallback="hv_curve_ens",
                                description="mean of hv_curve_gmm and hv_curve_mlp_gmm "
                                            "(ln Vs30)"),
    "hv_curve_zero_shot": ArmSpec("zero_shot", init="synthetic_hv",
                                  description="linear H/V model of the synthetic corpus as is"),
    "real_only": ArmSpec("train", description="the pipeline's model, trained on real only"),
    "real_only_hv": ArmSpec("train", features={"hv_bins": -1},
                            description="the pipeline's model + ln H/V curve scalars, real only"),
    "zero_shot": ArmSpec("zero_shot", init="synthetic",
                         description="the pipeline's synthetic-trained model as is"),
    "finetune": ArmSpec("finetune", transfer=TransferParams(), init="synthetic",
                        description="synthetic pre-training + real fine-tuning"),
    # label-free: the pretext model of each fold and seed is trained on that fold's training
    # records (Vs30 unread; no test station), then fine-tuned on their labels like finetune
    "pretext_finetune": ArmSpec("finetune", transfer=TransferParams(), init="pretext",
                                description="label-free pretext pre-training on the real "
                                            "training records (S-P time, magnitude, ln "
                                            "distance), then real fine-tuning"),
    "finetune_freeze_cnn": ArmSpec("finetune", transfer=replace(TransferParams(), freeze="cnn"),
                                   init="synthetic",
                                   description="as finetune, CNN feature extractor frozen"),
    "finetune_hv": ArmSpec("finetune", features={"hv_bins": -1}, transfer=TransferParams(),
                           init="synthetic",
                           description="synthetic pre-training + real fine-tuning with the "
                                       "ln H/V curve scalars added to the head"),
}  # fmt: skip


def arm_features(spec: ArmSpec, base: FeatureParams, hv_bins: int) -> FeatureParams:
    """params.yaml's features with the arm's overrides (hv_bins -1 = real.hv_bins)."""
    overrides = dict(spec.features)
    if overrides.get("hv_bins") == -1 or spec.model == "hv_mlp":
        overrides["hv_bins"] = hv_bins
    return replace(base, **overrides)


@dataclass
class Context:
    """What every fold of a run shares: params, the prepared folder, the source models."""

    params: RealParams
    prepared_dir: Path
    work: Path
    base_features: FeatureParams
    base_model: ModelParams
    sources: dict[str, ModelBundle] = field(default_factory=dict)
    source_loader: Callable[[str], ModelBundle] | None = None
    # models fitted on a fold, by (fold folder, arm, seed): an ensemble reuses its members'
    fitted: dict[tuple[str, str, int], ModelBundle] = field(default_factory=dict)
    pretext: list[dict] = field(default_factory=list)  # validation of each pretext model

    def source(self, name: str) -> ModelBundle:
        if name not in self.sources:
            if self.source_loader is None:
                raise ConfigError(f"no source model {name!r} for this run")
            self.sources[name] = self.source_loader(name)
        return self.sources[name]


def train_params(ctx: Context, spec: ArmSpec, seed: int, out_dir: Path) -> TrainParams:
    hv_only = spec.model == "hv_mlp"
    return TrainParams(
        seed=seed,
        epochs=ctx.params.hv_epochs if hv_only else ctx.params.epochs,
        batch_size=ctx.params.batch_size,
        patience=ctx.params.hv_patience if hv_only else ctx.params.patience,
        lr=ctx.params.hv_lr if hv_only else ctx.params.lr,
        weight_decay=ctx.params.hv_weight_decay if hv_only else ctx.params.weight_decay,
        num_threads=ctx.params.num_threads,
        out=str(out_dir),
        checkpoint=str(out_dir / "checkpoint.pt"),
    )


def arm_model(ctx: Context, name: str, fold_dir: Path, seed: int) -> ModelBundle:
    """The arm's model for one fold: trained, fine-tuned, a source model as is, or the
    ensemble of its members' (each fitted once per fold and seed: kept in ``ctx.fitted``)."""
    spec = ARMS[name]
    if spec.kind == "zero_shot":
        return ctx.source(spec.init)
    key = (str(fold_dir), name, 0 if spec.kind in DETERMINISTIC else seed)
    if key not in ctx.fitted:
        if spec.kind == "ensemble":
            from deepvs30.inference import ensemble

            bundle = ensemble([arm_model(ctx, m, fold_dir, seed) for m in spec.members])
        else:
            bundle = _fit_arm(ctx, name, fold_dir, seed)
        ctx.fitted[key] = bundle
    return ctx.fitted[key]


def _fit_arm(ctx: Context, name: str, fold_dir: Path, seed: int) -> ModelBundle:
    from deepvs30.train import fit

    spec = ARMS[name]
    features = arm_features(spec, ctx.base_features, ctx.params.hv_bins)
    if spec.kind == "ridge":
        return ridge_model(fold_dir, features)
    model = ModelParams(spec.model or ctx.base_model.name,
                        spec.hparams or dict(ctx.base_model.hparams))  # fmt: skip
    out_dir = ctx.work / "runs" / name / fold_dir.name / f"seed{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    init = init_model(ctx, spec, fold_dir, seed)
    train = train_params(ctx, spec, seed, out_dir)
    result = fit(fold_dir, features, model, train, init=init, progress=False,
                 transfer=spec.transfer if init else None)  # fmt: skip
    return result.bundle


def init_model(ctx: Context, spec: ArmSpec, fold_dir: Path, seed: int) -> ModelBundle | None:
    """The model a ``finetune`` arm starts from (None for the others)."""
    if spec.kind != "finetune":
        return None
    if spec.init == "pretext":
        return pretext_model(ctx, fold_dir, seed)
    return ctx.source(spec.init)


def pretext_model(ctx: Context, fold_dir: Path, seed: int) -> ModelBundle:
    """The label-free pretext model (:mod:`deepvs30.pretrain`) of one fold and seed, trained
    on the fold's train records and stopped early on its val records, with the benchmark's
    sequence-model schedule; its validation errors against the mean predictor are kept in
    ``ctx.pretext`` (a pretext model that does not beat the mean teaches nothing)."""
    from deepvs30.pretrain import PretrainParams, pretrain

    key = (str(fold_dir), "pretext", seed)
    if key not in ctx.fitted:
        p = ctx.params
        params = PretrainParams(seed=seed, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr,
                                weight_decay=p.weight_decay, patience=p.patience,
                                num_threads=p.num_threads, split_column="split")  # fmt: skip
        result = pretrain(fold_dir, ctx.base_features, ctx.base_model, params)
        ctx.pretext.append({"fold": fold_dir.name, "seed": seed, "best_epoch": result.best_epoch,
                            "seconds": result.seconds, **result.val_metrics})  # fmt: skip
        ctx.fitted[key] = result.bundle
    return ctx.fitted[key]


RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def ridge_model(prepared_dir: Path, features: FeatureParams) -> ModelBundle:
    """A linear hv_mlp bundle fitted in closed form (:func:`deepvs30.models.hv_mlp.set_ridge`)
    on the train and val records of a prepared folder (its grouped CV replaces early
    stopping)."""
    from deepvs30.models.hv_mlp import set_ridge
    from deepvs30.preprocess import PreprocessParams
    from deepvs30.windows import Normaliser, WindowDataset, usable_records

    waves, records, summary = load_prepared(prepared_dir)
    fs_hz = float(summary["fs_hz"])
    fit_on = records[records["split"].isin(["train", "val"])]
    fit_on, _ = usable_records(waves, fit_on, fs_hz, features)
    normaliser = Normaliser.fit(waves, fit_on, fs_hz, features)
    dataset = WindowDataset(waves, fit_on, fs_hz, features, normaliser)
    scalars = np.stack([dataset[i][1].numpy() for i in range(len(dataset))]).astype(np.float64)
    network = ModelBundle.build_network("hv_mlp", LINEAR, features, fs_hz)
    set_ridge(network, scalars, dataset.targets.astype(np.float64),
              fit_on["station"].to_numpy(), RIDGE_ALPHAS)  # fmt: skip
    network.eval()
    preprocess = PreprocessParams(**summary["params"]["preprocess"])
    parts = {name: fit_on[fit_on["split"] == name] for name in ("train", "val")}
    return ModelBundle("hv_mlp", dict(LINEAR), features, preprocess, normaliser, network,
                       provenance(prepared_dir, parts, "split"),
                       min_record_s=summary["params"]["min_record_s"])  # fmt: skip


def predict_part(bundle: ModelBundle, fold_dir: Path, part: str = "test") -> pd.DataFrame:
    """Station predictions (ln, sigma) of ``bundle`` on one part of a fold folder; records
    the model cannot use (e.g. no P/S picks for a P/S model) are left out and counted."""
    from deepvs30.metrics import station_predictions
    from deepvs30.train import predict_dataset
    from deepvs30.windows import WindowDataset, usable_records

    waves, records, summary = load_prepared(fold_dir)
    fs_hz = float(summary["fs_hz"])
    target = records[records["split"] == part]
    check_unseen(bundle.provenance, target["station"], f"real benchmark {fold_dir.name} ({part})")
    usable, _ = usable_records(waves, target, fs_hz, bundle.features)
    usable = usable.reset_index(drop=True)
    if usable.empty:
        return pd.DataFrame(columns=["station", "vs30_mps", "ln_pred", "sigma_ln", "n_records"])
    ln_pred, sigma = predict_dataset(
        bundle, WindowDataset(waves, usable, fs_hz, bundle.features, bundle.normaliser)
    )
    return station_predictions(usable.assign(ln_pred=ln_pred, sigma_ln=sigma))


def _with_hv_peak(records: pd.DataFrame) -> pd.DataFrame:
    """Records whose H/V peak was found (prepare leaves f0 blank or 0 otherwise)."""
    return records[(records["hv_f0_hz"] > 0) & np.isfinite(records["hv_f0_hz"])]


def baseline_predictions(name: str, records: pd.DataFrame) -> pd.DataFrame:
    """The median and H/V-peak baselines fitted on the fold's training stations."""
    from deepvs30.evaluate import fit_hv_baseline, median_baseline, predict_hv_baseline

    train = records[records["split"] == "train"]
    test = records[records["split"] == "test"]
    stations = test.groupby("station").agg(vs30_mps=("vs30_mps", "first"),
                                           n_records=("record_id", "size"))  # fmt: skip
    if name == "median":
        ln_pred = np.full(len(stations), np.log(median_baseline(
            train.groupby("station")["vs30_mps"].first().to_frame())))  # fmt: skip
    else:
        coef = fit_hv_baseline(_with_hv_peak(train))
        pred = predict_hv_baseline(coef, _with_hv_peak(test))
        ln_pred = np.log(pred.reindex(stations.index).to_numpy())
    out = stations.assign(ln_pred=ln_pred).reset_index()
    return out[np.isfinite(out["ln_pred"])]


# --- scoring ---------------------------------------------------------------------------------


def score(stations: pd.DataFrame) -> dict[str, float]:
    """Station-level metrics of out-of-fold predictions, with Spearman rho and the
    spread ratio (sd of ln predictions over sd of ln truth) the collapse check reads."""
    from scipy.stats import spearmanr

    if stations.empty:
        return {"n": 0}
    pred_mps = np.exp(stations["ln_pred"].to_numpy())
    sigma = stations.get("sigma_ln")
    sigma = None if sigma is None or sigma.isna().all() else sigma
    m = summary_metrics(stations["vs30_mps"], pred_mps, sigma)
    if len(stations) > 2 and np.std(pred_mps) > 0:
        m["spearman_rho"] = float(spearmanr(pred_mps, stations["vs30_mps"])[0])
    else:
        m["spearman_rho"] = 0.0
    m["spread_ratio"] = m["pred_std_ln"] / m["true_std_ln"] if m.get("true_std_ln") else 0.0
    return m


def sigma_scale(stations: pd.DataFrame) -> float:
    """Factor on the predicted sigma so that |ln(pred/true)| <= sigma for 68% of stations."""
    if "sigma_ln" not in stations or stations["sigma_ln"].isna().all():
        return float("nan")
    z = np.abs(stations["ln_pred"] - np.log(stations["vs30_mps"])) / stations["sigma_ln"]
    return float(np.quantile(z.dropna(), 0.6827))


def fold_folder(ctx: Context, records: pd.DataFrame, fold: Fold) -> Path:
    """A prepared folder sharing the real waveforms whose ``split`` is the fold's."""
    out = ctx.work / "folds" / f"{fold.scheme}_{fold.name}"
    return derive_split(ctx.prepared_dir, out, lambda r: fold.split.reindex(r.index))


def run_scheme(
    ctx: Context, scheme: str, arms: list[str], records: pd.DataFrame, stations: pd.DataFrame
) -> pd.DataFrame:
    """Out-of-fold station predictions of every arm and seed on one scheme (long format)."""
    folds = build_folds(records, stations, scheme, ctx.params)
    if not folds:
        log.warning("real benchmark: scheme %s has no fold (too few stations)", scheme)
        return pd.DataFrame()
    frames = []
    jobs = [
        (f, a, s)
        for f in folds
        for a in arms
        for s in range(1 if ARMS[a].kind in ("baseline", "zero_shot") else ctx.params.seeds)
    ]
    bar = progress.bar(jobs, desc=f"real {scheme}", unit="fit")
    dirs: dict[str, Path] = {}
    for fold, arm, seed in bar:
        if fold.name not in dirs:
            dirs[fold.name] = fold_folder(ctx, records, fold)
        fold_dir = dirs[fold.name]
        split_records = records.assign(split=fold.split)
        t0 = time.perf_counter()
        if ARMS[arm].kind == "baseline":
            pred = baseline_predictions(arm, split_records)
        else:
            bundle = arm_model(ctx, arm, fold_dir, ctx.params.split_seed + seed)
            pred = predict_part(bundle, fold_dir)
        frames.append(pred.assign(scheme=scheme, fold=fold.name, arm=arm, seed=seed,
                                  seconds=time.perf_counter() - t0))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def summarise(oof: pd.DataFrame, stations: pd.DataFrame) -> dict:
    """Per scheme and arm: metrics per seed, their mean and sd, and breakdowns."""
    region = dict(zip(stations["station"], stations["region"], strict=True))
    rows, breakdown = [], []
    for (scheme, arm, seed), group in oof.groupby(["scheme", "arm", "seed"], sort=False):
        rows.append({"scheme": scheme, "arm": arm, "seed": seed, **score(group)})
        by = {
            "region": group["station"].map(region),
            "nehrp_class": nehrp_class(group["vs30_mps"]),
            "fold": group["fold"],
        }
        for kind, key in by.items():
            for value, part in group.groupby(np.asarray(key)):
                breakdown.append({"scheme": scheme, "arm": arm, "seed": seed, "by": kind,
                                  "group": value, **score(part)})  # fmt: skip
    per_seed = pd.DataFrame(rows)
    numeric = per_seed.drop(columns=["seed"]).groupby(["scheme", "arm"], sort=False)
    summary = numeric.mean(numeric_only=True).add_suffix("_mean").join(
        numeric.std(numeric_only=True).add_suffix("_sd")
    ).reset_index()  # fmt: skip
    return {"per_seed": per_seed, "summary": summary, "breakdown": pd.DataFrame(breakdown)}


def targets(summary: pd.DataFrame, breakdown: pd.DataFrame, arm: str) -> dict:
    """The issue's targets for one arm on station_kfold (Japan and Türkiye)."""

    def region_mean(region: str, a: str, metric: str) -> float:
        part = breakdown[(breakdown["scheme"] == "station_kfold") & (breakdown["by"] == "region")
                         & (breakdown["group"] == region) & (breakdown["arm"] == a)]  # fmt: skip
        return float(part[metric].mean()) if len(part) else float("nan")

    out = {"arm": arm}
    jp = {m: region_mean("japan", arm, m) for m in
          ("mape_pct", "std_ln", "spearman_rho", "bias_ln", "spread_ratio")}  # fmt: skip
    jp_median = region_mean("japan", "median", "mape_pct")
    out["japan"] = {
        **jp, "median_mape_pct": jp_median,
        "mape_reduction_vs_median": 1 - jp["mape_pct"] / jp_median if jp_median else float("nan"),
        "pass_mape_25pct_lower": bool(jp["mape_pct"] <= 0.75 * jp_median),
        "pass_std_ln_0.35": bool(jp["std_ln"] <= 0.35),
        "pass_spearman_0.65": bool(jp["spearman_rho"] >= 0.65),
        "pass_bias_0.1": bool(abs(jp["bias_ln"]) <= 0.1),
    }  # fmt: skip
    tr = {m: region_mean("turkiye", arm, m) for m in ("mape_pct", "std_ln", "spearman_rho")}
    tr_med = {m: region_mean("turkiye", "median", m) for m in ("mape_pct", "std_ln")}
    out["turkiye"] = {
        **tr, **{f"median_{k}": v for k, v in tr_med.items()},
        "pass": bool(tr["mape_pct"] < tr_med["mape_pct"] and tr["std_ln"] < tr_med["std_ln"]
                     and tr["spearman_rho"] >= 0.5),
    }  # fmt: skip
    row = summary[(summary["scheme"] == "station_kfold") & (summary["arm"] == arm)]
    spread = float(row["spread_ratio_mean"].iloc[0]) if len(row) else float("nan")
    out["no_collapse"] = {"spread_ratio": spread, "pass": bool(spread >= 0.6)}
    return out


# --- the stage -------------------------------------------------------------------------------


def station_coords(data_dir: Path) -> pd.DataFrame:
    """Station latitude/longitude from the canonical dataset's metadata."""
    from deepvs30.dataset import station_key

    meta = pd.read_csv(data_dir / "metadata.csv", low_memory=False)
    meta["station"] = station_key(meta)
    coords = meta.groupby("station").agg(
        lat_deg=("station_latitude_deg", "first"), lon_deg=("station_longitude_deg", "first")
    )
    return coords.apply(pd.to_numeric, errors="coerce")


def load_source(name: str, params: RealParams, features: FeatureParams) -> ModelBundle:
    """``synthetic``: the pipeline's trained model; ``synthetic_hv``: the ridge H/V model of
    the synthetic corpus (``real.synthetic_prepared``)."""
    if name == "synthetic":
        return ModelBundle.load(params.synthetic_model)
    if name == "synthetic_hv":  # ridge on the synthetic corpus' train and val stations
        spec = ARMS["hv_curve"]
        return ridge_model(
            Path(params.synthetic_prepared), arm_features(spec, features, params.hv_bins)
        )
    raise ConfigError(f"unknown source model {name!r}")


def benchmark(params: RealParams, features: FeatureParams, model: ModelParams) -> dict:
    """Run every scheme and arm; returns the tables (also written under ``params.out``)."""
    prepared_dir = Path(params.prepared)
    _, records, _ = load_prepared(prepared_dir)
    records = records[records["vs30_mps"].notna()].copy()
    coords = station_coords(Path(params.data))
    stations = station_frame(records, coords, params.regions)
    ctx = Context(params, prepared_dir, Path(params.out) / "work", features, model,
                  source_loader=lambda n: load_source(n, params, features))  # fmt: skip
    schemes = {"station_kfold": list(params.arms), **{k: v for k, v in params.schemes.items() if v}}
    oof = {s: run_scheme(ctx, s, arms, records, stations) for s, arms in schemes.items()}
    oof = {s: frame for s, frame in oof.items() if not frame.empty}
    tables = summarise(pd.concat(oof.values(), ignore_index=True), stations)
    return {"oof": oof, "stations": stations, "pretext": pd.DataFrame(ctx.pretext), **tables}


def n_targets_met(result: dict) -> int:
    """How many of the issue's targets (:func:`targets`) an arm meets."""
    flags = [v for k, v in result["japan"].items() if k.startswith("pass_")]
    return sum(flags) + result["turkiye"]["pass"] + result["no_collapse"]["pass"]


def targets_met_by_arm(
    summary: pd.DataFrame, breakdown: pd.DataFrame, arms: list[str]
) -> dict[str, int]:
    """How many targets each of ``arms`` meets on station_kfold (those it was run on)."""
    ran = set(summary.loc[summary["scheme"] == "station_kfold", "arm"])
    return {a: n_targets_met(targets(summary, breakdown, a)) for a in arms if a in ran}


def best_arm(summary: pd.DataFrame, breakdown: pd.DataFrame, candidates: list[str]) -> str:
    """The trained arm that meets the most targets on station_kfold (Japan, Türkiye, no
    collapse), and of those the lowest mean station MAPE: a user needs every region served,
    not the lowest pooled error."""
    part = summary[(summary["scheme"] == "station_kfold") & summary["arm"].isin(candidates)]
    met = targets_met_by_arm(summary, breakdown, list(part["arm"]))
    ranked = part.assign(met=part["arm"].map(met)).sort_values(
        ["met", "mape_pct_mean"], ascending=[False, True]
    )
    return str(ranked["arm"].iloc[0])


def write_outputs(result: dict, params: RealParams) -> dict:
    from deepvs30 import plots

    out = Path(params.out)
    out.mkdir(parents=True, exist_ok=True)
    for scheme, frame in result["oof"].items():
        frame.to_csv(out / f"oof_{scheme}.csv", index=False)
    result["per_seed"].to_csv(out / "arms.csv", index=False)
    result["summary"].to_csv(out / "summary.csv", index=False)
    result["breakdown"].to_csv(out / "breakdown.csv", index=False)
    result["stations"].to_csv(out / "stations.csv", index=False)
    if len(result.get("pretext", ())):
        result["pretext"].to_csv(out / "pretext.csv", index=False)
    trained = [a for a in params.arms if ARMS[a].kind != "baseline"]
    best = best_arm(result["summary"], result["breakdown"], trained) if trained else "median"
    kfold = result["oof"]["station_kfold"]
    calibration = {arm: sigma_scale(part) for arm, part in kfold.groupby("arm")}
    metrics = {
        "params": asdict(params),
        "n_records": int(result["stations"]["n_records"].sum()),
        "n_stations": int(len(result["stations"])),
        "stations_by_region": result["stations"]["region"].value_counts().to_dict(),
        "best_arm": best,
        "targets": targets(result["summary"], result["breakdown"], best),
        "sigma_scale": calibration,
        "summary": json.loads(result["summary"].to_json(orient="records")),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    plots.real_benchmark(kfold, result["summary"], best, out)
    return metrics


def markdown_tables(summary: pd.DataFrame, breakdown: pd.DataFrame) -> str:
    """The README's tables: every arm per scheme (mean ± sd over seeds), and station_kfold
    per region (seed means)."""

    def pm(row: pd.Series, metric: str, fmt: str) -> str:
        sd = row.get(f"{metric}_sd")
        mean = format(row[f"{metric}_mean"], fmt)
        return mean if sd is None or not np.isfinite(sd) else f"{mean} ± {format(sd, fmt)}"

    lines = []
    for scheme, part in summary.groupby("scheme", sort=False):
        lines += [f"\n**{scheme}** (station level, out of fold)\n",
                  "| arm | stations | MAPE % | bias ln | std ln | Spearman ρ | spread ratio "
                  "| 16–84% coverage |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for _, row in part.sort_values("mape_pct_mean").iterrows():
            cov = row.get("coverage_68_mean")
            cov = f"{cov:.2f}" if cov is not None and np.isfinite(cov) else "–"
            lines.append(
                f"| {row['arm']} | {row['n_mean']:.0f} | {pm(row, 'mape_pct', '.1f')} | "
                f"{pm(row, 'bias_ln', '+.3f')} | {pm(row, 'std_ln', '.3f')} | "
                f"{pm(row, 'spearman_rho', '.2f')} | {pm(row, 'spread_ratio', '.2f')} | {cov} |"
            )
    regions = breakdown[(breakdown["scheme"] == "station_kfold") & (breakdown["by"] == "region")]
    if len(regions):
        mean = regions.groupby(["group", "arm"]).mean(numeric_only=True).reset_index()
        lines += ["\n**station_kfold by region** (seed means)\n",
                  "| region | arm | stations | MAPE % | bias ln | std ln | Spearman ρ | spread |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for _, r in mean.sort_values(["group", "mape_pct"]).iterrows():
            lines.append(
                f"| {r['group']} | {r['arm']} | {r['n']:.0f} | {r['mape_pct']:.1f} | "
                f"{r['bias_ln']:+.3f} | {r['std_ln']:.3f} | {r['spearman_rho']:.2f} | "
                f"{r['spread_ratio']:.2f} |"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arms", nargs="+", help="run only these arms (default: real.arms)")
    parser.add_argument("--seeds", type=int, help="training seeds per arm (default: real.seeds)")
    parser.add_argument("--out", help="output folder (default: real.out)")


def run(args: argparse.Namespace, params: dict) -> int:
    from deepvs30 import tracking
    from deepvs30.tracking import MlflowParams

    real = section(params, "real", RealParams)
    if args.arms:
        real = replace(real, arms=list(args.arms),
                       schemes={k: [a for a in v if a in args.arms]
                                for k, v in real.schemes.items()})  # fmt: skip
    if args.seeds:
        real = replace(real, seeds=args.seeds)
    if args.out:
        real = replace(real, out=args.out)
    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    t0 = time.perf_counter()
    result = benchmark(real, features, model)
    metrics = write_outputs(result, real)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    mlflow_params = replace(section(params, "mlflow", MlflowParams), experiment=real.experiment)
    tracking.log_parent_run(mlflow_params, "real-benchmark", metrics, Path(real.out))
    tables = markdown_tables(result["summary"], result["breakdown"])
    (Path(real.out) / "tables.md").write_text(tables + "\n")
    print(tables)
    print(json.dumps(metrics["targets"], indent=1))
    return 0
