"""pretrain stage: teach a network phase structure from waveforms alone (no Vs30 labels).

From each window the network predicts, with a Gaussian NLL per target (standardised on the
training records, missing values masked): the S−P time (s), the magnitude and the ln
hypocentral distance (``pretrain.targets``). Any archive with P/S picks (or an event catalogue)
serves: Vs30 is never read. The window is the ``features`` one with the P/S channel and the
S−P scalar switched off — they would hand the answer over. The result is an ordinary model
bundle (the pretext head is swapped for a Vs30 head whose hidden layer is the pre-trained one
and whose output layer starts at zero), so ``deepvs30 train --init-from <bundle>`` fine-tunes it;
with ``features.ps_channel: true`` there the first conv's extra input channel starts at zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from deepvs30.config import section
from deepvs30.device import autocast, check_precision, grad_scaler, to_device
from deepvs30.device import resolve as resolve_device
from deepvs30.errors import ConfigError, DeepVs30Error
from deepvs30.inference import ModelBundle
from deepvs30.models.common import LOG_SIGMA_BOUND, Head
from deepvs30.prepare import PrepareParams, load_prepared
from deepvs30.preprocess import PreprocessParams
from deepvs30.segment import FeatureParams
from deepvs30.split import provenance, select_split
from deepvs30.threads import NumThreads
from deepvs30.train import (
    ModelParams,
    model_staging_dir,
    publish,
    run_epoch,
    set_determinism,
    write_run_info,
)
from deepvs30.windows import Normaliser, usable_records, window_of

log = logging.getLogger(__name__)

PRETEXT_TARGETS = ("sp_time", "magnitude", "ln_distance")
PRETEXT_FILE = "pretext.json"


@dataclass(frozen=True)
class PretrainParams:
    targets: list[str] = field(default_factory=lambda: list(PRETEXT_TARGETS))
    seed: int = 42
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    num_threads: NumThreads = "auto"  # threads.py
    device: str = "auto"  # device.py
    precision: str = "32"  # 32 | bf16 | 16-mixed (CUDA): the forward pass (device.py)
    split_column: str = "split"  # trains on its train part, stops early on val; test unused
    out: str = "models/pretrained"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(PRETEXT_TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"pretrain.targets: {unknown or '[]'}; allowed {PRETEXT_TARGETS}")


@dataclass
class PretrainResult:
    bundle: ModelBundle
    history: list[dict]
    best_epoch: int
    val_metrics: dict
    target_stats: dict
    seconds: float


def pretext_features(features: FeatureParams) -> FeatureParams:
    """The same window without the P/S mask channel and the S−P scalar."""
    return replace(features, ps_channel=False, sp_scalar=False)


def pretext_targets(records: pd.DataFrame, fs_hz: float, targets: list[str]) -> np.ndarray:
    """(n, K) float64 targets in natural units (s, magnitude, ln km); NaN where unknown."""
    columns = {
        "sp_time": (records["s_sample"] - records["p_sample"]).to_numpy(float) / fs_hz,
        "magnitude": records["magnitude"].to_numpy(float),
        "ln_distance": np.log(np.maximum(records["hyp_distance_km"].to_numpy(float), 1e-3)),
    }
    out = np.stack([columns[name] for name in targets], axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


class PretextHead(nn.Module):
    """Pooled features (B, D) -> (B, 2K): K means then K log sigmas (softly bounded)."""

    def __init__(self, in_features: int, hidden: int, dropout: float, n_targets: int):
        super().__init__()
        self.n_targets = n_targets
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, 2 * n_targets)

    def forward(self, features: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        out = self.out(self.hidden(features))
        mean, log_sigma = out[:, : self.n_targets], out[:, self.n_targets :]
        return torch.cat([mean, LOG_SIGMA_BOUND * torch.tanh(log_sigma / LOG_SIGMA_BOUND)], 1)


def pretext_head_for(head: Head, n_targets: int) -> PretextHead:
    first = head.net[0]
    return PretextHead(first.in_features, first.out_features, head.net[2].p, n_targets)


def vs30_head_from(head: Head, pretext: PretextHead) -> Head:
    """The Vs30 head with the pre-trained hidden layer and a zero output layer (predicts the
    target mean with sigma = the target std until fine-tuned)."""
    with torch.no_grad():
        head.net[0].weight.copy_(pretext.hidden[0].weight)
        head.net[0].bias.copy_(pretext.hidden[0].bias)
        head.net[3].weight.zero_()
        head.net[3].bias.zero_()
    return head


def masked_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL averaged over the known (non-NaN) targets."""
    k = target.shape[1]
    mean, log_sigma = out[:, :k], out[:, k:]
    known = torch.isfinite(target)
    safe = torch.where(known, target, torch.zeros_like(target))
    nll = 0.5 * ((mean - safe) / torch.exp(log_sigma)) ** 2 + log_sigma
    return (nll * known).sum() / known.sum().clamp(min=1)


