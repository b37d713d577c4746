"""CNN only: convolutional blocks, global mean+max pooling over time, dense head."""

from __future__ import annotations

import torch
from torch import nn

from deepvs30.models.common import (
    ConvStack,
    Frontend,
    Head,
    check_dropout,
    check_positive,
    pool_plan,
)


class CNN(nn.Module):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "cnn"
    DEFAULTS = {
        "conv_channels": 16,  # width of the first block; doubled at blocks 2 and 4
        "n_conv_blocks": 5,
        "kernel_size": 7,
        "downsample": 64,  # total time reduction by the max pools
        "head_hidden": 32,
        "dropout": 0.1,
        "n_fft": 128,  # spectrogram representation only
        "hop_length": 32,  # spectrogram representation only
    }
    SEARCH_SPACE = {
        "conv_channels": ("int", 8, 64, "log"),
        "n_conv_blocks": ("int", 3, 6),
        "kernel_size": ("categorical", [3, 5, 7, 9, 11]),
        "downsample": ("categorical", [16, 32, 64]),
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
        n_conv_blocks: int = 5,
        kernel_size: int = 7,
        downsample: int = 64,
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
            head_hidden=head_hidden,
        )
        check_dropout(dropout)
        self.frontend = Frontend(in_channels, representation, n_fft, hop_length)
        pools = pool_plan(downsample // self.frontend.hop, n_conv_blocks)
        widths = [conv_channels * 2 ** ((i + 1) // 2) for i in range(n_conv_blocks)]
        widths = [min(w, 4 * conv_channels) for w in widths]
        self.features = ConvStack(self.frontend.out_channels, widths, kernel_size, pools, dropout)
        self.head = Head(2 * widths[-1], n_scalars, head_hidden, dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.features(self.frontend(x))  # (B, D, L)
        pooled = torch.cat([seq.mean(dim=2), seq.amax(dim=2)], dim=1)  # (B, 2D)
        return self.head(pooled, scalars)
