"""CNN only: convolutional blocks, global mean+max pooling over time, dense head."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from deepvs30.models.common import (
    CONV_DEFAULTS,
    CONV_SPACE,
    HEAD_DEFAULTS,
    HEAD_SPACE,
    ConvStack,
    Family,
    Frontend,
    Head,
    check_sizes,
    pool_plan,
)


class CNN(Family):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "cnn"
    DEFAULTS = {**CONV_DEFAULTS, "n_conv_blocks": 5, "downsample": 64, **HEAD_DEFAULTS}
    SEARCH_SPACE = {**CONV_SPACE, "n_conv_blocks": ("int", 3, 6), **HEAD_SPACE}

    def build(self, cfg: SimpleNamespace) -> None:
        check_sizes(
            cfg, "conv_channels", "n_conv_blocks", "kernel_size", "downsample", "head_hidden"
        )
        self.frontend = Frontend(cfg.in_channels, cfg.representation, cfg.n_fft, cfg.hop_length)
        pools = pool_plan(cfg.downsample // self.frontend.hop, cfg.n_conv_blocks)
        # conv_channels, doubled at blocks 2 and 4
        widths = [cfg.conv_channels * 2 ** ((i + 1) // 2) for i in range(cfg.n_conv_blocks)]
        widths = [min(w, 4 * cfg.conv_channels) for w in widths]
        self.features = ConvStack(
            self.frontend.out_channels, widths, cfg.kernel_size, pools, cfg.dropout
        )
        self.head = Head(2 * widths[-1], cfg.n_scalars, cfg.head_hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.features(self.frontend(x))  # (B, D, L)
        pooled = torch.cat([seq.mean(dim=2), seq.amax(dim=2)], dim=1)  # (B, 2D)
        return self.head(pooled, scalars)
