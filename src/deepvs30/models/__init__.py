"""Model families for Vs30 regression from (B, C, T) strong-motion windows.

Every model maps ``x`` (B, C, T) float32 — C = 3 normalised components (Z, N, E) plus
optionally P/S mask channels, T >= 256 samples at 100 Hz — and optional ``scalars``
(B, F) to (B, 2): column 0 the standardised target, column 1 its log standard deviation
(softly bounded to +-4).

    model = build_model("cnn_lstm", in_channels=4, n_samples=3000, dropout=0.2)
    out = model(x, scalars)  # (B, 2)

``search_space(name)`` describes the Optuna range of each size as plain data:
``("int", low, high)``, ``("int", low, high, "log")``, ``("float", low, high)``,
``("float", low, high, "log")`` or ``("categorical", [choices])``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from deepvs30.errors import ConfigError
from deepvs30.models.cnn import CNN
from deepvs30.models.cnn_lstm import CNNLSTM
from deepvs30.models.common import REPRESENTATIONS
from deepvs30.models.ensemble import FAMILY as ENSEMBLE
from deepvs30.models.ensemble import Ensemble
from deepvs30.models.hv_mlp import HvMLP
from deepvs30.models.lstm import LSTM
from deepvs30.models.transformer import Transformer

MODELS: dict[str, type[nn.Module]] = {
    cls.family: cls for cls in (CNNLSTM, CNN, LSTM, Transformer, HvMLP)
}

# Families that read the waveform window (hv_mlp reads only the scalar inputs).
WAVEFORM_MODELS: tuple[str, ...] = tuple(n for n in MODELS if n != HvMLP.family)

# Ranges of the spectrogram front-end, added to search_space(name, "spectrogram").
SPECTROGRAM_SPACE: dict[str, tuple] = {
    "n_fft": ("categorical", [64, 128, 256]),
    "hop_length": ("categorical", [16, 32, 64]),
}

__all__ = [
    "ENSEMBLE",
    "MODELS",
    "REPRESENTATIONS",
    "WAVEFORM_MODELS",
    "build_model",
    "describe",
    "model_hparams",
    "search_space",
]


def _family(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; known models: {sorted(MODELS)}")
    return MODELS[name]


def model_hparams(name: str) -> dict[str, Any]:
    """Default hyper-parameters (sizes) of the family ``name``; a fresh copy."""
    return dict(_family(name).DEFAULTS)


def search_space(name: str, representation: str = "waveform") -> dict[str, tuple]:
    """Optuna ranges of the family's sizes (plus the STFT's for "spectrogram")."""
    space = dict(_family(name).SEARCH_SPACE)
    if representation == "spectrogram":
        space.update(SPECTROGRAM_SPACE)
    return space


def build_model(
    name: str,
    in_channels: int,
    n_samples: int,
    n_scalars: int = 0,
    representation: str = "waveform",
    **hparams: Any,
) -> nn.Module:
    """Build family ``name`` with its defaults overridden by ``hparams``.

    Raises ConfigError for an unknown model, representation or hyper-parameter, or an
    ill-typed / out-of-range value. The model keeps ``model.spec``, the arguments that
    rebuild it (store it with the checkpoint). ``"ensemble"`` (hparams ``members``) is an
    average of fitted members (:mod:`deepvs30.models.ensemble`), not a searchable family.
    """
    cls = Ensemble if name == ENSEMBLE else _family(name)
    if representation not in REPRESENTATIONS:
        raise ConfigError(
            f"unknown representation '{representation}'; known: {list(REPRESENTATIONS)}"
        )
    defaults = cls.DEFAULTS
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown hyper-parameter(s) {unknown} for model '{name}'; allowed: {sorted(defaults)}"
        )
    for key, value in hparams.items():
        _check_type(name, key, value, defaults[key])
    if n_samples < 256:
        raise ConfigError(f"n_samples must be >= 256, got {n_samples}")
    if n_scalars < 0:
        raise ConfigError(f"n_scalars must be >= 0, got {n_scalars}")
    model = cls(in_channels, n_samples, n_scalars, representation, **hparams)
    model.spec = {
        "name": name,
        "in_channels": in_channels,
        "n_samples": n_samples,
        "n_scalars": n_scalars,
        "representation": representation,
        "hparams": {**defaults, **hparams},
    }
    return model


def _check_type(name: str, key: str, value: Any, default: Any) -> None:
    expected = type(default)
    ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(
            f"model '{name}': hyper-parameter '{key}' expects {expected.__name__}, got {value!r}"
        )


def describe(model: nn.Module) -> dict[str, Any]:
    """Family name, parameter count and build arguments of a model, for logging."""
    spec = getattr(model, "spec", {})
    return {
        "family": getattr(model, "family", type(model).__name__),
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "representation": spec.get("representation"),
        "hparams": spec.get("hparams"),
    }
