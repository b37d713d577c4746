"""Site physics alone: a small dense network on the scalar inputs (the ln H/V curve of
``features.hv_bins``), the waveform window ignored. The "H/V-curve features" arm of the real
benchmark, and a baseline that any sequence model given the same scalars has to beat.
With ``hidden: 0`` it is a linear (ridge-like, through weight decay) regression."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from deepvs30.errors import ConfigError
from deepvs30.models.common import (
    LOG_SIGMA_BOUND,
    Family,
    bound_log_sigma,
    check_scalars,
    check_sizes,
)


class HvMLP(Family):
    """scalars (B, F) -> (B, 2); ``x`` (B, C, T) is accepted and unused."""

    family = "hv_mlp"
    DEFAULTS = {
        "hidden": 16,  # 0: linear
        "dropout": 0.1,
    }
    SEARCH_SPACE = {
        "hidden": ("categorical", [0, 8, 16, 32]),
        "dropout": ("float", 0.0, 0.5),
    }

    def build(self, cfg: SimpleNamespace) -> None:
        if cfg.n_scalars <= 0:
            raise ConfigError("model 'hv_mlp' needs scalar inputs: set features.hv_bins > 0")
        hidden, dropout, n_scalars = cfg.hidden, cfg.dropout, cfg.n_scalars
        if hidden < 0:
            raise ConfigError(f"model 'hv_mlp': hidden must be >= 0, got {hidden}")
        check_sizes(cfg)
        self.n_scalars = n_scalars
        if hidden:
            self.net = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(n_scalars, hidden), nn.ReLU(), nn.Linear(hidden, 2)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_scalars, 2))

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_scalars(scalars, self.n_scalars)
        return bound_log_sigma(self.net(scalars.to(torch.float32)))


def set_ridge(
    model: HvMLP,
    scalars: np.ndarray,
    target_z: np.ndarray,
    groups: np.ndarray,
    alphas: np.ndarray,
    n_folds: int = 5,
) -> dict:
    """Fit a linear ``hv_mlp`` in closed form: ridge regression of the standardised target on
    the standardised scalars, its penalty chosen by ``n_folds``-fold cross-validation grouped
    by ``groups`` (stations: a station's records share its Vs30, so record-level CV would
    leak). The sigma output is the constant cross-validated residual sd. Returns the chosen
    alpha and that sd (standardised units)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold

    if len(model.net) != 2:
        raise ConfigError("set_ridge needs a linear hv_mlp (hidden: 0)")
    splits = list(
        GroupKFold(n_splits=min(n_folds, len(set(groups)))).split(scalars, target_z, groups)
    )
    cv_mse = []
    for alpha in alphas:
        resid = np.empty_like(target_z, dtype=float)
        for train, test in splits:
            fitted = Ridge(alpha=float(alpha)).fit(scalars[train], target_z[train])
            resid[test] = fitted.predict(scalars[test]) - target_z[test]
        cv_mse.append(float(np.mean(resid**2)))
    best = int(np.argmin(cv_mse))
    ridge = Ridge(alpha=float(alphas[best])).fit(scalars, target_z)
    sigma_z = float(np.sqrt(cv_mse[best]))
    linear = model.net[1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0] = torch.as_tensor(ridge.coef_, dtype=linear.weight.dtype)
        linear.bias[0] = float(ridge.intercept_)
        # the head bounds log sigma by BOUND * tanh(out / BOUND): invert it
        log_sigma = float(np.clip(np.log(max(sigma_z, 1e-3)), -0.99 * LOG_SIGMA_BOUND, 0))
        linear.bias[1] = LOG_SIGMA_BOUND * float(np.arctanh(log_sigma / LOG_SIGMA_BOUND))
    return {"alpha": float(alphas[best]), "sigma_z": sigma_z}
