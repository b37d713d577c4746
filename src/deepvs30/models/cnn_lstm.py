"""CNN-LSTM hybrid, the method of arXiv 2503.05224.

A 1-D convolutional feature extractor shortens the (B, C, T) record by ~``downsample``
(conv blocks with batch norm, ReLU, max pooling), an LSTM reads the resulting feature
sequence, its outputs are averaged over time and a dense head predicts (mean, log sigma).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from deepvs30.errors import ConfigError
from deepvs30.models.common import (
    CONV_DEFAULTS,
    CONV_SPACE,
    HEAD_DEFAULTS,
    HEAD_SPACE,
    LSTM_DEFAULTS,
    LSTM_SPACE,
    ConvStack,
    Family,
    Frontend,
    Head,
    check_sizes,
    lstm_width,
    pool_plan,
    sequence_lstm,
)


class CNNLSTM(Family):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "cnn_lstm"
    # downsample: input samples per LSTM step
    DEFAULTS = {**CONV_DEFAULTS, **LSTM_DEFAULTS, **HEAD_DEFAULTS}
    SEARCH_SPACE = {**CONV_SPACE, **LSTM_SPACE, **HEAD_SPACE}

    def build(self, cfg: SimpleNamespace) -> None:
        check_sizes(
            cfg,
            "conv_channels",
            "n_conv_blocks",
            "kernel_size",
            "downsample",
            "lstm_hidden",
            "lstm_layers",
            "head_hidden",
        )
        self.frontend = Frontend(cfg.in_channels, cfg.representation, cfg.n_fft, cfg.hop_length)
        pools = pool_plan(cfg.downsample // self.frontend.hop, cfg.n_conv_blocks)
        if cfg.n_samples // self.frontend.hop // math.prod(pools) < 2:
            raise ConfigError(
                f"downsample={cfg.downsample} leaves < 2 steps of {cfg.n_samples} samples"
            )
        # conv_channels, then twice that in every later block
        widths = [cfg.conv_channels * (1 if i == 0 else 2) for i in range(cfg.n_conv_blocks)]
        self.features = ConvStack(
            self.frontend.out_channels, widths, cfg.kernel_size, pools, cfg.dropout
        )
        self.lstm = sequence_lstm(widths[-1], cfg)
        self.head = Head(lstm_width(self.lstm), cfg.n_scalars, cfg.head_hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.features(self.frontend(x))  # (B, D, L)
        out, _ = self.lstm(seq.transpose(1, 2))  # (B, L, H * directions)
        return self.head(out.mean(dim=1), scalars)
