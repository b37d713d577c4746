"""Transfer learning: start a model from another one and fine-tune it (``params.yaml: transfer``).

A network has three blocks, named the same way for every family:

- ``extractor``: the convolutional feature extractor (cnn_lstm/cnn: ``frontend`` + ``features``;
  lstm: ``frontend`` + the conv patch ``embed``; transformer: ``frontend`` + ``embed`` + ``pos``);
- ``sequence``: the sequence model (cnn_lstm/lstm: ``lstm``; transformer: ``encoder`` + ``norm``;
  cnn: none);
- ``head``: the dense head, always trained at the base learning rate.

``freeze: cnn`` freezes the extractor, ``freeze: cnn_lstm`` the extractor and the sequence model
(for ``cnn``, which has no sequence model, both mean the extractor). Frozen parameters leave the
optimiser and their batch-norm layers stay in eval mode, so a training epoch leaves them bit for
bit unchanged. Loaded, unfrozen parameters train at ``lr * pretrained_lr_mult``. During the first
``warmup_epochs`` epochs only the head trains. Weights are copied where names and shapes match;
a grown input (the P/S mask channel added to a model pre-trained without it, or a scalar input
added to the head) is copied into the leading slots and the new slots start at zero, so the
fine-tuned model starts by computing exactly what the pre-trained one computed. Such a grown
tensor stays trainable even inside a frozen block (otherwise the new channel would stay zero).
Everything else that does not match is skipped and reported.

``refit_normaliser: false`` keeps the init model's input statistics (per-channel mean/std), so
the pre-trained filters see inputs scaled as during pre-training; the ln Vs30 statistics always
come from the target training split (a pretext model has none).
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from deepvs30.errors import ConfigError

if TYPE_CHECKING:
    from deepvs30.inference import ModelBundle
    from deepvs30.windows import Normaliser

log = logging.getLogger(__name__)

FREEZE_CHOICES = ("none", "cnn", "cnn_lstm")
BLOCKS: dict[str, dict[str, tuple[str, ...]]] = {
    "cnn_lstm": {"extractor": ("frontend", "features"), "sequence": ("lstm",)},
    "cnn": {"extractor": ("frontend", "features"), "sequence": ()},
    "lstm": {"extractor": ("frontend", "embed"), "sequence": ("lstm",)},
    "transformer": {"extractor": ("frontend", "embed", "pos"), "sequence": ("encoder", "norm")},
}
FROZEN_BLOCKS = {"none": (), "cnn": ("extractor",), "cnn_lstm": ("extractor", "sequence")}


@dataclass(frozen=True)
class TransferParams:
    init_from: str | None = None  # model URI or bundle folder; --init-from overrides
    freeze: str = "none"  # none | cnn (feature extractor) | cnn_lstm (extractor + sequence)
    pretrained_lr_mult: float = 0.3  # learning-rate multiplier of loaded, unfrozen blocks
    warmup_epochs: int = 1  # first epochs train the head alone
    refit_normaliser: bool = True  # false: keep the init model's input statistics

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_CHOICES:
            raise ConfigError(f"transfer.freeze: {self.freeze!r} is not one of {FREEZE_CHOICES}")
        if self.pretrained_lr_mult < 0:
            raise ConfigError("transfer.pretrained_lr_mult: must be >= 0")
        if self.warmup_epochs < 0:
            raise ConfigError("transfer.warmup_epochs: must be >= 0")


def transfer_search_space() -> dict[str, tuple]:
    """Optuna ranges of the fine-tuning options, in the format of ``models.search_space``.

    Keys are ``TransferParams`` fields (build one with ``replace(params, **sampled)``):
    ``freeze`` (categorical none/cnn/cnn_lstm), ``pretrained_lr_mult`` (float 0.03-1, log:
    the learning rate of loaded blocks relative to ``train.lr``), ``warmup_epochs`` (int 0-3,
    head-only epochs) and ``refit_normaliser`` (categorical true/false). Only meaningful when
    the trial starts from a model (``transfer.init_from`` set).
    """
    return {
        "freeze": ("categorical", list(FREEZE_CHOICES)),
        "pretrained_lr_mult": ("float", 0.03, 1.0, "log"),
        "warmup_epochs": ("int", 0, 3),
        "refit_normaliser": ("categorical", [True, False]),
    }


def block_of(family: str, name: str) -> str:
    """``extractor``, ``sequence`` or ``head`` for a parameter/buffer name of a family."""
    top = name.split(".", 1)[0]
    if top == "head":
        return "head"
    blocks = BLOCKS.get(family, BLOCKS["cnn_lstm"])
    return "extractor" if top in blocks["extractor"] else "sequence"


# --- loading what matches -------------------------------------------------------------------


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)  # copied as they are
    grown: list[str] = field(default_factory=list)  # copied into the leading slots, rest zero
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} tensors, grew {len(self.grown)} {self.grown}"
        if self.skipped:
            text += f", skipped {len(self.skipped)}: {self.skipped}"
        return text


def _grown_input(name: str, first_weight: str, src: torch.Tensor, dst: torch.Tensor) -> bool:
    """Whether ``dst`` is ``src`` with more inputs (dim 1) and can take it in its first slots:
    the network's input layer (extra P/S channel) or the head's first layer (extra scalar)."""
    if name not in (first_weight, "head.net.0.weight") or src.dim() != dst.dim() or src.dim() < 2:
        return False
    same_other = all(src.shape[d] == dst.shape[d] for d in range(src.dim()) if d != 1)
    return same_other and dst.shape[1] > src.shape[1]


def _grown_frontend_norm(name: str, src: torch.Tensor, dst: torch.Tensor) -> bool:
    """Spectrogram front-end batch norm with mask features appended: copy the leading part."""
    return (
        name.startswith("frontend.norm.")
        and src.dim() == dst.dim() == 1
        and (dst.shape[0] > src.shape[0])
    )


def load_matching(network: nn.Module, source: nn.Module) -> LoadReport:
    """Copy the tensors of ``source`` into ``network`` where names and shapes allow."""
    src_state = source.state_dict()
    dst_state = network.state_dict()
    first_weight = next(n for n, p in network.named_parameters() if p.dim() >= 2)
    report = LoadReport()
    new_state = {}
    for name, dst in dst_state.items():
        src = src_state.get(name)
        if src is None:
            report.skipped[name] = "not in the init model"
        elif src.shape == dst.shape:
            new_state[name] = src.clone()
            report.loaded.append(name)
        elif _grown_input(name, first_weight, src, dst):
            grown = torch.zeros_like(dst)
            grown[:, : src.shape[1]] = src
            new_state[name] = grown
            report.grown.append(name)
        elif _grown_frontend_norm(name, src, dst):
            grown = dst.clone()
            grown[: src.shape[0]] = src
            new_state[name] = grown
            report.grown.append(name)
        else:
            report.skipped[name] = f"shape {tuple(src.shape)} -> {tuple(dst.shape)}"
    network.load_state_dict(new_state, strict=False)
    return report


# --- freezing, learning rates and warm-up --------------------------------------------------


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` replacement for held modules: they keep eval mode (batch-norm statistics
    and dropout fixed) while the rest of the network trains."""
    held = getattr(module, "_transfer_held", False)
    nn.Module.train(module, mode and not held)
    return module


