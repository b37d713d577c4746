"""Training loop: determinism, resume after an interruption, Gaussian NLL, ablations."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from deepvs30.errors import ConfigError
from deepvs30.prepare import PrepareParams, prepare
from deepvs30.segment import FeatureParams
from deepvs30.train import ModelParams, TrainParams, fit, loss_fn

FEATURES = FeatureParams(window_s=10.0)
MODEL = ModelParams(name="cnn_lstm", hparams={"conv_channels": 8, "lstm_hidden": 8})


@pytest.fixture(scope="module")
def prepared(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare(tiny_dataset, out, PrepareParams())
    return out


def _params(tmp_path, **kw) -> TrainParams:
    base = TrainParams(
        epochs=3,
        batch_size=16,
        num_threads=1,
        patience=10,
        out=str(tmp_path / "model"),
        checkpoint=str(tmp_path / "ckpt.pt"),
    )
    return replace(base, **kw)


def _weights(result) -> dict[str, torch.Tensor]:
    return result.bundle.network.state_dict()


def test_same_seed_same_weights(prepared, tmp_path):
    a = fit(prepared, FEATURES, MODEL, _params(tmp_path / "a"), progress=False)
    b = fit(prepared, FEATURES, MODEL, _params(tmp_path / "b"), progress=False)
    c = fit(prepared, FEATURES, MODEL, _params(tmp_path / "c", seed=7), progress=False)
    for key, value in _weights(a).items():
        assert torch.equal(value, _weights(b)[key]), key
    assert any(not torch.equal(v, _weights(c)[k]) for k, v in _weights(a).items())
    assert [row["epoch"] for row in a.history] == [1, 2, 3]
    assert a.history == b.history


def test_resume_after_interruption_matches_uninterrupted(prepared, tmp_path):
    full = fit(prepared, FEATURES, MODEL, _params(tmp_path / "full"), progress=False)

    def crash(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    params = _params(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        fit(prepared, FEATURES, MODEL, params, on_epoch=crash, progress=False)
    seen = []
    resumed = fit(
        prepared, FEATURES, MODEL, params, progress=False, on_epoch=lambda e, row: seen.append(e)
    )
    assert seen == [3]  # epochs 1-2 came from the checkpoint
    assert resumed.history == full.history
    for key, value in _weights(full).items():
        assert torch.equal(value, _weights(resumed)[key]), key


def test_checkpoint_of_other_config_is_not_reused(prepared, tmp_path):
    params = _params(tmp_path, epochs=1)
    fit(prepared, FEATURES, MODEL, params, progress=False)
    seen = []
    fit(
        prepared,
        replace(FEATURES, ps_channel=False),
        MODEL,
        params,
        progress=False,
        on_epoch=lambda e, row: seen.append(e),
    )
    assert seen == [1]


def test_gaussian_nll_rewards_honest_sigma():
    target = torch.zeros(1000)
    mean = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 0.5
    losses = {
        s: float(
            loss_fn(
                "gaussian_nll",
                torch.stack([mean, torch.full_like(mean, torch.log(torch.tensor(s)))], 1),
                target,
            )
        )
        for s in (0.1, 0.5, 2.0)
    }
    assert losses[0.5] < losses[0.1] and losses[0.5] < losses[2.0]
    with pytest.raises(ConfigError, match="train.loss"):
        loss_fn("huber", torch.zeros(2, 2), torch.zeros(2))


def test_unknown_split_column(prepared, tmp_path):
    with pytest.raises(ConfigError, match="split_column"):
        fit(
            prepared,
            FEATURES,
            MODEL,
            _params(tmp_path, split_column="by_magnitude"),
            progress=False,
        )
