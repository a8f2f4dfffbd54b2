"""Transformers detection training: a plain Hugging Face RT-DETR loop vs ``zoo.Trainer``, side by side.

Plain (the transformers way): ``RTDetrForObjectDetection`` built from the RT-DETR-R18vd config (random
weights, 80 COCO labels), AdamW (lr 1e-4, weight decay 1e-4, RT-DETR's recipe), the model's own
``outputs.loss`` from ``labels=[{"class_labels", "boxes" (normalised cxcywh)}]``, a batch of 16 images at
640x640 (what RTDetrImageProcessor produces) with 4 random boxes each, on the device and reused every
step. Zoo: ``zoo.load("rtdetr_r18vd", task="det", weights=<the plain model's initial weights>)`` trained by
``zoo.Trainer`` on the same images and boxes (xyxy pixels; the wrapper resizes, normalises and converts
them inside, which is counted).

    python benchmarks/bench_hf_det_train.py                          # batch 16, 640x640
    python benchmarks/bench_hf_det_train.py --device cpu --tiny      # CI smoke run (a tiny RT-DETR, 64 px)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

MODEL = "rtdetr_r18vd"
NUM_CLASSES = 80
BOXES = 4
#: --tiny: a narrow RT-DETR (the tests' size), so the CPU smoke run takes seconds
TINY = {"config": {"d_model": 32, "encoder_hidden_dim": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                   "decoder_in_channels": [32, 32, 32], "encoder_in_channels": [32, 64, 128], "decoder_layers": 2,
                   "num_queries": 10, "num_denoising": 4, "encoder_attention_heads": 2, "decoder_attention_heads": 2},
        "backbone_config": {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}}


def synthetic(args) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Square images in [0, 1] and ``BOXES`` boxes per image (xyxy pixels, 0-based labels)."""
    g = torch.Generator().manual_seed(0)
    s = args.image_size
    images = torch.rand(args.batch_size, 3, s, s, generator=g).to(args.device)
    targets = []
    for _ in range(args.batch_size):
        xy = torch.rand(BOXES, 2, generator=g) * s * 0.6
        wh = (0.1 + 0.3 * torch.rand(BOXES, 2, generator=g)) * s
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(args.device),
                        "labels": torch.randint(0, NUM_CLASSES, (BOXES,), generator=g).to(args.device)})
    return images, targets


def plain_train(args, images, targets, options) -> tuple:
    import zoo_core as zoo
    from zoo_transformers.det_outputs import hf_labels

    # transformers' own RTDetrForObjectDetection, with the catalog's R18vd config (taken from the zoo so both
    # sides hold the identical architecture); everything after this line is plain PyTorch + transformers
    hf = zoo.load(MODEL, task="det", num_classes=NUM_CLASSES, **options).net.hf
    model, net, weights = H.plain_model(hf, args)
    labels = hf_labels(targets, [images.shape[-2:]] * len(targets))  # normalised cxcywh, as the processor gives
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    result = H.measure_plain_train(lambda: net(pixel_values=images, labels=labels).loss, opt, args)
    H.free(model, net, opt)
    return result, weights


def zoo_train(args, images, targets, weights: Path, options) -> tuple:
    import zoo_core as zoo
    from zoo_core.bench.runner import zoo_train as run

    model = zoo.load(MODEL, task="det", num_classes=NUM_CLASSES, weights=weights, **options)
    result = run(model, H.zoo_batch(list(images), targets, len(images)), optimizer="adamw", lr=1e-4,
                 weight_decay=1e-4, scheduler="constant", image_size=args.image_size, **H.trainer_settings(args))
    H.free(model)
    weights.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=16, image_size=640)
    args = H.parse(p, argv)
    options = TINY if args.tiny else {}
    H.header(f"transformers detection training: plain Hugging Face loop vs zoo.Trainer ({MODEL}"
             f"{' tiny' if args.tiny else ''}, {args.image_size}x{args.image_size})", args)
    images, targets = synthetic(args)
    plain, weights = plain_train(args, images, targets, options)
    zoo = zoo_train(args, images, targets, weights, options)
    H.report(f"{MODEL} train", plain, zoo, args)


if __name__ == "__main__":
    main()
