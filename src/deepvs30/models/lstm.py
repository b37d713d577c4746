"""LSTM only, on a shortened input: the record is cut into patches of ``patch_size``
samples (a small conv stem and a strided conv project each patch), an LSTM reads the
patch sequence, its outputs are averaged over time and a dense head predicts.
"""

from __future__ import annotations

import torch
from torch import nn

from deepvs30.models.common import Frontend, Head, PatchEmbed, check_dropout, check_positive


class LSTM(nn.Module):
    """(B, C, T) [+ scalars (B, F)] -> (B, 2)."""

    family = "lstm"
    DEFAULTS = {
        "patch_size": 32,  # input samples per LSTM step (spectrogram: frames of hop_length)
        "embed_dim": 32,
        "lstm_hidden": 48,
        "lstm_layers": 1,
        "bidirectional": True,
        "head_hidden": 32,
        "dropout": 0.1,
        "n_fft": 128,  # spectrogram representation only
        "hop_length": 32,  # spectrogram representation only
    }
    SEARCH_SPACE = {
        "patch_size": ("categorical", [16, 32, 64]),
        "embed_dim": ("int", 16, 64, "log"),
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
        patch_size: int = 32,
        embed_dim: int = 32,
        lstm_hidden: int = 48,
        lstm_layers: int = 1,
        bidirectional: bool = True,
        head_hidden: int = 32,
        dropout: float = 0.1,
        n_fft: int = 128,
        hop_length: int = 32,
    ):
        super().__init__()
        check_positive(
            patch_size=patch_size,
            embed_dim=embed_dim,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            head_hidden=head_hidden,
        )
        check_dropout(dropout)
        self.frontend = Frontend(in_channels, representation, n_fft, hop_length)
        patch = max(1, round(patch_size / self.frontend.hop))
        self.embed = PatchEmbed(self.frontend.out_channels, embed_dim, patch)
        self.lstm = nn.LSTM(
            embed_dim,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.head = Head(lstm_hidden * (2 if bidirectional else 1), n_scalars, head_hidden, dropout)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(self.frontend(x))  # (B, L, embed_dim)
        out, _ = self.lstm(tokens)  # (B, L, H * directions)
        return self.head(out.mean(dim=1), scalars)
