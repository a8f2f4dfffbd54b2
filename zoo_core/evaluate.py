"""The evaluator: the Trainer's validation loop, usable alone.

>>> report = zoo.evaluate(model, "data/val")      # a path, a Dataset or a DataLoader
>>> report["accuracy"], report.images_per_s, report.plots

Everything task-specific comes from ``model.task_impl``: how the dataset is read (in evaluation mode,
where an unreadable image raises :class:`~zoo_core.errors.DataError` naming it: an evaluation set
never shrinks silently), collated, run (``forward_eval``) and scored (``new_metrics``), and which
plots are drawn. Under ``torchrun`` every rank evaluates its shard and the accumulators are merged.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from .finite import OutputCounter, check_finite_metrics, check_weights
from .model import restored_modes

if TYPE_CHECKING:
    from .model import ZooModel
    from .task import Metrics, Task


class Report(Mapping):
    """Metric name -> value (floats, and structured entries such as per-class dicts), plus timings.

    ``plots``: paths of the images written; ``images_per_s``: images per second of model forward
    (``forward_eval``) at ``batch_size``; ``latency_ms``: median time of one such batch;
    ``num_images``; ``seconds``: wall time of the whole evaluation (data loading included).
    """

    def __init__(self, metrics: dict[str, Any], *, plots: list[Path] | None = None, images_per_s: float = 0.0,
                 latency_ms: float = 0.0, num_images: int = 0, batch_size: int = 0,
                 seconds: float = 0.0) -> None:
        self.metrics = dict(metrics)
        self.plots = list(plots or [])
        self.images_per_s, self.latency_ms = images_per_s, latency_ms
        self.num_images, self.batch_size, self.seconds = num_images, batch_size, seconds

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def scalars(self) -> dict[str, float]:
        """Only the numeric metrics (what the CSV/TensorBoard logs and the model card get)."""
        return scalar_metrics(self.metrics)

    def __str__(self) -> str:
        rows = [f"{k:<24} {v:.4f}" for k, v in self.scalars().items()]
        rows.append(f"{'images/s':<24} {self.images_per_s:.1f}  (batch {self.batch_size}, "
                    f"{self.latency_ms:.2f} ms/batch median, {self.num_images} images)")
        rows += [f"plot: {p}" for p in self.plots]
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Report({self.scalars()!r}, images_per_s={self.images_per_s:.1f})"


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``"bf16-mixed"``/``"16-mixed"``; a no-op for ``"32"``."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class LoopStats:
    """What :func:`evaluation_loop` measured."""

    num_images: int = 0
    forward_s: float = 0.0
    batch_times: list[float] | None = None
    seconds: float = 0.0


def evaluation_loop(model: "ZooModel", task: "Task", loader: torch.utils.data.DataLoader, metrics: "Metrics",
                    *, device: torch.device, precision: str = "32", channels_last: bool = False,
                    limit_batches: int | None = None, progress: Any = None) -> LoopStats:
    """Run ``task.forward_eval`` over ``loader`` into ``metrics``.

    Every module is in eval mode for the loop (deterministic metrics) and gets its own mode back after.
    NaN/Inf weights (checked once, before the loop) or NaN/Inf network outputs (counted on the device
    in every forward, read once after the loop; summed over ranks under torchrun) raise
    :class:`~zoo_core.errors.NonFiniteOutputError` instead of being scored (:mod:`zoo_core.finite`).
    """
    stats = LoopStats(batch_times=[])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    check_weights(model, "evaluation")
    counter = OutputCounter()
    start = time.perf_counter()
    with restored_modes(model), counter.watch(model.net, *task.output_probes(model)):
        model.eval()
        with torch.no_grad():  # not inference_mode: metric states must stay ordinary tensors
            for i, batch in enumerate(loader):
                if limit_batches is not None and i >= limit_batches:
                    break
                batch = batch.to(device, channels_last=channels_last, non_blocking=True)
                counter.begin_batch(i, [str(m.get("source", "?")) for m in batch.meta], len(batch))
                sync()
                t0 = time.perf_counter()
                with autocast(device, precision):
                    outputs = task.forward_eval(model, batch)
                sync()
                dt = time.perf_counter() - t0
                stats.batch_times.append(dt)
                stats.forward_s += dt
                stats.num_images += len(batch)
                metrics.update(outputs, batch)
                if progress is not None:
                    progress.update(1)
    counter.check("evaluation", distributed=_distributed(), device=device)
    stats.seconds = time.perf_counter() - start
    return stats


def _distributed() -> bool:
    """Whether every rank runs this loop (under torchrun both the evaluator and the Trainer do)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def evaluate(model: "ZooModel", data: Any, *, batch_size: int = 32, device: str | torch.device | None = None,
             out_dir: str | Path | None = None, plots: bool = True, split: str = "val",
             num_workers: int | None = None, precision: str = "32", channels_last: bool = False,
             limit_batches: int | None = None, progress: bool | None = None, overwrite: bool = False) -> Report:
    """Evaluate ``model`` on ``data`` (a path the task reads, a Dataset, or a DataLoader).

    Returns a :class:`Report`; writes the task's plots into ``out_dir`` (default
    ``zoo_eval/<model name>``) when ``plots``, replacing only plots the zoo wrote there before (or any
    file, with ``overwrite``); sets ``model.last_metrics`` (saved with the model).
    The model is moved to ``device`` (default: where it is) and its train/eval mode restored.
    """
    from .train import distributed as D
    from .train.data import base_dataset, make_loader, read_data
    from .train.loggers import make_progress

    task = model.task_impl
    env = D.setup(str(device) if device is not None else str(_model_device(model)))
    model.to(env.device)
    data = read_data(data, task, model, split=split, train=False)
    if isinstance(data, torch.utils.data.DataLoader):
        loader = data
    else:
        loader = make_loader(data, task.collate, batch_size=batch_size, train=False, seed=0, rank=env.rank,
                             world_size=env.world_size, num_workers=num_workers,
                             pin_memory=env.device.type == "cuda")
    dataset = base_dataset(loader)
    names = list(getattr(dataset, "class_names", None) or model.class_names)
    metrics = task.metrics_for(model, names)
    total = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    bar = make_progress(total, "evaluating", enabled=progress if env.is_main else False)
    try:
        stats = evaluation_loop(model, task, loader, metrics, device=env.device, precision=precision,
                                channels_last=channels_last, limit_batches=limit_batches, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    metrics = D.merge_metrics(metrics, env)
    values = dict(check_finite_metrics(metrics.compute(), "evaluation"))
    report = report_from(values, stats, batch_size=loader.batch_size or batch_size)
    if plots and env.is_main:
        from .run_files import publishing

        folder = Path(out_dir) if out_dir is not None else Path("zoo_eval") / _safe_name(model)
        with publishing(folder, overwrite=overwrite, what="evaluation's plots",
                        elsewhere="pass another out_dir (zoo eval --out)") as tmp:
            written = list(task.plots(model, dataset, values, tmp))
        report.plots = [folder / Path(p).relative_to(tmp) if Path(p).is_relative_to(tmp) else Path(p) for p in written]
    model.last_metrics = report.scalars()
    return report


def report_from(values: dict[str, Any], stats: LoopStats, *, batch_size: int) -> Report:
    times = stats.batch_times or [0.0]
    return Report(values, images_per_s=stats.num_images / stats.forward_s if stats.forward_s else 0.0,
                  latency_ms=1000.0 * statistics.median(times), num_images=stats.num_images,
                  batch_size=batch_size, seconds=stats.seconds)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _safe_name(model: "ZooModel") -> str:
    name = model.label
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class _CallableModule(types.ModuleType):
    """``zoo.evaluate(model, data)`` must work even after this module was imported as
    ``zoo_core.evaluate`` (importing a submodule sets the package attribute to the module)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
