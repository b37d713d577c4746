"""Pieces shared by every model family: input front-end, conv blocks, patch embedding, head.

Shapes use B = batch, C = input channels, T = samples (100 Hz), L = sequence length after
the front-end, D = feature width. Every front-end returns the same layout as its input,
(B, features, L), so a model never needs to know which representation it is fed.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from deepvs30.errors import ConfigError

N_COMPONENTS = 3  # Z, N, E; channels after these carry the P/S mask (1 between P and S)
LOG_SIGMA_BOUND = 4.0  # |log sigma| of the prediction is softly kept below this
REPRESENTATIONS = ("waveform", "spectrogram")

# Sizes shared by families, in the order they appear in each family's DEFAULTS / SEARCH_SPACE
# (a family overrides a value in place: {**CONV_DEFAULTS, "downsample": 64}).
CONV_DEFAULTS = {
    "conv_channels": 16,  # width of the first block
    "n_conv_blocks": 4,
    "kernel_size": 7,
    "downsample": 32,  # total time reduction by the max pools
}
CONV_SPACE = {
    "conv_channels": ("int", 8, 64, "log"),
    "n_conv_blocks": ("int", 2, 5),
    "kernel_size": ("categorical", [3, 5, 7, 9, 11]),
    "downsample": ("categorical", [16, 32, 64]),
}
LSTM_DEFAULTS = {"lstm_hidden": 32, "lstm_layers": 1, "bidirectional": True}
LSTM_SPACE = {
    "lstm_hidden": ("int", 16, 128, "log"),
    "lstm_layers": ("int", 1, 2),
    "bidirectional": ("categorical", [True, False]),
}
# Last in every waveform family: the head's sizes, then the spectrogram front-end's (whose
# ranges are models.SPECTROGRAM_SPACE, searched only for that representation).
HEAD_DEFAULTS = {"head_hidden": 32, "dropout": 0.1, "n_fft": 128, "hop_length": 32}
HEAD_SPACE = {"head_hidden": ("int", 16, 128, "log"), "dropout": ("float", 0.0, 0.5)}


class Family(nn.Module):
    """Base of the model families: built from the input shape and keyword sizes.

    A family sets ``family``, its sizes with their defaults (``DEFAULTS``) and Optuna ranges
    (``SEARCH_SPACE``), and makes its layers in :meth:`build` from ``cfg``: one namespace of
    the input shape (``in_channels``, ``n_samples``, ``n_scalars``, ``representation``) and
    every size, defaults filled in (``cfg.dropout``).
    """

    family: ClassVar[str]
    DEFAULTS: ClassVar[dict[str, Any]]
    SEARCH_SPACE: ClassVar[dict[str, tuple]]

    def __init__(
        self,
        in_channels: int,
        n_samples: int,
        n_scalars: int = 0,
        representation: str = "waveform",
        **sizes: Any,
    ):
        super().__init__()
        unknown = sorted(set(sizes) - set(self.DEFAULTS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown size(s) {unknown}")
        shape = {
            "in_channels": in_channels,
            "n_samples": n_samples,
            "n_scalars": n_scalars,
            "representation": representation,
        }
        self.build(SimpleNamespace(**shape, **{**self.DEFAULTS, **sizes}))

    def build(self, cfg: SimpleNamespace) -> None:
        raise NotImplementedError


class Frontend(nn.Module):
    """Turn (B, C, T) into a (B, out_channels, L) feature sequence; L ~ T / hop.

    "waveform": identity, hop = 1.
    "spectrogram": log-magnitude STFT (Hann window ``n_fft``, hop ``hop_length``, centred)
    of each component; the (n_fft // 2 + 1) frequency bins of the components are stacked as
    features, then the mask channels averaged over the same frames, then a BatchNorm per
    feature. L = T // hop_length + 1.
    """

    def __init__(
        self, in_channels: int, representation: str, n_fft: int = 128, hop_length: int = 32
    ):
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ConfigError(
                f"unknown representation '{representation}'; known: {list(REPRESENTATIONS)}"
            )
        if in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
        self.representation = representation
        self.n_components = min(in_channels, N_COMPONENTS)
        self.n_masks = in_channels - self.n_components
        if representation == "waveform":
            self.hop = 1
            self.out_channels = in_channels
            return
        if not (16 <= n_fft <= 256 and n_fft % 2 == 0):
            raise ConfigError(f"n_fft must be an even number in [16, 256], got {n_fft}")
        if not 1 <= hop_length <= n_fft:
            raise ConfigError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        self.n_fft = n_fft
        self.hop = hop_length
        self.out_channels = self.n_components * (n_fft // 2 + 1) + self.n_masks
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.norm = nn.BatchNorm1d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, out_channels, L)."""
        if self.representation == "waveform":
            return x
        B, C, T = x.shape
        comps = x[:, : self.n_components].reshape(B * self.n_components, T)
        spec = torch.stft(
            comps,
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )  # (B * n_components, n_fft // 2 + 1, L)
        logmag = torch.log(spec.abs() + 1e-4).reshape(B, -1, spec.shape[-1])
        if self.n_masks:
            half = self.n_fft // 2
            masks = F.pad(x[:, self.n_components :], (half, half), mode="replicate")
            logmag = torch.cat([logmag, F.avg_pool1d(masks, self.n_fft, self.hop)], dim=1)
        return self.norm(logmag)


def pool_plan(factor: int, n_blocks: int) -> list[int]:
    """Per-block pooling factors (powers of two, larger first) whose product ~ ``factor``."""
    steps = max(0, round(math.log2(max(factor, 1))))
    base, extra = divmod(steps, n_blocks)
    return [2 ** (base + (1 if i < extra else 0)) for i in range(n_blocks)]


class ConvStack(nn.Module):
    """Blocks of Conv1d (same padding) -> BatchNorm -> ReLU -> MaxPool(pool_i) -> Dropout.

    (B, in_channels, L) -> (B, widths[-1], ~L / prod(pools)).
    """

    def __init__(
        self,
        in_channels: int,
        widths: list[int],
        kernel_size: int,
        pools: list[int],
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for width, pool in zip(widths, pools, strict=True):
            layers += [
                nn.Conv1d(in_channels, width, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(),
            ]
            if pool > 1:
                layers.append(nn.MaxPool1d(pool, ceil_mode=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_channels = width
        self.net = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchEmbed(nn.Module):
    """Cut the sequence into non-overlapping patches and project each to ``dim`` features.

    A Conv1d(kernel 7) -> BatchNorm -> GELU stem, then a strided Conv1d (kernel = stride =
    ``patch``) -> GELU. (B, in_channels, L) -> (B, L // patch, dim), batch first.
    """

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        stem = max(8, dim // 2)
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, stem, 7, padding=3, bias=False),
            nn.BatchNorm1d(stem),
            nn.GELU(),
            nn.Conv1d(stem, dim, patch, stride=patch),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).transpose(1, 2)


class Head(nn.Module):
    """Dense head: pooled features (B, D) and optional scalars (B, F) -> (B, 2).

    Column 0 is the standardised target, column 1 its log standard deviation, softly
    bounded to (-LOG_SIGMA_BOUND, LOG_SIGMA_BOUND) by a scaled tanh. Scalars are
    expected roughly standardised (the trainer's job, like the waveforms).
    """

    def __init__(self, in_features: int, n_scalars: int, hidden: int, dropout: float):
        super().__init__()
        self.n_scalars = n_scalars
        self.net = nn.Sequential(
            nn.Linear(in_features + n_scalars, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )

    def forward(self, features: torch.Tensor, scalars: torch.Tensor | None) -> torch.Tensor:
        if self.n_scalars:
            check_scalars(scalars, self.n_scalars)
            features = torch.cat([features, scalars.to(features.dtype)], dim=1)
        elif scalars is not None and scalars.numel():
            raise ValueError(f"model built with n_scalars=0, got scalars {tuple(scalars.shape)}")
        return bound_log_sigma(self.net(features))


def check_scalars(scalars: torch.Tensor | None, n_scalars: int) -> None:
    """Raise ValueError unless ``scalars`` is (B, n_scalars)."""
    if scalars is None or scalars.shape[-1] != n_scalars:
        got = None if scalars is None else tuple(scalars.shape)
        raise ValueError(f"model expects scalars of shape (B, {n_scalars}), got {got}")


def bound_log_sigma(out: torch.Tensor) -> torch.Tensor:
    """(B, 2) raw outputs -> (mean, log sigma softly bounded to +-LOG_SIGMA_BOUND)."""
    log_sigma = LOG_SIGMA_BOUND * torch.tanh(out[:, 1] / LOG_SIGMA_BOUND)
    return torch.stack([out[:, 0], log_sigma], dim=1)


def sequence_lstm(in_features: int, cfg: SimpleNamespace) -> nn.LSTM:
    """Batch-first LSTM of ``cfg.lstm_hidden`` / ``lstm_layers`` / ``bidirectional``, with
    ``cfg.dropout`` between layers; (B, L, in_features) -> (B, L, lstm_width(lstm))."""
    return nn.LSTM(
        in_features,
        cfg.lstm_hidden,
        num_layers=cfg.lstm_layers,
        batch_first=True,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0,
    )


def lstm_width(lstm: nn.LSTM) -> int:
    """Features per step of an LSTM's output: hidden size times directions."""
    return lstm.hidden_size * (2 if lstm.bidirectional else 1)


def patch_embed(frontend: Frontend, dim: int, patch_size: int) -> PatchEmbed:
    """PatchEmbed after ``frontend``, ``patch_size`` given in input samples (>= 1 frame)."""
    return PatchEmbed(frontend.out_channels, dim, max(1, round(patch_size / frontend.hop)))


def check_sizes(cfg: SimpleNamespace, *positive: str) -> None:
    """Raise ConfigError naming every size in ``positive`` that is not > 0, or for a
    ``cfg.dropout`` outside [0, 1)."""
    bad = {k: getattr(cfg, k) for k in positive if not getattr(cfg, k) > 0}
    if bad:
        raise ConfigError(f"hyper-parameters must be > 0: {bad}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}")
