"""Shared parts of the side-by-side benchmarks: flags, timing both sides alike, the result line.

Every script runs the plain library its own way and the zoo in ONE process, on the same device,
the same synthetic device-resident data, the same weights (the plain model's initial weights are
saved and loaded into the zoo model through ``zoo.load(..., weights=file)``), the same precision,
memory format and compile setting, and prints one line per comparison:

    <what>: plain X img/s, zoo Y img/s, ratio R, peak memory plain A MiB (a/img) zoo B MiB (b/img)

Both sides are timed by :func:`zoo_core.bench.timing.time_loop` / the Trainer's
:class:`~zoo_core.bench.timing.StepTimer` (CUDA events, one synchronisation at the end) and their
memory read by :class:`~zoo_core.bench.memory.PeakMemory`. On the CPU the memory figures are the
process's peak resident set (a line says so), not comparable with GPU figures.

``--tiny`` shrinks everything (small models, 64 px, batch 2, 2 steps, one thread) so CI can run each
script on the CPU in seconds; those numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from zoo_core.bench.memory import MemoryReading, PeakMemory
from zoo_core.bench.timing import time_loop
from zoo_core.evaluate import autocast
from zoo_core.task import Batch

LINE = ("plain {plain:.1f} img/s, zoo {zoo:.1f} img/s, ratio {ratio:.3f}, "
        "peak memory plain {pm} zoo {zm}")


def parser(description: str, *, batch_size: int, image_size: int | None = None) -> argparse.ArgumentParser:
    """The flags every script shares (scripts add their own, e.g. ``--models``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="CPU smoke sizes: small models, 64 px, batch 2, 2 steps")
    p.add_argument("--steps", type=int, help="timed steps (default 50; tiny 2)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10, 20 with --compile; tiny 1)")
    p.add_argument("--batch-size", type=int, help=f"default {batch_size}; tiny 2")
    if image_size is not None:
        p.add_argument("--image-size", type=int, help=f"default {image_size}; tiny 64")
    p.set_defaults(default_batch_size=batch_size, default_image_size=image_size)
    p.add_argument("--precision", choices=["bf16", "16", "32"],
                   help="autocast precision (default bf16 on CUDA, 32 on the CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last model and inputs on both sides (default on)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network on both sides")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode for both sides (e.g. reduce-overhead: CUDA graphs)")
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on --tiny, --compile and the device; pin threads for --tiny."""
    args.batch_size = args.batch_size or (2 if args.tiny else args.default_batch_size)
    if args.default_image_size is not None:
        args.image_size = args.image_size or (64 if args.tiny else args.default_image_size)
    if args.tiny:
        torch.set_num_threads(1)
    args.steps = args.steps or (2 if args.tiny else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else (20 if args.compile else 10))
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "32")
    args.device = torch.device(args.device)
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # what timm's benchmark.py and the Trainer do
    return args


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    return finish_args(p.parse_args(argv))


def autocast_for(args: argparse.Namespace):
    """The autocast context of ``--precision`` on ``--device`` (a no-op for 32)."""
    return autocast(args.device, {"bf16": "bf16-mixed", "16": "16-mixed", "32": "32"}[args.precision])


def measure_plain(step: Callable[[], Any], args: argparse.Namespace) -> tuple[float, MemoryReading]:
    """Seconds of ``args.steps`` calls of ``step`` after ``args.warmup``, as images/s, and peak memory."""
    with PeakMemory(args.device) as peak:
        seconds = time_loop(step, steps=args.steps, warmup=args.warmup, device=args.device)
    return args.steps * args.batch_size / seconds, peak.reading


def plain_model(model: torch.nn.Module, args: argparse.Namespace, *, train: bool = True
                ) -> tuple[torch.nn.Module, torch.nn.Module, Path]:
    """The plain side's model on the device, its initial weights saved for the zoo side, then
    channels-last and compiled as the flags say: ``(model, callable net, weights file)``."""
    model = model.to(args.device).train(train)
    weights = save_weights(model)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, maybe_compile(model, args), weights


def measure_plain_train(compute_loss: Callable[[], torch.Tensor], opt: torch.optim.Optimizer,
                        args: argparse.Namespace) -> tuple[float, MemoryReading]:
    """A plain training loop: autocast forward and loss, backward, step, zero_grad; timed as
    :func:`measure_plain`."""
    def step() -> None:
        with autocast_for(args):
            loss = compute_loss()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return measure_plain(step, args)


def save_weights(net: torch.nn.Module) -> Path:
    """The network's current weights in a temporary ``.pt`` file (for ``zoo.load(weights=...)``)."""
    fd, name = tempfile.mkstemp(prefix="zoo-bench-", suffix=".pt")
    os.close(fd)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, name)
    return Path(name)


def free(*objects: Any) -> None:
    """Drop references and cached GPU memory between the two sides."""
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def image_batch(args: argparse.Namespace, size: int | tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    """``(B, 3, H, W)`` standard-normal images on the device (channels-last when asked)."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(args.batch_size, 3, h, w, generator=g).to(args.device)
    return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x


def zoo_batch(inputs: Any, targets: Any, n: int) -> Batch:
    """The same tensors as a zoo :class:`~zoo_core.task.Batch`."""
    return Batch(inputs=inputs, targets=targets, meta=[{"source": f"<synthetic {i}>"} for i in range(n)])


def _memory(m: MemoryReading, batch: int) -> str:
    if m.bytes is None:
        return "n/a"
    return f"{m.mib:.0f} MiB ({m.per_image(batch):.1f}/img)"


def report(what: str, plain: tuple[float, MemoryReading], zoo: tuple[float, MemoryReading],
           args: argparse.Namespace) -> str:
    """Print and return the result line of one comparison."""
    ratio = zoo[0] / plain[0] if plain[0] > 0 else math.nan
    line = f"{what}: " + LINE.format(plain=plain[0], zoo=zoo[0], ratio=ratio, pm=_memory(plain[1], args.batch_size),
                                     zm=_memory(zoo[1], args.batch_size))
    print(line, flush=True)
    return line


def header(title: str, args: argparse.Namespace) -> None:
    """Versions, device and settings, so a pasted result says where it came from."""
    import torchvision

    from zoo_core.bench.flops import device_name

    extra = ""
    try:
        import timm

        extra = f", timm {timm.__version__}"
    except ImportError:  # pragma: no cover
        pass
    print(f"# {title} | {device_name(args.device)} | torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}{extra} | batch {args.batch_size}, steps {args.steps} (+{args.warmup} "
          f"warmup), precision {args.precision}, channels_last {args.channels_last}, compile {args.compile}"
          f"{' mode ' + str(args.compile_mode) if args.compile_mode else ''}{' [tiny]' if args.tiny else ''}",
          flush=True)
    if args.device.type != "cuda":
        print("# memory on the CPU: the process's peak resident set (RSS), not comparable with GPU figures",
              flush=True)


def maybe_compile(net: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """``torch.compile(net)`` when ``--compile`` (the plain side's way)."""
    return torch.compile(net, mode=args.compile_mode) if args.compile else net


def trainer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The zoo side's settings matching the flags (passed to :func:`zoo_core.bench.runner.zoo_train`)."""
    return {"steps": args.steps, "warmup": args.warmup, "device": args.device, "precision": args.precision,
            "channels_last": args.channels_last, "compile": args.compile, "compile_mode": args.compile_mode}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("harness.py is imported by the bench_*.py scripts; run one of those")
