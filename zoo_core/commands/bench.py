"""``zoo bench``: train and inference images/s, peak memory, GFLOP per image and MFU of any model.

    zoo bench resnet50 --batch-size 256 --precision bf16 --compile
    zoo bench fasterrcnn_resnet50_fpn --task det --batch-size 16 --image-size 800 --mode train

Synthetic data comes from the model's task (see :mod:`zoo_core.bench.runner`); the measurements go
through ``zoo.Trainer`` and ``model.predict``. torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse

from .train import _model_flags, open_model, parse_options


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure train/inference images/s, peak memory and MFU of a model",
                       description="Time training steps (zoo.Trainer) and inference (model.predict) of MODEL on "
                                   "a synthetic batch made by its task, reused every step, and print images/s, "
                                   "peak memory (total and per image), model GFLOP per image and MFU.")
    p.add_argument("model", help="model name (zoo list), saved model directory or checkpoint")
    _model_flags(p)  # --task, --num-classes, --weights, --device
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option for zoo.load (repeatable), e.g. --option backbone=resnet34")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    p.add_argument("--image-size", type=int, help="input size (default: the model's own); the table shows the "
                                                  "synthetic images' size (a detector resizes them itself)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5; compilation runs here)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "16", "32"], help="autocast precision")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: auto, on CUDA for convolutional networks)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--mode", default="both", choices=["train", "infer", "both"], help="what to measure")
    p.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s for MFU (default: known GPUs)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.runner import bench_model, format_result

    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be >= 1 and --warmup >= 0")
    model = open_model(args.model, task=args.task, num_classes=args.num_classes, weights=args.weights,
                       options=parse_options(args.option), task_options=parse_options(args.task_option))
    result = bench_model(model, batch_size=args.batch_size, image_size=args.image_size, steps=args.steps,
                         warmup=args.warmup, device=args.device, precision=args.precision,
                         channels_last=args.channels_last, compile=args.compile, mode=args.mode,
                         peak=args.peak_tflops)
    print(format_result(result))
    return 0
