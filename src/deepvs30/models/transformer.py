"""Small attention encoder over convolutional patches: a strided-conv patch embedding,
a sinusoidal or learned positional encoding, a few pre-norm TransformerEncoder layers,
mean pooling over tokens and a dense head.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from deepvs30.errors import ConfigError
from deepvs30.models.common import (
    HEAD_DEFAULTS,
    HEAD_SPACE,
    Family,
    Frontend,
    Head,
    check_sizes,
    patch_embed,
)


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """The (length, dim) sine/cosine table of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class Transformer(Family):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "transformer"
    DEFAULTS = {
        "patch_size": 32,  # input samples per token (spectrogram: frames of hop_length)
        "d_model": 32,
        "n_heads": 4,
        "n_layers": 2,
        "ff_mult": 2,  # feed-forward width = ff_mult * d_model
        "pos_encoding": "sinusoidal",  # or "learned" (sized for n_samples, interpolated)
        **HEAD_DEFAULTS,
    }
    SEARCH_SPACE = {
        "patch_size": ("categorical", [16, 32, 64]),
        "d_model": ("categorical", [16, 32, 48, 64]),
        "n_heads": ("categorical", [1, 2, 4]),
        "n_layers": ("int", 1, 4),
        "ff_mult": ("categorical", [2, 4]),
        "pos_encoding": ("categorical", ["sinusoidal", "learned"]),
        **HEAD_SPACE,
    }

    def build(self, cfg: SimpleNamespace) -> None:
        check_sizes(cfg, "patch_size", "d_model", "n_heads", "n_layers", "ff_mult", "head_hidden")
        d_model, n_heads = cfg.d_model, cfg.n_heads
        if d_model % n_heads or d_model % 2:
            raise ConfigError(f"d_model={d_model} must be even and divisible by n_heads={n_heads}")
        if cfg.pos_encoding not in ("sinusoidal", "learned"):
            raise ConfigError(
                f"pos_encoding must be 'sinusoidal' or 'learned', got {cfg.pos_encoding!r}"
            )
        self.frontend = Frontend(cfg.in_channels, cfg.representation, cfg.n_fft, cfg.hop_length)
        self.embed = patch_embed(self.frontend, d_model, cfg.patch_size)
        n_tokens = max(1, (cfg.n_samples // self.frontend.hop + 1) // self.embed.patch)
        if cfg.pos_encoding == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(n_tokens, d_model))
        else:
            self.register_buffer("pos", sinusoidal_encoding(n_tokens, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            cfg.ff_mult * d_model,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = Head(d_model, cfg.n_scalars, cfg.head_hidden, cfg.dropout)

    def positions(self, length: int) -> torch.Tensor:
        """(length, d_model) positional encoding; linearly resampled if length differs."""
        if length == self.pos.shape[0]:
            return self.pos
        if isinstance(self.pos, nn.Parameter):
            return F.interpolate(self.pos.T[None], size=length, mode="linear")[0].T
        return sinusoidal_encoding(length, self.pos.shape[1]).to(self.pos.device)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(self.frontend(x))  # (B, L, d_model)
        tokens = tokens + self.positions(tokens.shape[1])
        encoded = self.norm(self.encoder(tokens))  # (B, L, d_model)
        return self.head(encoded.mean(dim=1), scalars)
