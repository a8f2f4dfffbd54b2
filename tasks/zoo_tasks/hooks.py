"""Hooks for fine-tuning scripts: a custom loss and extra metrics as task options, in Python.

Every built-in task takes, through ``zoo.load(..., task_options={...})`` (or its constructor):

- ``loss``: a callable ``loss(outputs, targets)`` returning a scalar tensor, or a dict of named tensors
  with the total under ``"loss"`` (each is logged). What it receives, per task:

  ============== ================================================ =========================================
  task           ``outputs``                                      ``targets``
  ============== ================================================ =========================================
  classification logits ``(B, K)``                                labels ``(B,)``; probabilities ``(B, K)``
                                                                  under mixup/cutmix
  multi-label    logits ``(B, K)``                                multi-hot floats ``(B, K)``
  segmentation   logits ``(B, K, H, W)`` at the masks' size       masks ``(B, H, W)``, 255 = ignore
                 (one channel for a binary model)
  detection      the detector's own loss dict (it computes them   the targets (a list of box/label dicts)
                 inside): the callable combines them
  ============== ================================================ =========================================

  ``torch.nn.CrossEntropyLoss(weight=...)`` and other ``nn`` losses work as they are (a module is moved to
  the logits' device). A segmentation model's auxiliary logits get the same callable, times ``aux_weight``.
- ``metrics``: ``{name: metric}``, reported beside the task's own metrics (``zoo.evaluate``'s report,
  every validation, ``metrics.csv``). A torchmetrics ``Metric`` is updated with ``(outputs, targets)``
  as :meth:`Task.forward_eval` gives them (class logits; predicted class maps for segmentation; box
  dicts for detection), on the CPU, and computed once per evaluation; a callable
  ``fn(outputs, batch)`` returns a number or a dict of numbers per batch, averaged over the samples.
  A result that is a dict ``{k: v}`` is reported as ``name_k``; a 1-D tensor as a list. With extra
  metrics the Trainer cannot know every name before the first validation, so a ``monitor`` typo is
  found there instead of before the first step.

Code is never saved: ``model.save`` leaves these options out and says so (:mod:`zoo_core.unsaved`);
pass them again after ``zoo.load``. To change more than a loss, subclass the task in your script and
set it on the model (``model.task_impl = MyTask()``), no plugin needed (see the README).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from zoo_core.task import Batch, Metrics

from .option_checks import code_or_none, extra_metrics

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

#: the hook options every built-in task takes, with their defaults and checks
HOOK_DEFAULTS: dict[str, Any] = {"metrics": None}
HOOK_CHECKS = {"metrics": extra_metrics}
LOSS_CHECK = code_or_none("loss", "torch.nn.CrossEntropyLoss(label_smoothing=0.1) or "
                                  "lambda outputs, targets: ...")


def _device_of(outputs: Any) -> torch.device | None:
    if isinstance(outputs, Tensor):
        return outputs.device
    values = outputs.values() if isinstance(outputs, Mapping) else outputs if isinstance(outputs, (list, tuple)) else ()
    return next((d for d in (_device_of(v) for v in values) if d is not None), None)


def custom_loss(fn: Callable[..., Any], outputs: Any, targets: Any) -> dict[str, Tensor]:
    """``fn(outputs, targets)`` as the task's named losses: a scalar is ``{"loss": it}``; a dict must hold
    ``"loss"``. An ``nn.Module`` loss (class weights in a buffer) is moved to the outputs' device first."""
    if isinstance(fn, nn.Module):
        device = _device_of(outputs)
        if device is not None:
            fn.to(device)
    out = fn(outputs, targets)
    name = getattr(fn, "__qualname__", type(fn).__name__)
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise ValueError(f"the custom loss {name} returned a tensor of shape {tuple(out.shape)}; return a "
                             "scalar (reduce it, e.g. .mean()) or a dict with the total under 'loss'")
        return {"loss": out.reshape(())}
    if isinstance(out, Mapping) and isinstance(out.get("loss"), Tensor) and out["loss"].numel() == 1:
        return {str(k): v for k, v in out.items()}
    raise TypeError(f"the custom loss {name} returned {type(out).__name__}; return a scalar tensor, or a dict of "
                    "tensors with the scalar total under 'loss'")


