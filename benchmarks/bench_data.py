"""Training from JPEG files: synthetic tensors vs torchvision ImageFolder+PIL vs the zoo's two pipelines.

Generates (once, cached in ``--cache``) an ImageNet-like set: ``--count`` 500x375 JPEGs (quality 90,
smooth random content) in 10 class folders. Then, one process, same batch size and workers, each
pipeline for ``--batches`` batches after ``--warmup`` (random-resized crop to ``--image-size``, flip,
normalise; the batch ends on ``--device``):

- ``synthetic``: a fixed random batch already on the device (the upper bound);
- ``torchvision ImageFolder+PIL``: ``torchvision.datasets.ImageFolder`` + v2 transforms (crop area
  0.5-1, the zoo's default) + DataLoader;
- ``zoo PIL workers``: the classification task's dataset (``decode="pil"``), ``make_loader``, ``Batch.to``;
- ``zoo device decode``: ``decode="device"``: workers read bytes, ``EncodedBatch.to`` decodes
  (nvjpeg on CUDA) and augments on the device.

With ``--model NAME`` every batch also goes through one training step of that model (SGD, bf16
autocast and channels_last on CUDA): images/s of training, as issue 7 target 2 asks. With
``--model none`` (the default on the CPU) it measures the loaders alone. Prints each rate, the
ratios to synthetic and "zoo device decode / synthetic". ``--tiny`` is the CI smoke size.

    python benchmarks/bench_data.py --count 20000 --model resnet50 --batch-size 256   # on a GPU
    python benchmarks/bench_data.py --tiny
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image

import zoo_core as zoo
from zoo_core.train.data import make_loader
from zoo_tasks.classification import ClassificationTask


def make_jpegs(root: Path, count: int, size: tuple[int, int] = (375, 500), classes: int = 10) -> Path:
    """``count`` JPEGs of ``size`` (H, W) in ``classes`` folders under ``root`` (kept when complete)."""
    done = root / f".complete_{count}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class_{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8))
        img = small.resize((size[1], size[0]), Image.BICUBIC)
        noise = rng.integers(-12, 13, (size[0], size[1], 3))
        Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)).save(
            folder / f"{i:06d}.jpg", quality=90)
    done.touch()
    return root


def measure(batches: Iterable[Any], to_device: Callable[[Any], torch.Tensor], step: Callable[[torch.Tensor], None],
            *, warmup: int, count: int, device: torch.device) -> float:
    """Images per second over ``count`` batches after ``warmup`` batches."""
    it = iter(batches)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step(to_device(next(it)))
    sync()
    start, images = time.perf_counter(), 0
    for _ in range(count):
        x = to_device(next(it))
        step(x)
        images += x.shape[0]
    sync()
    return images / (time.perf_counter() - start)


def repeat(loader: torch.utils.data.DataLoader) -> Iterable[Any]:
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_step(model_name: str, device: torch.device, num_classes: int = 10) -> Callable[[torch.Tensor], None]:
    if model_name == "none":
        return lambda x: None
    model = zoo.load(model_name, task="cls", num_classes=num_classes).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    target = torch.zeros(1, dtype=torch.long, device=device)

    def step(x: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), target.expand(x.shape[0]))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="JPEGs to generate")
    parser.add_argument("--cache", default=None, help="folder for the generated JPEGs (default: a temp dir)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: CPUs - 1)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="model trained on each batch, or none (default: resnet50 "
                                                      "on CUDA, none on the CPU)")
    parser.add_argument("--tiny", action="store_true", help="24 JPEGs, batch 4, 64 px, 3 batches, 1 worker")
    args = parser.parse_args(argv)
    if args.tiny:
        args.count, args.batch_size, args.image_size, args.batches, args.warmup = 24, 4, 64, 3, 1
        args.workers = 1 if args.workers is None else args.workers
    device = torch.device(args.device)
    model_name = args.model or ("resnet50" if device.type == "cuda" else "none")
    workers = args.workers if args.workers is not None else max(1, len(os.sched_getaffinity(0)) - 1)
    cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / "zoo_bench_jpegs"
    t0 = time.perf_counter()
    root = make_jpegs(cache / f"n{args.count}", args.count)
    import torchvision

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {device}, "
          f"CPU {platform.machine()} x{len(os.sched_getaffinity(0))}, workers {workers}, batch {args.batch_size}, "
          f"{args.image_size} px, model {model_name} ({'training step' if model_name != 'none' else 'loader only'}), "
          f"{args.count} JPEGs 500x375 in {root} ({time.perf_counter() - t0:.1f} s to prepare)")
    step = train_step(model_name, device)
    spec = zoo.load("resnet18", task="cls", num_classes=10)  # only its preprocessing (mean/std, interpolation)
    common = dict(warmup=args.warmup, count=args.batches, device=device)
    rates: dict[str, float] = {}

    fixed = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    rates["synthetic"] = measure(iter(lambda: fixed, None), lambda x: x, step, **common)

    from torchvision.transforms import v2

    tv = torchvision.datasets.ImageFolder(str(root), transform=v2.Compose([
        v2.RandomResizedCrop(args.image_size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.preprocess.mean), list(spec.preprocess.std))]))
    loader = torch.utils.data.DataLoader(tv, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    rates["torchvision ImageFolder+PIL"] = measure(repeat(loader), lambda b: b[0].to(device, non_blocking=True),
                                                   step, **common)
    for label, mode in (("zoo PIL workers", "pil"), ("zoo device decode", "device")):
        task = ClassificationTask(decode=mode)
        ds = task.read_dataset(root, split="train", train=True, model=spec, image_size=args.image_size)
        loader = make_loader(ds, task.collate, batch_size=args.batch_size, train=True, seed=0, num_workers=workers,
                             pin_memory=device.type == "cuda")
        rates[label] = measure(repeat(loader), lambda b: b.to(device, non_blocking=True).inputs, step, **common)
    for name, rate in rates.items():
        print(f"{name} {rate:.1f} img/s")
    for name, rate in rates.items():
        if name != "synthetic":
            print(f"{name} / synthetic {rate / rates['synthetic']:.3f}")
    print(f"zoo device decode / torchvision ImageFolder+PIL "
          f"{rates['zoo device decode'] / rates['torchvision ImageFolder+PIL']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