class PretextDataset(torch.utils.data.Dataset):
    """(x, standardised pretext targets) of the given records, windows cut on demand."""

    def __init__(self, waves, records: pd.DataFrame, fs_hz: float, features, normaliser, z):
        self.waves, self.records = waves, records.reset_index(drop=True)
        self.fs_hz, self.features, self.normaliser = fs_hz, features, normaliser
        self.z = torch.from_numpy(z.astype(np.float32))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        x, s = window_of(self.waves, self.records.iloc[i], self.fs_hz, self.features)
        x, _ = self.normaliser.inputs(x, s)
        return torch.from_numpy(x), self.z[i]


def input_normaliser(waves, records: pd.DataFrame, fs_hz: float, features) -> Normaliser:
    """Input statistics of the training windows; no Vs30 statistics (target 0, std 1)."""
    placeholder = records.assign(vs30_mps=1.0)
    fitted = Normaliser.fit(waves, placeholder, fs_hz, features)
    return replace(fitted, target_mean=0.0, target_std=1.0)


def pretrain(
    prepared_dir: str | Path,
    features: FeatureParams,
    model: ModelParams,
    params: PretrainParams,
    progress: bool = False,
) -> PretrainResult:
    """Train the pretext task; returns a Vs30-ready bundle of the best validation epoch."""
    t0 = time.perf_counter()
    set_determinism(params.seed, params.num_threads)
    features = pretext_features(features)
    waves, records, summary = load_prepared(prepared_dir)
    fs_hz = float(summary["fs_hz"])
    usable, _ = usable_records(waves, records, fs_hz, features)
    parts = select_split(usable, params.split_column, 1.0, params.seed)
    raw = {k: pretext_targets(parts[k], fs_hz, params.targets) for k in ("train", "val")}
    parts = {k: parts[k][np.isfinite(raw[k]).any(axis=1)] for k in ("train", "val")}
    raw = {k: v[np.isfinite(v).any(axis=1)] for k, v in raw.items()}
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise DeepVs30Error(f"{prepared_dir}: no training/validation records with pretext targets")
    mean, std = np.nanmean(raw["train"], axis=0), np.nanstd(raw["train"], axis=0) + 1e-6
    z = {k: (v - mean) / std for k, v in raw.items()}
    normaliser = input_normaliser(waves, parts["train"], fs_hz, features)
    network = ModelBundle.build_network(model.name, model.hparams, features, fs_hz)
    vs30_head = network.head
    network.head = pretext_head_for(vs30_head, len(params.targets))
    device = resolve_device(params.device, "pretrain.device")
    network.to(device)

    datasets = {
        k: PretextDataset(waves, parts[k], fs_hz, features, normaliser, z[k])
        for k in ("train", "val")
    }
    generator = torch.Generator().manual_seed(params.seed)
    loader = torch.utils.data.DataLoader(
        datasets["train"], batch_size=params.batch_size, shuffle=True, generator=generator
    )
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(params.epochs, 1))
    history: list[dict] = []
    best = {"val_loss": np.inf, "epoch": 0, "state": None}

    precision = check_precision(params.precision, device, "pretrain.precision")
    scaler = grad_scaler(precision, device)

    def batch_loss(batch) -> tuple[torch.Tensor, int]:
        x, z = to_device(batch, device)
        with autocast(precision, device):
            out = network(x)
        return masked_nll(out.float(), z), len(z)  # the loss in float32

    for epoch in range(1, params.epochs + 1):
        train_loss = run_epoch(network, optimiser, loader, batch_loss, scaler)
        scheduler.step()
        val = _val_metrics(network, datasets["val"], params.targets, std)
        history.append({"epoch": epoch, "train_loss": train_loss, **val})
        log.info("pretrain epoch %d: %s", epoch, {k: round(v, 4) for k, v in history[-1].items()})
        if val["val_loss"] < best["val_loss"]:
            state = {k: v.clone() for k, v in network.state_dict().items()}
            best = {"val_loss": val["val_loss"], "epoch": epoch, "state": state}
        if epoch - best["epoch"] >= params.patience:
            break
    network.load_state_dict(best["state"])
    final = _val_metrics(network, datasets["val"], params.targets, std)
    network.head = vs30_head_from(vs30_head.to(device), network.head)
    network.to("cpu")  # the bundle leaves on the CPU, like a loaded one
    preprocess = PreprocessParams(**summary["params"]["preprocess"])
    bundle = ModelBundle(model.name, dict(model.hparams), features, preprocess, normaliser, network,
                         provenance(prepared_dir, parts, params.split_column),
                         min_record_s=summary["params"]["min_record_s"])  # fmt: skip
    stats = {"targets": params.targets, "mean": mean.tolist(), "std": std.tolist()}
    return PretrainResult(bundle, history, best["epoch"], final, stats, time.perf_counter() - t0)