@dataclass
class TransferPlan:
    """What :func:`apply_transfer` decided; ``start_epoch`` applies the warm-up schedule."""

    network: nn.Module
    family: str
    params: TransferParams
    report: LoadReport
    param_groups: list[dict]
    frozen: set[str]
    blocks: dict[str, str]  # parameter name -> block

    def trainable_blocks(self, epoch: int) -> set[str]:
        if epoch <= self.params.warmup_epochs:
            return {"head"}
        return {"extractor", "sequence", "head"}

    def start_epoch(self, epoch: int) -> None:
        """Set requires_grad for this epoch (1-based); layers left with no trainable parameter
        are held in eval mode (batch-norm running statistics stay as loaded)."""
        active = self.trainable_blocks(epoch)
        for name, param in self.network.named_parameters():
            param.requires_grad_(name not in self.frozen and self.blocks[name] in active)
        for module in self.network.modules():
            own = list(module.parameters(recurse=False))
            if own:
                _hold(module, not any(p.requires_grad for p in own))


def _hold(module: nn.Module, held: bool) -> None:
    module._transfer_held = held  # type: ignore[attr-defined]
    if not isinstance(module.__dict__.get("train"), types.MethodType):
        module.train = types.MethodType(_stay_in_eval, module)  # type: ignore[method-assign]
    module.train(module.training)


