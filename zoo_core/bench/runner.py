"""Train and inference throughput of any zoo model, through the public API only.

:func:`bench_model` is what ``zoo bench`` runs; the scripts in ``benchmarks/`` use its parts
(:func:`zoo_train`, :func:`zoo_infer`) for the zoo side of each comparison. It knows no task:

- the synthetic batch comes from the model's task (``Task.example_samples`` at the model's input
  size, collated by ``Task.collate``), made once and moved to the device, as timm's ``benchmark.py``
  reuses one device tensor (the data pipeline is measured separately, e.g. ``benchmarks/bench_data.py``);
- training is ``zoo.Trainer(...).fit`` over a loader that yields that batch, configured as a user
  after speed would (no validation, plots, TensorBoard or progress bar); a :class:`StepTimer`
  callback times the optimizer steps after the warmup, so setup, compilation and the epoch-end
  checkpoint are outside the timed window, and the Trainer's own per-step work is inside it;
- inference is ``model.predict`` on a ``(B, C, H, W)`` batch of images in [0, 1] on the device
  (the task's preprocessing and typed predictions included), under the precision's autocast.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import torch

from ..errors import ZooError
from ..evaluate import autocast
from ..task import Batch
from ..train import perf
from ..train.distributed import resolve_device
from .flops import count_flops, device_name, mfu, peak_tflops
from .memory import MemoryReading, PeakMemory
from .timing import StepTimer, time_loop

if TYPE_CHECKING:
    from ..model import ZooModel

PRECISIONS = {"bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "16": "16-mixed", "16-mixed": "16-mixed",
              "fp16": "16-mixed", "32": "32", "fp32": "32"}
#: images used to count FLOPs (a full batch costs a whole extra step for nothing)
FLOP_IMAGES = 2


def trainer_precision(precision: str) -> str:
    """``bf16``/``16``/``32`` (or the Trainer's own names) as a Trainer ``precision``."""
    try:
        return PRECISIONS[str(precision)]
    except KeyError:
        raise ValueError(f"precision {precision!r}: use bf16, 16 or 32") from None


@dataclass
class Measure:
    """One side of a measurement: images/s, peak memory, FLOPs per image and MFU."""

    images_per_s: float
    memory: MemoryReading
    flops_per_image: float | None = None
    mfu: float | None = None


@dataclass
class BenchResult:
    """What :func:`bench_model` measured (``train``/``infer`` are None when not run)."""

    model: str
    task: str
    device: str
    precision: str
    batch_size: int
    input_shape: tuple[int, ...]
    channels_last: bool
    compile: bool
    peak_tflops: float | None
    train: Measure | None = None
    infer: Measure | None = None
    notes: list[str] = field(default_factory=list)


class _RepeatBatch(torch.utils.data.Dataset):
    """``n`` times the same prepared batch (``DataLoader(batch_size=None)`` yields it as is)."""

    def __init__(self, batch: Batch, n: int) -> None:
        self.batch, self.n = batch, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Batch:
        return self.batch


def _as_is(batch: Batch) -> Batch:
    return batch


def batch_loader(batch: Batch, n: int) -> torch.utils.data.DataLoader:
    """A loader yielding ``batch`` ``n`` times (in this process, without copies)."""
    return torch.utils.data.DataLoader(_RepeatBatch(batch, n), batch_size=None, collate_fn=_as_is)


def synthetic_batch(model: "ZooModel", batch_size: int, device: torch.device | str, *,
                    channels_last: bool = False, seed: int = 0) -> Batch:
    """``batch_size`` samples from the task's ``example_samples``, collated and on ``device``."""
    task = model.task_impl
    samples = task.example_samples(model, n=batch_size, seed=seed)
    if not samples:
        raise ZooError(f"task {task.name!r} provides no example_samples(), so zoo bench cannot make synthetic "
                       f"data for it; benchmark it with zoo.Trainer on a dataset instead")
    return task.collate(list(samples)).to(device, channels_last=channels_last)


def input_shape(batch: Batch) -> tuple[int, ...]:
    """``(C, H, W)`` of the first image of a batch."""
    first = batch.inputs[0]
    return tuple(int(s) for s in first.shape)


@contextlib.contextmanager
def compiled(model: "ZooModel", on: bool, backend: str = "inductor", mode: str | None = None) -> Iterator[None]:
    """``model.net`` compiled inside the block (for inference), the plain network restored after."""
    if not on:
        yield
        return
    raw = model.net
    model.net = perf.compile_net(raw, backend, mode)
    try:
        yield
    finally:
        model.net = raw


def train_flops(model: "ZooModel", batch: Batch) -> float:
    """Model FLOPs of training one image: 3 x the training-mode forward (:mod:`.flops`)."""
    n = min(FLOP_IMAGES, len(batch))
    small = Batch(batch.inputs[:n], _head(batch.targets, n), batch.meta[:n])
    was = model.training
    model.train()
    try:
        return 3.0 * count_flops(lambda: model.task_impl.loss(model, small)) / n
    finally:
        model.train(was)


def _head(targets: Any, n: int) -> Any:
    return targets[:n] if isinstance(targets, (torch.Tensor, list, tuple)) else targets


def infer_flops(model: "ZooModel", images: torch.Tensor) -> float:
    """Model FLOPs of ``model.predict`` per image."""
    n = min(FLOP_IMAGES, len(images))
    return count_flops(lambda: model.predict(images[:n], batch_size=n)) / n


def zoo_train(model: "ZooModel", batch: Batch, *, steps: int, warmup: int, device: torch.device | str,
              precision: str = "bf16", channels_last: bool | None = None, compile: bool = False,
              compile_mode: str | None = None, **settings: Any) -> tuple[float, MemoryReading]:
    """Images/s of ``zoo.Trainer.fit`` on ``batch`` repeated, and the peak memory of the fit.

    ``settings`` are further Trainer fields (e.g. ``optimizer="sgd"``, ``lr=0.1``).
    """
    from ..train.trainer import Trainer

    timer = StepTimer(warmup=warmup, steps=steps)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as out:
        options = dict(max_epochs=1, batch_size=len(batch), precision=trainer_precision(precision),
                       channels_last=channels_last, compile=compile, compile_mode=compile_mode,
                       device=str(device), out_dir=out, tensorboard=False, plots=False, progress_bar=False,
                       verbose=False, save_best=False)
        options.update(settings)
        trainer = Trainer(callbacks=[timer], **options)
        with PeakMemory(device) as peak:
            trainer.fit(model, batch_loader(batch, warmup + steps))
    return steps * len(batch) / timer.seconds(), peak.reading


def zoo_infer(model: "ZooModel", images: torch.Tensor, *, steps: int, warmup: int, precision: str = "bf16",
              channels_last: bool | None = None, compile: bool = False,
              compile_mode: str | None = None) -> tuple[float, MemoryReading]:
    """Images/s of ``model.predict(images)`` (one call per step, the whole batch), and its peak memory."""
    device = images.device
    model.to(device).eval()
    if perf.use_channels_last(model.net, device, channels_last):
        model.to(memory_format=torch.channels_last)
    with compiled(model, compile, mode=compile_mode), PeakMemory(device) as peak:
        with autocast(device, trainer_precision(precision)):
            seconds = time_loop(lambda: model.predict(images, batch_size=len(images)), steps=steps,
                                warmup=warmup, device=device)
    return steps * len(images) / seconds, peak.reading


def bench_model(model: "ZooModel", *, batch_size: int = 32, image_size: int | None = None, steps: int = 20,
                warmup: int = 5, device: str | None = None, precision: str = "bf16",
                channels_last: bool | None = None, compile: bool = False, mode: str = "both",
                peak: float | None = None) -> BenchResult:
    """Train and/or inference throughput, peak memory, GFLOP per image and MFU of ``model``."""
    if mode not in ("train", "infer", "both"):
        raise ValueError(f"mode={mode!r}: use train, infer or both")
    dev = resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if image_size:
        model.set_image_size(image_size)
    model.to(dev)
    cl = perf.use_channels_last(model.net, dev, channels_last)
    batch = synthetic_batch(model, batch_size, dev, channels_last=cl)
    peak_t = peak_tflops(dev, precision, peak)
    result = BenchResult(model=model.label, task=model.task, device=device_name(dev),
                         precision=precision, batch_size=batch_size, input_shape=input_shape(batch),
                         channels_last=cl, compile=compile, peak_tflops=peak_t)
    if peak_t is None:
        result.notes.append("MFU n/a: unknown peak TFLOP/s for this device (pass --peak-tflops)")
    if mode in ("train", "both"):
        flops = train_flops(model, batch)
        ips, mem = zoo_train(model, batch, steps=steps, warmup=warmup, device=dev, precision=precision,
                             channels_last=cl, compile=compile)
        result.train = Measure(ips, mem, flops, mfu(flops, ips, peak_t))
    if mode in ("infer", "both"):
        h, w = model.preprocess.input_size
        images = torch.rand(batch_size, model.preprocess.in_chans, h, w, device=dev)
        flops = infer_flops(model.eval(), images)
        ips, mem = zoo_infer(model, images, steps=steps, warmup=warmup, precision=precision,
                             channels_last=cl, compile=compile)
        result.infer = Measure(ips, mem, flops, mfu(flops, ips, peak_t))
    return result


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_result(r: BenchResult) -> str:
    """The table ``zoo bench`` prints: one column per mode, one row per figure."""
    cols = [(name, m) for name, m in (("train", r.train), ("infer", r.infer)) if m is not None]
    rows: list[tuple[str, list[str]]] = [
        ("images/s", [f"{m.images_per_s:.1f}" for _, m in cols]),
        ("peak memory", [m.memory.format() for _, m in cols]),
        ("memory/image", [_fmt(m.memory.per_image(r.batch_size), ".1f") + " MiB" if m.memory.bytes else "n/a"
                          for _, m in cols]),
        ("GFLOP/img", [_fmt(m.flops_per_image and m.flops_per_image / 1e9, ".2f") for _, m in cols]),
        ("MFU", [_fmt(m.mfu and 100 * m.mfu, ".1f") + ("%" if m.mfu else "") for _, m in cols]),
    ]
    shape = "x".join(str(s) for s in r.input_shape)
    title = (f"zoo bench: {r.model} ({r.task}) on {r.device}, batch {r.batch_size}, input {shape}, "
             f"precision {r.precision}, channels_last {r.channels_last}, compile {r.compile}")
    width = max(len(n) for n, _ in rows)
    cw = max([len(c) for _, cells in rows for c in cells] + [8])
    lines = [title, f"{'':<{width}}  " + "  ".join(f"{name:>{cw}}" for name, _ in cols)]
    lines += [f"{n:<{width}}  " + "  ".join(f"{c:>{cw}}" for c in cells) for n, cells in rows]
    lines.append("GFLOP/img: model FLOPs (training: 3x the forward); "
                 f"peak {_fmt(r.peak_tflops, '.0f')} TFLOP/s for MFU")
    lines += r.notes
    return "\n".join(lines)
