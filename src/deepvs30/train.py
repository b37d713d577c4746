"""train stage: one explicit training loop, logged in MLflow.

Reads the prepared folder, cuts windows on the fly (segmentation from ``features``), fits the
normaliser on the training stations only, and trains the model family named in ``model``
with a Gaussian negative log-likelihood on standardised ln Vs30 (so each prediction carries
its own standard deviation) or plain MSE. Seeds fixed, deterministic CPU kernels; a checkpoint
after every epoch (``train.checkpoint``) lets an interrupted run resume where it stopped;
early stopping on the validation loss keeps the best epoch.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepvs30 import progress as progress_bar
from deepvs30 import threads
from deepvs30.config import data_path, section
from deepvs30.dataset import staging_dir
from deepvs30.device import autocast, check_precision, grad_scaler, to_device
from deepvs30.device import resolve as resolve_device
from deepvs30.errors import ConfigError, DeepVs30Error
from deepvs30.inference import ModelBundle
from deepvs30.metrics import station_predictions, summary_metrics
from deepvs30.prepare import PrepareParams, load_prepared
from deepvs30.preprocess import PreprocessParams
from deepvs30.segment import FeatureParams
from deepvs30.split import provenance, select_split
from deepvs30.threads import NumThreads, ThreadBudget
from deepvs30.transfer import TransferParams, apply_transfer, keep_input_statistics
from deepvs30.windows import Normaliser, WindowDataset, usable_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelParams:
    name: str = "cnn_lstm"
    hparams: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainParams:
    seed: int = 42
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "gaussian_nll"  # gaussian_nll | mse
    patience: int = 6  # epochs without validation improvement before stopping
    num_threads: NumThreads = "auto"  # torch threads; auto: the usable cores (threads.py)
    loader_workers: int = 0  # DataLoader processes, taken from the same thread budget
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (device.py); auto: a GPU if any
    precision: str = "32"  # 32 | bf16 | 16-mixed (CUDA): the forward pass (device.py)
    split_column: str = "split"  # split | split_cluster (regional hold-out)
    train_station_fraction: float = 1.0  # < 1: a random subset of training stations
    out: str = "models/current"
    checkpoint: str = "models/checkpoint.pt"


@dataclass
class TrainResult:
    bundle: ModelBundle
    history: list[dict]
    best_epoch: int
    val_metrics: dict
    skipped: pd.DataFrame
    seconds: float


EpochCallback = Callable[[int, dict], None]


def set_determinism(seed: int, num_threads: NumThreads, loader_workers: int = 0) -> ThreadBudget:
    """Seeds and the thread budget (threads.py). The CPU kernels used here (conv, LSTM,
    attention) are deterministic for a fixed thread count; torch.use_deterministic_algorithms
    is not set because its CPU fallbacks made max-pool backward ~3x slower (tests check that
    two runs with one seed give identical weights)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return threads.apply(threads.resolve(num_threads, loader_workers))