def apply_transfer(
    network: nn.Module,
    init_bundle: ModelBundle | None,
    params: TransferParams,
    lr: float,
    family: str | None = None,
) -> TransferPlan:
    """Load what matches from ``init_bundle``, freeze, and build the optimiser's param groups.

    Groups (empty ones dropped), each with a ``name``: ``head`` (lr), ``pretrained`` (loaded,
    unfrozen extractor/sequence parameters, lr * pretrained_lr_mult) and ``new`` (extractor/
    sequence parameters the init model could not provide, lr). Frozen parameters are in no group.
    """
    family = family or getattr(network, "family", "cnn_lstm")
    if init_bundle is not None:
        report = load_matching(network, init_bundle.network)
        log.info("transfer from %s: %s", init_bundle.model_name, report.summary())
    else:
        report = LoadReport()
        if params.freeze != "none" or params.warmup_epochs:
            log.warning("transfer: no init model; freeze/warm-up apply to random weights")
    blocks = {name: block_of(family, name) for name, _ in network.named_parameters()}
    loaded = set(report.loaded)
    frozen_blocks = FROZEN_BLOCKS[params.freeze]
    frozen = {n for n, b in blocks.items() if b in frozen_blocks and n in loaded}
    not_loaded = {n for n, b in blocks.items() if b in frozen_blocks} - loaded - frozen
    if init_bundle is not None and not_loaded:
        log.warning("transfer: not frozen (not loaded or grown): %s", sorted(not_loaded))
    pretrained = set(report.loaded) | set(report.grown)
    groups: dict[str, list] = {"head": [], "pretrained": [], "new": []}
    for name, param in network.named_parameters():
        if name in frozen:
            continue
        if blocks[name] == "head":
            groups["head"].append(param)
        else:
            groups["pretrained" if name in pretrained else "new"].append(param)
    mult = {"head": 1.0, "pretrained": params.pretrained_lr_mult, "new": 1.0}
    param_groups = [
        {"name": key, "params": value, "lr": lr * mult[key]}
        for key, value in groups.items()
        if value
    ]
    plan = TransferPlan(network, family, params, report, param_groups, frozen, blocks)
    plan.start_epoch(1)
    return plan


def keep_input_statistics(fitted: Normaliser, init: Normaliser) -> Normaliser:
    """``fitted`` (on the target) with the init model's input statistics where they exist:
    channels the init model had keep its mean/std; extra channels keep the target's."""
    n = min(len(init.channel_mean), len(fitted.channel_mean))
    mean = list(init.channel_mean[:n]) + list(fitted.channel_mean[n:])
    std = list(init.channel_std[:n]) + list(fitted.channel_std[n:])
    same_scalars = len(init.scalar_mean) == len(fitted.scalar_mean)
    return replace(
        fitted,
        channel_mean=mean,
        channel_std=std,
        scalar_mean=list(init.scalar_mean) if same_scalars else fitted.scalar_mean,
        scalar_std=list(init.scalar_std) if same_scalars else fitted.scalar_std,
    )
