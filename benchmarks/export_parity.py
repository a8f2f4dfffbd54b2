"""Export parity per model family: every declared format exported, run and compared with eager.

For each model (random weights; BatchNorm statistics calibrated on two random batches so outputs
are not degenerate), ``model.export`` writes each format the model declares, runs the written file
(ONNX Runtime for ONNX, ``torch.jit.load`` for TorchScript, ``torch.export.load`` for torch.export)
at the batch sizes it checks, and compares with the eager model. One line per (model, format):

    <model> <format>: max |exported - eager| D (tolerance T), batches (2, 1, 3), exporter E

An export above its tolerance raises ``ExportError`` and the script exits non-zero. CPU only.

    python benchmarks/export_parity.py [--models resnet18 unet ...] [--image-size 64]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

import zoo_core as zoo

# name -> (load keywords, input size); detectors export at a fixed size (torchvision's post-processing).
MODELS: dict[str, tuple[dict[str, Any], int | None]] = {
    "timm:resnet18": ({"task": "cls", "num_classes": 3}, None),
    "timm:vit_tiny_patch16_224": ({"task": "cls", "num_classes": 3}, 224),
    "resnet18": ({"task": "cls", "num_classes": 3}, None),
    "deeplabv3_mobilenet_v3_large": ({"task": "seg", "num_classes": 3}, None),
    "unet": ({"task": "seg", "num_classes": 3, "backbone": "resnet18"}, None),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ({"task": "det", "num_classes": 3}, 128),
}


def calibrate_batchnorm(model: zoo.ZooModel, size: int) -> None:
    """Two training-mode forwards on random batches: realistic BatchNorm statistics, then eval."""
    model.net.train()
    with torch.no_grad():
        for _ in range(2):
            model.net(torch.rand(2, 3, size, size))
    model.net.eval()


def parity(name: str, image_size: int, out_dir: Path) -> list[str]:
    """Export ``name`` to every format it declares; one result line per format."""
    kwargs, fixed = MODELS[name]
    size = fixed or image_size
    torch.manual_seed(0)
    model = zoo.load(name, **kwargs)
    extra: dict[str, Any] = {}
    if kwargs["task"] == "det":
        extra["sample"] = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    else:
        model.set_image_size(size)
        calibrate_batchnorm(model, size)
    lines = []
    for fmt in model.export_formats:
        res = model.export(fmt, out_dir / f"{name.replace(':', '_')}.{fmt}", **extra)
        lines.append(f"{name} {fmt}: max |exported - eager| {res.max_abs_diff:.3g} (tolerance {res.tolerance:.3g}), "
                     f"batches {res.batch_sizes}, exporter {res.exporter}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--image-size", type=int, default=64, help="input size of the cls/seg models")
    args = parser.parse_args(argv)
    import onnxruntime
    import torchvision
    print(f"# export parity: torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"onnxruntime {onnxruntime.__version__}, python {platform.python_version()}, cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for line in parity(name, args.image_size, Path(tmp)):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
