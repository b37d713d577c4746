"""An average of trained models in ln Vs30: the real benchmark's ensemble arms.

Each member keeps the normaliser it was trained with (input moments, target scale and sigma
calibration), rebuilt here from the ensemble's ``members`` config, so the ensemble reads
*raw* inputs: its bundle's normaliser is the identity (:func:`deepvs30.inference.ensemble`).

Output column 0 is the mean of the members' ln Vs30 (m/s); column 1 the log of the sd of
their equal-weight mixture, sqrt(mean sigma_i² + var mu_i) (ln units), so disagreement
between the members widens the interval. Not a searchable family: it is assembled from
fitted members, never trained by gradient descent.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from deepvs30.errors import ConfigError
from deepvs30.models.common import Family

FAMILY = "ensemble"


class Ensemble(Family):
    """x (B, C, T) and scalars (B, F), both un-normalised -> (B, 2): ln Vs30 and its log sd.
    ``members``: per member its ``model_name``, ``hparams`` and ``normaliser`` (a dict)."""

    family = FAMILY
    DEFAULTS = {"members": []}
    SEARCH_SPACE = {}  # nothing to search: assembled from fitted members

    def build(self, cfg: SimpleNamespace) -> None:
        from deepvs30.models import build_model

        members = cfg.members
        if len(members) < 2:
            raise ConfigError("model 'ensemble' needs at least 2 members")
        shape = (cfg.in_channels, cfg.n_samples, cfg.n_scalars, cfg.representation)
        self.members = nn.ModuleList(
            build_model(m["model_name"], *shape, **m["hparams"]) for m in members
        )
        # the members' normalisers: config, not weights (non-persistent buffers)
        for i, m in enumerate(members):
            norm = m["normaliser"]
            stats = {
                "channel_mean": torch.tensor(norm["channel_mean"])[:, None],
                "channel_std": torch.tensor(norm["channel_std"])[:, None],
                "scalar_mean": torch.tensor(norm["scalar_mean"]),
                "scalar_std": torch.tensor(norm["scalar_std"]),
                "target": torch.tensor(
                    [norm["target_mean"], norm["target_std"], norm.get("sigma_scale", 1.0)]
                ),  # fmt: skip
            }
            for name, value in stats.items():
                self.register_buffer(f"m{i}_{name}", value.to(torch.float32), persistent=False)

    def _stat(self, i: int, name: str) -> torch.Tensor:
        return getattr(self, f"m{i}_{name}")

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        mus, variances = [], []
        for i, net in enumerate(self.members):
            xn = (x - self._stat(i, "channel_mean")) / self._stat(i, "channel_std")
            sn = scalars
            if scalars is not None and self._stat(i, "scalar_mean").numel():
                sn = (scalars - self._stat(i, "scalar_mean")) / self._stat(i, "scalar_std")
            out = net(xn, sn)
            target_mean, target_std, sigma_scale = self._stat(i, "target")
            mus.append(out[:, 0] * target_std + target_mean)
            variances.append((torch.exp(out[:, 1]) * target_std * sigma_scale) ** 2)
        mu = torch.stack(mus)
        variance = torch.stack(variances).mean(0) + mu.var(0, unbiased=False)
        return torch.stack([mu.mean(0), 0.5 * torch.log(variance)], dim=1)
