"""Model FLOPs and model-FLOPs utilisation (MFU).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` while a call runs (2 per
multiply-add of convolutions, matrix products and attention; element-wise work is not counted, as is
usual for MFU). A training step counts as 3x its forward pass (the forward, and a backward of about
twice its cost), the convention of the PaLM paper's MFU and of the issue's anchors (resnet50:
~8.2 GFLOP forward, ~24.6 GFLOP a trained image).

MFU = achieved model FLOP/s / the chip's peak. :data:`PEAK_TFLOPS` holds the dense (no sparsity) peaks
of a few NVIDIA GPUs from their data sheets, found by name; an unknown device gives ``None`` ("n/a")
unless the caller passes the peak (``--peak-tflops``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

#: (substring of torch.cuda.get_device_name, {"bf16"/"16": TFLOP/s, "tf32": ..., "32": ...}); first match wins
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"16": 756.0, "tf32": 378.0, "32": 51.0}),
    ("H100 NVL", {"16": 835.0, "tf32": 418.0, "32": 60.0}),
    ("H100", {"16": 989.0, "tf32": 494.0, "32": 67.0}),
    ("H200", {"16": 989.0, "tf32": 494.0, "32": 67.0}),
    ("GH200", {"16": 989.0, "tf32": 494.0, "32": 67.0}),
    ("A100", {"16": 312.0, "tf32": 156.0, "32": 19.5}),
    ("L40S", {"16": 362.0, "tf32": 183.0, "32": 91.6}),
    ("A10G", {"16": 70.0, "tf32": 35.0, "32": 31.2}),
    ("L4", {"16": 121.0, "tf32": 60.0, "32": 30.3}),
]


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs the calls inside ``fn()`` perform (run once, without autograd)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


def precision_key(precision: str) -> str:
    """``"bf16"``/``"16"`` (half-precision tensor cores), else ``"tf32"`` or ``"32"`` per torch's settings."""
    p = str(precision).lower()
    if p.startswith("bf16") or p.startswith("16") or p.startswith("fp16"):
        return "16"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return "tf32" if tf32 else "32"


def device_name(device: torch.device | str) -> str:
    """A readable name: the GPU's name on CUDA, else the device type (``"cpu"``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_tflops(device: torch.device | str, precision: str, override: float | None = None) -> float | None:
    """The device's dense peak TFLOP/s at ``precision``; ``override`` wins; unknown -> None."""
    if override is not None:
        return float(override)
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = device_name(device)
    for key, table in PEAK_TFLOPS:
        if key in name:
            return table[precision_key(precision)]
    return None


def mfu(flops_per_image: float | None, images_per_s: float, peak: float | None) -> float | None:
    """Model-FLOPs utilisation in [0, 1]: ``flops_per_image x images_per_s / peak`` (None if unknown)."""
    if not flops_per_image or not peak or images_per_s <= 0:
        return None
    return flops_per_image * images_per_s / (peak * 1e12)
