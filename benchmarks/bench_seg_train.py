"""Segmentation training: plain torchvision DeepLabV3 and smp U-Net loops vs ``zoo.Trainer``, side by side.

Plain DeepLabV3 (torchvision's ``references/segmentation`` recipe): ``deeplabv3_resnet50`` with its
auxiliary classifier, cross-entropy (ignore 255) on the output + 0.5 x on the auxiliary output, SGD
(lr 0.02, momentum 0.9, weight decay 1e-4), batch 16 at 512 px. Plain U-Net (smp's example loop):
``smp.Unet("resnet34")``, smp's multiclass ``DiceLoss``, Adam (lr 1e-4), batch 32 at 512 px. Both in
bf16 autocast, channels-last, on one synthetic batch on the device reused every step.
Zoo: the same architectures through ``zoo.load`` with the plain model's initial weights, the same loss
(the task's ``loss``/``aux_weight`` options set to match) and optimizer, trained by ``zoo.Trainer``.

    python benchmarks/bench_seg_train.py                          # both
    python benchmarks/bench_seg_train.py --which unet             # one of them
    python benchmarks/bench_seg_train.py --device cpu --tiny      # CI smoke run (mobilenet / resnet18, 64 px)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

NUM_CLASSES = 21
IGNORE = 255


def deeplab(args) -> dict[str, Any]:
    """DeepLabV3: torchvision's builder and loss, the zoo's name and matching options."""
    from torchvision.models import segmentation

    name = "deeplabv3_mobilenet_v3_large" if args.tiny else "deeplabv3_resnet50"

    def loss(out: dict, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out["out"].float(), y, ignore_index=IGNORE) + \
            0.5 * F.cross_entropy(out["aux"].float(), y, ignore_index=IGNORE)

    return {"name": name, "batch": 16, "opt": ("sgd", 0.02), "loss": loss, "zoo": (name, {}),
            "task_options": {"loss": "ce", "aux_weight": 0.5},
            "build": lambda: getattr(segmentation, name)(weights=None, weights_backbone=None,
                                                         num_classes=NUM_CLASSES, aux_loss=True)}


def unet(args) -> dict[str, Any]:
    """U-Net: smp's model and Dice loss, the zoo's ``unet`` on the same encoder."""
    import segmentation_models_pytorch as smp

    encoder = "resnet18" if args.tiny else "resnet34"
    dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True, ignore_index=IGNORE)
    return {"name": f"unet_{encoder}", "batch": 32, "opt": ("adam", 1e-4),
            "loss": lambda out, y: dice(out.float(), y), "zoo": ("unet", {"backbone": encoder}),
            "task_options": {"loss": "dice"},
            "build": lambda: smp.Unet(encoder, encoder_weights=None, classes=NUM_CLASSES)}


def optimizer(kind: str, lr: float, params, args) -> torch.optim.Optimizer:
    fused = {"fused": True} if args.device.type == "cuda" else {}
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4, **fused)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), **fused)


def plain_train(recipe: dict, args, x: torch.Tensor, y: torch.Tensor) -> tuple:
    model, net, weights = H.plain_model(recipe["build"](), args)
    opt = optimizer(*recipe["opt"], model.parameters(), args)
    loss_fn: Callable = recipe["loss"]
    result = H.measure_plain_train(lambda: loss_fn(net(x), y), opt, args)
    H.free(model, net, opt)
    return result, weights


def zoo_train(recipe: dict, args, x: torch.Tensor, y: torch.Tensor, weights: Path) -> tuple:
    import zoo_core as zoo
    from zoo_core.bench.runner import zoo_train as run

    name, options = recipe["zoo"]
    model = zoo.load(name, task="seg", num_classes=NUM_CLASSES, weights=weights, **options)
    model.config["task_options"] = {**(model.config.get("task_options") or {}), **recipe["task_options"]}
    kind, lr = recipe["opt"]
    extra = {"momentum": 0.9, "weight_decay": 1e-4} if kind == "sgd" else {"momentum": 0.9, "weight_decay": 0.0}
    result = run(model, H.zoo_batch(x, y, len(x)), optimizer=kind, lr=lr, scheduler="constant", **extra,
                 **H.trainer_settings(args))
    H.free(model)
    weights.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=0, image_size=512)  # batch 0: per recipe
    p.add_argument("--which", nargs="+", default=["deeplabv3", "unet"], choices=["deeplabv3", "unet"])
    args = H.parse(p, argv)
    asked = args.batch_size  # 0: each recipe's own (16 for DeepLabV3, 32 for U-Net)
    for which in args.which:
        recipe = deeplab(args) if which == "deeplabv3" else unet(args)
        args.batch_size = asked or recipe["batch"]
        H.header(f"segmentation training: plain loop vs zoo.Trainer ({recipe['name']}, {args.image_size} px)", args)
        g = torch.Generator().manual_seed(0)
        x = H.image_batch(args, args.image_size)
        y = torch.randint(0, NUM_CLASSES, (args.batch_size, args.image_size, args.image_size), generator=g)
        y[:, :, :4] = IGNORE
        y = y.to(args.device)
        plain, weights = plain_train(recipe, args, x, y)
        zoo = zoo_train(recipe, args, x, y, weights)
        H.report(f"{recipe['name']} train", plain, zoo, args)


if __name__ == "__main__":
    main()
