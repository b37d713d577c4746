"""train.device (device.py): selection with the hardware mocked, CPU results unchanged, and
bundles that load on the CPU whatever trained them. CI has no GPU; nothing here needs one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepvs30 import device as dev
from deepvs30.errors import ConfigError
from deepvs30.inference import ModelBundle


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda torch_module: False)


def test_auto_is_the_cpu_without_a_gpu(no_gpu):
    assert dev.resolve("auto") == torch.device("cpu")
    assert dev.resolve("cpu") == torch.device("cpu")


def test_auto_takes_a_cuda_gpu_and_makes_cudnn_deterministic(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    assert dev.resolve("auto") == torch.device("cuda")
    assert dev.resolve("cuda:1") == torch.device("cuda", 1)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_auto_takes_mps_when_there_is_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda torch_module: True)
    assert dev.resolve("auto") == torch.device("mps")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_a_missing_gpu_is_a_configuration_error(no_gpu, name):
    with pytest.raises(ConfigError, match=r"train\.device.*torch"):
        dev.resolve(name)


@pytest.mark.parametrize("name", ["tpu", "gpu", "mps:1", ""])
def test_an_unknown_device_is_refused(name):
    with pytest.raises(ConfigError, match="not one of"):
        dev.resolve(name, "pretrain.device")


def test_to_device_is_a_no_op_on_the_cpu():
    x = torch.ones(2)
    assert dev.to_device((x,), torch.device("cpu"))[0] is x


def test_bundles_are_loaded_onto_the_cpu(monkeypatch, tmp_path):
    """A bundle saved on a GPU machine loads here: its weights are read with map_location=cpu."""
    from deepvs30.preprocess import PreprocessParams
    from deepvs30.windows import Normaliser
    from model_fixture import FEATURES, MODEL

    network = ModelBundle.build_network(MODEL.name, MODEL.hparams, FEATURES, 100.0)
    channels = FEATURES.in_channels
    normaliser = Normaliser([0.0] * channels, [1.0] * channels, [], [], 6.0, 0.5)
    bundle = ModelBundle(MODEL.name, dict(MODEL.hparams), FEATURES, PreprocessParams(),
                         normaliser, network, min_record_s=10.0)  # fmt: skip
    bundle.save(tmp_path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = ModelBundle.load(tmp_path)
    assert seen["map_location"] == "cpu"
    assert loaded.device == torch.device("cpu")
    for key, value in loaded.network.state_dict().items():
        assert torch.equal(value, network.state_dict()[key])


# ---------------------------------------------------------------- precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("given", "expected"), [("32", "32"), (32, "32"), ("bf16", "bf16")])
def test_precision_values_on_the_cpu(given, expected):
    assert dev.check_precision(given, CPU) == expected


def test_float16_off_cuda_and_unknown_precisions_are_refused():
    with pytest.raises(ConfigError, match="needs a CUDA device.*'bf16' works on the CPU"):
        dev.check_precision("16-mixed", CPU)
    with pytest.raises(ConfigError, match="train.precision: 'fp8' is not one of"):
        dev.check_precision("fp8", CPU)
    assert dev.grad_scaler("bf16", CPU) is None and dev.grad_scaler("32", CPU) is None


class _Tiny(torch.nn.Module):
    """A family-shaped network: (x, scalars) -> (B, 2)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 16),
                                       torch.nn.ReLU(), torch.nn.Linear(16, 2))  # fmt: skip

    def forward(self, x, scalars=None):
        return self.net(x)


def _one_epoch(precision: str, scaler=None) -> tuple[float, dict]:
    """One epoch of train's loop on a small fixed problem; the loss and the weights after."""
    from deepvs30.train import _train_epoch

    torch.manual_seed(0)
    network = _Tiny()
    x = torch.randn(64, 3, 64)
    y = x[:, 0, :8].mean(dim=1)
    batches = [(x[i : i + 16], torch.zeros(16, 0), y[i : i + 16]) for i in range(0, 64, 16)]
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-2)
    loss = _train_epoch(network, optimiser, batches, "gaussian_nll", CPU, precision, scaler)
    return loss, {k: v.clone() for k, v in network.state_dict().items()}


def test_bf16_autocast_trains_on_the_cpu_and_32_is_unchanged():
    loss32, w32 = _one_epoch("32")
    again, w_again = _one_epoch("32")
    assert loss32 == again and all(torch.equal(w32[k], w_again[k]) for k in w32)
    loss16, w16 = _one_epoch("bf16")
    assert np.isfinite(loss16) and abs(loss16 - loss32) < 0.1  # the same problem, learnt
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)  # in another arithmetic


def test_the_loss_scaler_path_gives_the_unscaled_step():
    """A power-of-two loss scale that does not overflow leaves float32 gradients exact: the
    scaler branch of run_epoch (what 16-mixed uses on CUDA) steps like the plain one."""
    loss, weights = _one_epoch("32")
    scaled_loss, scaled = _one_epoch("32", torch.amp.GradScaler("cpu", init_scale=2.0**10))
    assert scaled_loss == pytest.approx(loss, rel=1e-6)
    for key, value in weights.items():
        torch.testing.assert_close(scaled[key], value, rtol=1e-5, atol=1e-6)
