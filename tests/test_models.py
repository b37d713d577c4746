"""Tests of deepvs30.models: shapes, gradients, determinism, learnability, config errors."""

from __future__ import annotations

import math
import random

import pytest
import torch

from deepvs30.errors import ConfigError
from deepvs30.models import (
    REPRESENTATIONS,
    WAVEFORM_MODELS,
    build_model,
    describe,
    model_hparams,
    search_space,
)
from deepvs30.models.common import LOG_SIGMA_BOUND

FAMILIES = sorted(WAVEFORM_MODELS)
CASES = [(name, rep) for name in FAMILIES for rep in REPRESENTATIONS]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: two spinning threads crawl when other jobs share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sinusoid_task(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sinusoid-in-noise records (n, 4, T) with a P/S mask; target = standardised ln f.

    f is log-uniform in 1-20 Hz, each component has its own phase and amplitude, the noise
    has half the signal's scale, and each channel is normalised like the trainer does.
    """
    g = torch.Generator().manual_seed(seed)
    log_f = torch.empty(n).uniform_(0.0, math.log(20.0), generator=g)
    t = torch.arange(T) / 100.0
    phase = 2 * math.pi * torch.rand(n, 3, 1, generator=g)
    amp = 0.5 + torch.rand(n, 3, 1, generator=g)
    x = amp * torch.sin(2 * math.pi * log_f.exp()[:, None, None] * t + phase)
    x = x + 0.5 * torch.randn(n, 3, T, generator=g)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    p = torch.randint(100, T // 2, (n, 1), generator=g)
    idx = torch.arange(T)
    mask = ((idx >= p) & (idx < p + 200)).float()
    target = (log_f - math.log(20.0) / 2) / (math.log(20.0) / math.sqrt(12))  # U(0, ln 20)
    return torch.cat([x, mask[:, None]], dim=1), target


@pytest.mark.parametrize("name,rep", CASES)
@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("n_scalars", [0, 2])
def test_output_shape(name: str, rep: str, in_channels: int, n_scalars: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels, 3000, n_scalars, representation=rep).eval()
    scalars = torch.randn(2, n_scalars) if n_scalars else None
    with torch.no_grad():
        for T in (256, 1000, 3001, 6000):
            out = model(torch.randn(2, in_channels, T), scalars)
            assert out.shape == (2, 2) and out.dtype == torch.float32
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,rep", CASES)
def test_gradients_reach_every_parameter(name: str, rep: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 4, 1000, 1, representation=rep)
    model(torch.randn(4, 4, 1000), torch.randn(4, 1)).square().sum().backward()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv1d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,rep", CASES)
def test_deterministic_given_seed(name: str, rep: str) -> None:
    x = torch.randn(4, 4, 1000)
    outputs, grads = [], []
    torch.use_deterministic_algorithms(True)  # raises on any nondeterministic op
    try:
        for _ in range(2):
            torch.manual_seed(123)
            model = build_model(name, 4, 1000, representation=rep)  # train mode: dropout on
            out = model(x)
            out.sum().backward()
            outputs.append(out.detach())
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("name,rep", CASES)
def test_learns_dominant_frequency(name: str, rep: str) -> None:
    """40 Adam steps on 32 records: train MSE drops by > 50%, held-out MSE well below 1.

    Held-out: a predictor that ignores the input scores ~1, so < 0.5 means the family
    reads the frequency content, not just memorises the 32 records.
    """
    x, y = sinusoid_task(32, 512, seed=0)
    x_test, y_test = sinusoid_task(64, 512, seed=1)
    torch.manual_seed(0)
    model = build_model(name, 4, 512, representation=rep)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = (model(x)[:, 0] - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        held_out = (model(x_test)[:, 0] - y_test).square().mean().item()
    print(f"{name}/{rep}: train MSE {losses[0]:.3f} -> {losses[-1]:.3f}, held-out {held_out:.3f}")
    assert min(losses[-5:]) < 0.5 * losses[0]
    assert held_out < 0.5


def test_learned_positions_follow_any_length() -> None:
    torch.manual_seed(0)
    model = build_model("transformer", 4, 3000, pos_encoding="learned").eval()
    with torch.no_grad():
        for T in (256, 3000, 6000):
            assert model(torch.randn(2, 4, T)).shape == (2, 2)


def test_log_sigma_is_bounded() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", 3, 1000).eval()
    with torch.no_grad():
        out = model(1e4 * torch.randn(8, 3, 1000))
    assert (out[:, 1].abs() <= LOG_SIGMA_BOUND).all()


def test_scalars_must_match() -> None:
    model = build_model("cnn_lstm", 3, 1000, n_scalars=2)
    with pytest.raises(ValueError, match="scalars"):
        model(torch.randn(2, 3, 1000))
    with pytest.raises(ValueError, match="scalars"):
        build_model("cnn_lstm", 3, 1000)(torch.randn(2, 3, 1000), torch.randn(2, 1))


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("resnet", 3, 1000)
    assert "resnet" in str(err.value)
    for name in FAMILIES:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="resnet"):
        model_hparams("resnet")
    with pytest.raises(ConfigError, match="resnet"):
        search_space("resnet")


def test_unknown_or_bad_hparams() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("cnn_lstm", 3, 1000, lstm_hiden=8)
    assert "lstm_hiden" in str(err.value) and "lstm_hidden" in str(err.value)
    with pytest.raises(ConfigError, match="lstm_hidden"):
        build_model("cnn_lstm", 3, 1000, lstm_hidden="big")
    with pytest.raises(ConfigError, match="dropout"):
        build_model("cnn", 3, 1000, dropout=1.5)
    with pytest.raises(ConfigError, match="n_heads"):
        build_model("transformer", 3, 1000, d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="representation"):
        build_model("lstm", 3, 1000, representation="wavelet")


@pytest.mark.parametrize("name", FAMILIES)
def test_search_space_covers_buildable_models(name: str) -> None:
    defaults = model_hparams(name)
    for rep in REPRESENTATIONS:
        space = search_space(name, rep)
        assert set(space) <= set(defaults)
        rng = random.Random(0)
        for corner in ("low", "high", "random", "random"):
            hp = {}
            for key, spec in space.items():
                kind = spec[0]
                if kind == "categorical":
                    hp[key] = rng.choice(spec[1])
                elif corner in ("low", "high"):
                    hp[key] = spec[1] if corner == "low" else spec[2]
                else:
                    draw = rng.randint if kind == "int" else rng.uniform
                    hp[key] = draw(spec[1], spec[2])
            model = build_model(name, 4, 1000, 1, representation=rep, **hp).eval()
            with torch.no_grad():
                assert model(torch.randn(2, 4, 256), torch.randn(2, 1)).shape == (2, 2)


@pytest.mark.parametrize("name", FAMILIES)
def test_describe_and_spec_rebuild(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 4, 3000, 1, dropout=0.2)
    info = describe(model)
    assert info["family"] == name
    assert 1e4 <= info["n_params"] <= 2e5
    assert info["hparams"]["dropout"] == 0.2
    spec = model.spec
    twin = build_model(
        spec["name"],
        spec["in_channels"],
        spec["n_samples"],
        spec["n_scalars"],
        spec["representation"],
        **spec["hparams"],
    )
    twin.load_state_dict(model.state_dict())


def test_hv_mlp_reads_only_the_scalars_and_learns_a_linear_site_law() -> None:
    """ln Vs30 linear in three H/V-like scalars: the linear hv_mlp recovers it, whatever x."""
    g = torch.Generator().manual_seed(0)
    scalars = torch.randn(512, 3, generator=g)
    target = scalars @ torch.tensor([0.8, -0.5, 0.2])
    model = build_model("hv_mlp", in_channels=3, n_samples=256, n_scalars=3, hidden=0, dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.mean((model(torch.zeros(512, 3, 256), scalars)[:, 0] - target) ** 2)
        loss.backward()
        optimiser.step()
    assert loss.item() < 1e-3
    noise = torch.randn(512, 3, 256, generator=g)
    assert torch.equal(model(noise, scalars), model(torch.zeros(512, 3, 256), scalars))


def test_hv_mlp_refuses_a_model_without_scalars() -> None:
    with pytest.raises(ConfigError, match="hv_bins"):
        build_model("hv_mlp", in_channels=3, n_samples=256, n_scalars=0)


def test_set_ridge_recovers_a_linear_law_and_its_noise_with_station_grouped_cv() -> None:
    import numpy as np

    from deepvs30.models.hv_mlp import set_ridge

    rng = np.random.default_rng(0)
    n_stations, per_station = 200, 2
    site = rng.standard_normal((n_stations, 4))
    scalars = np.repeat(site, per_station, axis=0) + 0.05 * rng.standard_normal((400, 4))
    station_noise = np.repeat(0.3 * rng.standard_normal(n_stations), per_station)
    target = scalars @ np.array([0.6, -0.4, 0.0, 0.2]) + station_noise
    groups = np.repeat(np.arange(n_stations), per_station)
    model = build_model("hv_mlp", in_channels=3, n_samples=256, n_scalars=4, hidden=0, dropout=0.0)
    fit = set_ridge(model, scalars, target, groups, np.logspace(-3, 3, 7))
    out = model(torch.zeros(400, 3, 256), torch.as_tensor(scalars, dtype=torch.float32))
    weights = model.net[1].weight[0].detach().numpy()
    np.testing.assert_allclose(weights, [0.6, -0.4, 0.0, 0.2], atol=0.06)
    # grouped CV sees the station noise (0.3); record-level CV would not
    assert fit["sigma_z"] == pytest.approx(0.3, abs=0.04)
    assert torch.exp(out[:, 1]).detach().numpy() == pytest.approx(fit["sigma_z"], rel=1e-4)