def loss_fn(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mean = out[:, 0]
    if kind == "mse":
        return torch.mean((mean - target) ** 2)
    if kind == "gaussian_nll":
        log_sigma = out[:, 1]
        return torch.mean(0.5 * ((mean - target) / torch.exp(log_sigma)) ** 2 + log_sigma)
    raise ConfigError(f"train.loss: {kind!r} is not one of ['gaussian_nll', 'mse']")


def _config_hash(*parts: object) -> str:
    blob = json.dumps(
        [asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit(
    prepared_dir: str | Path,
    features: FeatureParams,
    model: ModelParams,
    train: TrainParams,
    on_epoch: EpochCallback | None = None,
    init: ModelBundle | None = None,
    progress: bool = True,
    transfer: TransferParams | None = None,
) -> TrainResult:
    """Train one model; returns the bundle of the best validation epoch and the history.

    Without ``transfer``, ``init`` must have the same architecture (all weights are copied);
    with it, see :mod:`deepvs30.transfer` (partial loading, freezing, lr groups, warm-up)."""
    t0 = time.perf_counter()
    budget = set_determinism(train.seed, train.num_threads, train.loader_workers)
    waves, records, summary = load_prepared(prepared_dir)
    fs_hz = float(summary["fs_hz"])
    records, skipped = usable_records(waves, records, fs_hz, features)
    parts = select_split(records, train.split_column, train.train_station_fraction, train.seed)
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise DeepVs30Error(
            f"{prepared_dir}: no usable training or validation records for segmentation "
            f"{features.segmentation!r} ({len(skipped)} skipped)"
        )
    normaliser = Normaliser.fit(waves, parts["train"], fs_hz, features)
    preprocess = PreprocessParams(**summary["params"]["preprocess"])
    network = ModelBundle.build_network(model.name, model.hparams, features, fs_hz)
    plan = apply_transfer(network, init, transfer, train.lr, model.name) if transfer else None
    if plan is None and init is not None:
        network.load_state_dict(init.network.state_dict())
    if plan is not None and init is not None and not transfer.refit_normaliser:
        normaliser = keep_input_statistics(normaliser, init.normaliser)
    bundle = ModelBundle(model.name, dict(model.hparams), features, preprocess, normaliser, network,
                         min_record_s=summary["params"]["min_record_s"])  # fmt: skip
    device = resolve_device(train.device)
    precision = check_precision(train.precision, device)
    bundle.to(device)  # before the optimiser is built: its state follows the parameters

    generator = torch.Generator().manual_seed(train.seed)
    train_loader = torch.utils.data.DataLoader(
        WindowDataset(waves, parts["train"], fs_hz, features, normaliser),
        batch_size=train.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=False,
        num_workers=budget.loader_workers,
        pin_memory=device.type == "cuda",
    )
    val_set = WindowDataset(waves, parts["val"], fs_hz, features, normaliser)
    optimiser = torch.optim.AdamW(
        plan.param_groups if plan else network.parameters(),
        lr=train.lr,
        weight_decay=train.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(train.epochs, 1))

    extra = [transfer] if transfer else []
    key = _config_hash(
        features, model, train, str(Path(prepared_dir).resolve()), summary["counts"], *extra
    )
    scaler = grad_scaler(precision, device)  # its scale is re-learnt after a resume
    state = _resume(train.checkpoint, key, network, optimiser, scheduler, generator)
    history, best = state["history"], state["best"]
    todo = range(state["epoch"] + 1, train.epochs + 1)
    epochs = progress_bar.bar(todo, desc="train", unit="epoch", total=len(todo), show=progress)
    for epoch in epochs:
        if plan is not None:
            plan.start_epoch(epoch)  # warm-up: the head alone for transfer.warmup_epochs
        train_loss = _train_epoch(network, optimiser, train_loader, train.loss, device,
                                  precision, scaler)  # fmt: skip
        scheduler.step()
        val = _evaluate_split(bundle, val_set, parts["val"], train.loss)
        row = {"epoch": epoch, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0], **val}
        history.append(row)
        if val["val_loss"] < best["val_loss"]:
            best = {
                "val_loss": val["val_loss"],
                "epoch": epoch,
                "state": {k: v.clone() for k, v in network.state_dict().items()},
            }
        _save_checkpoint(
            train.checkpoint, key, epoch, network, optimiser, scheduler, generator, history, best
        )
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        epochs.set_postfix(val_mape=f"{val['val_station_mape']:.1f}%", best=best["epoch"])
        if on_epoch is not None:
            on_epoch(epoch, row)
        if epoch - best["epoch"] >= train.patience:
            log.info("early stop at epoch %d (best %d)", epoch, best["epoch"])
            break
    network.load_state_dict(best["state"])
    bundle.provenance = provenance(
        prepared_dir, parts, train.split_column, init.provenance if init else None
    )
    final_val = _evaluate_split(bundle, val_set, parts["val"], train.loss)
    start = _starting_candidate(init, features, parts["val"], waves, fs_hz, train.loss)
    if start is not None and start[1] < _ln_loss(final_val, bundle, train.loss):
        log.info("fine-tuning did not beat its starting model on validation: keeping the start")
        start[0].provenance = bundle.provenance  # chosen on this validation split
        return TrainResult(start[0], history, 0, start[2], skipped, time.perf_counter() - t0)
    return TrainResult(bundle, history, best["epoch"], final_val, skipped, time.perf_counter() - t0)


def _ln_loss(val: dict, bundle: ModelBundle, loss_kind: str) -> float:
    """The validation loss in ln Vs30 units, comparable between models whose target
    normalisers differ (a fine-tuned model and the model it started from)."""
    std = bundle.normaliser.target_std
    return val["val_loss"] * std**2 if loss_kind == "mse" else val["val_loss"] + float(np.log(std))


def _starting_candidate(
    init: ModelBundle | None,
    features: FeatureParams,
    val_records: pd.DataFrame,
    waves: np.ndarray,
    fs_hz: float,
    loss_kind: str,
) -> tuple[ModelBundle, float, dict] | None:
    """Fine-tuning keeps its starting model as "epoch 0": (a copy of it, its validation loss
    in ln units, its validation metrics), when it reads the same inputs; else None."""
    if init is None or init.features != features or init.fs_hz != fs_hz:
        return None
    start = copy.deepcopy(init)
    val_set = WindowDataset(waves, val_records, fs_hz, start.features, start.normaliser)
    val = _evaluate_split(start, val_set, val_records, loss_kind)
    return start, _ln_loss(val, start, loss_kind), val


def run_epoch(
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    batches: Iterable,
    batch_loss: Callable[[Any], tuple[torch.Tensor, int]],
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One training pass, shared by train and pretrain: per batch, ``batch_loss(batch)`` gives
    the loss and the number of records; gradients clipped at norm 5 (after unscaling, with
    a float16 loss ``scaler``). Returns the record-weighted mean loss."""
    network.train()
    total, count = 0.0, 0
    for batch in batches:
        optimiser.zero_grad(set_to_none=True)
        loss, n_records = batch_loss(batch)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimiser.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimiser)
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            scaler.step(optimiser)  # skipped where the scaled gradients overflowed
            scaler.update()
        total += float(loss.detach()) * n_records
        count += n_records
    return total / max(count, 1)


def _train_epoch(
    network, optimiser, loader, loss_kind: str, device=None, precision: str = "32", scaler=None
) -> float:
    def batch_loss(batch) -> tuple[torch.Tensor, int]:
        x, s, y = to_device(batch, device) if device is not None else batch
        with autocast(precision, x.device):
            out = network(x, s if s.shape[1] else None)
        return loss_fn(loss_kind, out.float(), y), len(y)  # the loss in float32

    return run_epoch(network, optimiser, loader, batch_loss, scaler)


@torch.no_grad()
def predict_dataset(bundle: ModelBundle, dataset: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """ln Vs30 and its std for every record of a WindowDataset."""
    xs, ss = [], []
    for i in range(len(dataset)):
        x, s, _ = dataset[i]
        xs.append(x.numpy())
        ss.append(s.numpy())
    if not xs:
        return np.zeros(0), np.zeros(0)
    return bundle.predict_inputs(np.stack(xs), np.stack(ss))


def _evaluate_split(
    bundle: ModelBundle, dataset: WindowDataset, records: pd.DataFrame, loss_kind: str
) -> dict:
    ln_pred, sigma = predict_dataset(bundle, dataset)
    norm = bundle.normaliser
    z = (ln_pred - norm.target_mean) / norm.target_std
    z_sigma = np.log(np.maximum(sigma / norm.target_std, 1e-12))
    out = torch.from_numpy(np.stack([z, z_sigma], axis=1))
    loss = float(loss_fn(loss_kind, out, torch.from_numpy(dataset.targets.astype(np.float64))))
    frame = records.assign(ln_pred=ln_pred, sigma_ln=sigma)
    stations = station_predictions(frame)
    station_metrics = summary_metrics(stations["vs30_mps"], np.exp(stations["ln_pred"]))
    return {
        "val_loss": loss,
        "val_station_mape": station_metrics["mape_pct"],
        "val_station_sigma_ln": station_metrics["std_ln"],
    }


def _resume(path: str, key: str, network, optimiser, scheduler, generator) -> dict:
    fresh = {
        "epoch": 0,
        "history": [],
        "best": {"val_loss": math.inf, "epoch": 0, "state": network.state_dict()},
    }
    ckpt_path = Path(path)
    ckpt_path.with_suffix(".tmp").unlink(missing_ok=True)  # a save cut short by a kill
    if not ckpt_path.is_file():
        return fresh
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("key") != key:
        log.info("checkpoint %s belongs to another configuration; starting afresh", path)
        return fresh
    network.load_state_dict(ckpt["network"])
    optimiser.load_state_dict(ckpt["optimiser"])
    scheduler.load_state_dict(ckpt["scheduler"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    log.info("resuming from %s after epoch %d", path, ckpt["epoch"])
    history = json.loads(ckpt["history"])
    return {
        "epoch": ckpt["epoch"],
        "history": history,
        "best": {
            "val_loss": ckpt["best_val_loss"],
            "epoch": ckpt["best_epoch"],
            "state": ckpt["best_state"],
        },
    }


def _save_checkpoint(
    path: str,
    key: str,
    epoch: int,
    network,
    optimiser,
    scheduler,
    generator,
    history: list[dict],
    best: dict,
) -> None:
    """Everything needed to resume, saved atomically (tensors and plain values only)."""
    ckpt_path = Path(path)
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save(
        {
            "key": key,
            "epoch": epoch,
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(history),
            "best_val_loss": best["val_loss"],
            "best_epoch": best["epoch"],
            "best_state": best["state"],
        },
        tmp,
    )
    tmp.replace(ckpt_path)


# --- the stage ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", help="prepared folder (default: prepare.out)")
    parser.add_argument("--out", help="model folder (default: train.out)")
    parser.add_argument("--init-from", help="fine-tune from a model URI or bundle folder")


def run(args: argparse.Namespace, params: dict) -> int:
    from deepvs30 import tracking

    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    train = section(params, "train", TrainParams)
    prepared_dir = args.prepared or section(params, "prepare", PrepareParams).out
    out_dir = Path(args.out or train.out)
    mlflow_params = section(params, "mlflow", tracking.MlflowParams)
    data_dir = data_path(params)
    transfer = _transfer_params(params, args.init_from)
    init = _load_init(transfer.init_from) if transfer else None
    result = train_and_log(prepared_dir, features, model, train, mlflow_params, data_dir, out_dir,
                           init=init, init_uri=transfer.init_from if transfer else None,
                           transfer=transfer)  # fmt: skip
    print(
        f"trained {model.name}: best epoch {result.best_epoch}, validation station MAPE "
        f"{result.val_metrics['val_station_mape']:.1f}% -> {out_dir}"
    )
    return 0


def _transfer_params(params: dict, init_from: str | None) -> TransferParams | None:
    """The transfer section with --init-from applied; None when no model to start from."""
    transfer = section(params, "transfer", TransferParams) if "transfer" in params else None
    # no transfer section: --init-from keeps the pre-issue-14 defaults (every block at train.lr,
    # no warm-up), not params.yaml's 0.3 / 1, so results of such parameter files are unchanged
    transfer = transfer or TransferParams(pretrained_lr_mult=1.0, warmup_epochs=0)
    if init_from:
        transfer = replace(transfer, init_from=init_from)
    return transfer if transfer.init_from else None


def _load_init(uri: str) -> ModelBundle:
    from deepvs30.pyfunc import load_bundle

    return load_bundle(uri)


def train_and_log(
    prepared_dir,
    features,
    model,
    train,
    mlflow_params,
    data_dir,
    out_dir,
    init: ModelBundle | None = None,
    init_uri: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    on_epoch: EpochCallback | None = None,
    transfer: TransferParams | None = None,
    sigma_scale: float = 1.0,
    fitter: Callable[[], TrainResult] | None = None,
    fallback: ModelBundle | None = None,
) -> TrainResult:
    """fit() inside an MLflow run: params, per-epoch metrics, the pyfunc model, lineage.
    ``sigma_scale`` calibrates the model's predicted sigma (from out-of-fold coverage);
    ``fitter`` replaces fit() for models fitted otherwise (the closed-form ridge H/V model);
    ``fallback`` is stored in the bundle (:attr:`ModelBundle.fallback`) and logged with it."""
    import mlflow

    from deepvs30 import tracking
    from deepvs30.pyfunc import log_bundle

    tracking.configure(mlflow_params)
    out_dir = Path(out_dir)
    with tracking.start_run(run_name=run_name, nested=nested) as active:
        mlflow.log_params(
            tracking.flatten(
                "", {"features": features.to_dict(), "model": asdict(model), "train": asdict(train)}
            )
        )
        mlflow.set_tags(
            {
                "git_commit": tracking.git_commit(),
                "data_version": tracking.data_version(data_dir),
                "prepared": str(prepared_dir),
                "model_family": model.name,
            }
        )
        if init_uri:
            mlflow.set_tag("parent_model_uri", init_uri)
        _log_dataset(prepared_dir, data_dir)
        if transfer is not None:
            mlflow.log_params(tracking.flatten("transfer", asdict(transfer)))

        def log_epoch(epoch: int, row: dict) -> None:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, row)

        if fitter is not None:
            result = fitter()
        else:
            result = fit(prepared_dir, features, model, train, on_epoch=log_epoch, init=init,
                         transfer=transfer)  # fmt: skip
        result.bundle.normaliser.sigma_scale = sigma_scale
        result.bundle.fallback = fallback
        if fallback is not None:
            mlflow.set_tag("fallback_model_family", fallback.model_name)
        staged = model_staging_dir(
            out_dir
        )  # out_dir appears whole, run.json included, or not at all
        try:
            result.bundle.save(staged)
            pd.DataFrame(result.history).to_csv(staged / "history.csv", index=False)
            result.skipped.to_csv(staged / "skipped.csv", index=False)
            mlflow.log_metrics(
                {
                    "best_epoch": result.best_epoch,
                    "train_seconds": result.seconds,
                    **{f"best_{k}": v for k, v in result.val_metrics.items()},
                }
            )
            mlflow.log_artifact(str(staged / "history.csv"))
            write_run_info(staged, active, log_bundle(result.bundle, staged), init_uri)
            publish(staged, out_dir, Path(train.checkpoint))
        except BaseException:
            shutil.rmtree(staged.parent, ignore_errors=True)
            raise
    return result


def write_run_info(out_dir: Path, active, logged, parent_model_uri: str | None) -> None:
    """``out_dir/run.json``: the MLflow run and logged model a bundle folder came from."""
    run_info = {
        "run_id": active.info.run_id,
        "model_uri": logged.model_uri,
        "experiment_id": active.info.experiment_id,
        "parent_model_uri": parent_model_uri,
    }
    (out_dir / "run.json").write_text(json.dumps(run_info, indent=1))


# --- the model folder: built aside, then renamed into place ------------------------------


def model_staging_dir(out_dir: Path) -> Path:
    """An empty folder named like ``out_dir`` inside a private temporary folder beside it
    (:func:`deepvs30.dataset.staging_dir`: those of killed runs are removed first)."""
    staged = staging_dir(out_dir) / out_dir.name
    staged.mkdir()
    return staged


def publish(staged: Path, out_dir: Path, checkpoint: Path | None = None) -> None:
    """Rename ``staged`` to ``out_dir``. A previous ``out_dir`` is first moved into the
    private folder (removed with it), so a kill in between leaves no ``out_dir``, never a
    mixed one. A checkpoint kept inside ``out_dir`` (tune, experiments) is carried over."""
    holder = staged.parent
    if checkpoint and checkpoint.is_file() and checkpoint.resolve().parent == out_dir.resolve():
        try:
            os.link(checkpoint, staged / checkpoint.name)
        except OSError:
            shutil.copy2(checkpoint, staged / checkpoint.name)
    if out_dir.exists():
        out_dir.rename(holder / ".previous")
    staged.rename(out_dir)
    shutil.rmtree(holder, ignore_errors=True)


def _log_dataset(prepared_dir: str | Path, data_dir: str | Path) -> None:
    """The prepared records (with their split labels) as the run's MLflow dataset input, and
    the preparation summary (counts, parameters) as an artifact."""
    import mlflow

    from deepvs30 import tracking

    prepared_dir = Path(prepared_dir)
    records = pd.read_csv(prepared_dir / "records.csv")
    dataset = mlflow.data.from_pandas(
        records,
        source=str(Path(data_dir).resolve()),
        name=f"{Path(data_dir).name}@{tracking.data_version(data_dir)}",
    )
    mlflow.log_input(dataset, context="training")
    mlflow.log_artifact(str(prepared_dir / "prepare.json"))
    mlflow.log_artifact(str(prepared_dir / "stations.csv"))
