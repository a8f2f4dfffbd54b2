"""Classification inference: timm's ``benchmark.py`` inference loop vs ``model.predict``, side by side.

Plain (``benchmark.py --bench inference``): ``model.eval()``, channels-last, bf16 autocast, optionally
``torch.compile``, ``model(x)`` under ``torch.no_grad`` on one normalised batch on the device; the
logits stay on the device (no host sync until the end).
Zoo: ``model.predict(images)`` on the same batch as images in [0, 1] (the zoo normalises them itself),
with the same weights and settings. ``predict`` does what a user needs from inference and timm's loop
does not: preprocessing, softmax, top-k, and typed results on the host (one read-back per batch).

    python benchmarks/bench_infer.py                              # resnet50, vit_base_patch16_224, batch 256
    python benchmarks/bench_infer.py --device cpu --tiny          # CI smoke run
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

MODELS = ("resnet50", "vit_base_patch16_224")
TINY_MODELS = ("resnet18", "vit_tiny_patch16_224")
NUM_CLASSES = 1000


def plain_infer(name: str, args, x: torch.Tensor, img_size: dict) -> tuple:
    import timm

    model, net, weights = H.plain_model(timm.create_model(name, num_classes=NUM_CLASSES, **img_size), args,
                                        train=False)
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"], device=args.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=args.device).view(1, 3, 1, 1)
    normalised = (x - mean) / std  # timm's benchmark feeds an already-normalised random batch

    def step() -> None:
        with torch.no_grad(), H.autocast_for(args):
            net(normalised)

    result = H.measure_plain(step, args)
    H.free(model, net, normalised)
    return result, weights


def zoo_infer(name: str, args, x: torch.Tensor, img_size: dict, weights: Path) -> tuple:
    import zoo_core as zoo
    from zoo_core.bench.runner import zoo_infer as run

    model = zoo.load(f"timm:{name}", task="cls", num_classes=NUM_CLASSES, weights=weights, **img_size)
    # timm's eval preprocessing resizes to size / crop_pct and crops; at the batch's own size it is a no-op
    model.preprocess = dataclasses.replace(model.preprocess, crop_pct=1.0)
    model.set_image_size(args.image_size)
    result = run(model, x, steps=args.steps, warmup=args.warmup, precision=args.precision,
                 channels_last=args.channels_last, compile=args.compile, compile_mode=args.compile_mode)
    H.free(model)
    weights.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=256, image_size=224)
    p.add_argument("--models", nargs="+", help=f"timm model names (default {' '.join(MODELS)})")
    args = H.parse(p, argv)
    H.header("classification inference: timm benchmark.py-style loop vs model.predict", args)
    for name in args.models or (TINY_MODELS if args.tiny else MODELS):
        img_size = {"img_size": args.image_size} if name.startswith("vit") else {}
        g = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(args.device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        plain, weights = plain_infer(name, args, x, img_size)
        zoo = zoo_infer(name, args, x, img_size, weights)
        H.report(f"{name} infer", plain, zoo, args)


if __name__ == "__main__":
    main()
