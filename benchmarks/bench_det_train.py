"""Detection training: a plain torchvision Faster R-CNN loop vs ``zoo.Trainer``, side by side.

Plain (torchvision's reference recipe, ``references/detection``): ``fasterrcnn_resnet50_fpn`` (random
weights, 91 COCO slots), SGD (lr 0.02, momentum 0.9, weight decay 1e-4), bf16 autocast, the sum of the
model's loss dict, a batch of 16 images of 800x1067 with 4 random boxes each, on the device and
reused every step. Zoo: ``zoo.load("fasterrcnn_resnet50_fpn", task="det", weights=<the plain model's
initial weights>)`` trained by ``zoo.Trainer`` on the same images and boxes (the zoo's labels are
0-based, torchvision's 1-based: the same objects).

``--model maskrcnn_resnet50_fpn`` (or ``maskrcnn_resnet50_fpn_v2``): Mask R-CNN, the same loop with a mask
per box in the targets (the box filled), trained by the zoo as the ``instance`` task.

    python benchmarks/bench_det_train.py                          # batch 16, 800x1067
    python benchmarks/bench_det_train.py --device cpu --tiny      # CI smoke run (mobilenet-v3 FPN, 64 px)
    python benchmarks/bench_det_train.py --model maskrcnn_resnet50_fpn --device cpu --tiny   # Mask R-CNN smoke
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

MODEL, TINY_MODEL = "fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn"
NUM_CLASSES = 90  # zoo classes; torchvision's head has 91 outputs (index 0 is the background)
BOXES = 4


def task_of(name: str) -> str:
    """The zoo task that trains torchvision model ``name``: Mask R-CNN is instance segmentation."""
    return "instance" if name.startswith("maskrcnn") else "detection"


def synthetic(args, masks: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images in [0, 1] and ``BOXES`` boxes per image (torchvision's 1-based labels); with ``masks``, each box
    filled as its instance mask ``(BOXES, H, W)`` uint8."""
    g = torch.Generator().manual_seed(0)
    h, w = args.image_size, round(args.image_size * 4 / 3)
    images, targets = [], []
    for _ in range(args.batch_size):
        images.append(torch.rand(3, h, w, generator=g).to(args.device))
        xy = torch.rand(BOXES, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (0.1 + 0.3 * torch.rand(BOXES, 2, generator=g)) * torch.tensor([w, h])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, NUM_CLASSES + 1, (BOXES,), generator=g)
        target = {"boxes": boxes.to(args.device), "labels": labels.to(args.device)}
        if masks:
            m = torch.zeros(BOXES, h, w, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
                m[k, y0:y1, x0:x1] = 1
            target["masks"] = m.to(args.device)
        targets.append(target)
    return images, targets


def sizes(args) -> dict[str, int]:
    """The detector's resize: the short side to ``image_size``, the long side capped at 5/3 of it."""
    return {"min_size": args.image_size, "max_size": round(args.image_size * 1333 / 800)}


def plain_train(name: str, args, images, targets) -> tuple:
    from torchvision.models import detection

    built = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1,
                                     **sizes(args))
    model, net, weights = H.plain_model(built, args)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4,
                          **({"fused": True} if args.device.type == "cuda" else {}))
    result = H.measure_plain_train(lambda: sum(net(images, targets).values()), opt, args)
    H.free(model, net, opt)
    return result, weights


def zoo_train(name: str, args, images, targets, weights: Path) -> tuple:
    import zoo_core as zoo
    from zoo_core.bench.runner import zoo_train as run

    model = zoo.load(name, task=task_of(name), num_classes=NUM_CLASSES, weights=weights, **sizes(args))
    zoo_targets = [{**t, "labels": t["labels"] - 1} for t in targets]
    result = run(model, H.zoo_batch(images, zoo_targets, len(images)), optimizer="sgd", lr=args.lr,
                 momentum=0.9, weight_decay=1e-4, scheduler="constant", **H.trainer_settings(args))
    H.free(model)
    weights.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=16, image_size=800)
    p.add_argument("--model", help=f"torchvision detector (default {MODEL}; tiny {TINY_MODEL}), or Mask R-CNN "
                                   "(maskrcnn_resnet50_fpn[_v2]: masks in the targets)")
    p.add_argument("--lr", type=float, default=0.02)
    args = H.parse(p, argv)
    name = args.model or (TINY_MODEL if args.tiny else MODEL)
    H.header(f"{task_of(name)} training: plain torchvision loop vs zoo.Trainer ({name}, "
             f"{args.image_size}x{round(args.image_size * 4 / 3)})", args)
    images, targets = synthetic(args, masks=task_of(name) == "instance")
    plain, weights = plain_train(name, args, images, targets)
    zoo = zoo_train(name, args, images, targets, weights)
    H.report(f"{name} train", plain, zoo, args)


if __name__ == "__main__":
    main()
