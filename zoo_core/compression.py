"""What making a model smaller costs and gains, measured the same way for int8 and pruning.

:mod:`zoo_core.quantize` and :mod:`zoo_core.prune` both take ``calibration_data`` (input batches)
and ``eval_data`` (anything :func:`zoo_core.evaluate` reads) and report, before and after: the
serialized state size, parameters, multiply-accumulates, CPU latency of one batch, how far the new
outputs are from the original ones, and the task's metrics. The helpers here do each measurement.

Outputs are compared element-wise when both models return tensors of the same shapes. Outputs that
are *sets* (a list with one mapping per image holding ``boxes`` ``(N, 4)``, as a detector returns:
the xyxy boxes of :class:`zoo_core.task.Detections`) may hold a different number of boxes after
quantisation, so they are matched by IoU instead, and the count difference is reported, not asserted.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from .model import ZooModel

#: IoU at which a box of the smaller model counts as the same detection as the original's
MATCH_IOU = 0.5


# ---- inputs -------------------------------------------------------------------------------------
def input_batches(data: Any, model: "ZooModel", limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` input tensors ``(B, C, H, W)`` from ``data``: a tensor (split in 8s), an iterable
    of tensors, ``Batch`` objects or ``(inputs, targets)`` pairs, a Dataset/DataLoader, or a path the
    model's task reads (its ``train`` split). None gives none."""
    if data is None:
        return []
    size = tuple(int(v) for v in model.preprocess.input_size)
    if isinstance(data, torch.Tensor):
        batches = [_inputs(b, size) for b in data.split(8)][:limit]
    else:
        if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") or \
                isinstance(data, torch.utils.data.Dataset):
            from .train.data import read_data

            task = model.task_impl
            ds = read_data(data, task, model, split="train", train=False)
            data = ds if isinstance(ds, torch.utils.data.DataLoader) else torch.utils.data.DataLoader(
                ds, batch_size=8, shuffle=False, collate_fn=task.collate)
        batches = [_inputs(item, size) for item in islice(data, limit)]
    channels = model.preprocess.in_chans
    wrong = next((tuple(b.shape) for b in batches if b.shape[1] != channels), None)
    if wrong is not None:
        raise ValueError(f"calibration data has batches of shape {wrong}, but the model takes {channels}-channel "
                         f"images (preprocess.in_chans): pass (B, {channels}, H, W) tensors or an image folder")
    return batches


