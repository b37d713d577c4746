"""CNN-LSTM hybrid, the method of arXiv 2503.05224.

A 1-D convolutional feature extractor shortens the (B, C, T) record by ~``downsample``
(conv blocks with batch norm, ReLU, max pooling), an LSTM reads the resulting feature
sequence, its outputs are averaged over time and a dense head predicts (mean, log sigma).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepvs30.errors import ConfigError
from deepvs30.models.common import (
    ConvStack,
    Frontend,
    Head,
    check_dropout,
    check_positive,
    pool_plan,
)


class CNNLSTM(nn.Module):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "cnn_lstm"
    DEFAULTS = {
        "conv_channels": 16,  # width of the first block; later blocks use twice this
        "n_conv_blocks": 4,
        "kernel_size": 7,
        "downsample": 32,  # total time reduction (input samples per LSTM step)
        "lstm_hidden": 32,
        "lstm_layers": 1,
        "bidirectional": True,
        "head_hidden": 32,
        "dropout": 0.1,
        "n_fft": 128,  # spectrogram representation only
        "hop_length": 32,  # spectrogram representation only
    }
    SEARCH_SPACE = {
        "conv_channels": ("int", 8, 64, "log"),
        "n_conv_blocks": ("int", 2, 5),
        "kernel_size": ("categorical", [3, 5, 7, 9, 11]),
        "downsample": ("categorical", [16, 32, 64]),
        "lstm_hidden": ("int", 16, 128, "log"),
        "lstm_layers": ("int", 1, 2),
        "bidirectional": ("categorical", [True, False]),
        "head_hidden": ("int", 16, 128, "log"),
        "dropout": ("float", 0.0, 0.5),
    }

    def __init__(
        self,
        in_channels: int,
        n_samples: int,
        n_scalars: int = 0,
        representation: str = "waveform",
        *,
        conv_channels: int = 16,
        n_conv_blocks: int = 4,
        kernel_size: int = 7,
        downsample: int = 32,
        lstm_hidden: int = 32,
        lstm_layers: int = 1,
        bidirectional: bool = True,
        head_hidden: int = 32,
        dropout: float = 0.1,
        n_fft: int = 128,
        hop_length: int = 32,
    ):
        super().__init__()
        check_positive(
            conv_channels=conv_channels,
            n_conv_blocks=n_conv_blocks,
            kernel_size=kernel_size,
            downsample=downsample,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            head_hidden=head_hidden,
        )
        check_dropout(dropout)
        self.frontend = Frontend(in_channels, representation, n_fft, hop_length)
        pools = pool_plan(downsample // self.frontend.hop, n_conv_blocks)
        if n_samples // self.frontend.hop // math.prod(pools) < 2:
            raise ConfigError(f"downsample={downsample} leaves < 2 steps of {n_samples} samples")
        widths = [conv_channels * (1 if i == 0 else 2) for i in range(n_conv_blocks)]
        self.features = ConvStack(self.frontend.out_channels, widths, kernel_size, pools, dropout)
        self.lstm = nn.LSTM(
            widths[-1],
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.head = Head(lstm_hidden * (2 if bidirectional else 1), n_scalars, head_hidden, dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.features(self.frontend(x))  # (B, D, L)
        out, _ = self.lstm(seq.transpose(1, 2))  # (B, L, H * directions)
        return self.head(out.mean(dim=1), scalars)
