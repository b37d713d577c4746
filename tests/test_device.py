"""train.device (device.py): selection with the hardware mocked, CPU results unchanged, and
bundles that load on the CPU whatever trained them. CI has no GPU; nothing here needs one."""

from __future__ import annotations

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
