"""Which torch device a step runs on: ``train.device`` (``auto | cpu | cuda | cuda:N | mps``).

``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU, so a CPU-only
machine (CI) runs exactly as before. A GPU asked for but absent is a configuration error, not
a silent fall-back. On CUDA, cuDNN is put in deterministic mode (``benchmark`` off): runs with
one seed repeat on one GPU model and driver, though not bit for bit against the CPU. Bundles
are saved with CPU tensors and loaded with ``map_location="cpu"``, so a registered model
loads anywhere, whatever trained it.

``train.precision`` (and ``pretrain.precision``) sets the arithmetic of the training forward
pass: ``"32"`` float32 throughout (the default; bit-identical to a run without the option),
``"bf16"`` bfloat16 autocast (CPU or GPU), ``"16-mixed"`` float16 autocast with loss scaling
(CUDA only). Losses, optimiser state, evaluation and prediction stay float32.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from deepvs30.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32", "bf16", "16-mixed")


def _mps_available(torch_module) -> bool:
    backend = getattr(torch_module.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve(name: str, where: str = "train.device"):
    """The torch.device for ``name``; ConfigError if that hardware is not there."""
    import torch

    kind = name.split(":", 1)[0]
    if kind not in DEVICES or (":" in name and kind != "cuda"):
        raise ConfigError(f"{where}: {name!r} is not one of {list(DEVICES)} (or cuda:N)")
    if kind == "auto":
        if torch.cuda.is_available():
            kind = name = "cuda"
        elif _mps_available(torch):
            kind = name = "mps"
        else:
            return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {name!r} asked for, but torch sees no CUDA GPU")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if kind == "mps" and not _mps_available(torch):
        raise ConfigError(f"{where}: 'mps' asked for, but torch has no MPS device here")
    return torch.device(name)


def to_device(tensors: Sequence, device) -> list:
    """Move a batch (a tuple of tensors) to ``device``; a no-op on the CPU."""
    if device.type == "cpu":
        return list(tensors)
    return [t.to(device, non_blocking=True) for t in tensors]


def check_precision(precision: str | int, device, where: str = "train.precision") -> str:
    """``precision`` as one of :data:`PRECISIONS` (32 may be written as a number);
    ConfigError for another value, or for float16 off CUDA."""
    value = str(precision)
    if value not in PRECISIONS:
        raise ConfigError(f"{where}: {precision!r} is not one of {list(PRECISIONS)}")
    if value == "16-mixed" and device.type != "cuda":
        raise ConfigError(f"{where}: '16-mixed' (float16 with loss scaling) needs a CUDA device, "
                          f"not {device.type}; 'bf16' works on the CPU")  # fmt: skip
    return value


def autocast(precision: str, device):
    """The context of a training forward pass at ``precision`` on ``device``."""
    import contextlib

    import torch

    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device):
    """A loss scaler for "16-mixed" (float16 gradients underflow without one), else None."""
    if precision != "16-mixed":
        return None
    import torch

    return torch.amp.GradScaler(device.type)
