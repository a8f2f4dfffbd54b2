"""Speed settings of a run: memory format, ``torch.compile``, CUDA graphs, float32 matmul precision.

Each is a :class:`~zoo_core.train.config.TrainConfig` field; none changes results beyond the
rounding of the chosen precision:

- ``channels_last`` (default ``None`` = auto): the network and its image batches in NHWC layout, what
  GPU tensor cores want for convolutions. Auto turns it on on CUDA for networks holding a 2-d
  convolution (a ViT has one, its patch embedding, whose NHWC output flattens into tokens without a
  copy), and leaves it off elsewhere (on the CPU it brings nothing to most models).
- ``compile`` / ``compile_backend`` / ``compile_mode``: ``torch.compile`` of the network (the task's
  loss stays eager). ``compile_mode="reduce-overhead"`` (or ``"max-autotune"``) also captures CUDA
  graphs, which removes the per-kernel launch cost of small batches; the Trainer then marks each
  step's start (``torch.compiler.cudagraph_mark_step_begin``) so graph outputs of the previous step
  are never read after being overwritten. Inputs must keep their shapes (``drop_last``-style data)
  or each new shape is captured again.
- ``matmul_precision`` (default ``None``: torch's own, ``"highest"``): ``"high"`` lets float32
  matrix products use TF32 tensor cores on Ampere and newer GPUs (10 mantissa bits, finer than
  bf16's 7), ``"medium"`` bf16. Only float32 work is affected; restored after ``fit``.
- cuDNN autotuning (``torch.backends.cudnn.benchmark``) is on unless ``deterministic``
  (:func:`zoo_core.train.numerics.numerics`).

- ``fused_optimizer`` (default ``None`` = auto): one fused kernel per parameter group for SGD, Adam and
  AdamW wherever torch has it (CUDA and the CPU): :func:`zoo_core.train.optim.use_fused`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

MATMUL_PRECISIONS = ("highest", "high", "medium")
#: torch.compile modes that capture CUDA graphs
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


def use_channels_last(net: nn.Module, device: torch.device, setting: bool | None) -> bool:
    """The ``channels_last`` setting resolved: as given, or auto (CUDA and a 2-d convolution)."""
    if setting is not None:
        return bool(setting)
    return device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in net.modules())


def compile_net(net: nn.Module, backend: str, mode: str | None) -> nn.Module:
    """``torch.compile(net)``; the wrapper's ``_orig_mod`` is ``net`` (checkpoints hold ``net``'s keys)."""
    return torch.compile(net, backend=backend, mode=mode)  # type: ignore[return-value]


def uses_cudagraphs(compiled: bool, mode: str | None) -> bool:
    return bool(compiled) and mode in CUDAGRAPH_MODES


def mark_step_begin() -> None:
    """Tell CUDA-graph trees a new training step starts (its previous outputs may be reused)."""
    torch.compiler.cudagraph_mark_step_begin()


@contextlib.contextmanager
def matmul_precision(value: str | None) -> Iterator[None]:
    """``torch.set_float32_matmul_precision(value)`` for the block (nothing when None), then restored."""
    if value is None:
        yield
        return
    if value not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision={value!r} is not one of {', '.join(MATMUL_PRECISIONS)}")
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def describe(net: nn.Module, device: torch.device, config: Any,
             optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """The speed settings as resolved for this run (written into the run's config.yaml)."""
    return {"channels_last": use_channels_last(net, device, config.channels_last),
            "fused_optimizer": bool(optimizer is not None and optimizer.defaults.get("fused")),
            "cudagraphs": uses_cudagraphs(config.compile, config.compile_mode),
            "matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