def _inputs(item: Any, size: tuple[int, int]) -> torch.Tensor:
    """One ``(B, C, H, W)`` batch from a data item; a list of images of different sizes (a detection
    batch) is resized to the model's input ``size`` (a detector resizes inside anyway)."""
    x = getattr(item, "inputs", item)  # a Batch, or a plain tensor / pair / list of images
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        if x[0].dim() == 4:
            x = x[0]
        elif len({tuple(t.shape) for t in x}) > 1 and all(t.dim() == 3 for t in x):
            x = torch.cat([F.interpolate(t[None].float(), size=size, mode="bilinear", align_corners=False)
                           for t in x])
        else:
            x = torch.stack(list(x))
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise TypeError(f"calibration data must yield (B, C, H, W) image tensors; got {type(x).__name__}"
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    return x.cpu().float()


def probe_input(batches: list[torch.Tensor], model: "ZooModel") -> torch.Tensor:
    """The batch every measurement runs on: the first calibration batch, else noise at the model's size."""
    from .export import default_sample

    return batches[0] if batches else default_sample(model, batch=2).cpu()


# ---- size, compute, time ------------------------------------------------------------------------
def state_bytes(net: nn.Module) -> int:
    """Bytes of ``torch.save(net.state_dict())``: what a deployed file would weigh."""
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.tell()


def parameter_count(net: nn.Module, *, nonzero: bool = False) -> int:
    """Number of parameters (``nonzero``: only those not exactly 0, what unstructured pruning lowers)."""
    params = list(net.parameters())
    if nonzero:
        return int(sum(int(torch.count_nonzero(p)) for p in params))
    return int(sum(p.numel() for p in params))


def macs_per_image(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass per image (half the FLOPs torch's counter reports)."""
    from .bench.flops import count_flops

    return count_flops(lambda: net(x)) // 2 // max(int(x.shape[0]), 1)


def cpu_latency_ms(net: nn.Module, x: torch.Tensor, iters: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``net(x)`` over ``iters`` runs after ``warmup`` (milliseconds)."""
    from .bench.timing import Timer

    times = []
    timer = Timer("cpu")
    with torch.no_grad():
        for i in range(warmup + iters):
            timer.start()
            net(x)
            timer.stop()
            if i >= warmup:
                times.append(timer.seconds() * 1e3)
    return statistics.median(times)


# ---- metrics ------------------------------------------------------------------------------------
def metrics_on(model: "ZooModel", data: Any, eval_kwargs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The numeric metrics of ``zoo.evaluate(model, data)`` on the CPU (no plots, no progress bar)."""
    from .evaluate import evaluate

    kwargs = {"plots": False, "progress": False, **(eval_kwargs or {})}
    report = evaluate(model, data, device="cpu", **kwargs)
    return {k: float(v) for k, v in dict(report).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metric_change(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` for every metric measured both times."""
    return {k: after[k] - v for k, v in before.items() if k in after}


def metric_lines(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    """``"  accuracy: 0.9100 -> 0.8800 (-0.0300)"`` per metric (not the image count), for the reports' tables."""
    return [f"  {k}: {before[k]:.4f} -> {after[k]:.4f} ({d:+.4f})" for k, d in metric_change(before, after).items()
            if k != "num_samples"]


# ---- outputs ------------------------------------------------------------------------------------
@dataclass
class OutputDiff:
    """How far new outputs are from reference ones: ``max_abs_diff`` and ``rel_error`` (norm of the
    difference / norm of the reference) over the values compared; for set outputs, ``sets`` holds
    ``ref_count``, ``new_count`` (boxes in all images), ``matched`` (pairs at IoU >= :data:`MATCH_IOU`),
    ``mean_iou`` and ``label_agreement`` of the matched pairs, and ``max_score_diff``."""

    max_abs_diff: float
    rel_error: float
    sets: dict[str, float] = field(default_factory=dict)


def is_set_output(out: Any) -> bool:
    """Is ``out`` one mapping per image holding ``boxes`` ``(N, 4)`` (a detector's output)?"""
    return isinstance(out, (list, tuple)) and len(out) > 0 and all(
        isinstance(o, Mapping) and isinstance(o.get("boxes"), torch.Tensor) and o["boxes"].dim() == 2
        and o["boxes"].shape[-1] == 4 for o in out)


def compare_outputs(ref: Any, new: Any) -> OutputDiff:
    """Compare two forward outputs: element-wise when their tensors have the same shapes, by IoU
    matching when they are sets of boxes; anything else is an error naming the shapes."""
    if is_set_output(ref) and is_set_output(new) and len(ref) == len(new):
        return _compare_sets(ref, new)
    a, b = _leaves(ref), _leaves(new)
    if [t.shape for t in a] != [t.shape for t in b]:
        raise ValueError(f"the outputs differ in structure ({[tuple(t.shape) for t in a]} vs "
                         f"{[tuple(t.shape) for t in b]}) and are not per-image sets of boxes to match")
    return _tensor_diff(torch.cat([t.reshape(-1) for t in a]) if a else torch.zeros(0),
                        torch.cat([t.reshape(-1) for t in b]) if b else torch.zeros(0))


def _leaves(out: Any) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    return [(t.dequantize() if t.is_quantized else t).detach().float() for t in tree_leaves(out)
            if isinstance(t, torch.Tensor)]


def _tensor_diff(ref: torch.Tensor, new: torch.Tensor) -> OutputDiff:
    if ref.numel() == 0:
        return OutputDiff(0.0, 0.0)
    diff = new - ref
    return OutputDiff(float(diff.abs().max()), float(diff.norm() / ref.norm().clamp_min(1e-12)))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(len(a), len(b))`` of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-12)


def _compare_sets(ref: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> OutputDiff:
    """Greedy matching per image: each reference box (highest score first) takes the unmatched new box
    it overlaps most, at IoU >= MATCH_IOU; values are compared over the matched pairs only."""
    ref_vals, new_vals, ious, same_label, score_diffs = [], [], [], [], []
    counts = [0, 0]
    for r, n in zip(ref, new):
        rb, nb = r["boxes"].detach().float(), n["boxes"].detach().float()
        counts[0] += len(rb)
        counts[1] += len(nb)
        if not len(rb) or not len(nb):
            continue
        iou = box_iou(rb, nb)
        rs, ns = r.get("scores"), n.get("scores")
        order = torch.argsort(rs, descending=True).tolist() if isinstance(rs, torch.Tensor) else range(len(rb))
        taken: set[int] = set()
        for i in order:
            row = iou[i].clone()
            if taken:
                row[list(taken)] = -1.0
            j = int(row.argmax())
            if float(row[j]) < MATCH_IOU:
                continue
            taken.add(j)
            ious.append(float(row[j]))
            ref_vals.append(rb[i])
            new_vals.append(nb[j])
            if isinstance(rs, torch.Tensor) and isinstance(ns, torch.Tensor):
                score_diffs.append(abs(float(rs[i]) - float(ns[j])))
                ref_vals.append(rs[i:i + 1].float())
                new_vals.append(ns[j:j + 1].float())
            rl, nl = r.get("labels"), n.get("labels")
            if isinstance(rl, torch.Tensor) and isinstance(nl, torch.Tensor):
                same_label.append(int(rl[i]) == int(nl[j]))
    diff = _tensor_diff(torch.cat(ref_vals) if ref_vals else torch.zeros(0),
                        torch.cat(new_vals) if new_vals else torch.zeros(0))
    diff.sets = {"ref_count": float(counts[0]), "new_count": float(counts[1]), "matched": float(len(ious)),
                 "mean_iou": statistics.fmean(ious) if ious else float("nan"),
                 "label_agreement": statistics.fmean(same_label) if same_label else float("nan"),
                 "max_score_diff": max(score_diffs) if score_diffs else float("nan")}
    return diff


def set_summary(sets: Mapping[str, float], ref: str, new: str) -> str:
    """One line about matched set outputs: counts, matches, IoU, labels, scores."""
    return (f"boxes: {ref} {int(sets['ref_count'])}, {new} {int(sets['new_count'])} "
            f"({int(sets['new_count'] - sets['ref_count']):+d}); matched {int(sets['matched'])} at IoU >= "
            f"{MATCH_IOU} (mean IoU {sets['mean_iou']:.3f}, same label {sets['label_agreement']:.0%}, max |score "
            f"diff| {sets['max_score_diff']:.3g})")


def wrap_like(model: "ZooModel", net: nn.Module, config: Mapping[str, Any], *,
              export_formats: Iterable[str] | None = None) -> "ZooModel":
    """A :class:`~zoo_core.model.ZooModel` around ``net`` that is ``model`` in every other respect (a task
    object set on ``model`` included)."""
    from .model import ZooModel

    out = ZooModel(net, task=model.task, class_names=model.class_names, preprocess=model.preprocess,
                   config=dict(config), head=model.head_prefixes, backbone=model.backbone_prefixes,
                   export_formats=tuple(export_formats) if export_formats is not None else model.export_formats,
                   provenance=dict(model.provenance), export_options=dict(model.export_options))
    own_task = model.__dict__.get("_own_task")  # the user's Task subclass (model.task_impl = ...) goes along
    if own_task is not None:
        out.task_impl = own_task
    return out.eval()