def _cpu(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, Mapping):
        return {k: _cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v) for v in x)
    return x


def _as_reported(name: str, value: Any) -> dict[str, Any]:
    """A metric result as report entries: a scalar under ``name``, a dict's items as ``name_key``."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_as_reported(f"{name}_{k}", v))
        return out
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return {name: float(value)}
        if value.dim() == 1:
            return {name: [float(v) for v in value.tolist()]}
        raise ValueError(f"extra metric {name!r} computed a tensor of shape {tuple(value.shape)}; return a "
                         "scalar, a 1-D tensor or a dict of them")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {name: float(value)}
    raise ValueError(f"extra metric {name!r} gave {type(value).__name__}; return a number, a tensor or a dict")


class ExtraMetrics(Metrics):
    """A task's own metrics plus the user's (``metrics=`` option); mergeable across ranks.

    The user's callables are not pickled (a lambda cannot be): another rank's accumulator arrives with
    its sums and counts, which is all :meth:`merge` and :meth:`compute` need.
    """

    def __init__(self, base: Metrics, extra: Mapping[str, Any]) -> None:
        from torchmetrics import Metric

        self.base = base
        known = set(base.names() or ())
        for name in extra:
            if name in known:
                raise ValueError(f"extra metric {name!r} has the name of one of the task's own metrics "
                                 f"({', '.join(sorted(known))}); rename it")
        self.metrics: dict[str, Metric] = {}
        self.fns: dict[str, Callable[[Any, Batch], Any]] = {}
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}
        for name, m in extra.items():
            if isinstance(m, Metric):
                fresh = m.clone().cpu()
                fresh.reset()
                self.metrics[name] = fresh
            else:
                self.fns[name], self.sums[name], self.counts[name] = m, {}, 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "fns": {}}

    def update(self, outputs: Any, batch: Batch) -> None:
        self.base.update(outputs, batch)
        if self.metrics:
            out, targets = _cpu(outputs), _cpu(batch.targets)
            for m in self.metrics.values():
                m.update(out, targets)
        n = len(batch)
        for name, fn in self.fns.items():
            for key, v in _as_reported(name, fn(outputs, batch)).items():
                if isinstance(v, list):
                    raise ValueError(f"extra metric {name!r} returned a vector per batch; return numbers (they are "
                                     "averaged over the samples) or use a torchmetrics Metric")
                self.sums[name][key] = self.sums[name].get(key, 0.0) + v * n
            self.counts[name] += n

    def merge(self, other: Metrics) -> None:
        if not isinstance(other, ExtraMetrics) or set(other.metrics) != set(self.metrics) or \
                set(other.sums) != set(self.sums):
            raise ValueError("can only merge ExtraMetrics with the same extra metrics")
        self.base.merge(other.base)
        for name, m in self.metrics.items():
            m.merge_state(other.metrics[name])
        for name, sums in other.sums.items():
            for key, v in sums.items():
                self.sums[name][key] = self.sums[name].get(key, 0.0) + v
            self.counts[name] += other.counts[name]

    def names(self) -> Sequence[str] | None:
        return None  # a Metric or callable may report a dict: its names are known once computed

    def compute(self) -> dict[str, Any]:
        out = dict(self.base.compute())
        extra: dict[str, Any] = {}
        for name, m in self.metrics.items():
            extra.update(_as_reported(name, m.compute()))
        for name, sums in self.sums.items():
            count = max(self.counts[name], 1)
            extra.update({key: v / count for key, v in sums.items()})
        clash = sorted(set(extra) & set(out))
        if clash:
            raise ValueError(f"extra metric(s) {clash} have the names of the task's own metrics; rename them")
        out.update(extra)
        return out


class HooksMixin:
    """What the built-in tasks share for hooks: metrics with the user's extras (``metrics_for``)."""

    def base_metrics(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """The task's own metrics for ``model`` (a task may pick them by model, e.g. binary segmentation)."""
        return self.new_metrics(class_names)  # type: ignore[attr-defined]

    def metrics_for(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """The task's own metrics plus the ``metrics`` option's (see the module docstring)."""
        base = self.base_metrics(model, class_names)
        extra = self.options(model).get("metrics")  # type: ignore[attr-defined]
        return ExtraMetrics(base, extra) if extra else base
