"""Classification training: timm's ``benchmark.py`` train loop vs ``zoo.Trainer``, side by side.

Plain (the way timm's ``benchmark.py --bench train`` does it): ``timm.create_model``, channels-last,
bf16 autocast, optionally ``torch.compile``, SGD (momentum 0.9, Nesterov, as timm's ``sgd``; fused,
as the Trainer's default) or AdamW, cross-entropy, one synthetic batch on the device reused every step, no host sync.
Zoo: ``zoo.load("timm:<model>", weights=<the plain model's initial weights>)`` trained by
``zoo.Trainer`` on the same batch with the same settings (see :mod:`zoo_core.bench.runner` for how the
Trainer is configured and timed).

    python benchmarks/bench_cls_train.py                         # resnet50, vit_base_patch16_224, batch 256
    python benchmarks/bench_cls_train.py --compile               # the compiled anchors
    python benchmarks/bench_cls_train.py --device cpu --tiny     # CI smoke run (resnet18, vit_tiny, 64 px)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

MODELS = ("resnet50", "vit_base_patch16_224")
TINY_MODELS = ("resnet18", "vit_tiny_patch16_224")
NUM_CLASSES = 1000


def optimizer(params, args) -> torch.optim.Optimizer:
    # fused kernels on both sides (torch has them on the CPU too), as the Trainer's fused_optimizer auto
    fused = {"fused": True}
    if args.opt == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True, **fused)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, **fused)


def plain_train(name: str, args, x: torch.Tensor, y: torch.Tensor, img_size: dict) -> tuple:
    import timm

    model, net, weights = H.plain_model(timm.create_model(name, num_classes=NUM_CLASSES, **img_size), args)
    opt = optimizer(model.parameters(), args)
    result = H.measure_plain_train(lambda: F.cross_entropy(net(x).float(), y), opt, args)
    H.free(model, net, opt)
    return result, weights


def zoo_train(name: str, args, x: torch.Tensor, y: torch.Tensor, img_size: dict, weights: Path) -> tuple:
    import zoo_core as zoo
    from zoo_core.bench.runner import zoo_train as run

    model = zoo.load(f"timm:{name}", task="cls", num_classes=NUM_CLASSES, weights=weights, **img_size)
    result = run(model, H.zoo_batch(x, y, len(x)), optimizer=args.opt, lr=args.lr, momentum=0.9,
                 nesterov=args.opt == "sgd", weight_decay=0.0, scheduler="constant", **H.trainer_settings(args))
    H.free(model)
    weights.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=256, image_size=224)
    p.add_argument("--models", nargs="+", help=f"timm model names (default {' '.join(MODELS)}; tiny "
                                                f"{' '.join(TINY_MODELS)})")
    p.add_argument("--opt", default="sgd", choices=["sgd", "adamw"], help="optimizer on both sides")
    p.add_argument("--lr", type=float, default=1e-4)
    args = H.parse(p, argv)
    H.header("classification training: timm benchmark.py-style loop vs zoo.Trainer", args)
    for name in args.models or (TINY_MODELS if args.tiny else MODELS):
        img_size = {"img_size": args.image_size} if name.startswith("vit") else {}
        x = H.image_batch(args, args.image_size)
        y = torch.randint(0, NUM_CLASSES, (args.batch_size,), generator=torch.Generator().manual_seed(1))
        y = y.to(args.device)
        plain, weights = plain_train(name, args, x, y, img_size)
        zoo = zoo_train(name, args, x, y, img_size, weights)
        H.report(f"{name} train", plain, zoo, args)


if __name__ == "__main__":
    main()
