"""LSTM only, on a shortened input: the record is cut into patches of ``patch_size``
samples (a small conv stem and a strided conv project each patch), an LSTM reads the
patch sequence, its outputs are averaged over time and a dense head predicts.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from deepvs30.models.common import (
    HEAD_DEFAULTS,
    HEAD_SPACE,
    LSTM_DEFAULTS,
    LSTM_SPACE,
    Family,
    Frontend,
    Head,
    check_sizes,
    lstm_width,
    patch_embed,
    sequence_lstm,
)


class LSTM(Family):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "lstm"
    DEFAULTS = {
        "patch_size": 32,  # input samples per LSTM step (spectrogram: frames of hop_length)
        "embed_dim": 32,
        **LSTM_DEFAULTS,
        "lstm_hidden": 48,
        **HEAD_DEFAULTS,
    }
    SEARCH_SPACE = {
        "patch_size": ("categorical", [16, 32, 64]),
        "embed_dim": ("int", 16, 64, "log"),
        **LSTM_SPACE,
        **HEAD_SPACE,
    }

    def build(self, cfg: SimpleNamespace) -> None:
        check_sizes(cfg, "patch_size", "embed_dim", "lstm_hidden", "lstm_layers", "head_hidden")
        self.frontend = Frontend(cfg.in_channels, cfg.representation, cfg.n_fft, cfg.hop_length)
        self.embed = patch_embed(self.frontend, cfg.embed_dim, cfg.patch_size)
        self.lstm = sequence_lstm(cfg.embed_dim, cfg)
        self.head = Head(lstm_width(self.lstm), cfg.n_scalars, cfg.head_hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(self.frontend(x))  # (B, L, embed_dim)
        out, _ = self.lstm(tokens)  # (B, L, H * directions)
        return self.head(out.mean(dim=1), scalars)