@torch.no_grad()
def _val_metrics(network: nn.Module, dataset: PretextDataset, targets, std) -> dict:
    """Validation NLL, and per target the MAE (natural units) of the network and of predicting
    the training mean (the bar a useful pretext model must clear)."""
    network.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=256)
    device = next(network.parameters()).device
    outs = torch.cat([network(x.to(device)).cpu() for x, _ in loader])
    z = dataset.z
    metrics = {"val_loss": float(masked_nll(outs, z))}
    for i, name in enumerate(targets):
        known = torch.isfinite(z[:, i])
        err = (outs[known, i] - z[known, i]).abs().mean() * std[i]
        metrics[f"val_{name}_mae"] = float(err)
        metrics[f"val_{name}_mae_mean_predictor"] = float(z[known, i].abs().mean() * std[i])
    return metrics


# --- the stage ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", help="prepared folder (default: prepare.out); no Vs30 needed")
    parser.add_argument("--out", help="bundle folder (default: pretrain.out)")


def run(args: argparse.Namespace, params: dict) -> int:
    from deepvs30 import tracking

    features = section(params, "features", FeatureParams)
    model = section(params, "model", ModelParams)
    pre = section(params, "pretrain", PretrainParams) if "pretrain" in params else PretrainParams()
    prepared_dir = args.prepared or section(params, "prepare", PrepareParams).out
    out_dir = Path(args.out or pre.out)
    mlflow_params = section(params, "mlflow", tracking.MlflowParams)
    result = pretrain_and_log(prepared_dir, features, model, pre, mlflow_params, out_dir)
    sp = {k: round(v, 3) for k, v in result.val_metrics.items() if k.endswith("mae")}
    print(f"pretrained {model.name}: best epoch {result.best_epoch}, validation {sp} -> {out_dir}")
    print(f"fine-tune with: deepvs30 train --init-from {out_dir}")
    return 0


def pretrain_and_log(
    prepared_dir,
    features: FeatureParams,
    model: ModelParams,
    params: PretrainParams,
    mlflow_params,
    out_dir: str | Path,
    run_name: str | None = "pretrain",
    nested: bool = False,
) -> PretrainResult:
    """pretrain() inside an MLflow run; the bundle is logged as a pyfunc model (so runs:/ and
    registry URIs work with --init-from) and saved to ``out_dir`` with ``pretext.json``."""
    import mlflow

    from deepvs30 import tracking
    from deepvs30.pyfunc import log_bundle

    tracking.configure(mlflow_params)
    out_dir = Path(out_dir)
    with tracking.start_run(run_name=run_name, nested=nested) as active:
        mlflow.log_params(
            tracking.flatten(
                "",
                {
                    "features": pretext_features(features).to_dict(),
                    "model": asdict(model),
                    "pretrain": asdict(params),
                },
            )
        )
        mlflow.set_tags(
            {
                "task": "pretext",
                "prepared": str(prepared_dir),
                "model_family": model.name,
                "git_commit": tracking.git_commit(),
            }
        )
        result = pretrain(prepared_dir, features, model, params)
        for row in result.history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        mlflow.log_metrics({f"best_{k}": v for k, v in result.val_metrics.items()})
        staged = model_staging_dir(out_dir)  # out_dir appears whole or not at all (train's way)
        try:
            result.bundle.save(staged)
            pd.DataFrame(result.history).to_csv(staged / "history.csv", index=False)
            pretext = {
                **result.target_stats,
                "val": result.val_metrics,
                "best_epoch": result.best_epoch,
            }
            (staged / PRETEXT_FILE).write_text(json.dumps(pretext, indent=1))
            write_run_info(staged, active, log_bundle(result.bundle, staged), None)
            publish(staged, out_dir)
        except BaseException:
            shutil.rmtree(staged.parent, ignore_errors=True)
            raise
    return result
