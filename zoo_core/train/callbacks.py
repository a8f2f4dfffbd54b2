"""Callbacks: what runs at named points of the Trainer's loop.

The Trainer calls, by name: ``on_fit_start``, ``on_train_epoch_start``, ``on_optimizer_step`` (after
every optimizer step), ``on_train_epoch_end``, ``on_validation_end(metrics)`` (after each validation,
or each epoch when there is no validation data), ``on_epoch_end``, ``on_fit_end``. A callback
overrides the hooks it needs; ``state_dict``/``load_state_dict`` make it part of the checkpoint
(stored under its ``state_key``). Every rank runs every callback (metrics are identical on all
ranks); only rank 0 writes files.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .trainer import Trainer

HOOKS = ("on_fit_start", "on_train_epoch_start", "on_optimizer_step", "on_train_epoch_end",
         "on_validation_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class: every hook does nothing."""

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_train_epoch_start(self, trainer: "Trainer") -> None: ...
    def on_optimizer_step(self, trainer: "Trainer") -> None: ...
    def on_train_epoch_end(self, trainer: "Trainer") -> None: ...
    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: "Trainer") -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Is ``value`` better than ``best`` by more than ``min_delta`` (``mode``: max or min)?"""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def metric_value(metrics: dict[str, float], name: str, who: str, trainer: Any = None) -> float:
    """``metrics[name]`` for the callback ``who``; a missing name is an error naming what was reported and,
    when the task left it out as undefined (``trainer.metrics["undefined_metrics"]``: ``{name: why}``), why."""
    undefined = (getattr(trainer, "metrics", None) or {}).get("undefined_metrics")
    if name not in metrics and isinstance(undefined, dict) and name in undefined:
        from ..errors import DataError

        raise DataError(f"{name}, which {who} watches, is undefined in this validation: {undefined[name]}. Watch a "
                        "metric that every validation defines (monitor= / early_stopping_metric=)")
    if name not in metrics:
        from ..errors import UnknownNameError

        raise UnknownNameError("metric", name, metrics, f"{who} watches it, but the run reports only "
                               f"{', '.join(sorted(metrics)) or 'nothing'}; pick one of those")
    return float(metrics[name])


def mode_of(task: Any, metric: str) -> str:
    """``max`` or ``min`` for a metric: the task's own mode for its default metric, min for losses."""
    if metric == task.default_metric:
        return task.default_metric_mode
    return "min" if "loss" in metric else "max"


def watched_metric(config: Any, task: Any, *, validating: bool, class_names: list[str],
                   model: Any = None) -> tuple[str, str]:
    """The metric the best checkpoint watches and its mode (``config.monitor`` or the task's default).

    A ``monitor``/``early_stopping_metric`` the run will never report (a typo) is refused here, before
    the first step, when the task's metrics name themselves (:meth:`zoo_core.task.Metrics.names`);
    without validation data only ``train_loss`` is reported.
    """
    metric = config.monitor or (task.default_metric if validating else "train_loss")
    metrics = task.metrics_for(model, class_names) if model is not None else task.new_metrics(class_names)
    known = metrics.names() if validating else ["train_loss"]
    for setting, name in (("monitor", config.monitor), ("early_stopping_metric", config.early_stopping_metric)):
        if name and known is not None and name not in known:
            from ..errors import UnknownNameError

            where = (f"the {task.name} task reports {', '.join(known)}" if validating else
                     "without validation data only train_loss is")
            raise UnknownNameError("metric", name, known, f"{setting}={name!r} names a metric this run never "
                                   f"reports: {where}; pick one of those")
    return metric, config.monitor_mode or mode_of(task, metric)


class ModelCheckpoint(Callback):
    """``last.pt`` at every epoch end (and every ``every_n_steps`` steps); ``best.pt`` on improvement."""

    def __init__(self, monitor: str, mode: str, *, save_best: bool = True, every_n_steps: int = 0) -> None:
        self.monitor, self.mode, self.save_best, self.every_n_steps = monitor, mode, save_best, every_n_steps
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self._improved = False

    def on_optimizer_step(self, trainer: "Trainer") -> None:
        if self.every_n_steps and trainer.state.step % self.every_n_steps == 0:
            trainer.save_checkpoint(trainer.last_path)

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        value = metric_value(metrics, self.monitor, "the best checkpoint", trainer)
        self._improved = improved(value, self.best_value, self.mode)
        if self._improved:
            self.best_value, self.best_epoch = value, trainer.state.epoch

    def on_epoch_end(self, trainer: "Trainer") -> None:
        trainer.save_checkpoint(trainer.last_path)
        if self.save_best and self._improved:
            trainer.save_checkpoint(trainer.best_path)
        self._improved = False

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "best_value": self.best_value, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("monitor") == self.monitor:
            self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]


class EarlyStopping(Callback):
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` validations."""

    def __init__(self, metric: str, patience: int, mode: str, min_delta: float = 0.0) -> None:
        self.metric, self.patience, self.mode, self.min_delta = metric, patience, mode, min_delta
        self.best: float | None = None
        self.bad = 0
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        value = metric_value(metrics, self.metric, "early stopping", trainer)
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.stopped_epoch = trainer.state.epoch
            trainer.should_stop = True
            trainer.stop_reason = (f"early stopping: {self.metric} did not improve for {self.patience} "
                                   f"validation(s) (best {self.best})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], int(state["bad"])


class ModelEMA(Callback):
    """An exponential moving average of the weights, updated after every optimizer step.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so early
    averages are not dominated by the random initialisation. Floating buffers (BatchNorm statistics)
    are averaged too; integer buffers are copied. The update is a few fused ops on the device.
    """

    state_key = "ema"

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0
        self._bind(net)

    def _bind(self, net: nn.Module) -> None:
        src, dst = net.state_dict(keep_vars=True), self.module.state_dict(keep_vars=True)
        pairs = [(dst[k].data, src[k].data) for k in src]
        self._float = [(d, s) for d, s in pairs if d.is_floating_point()]
        self._other = [(d, s) for d, s in pairs if not d.is_floating_point()]

    @torch.no_grad()
    def on_optimizer_step(self, trainer: "Trainer") -> None:
        self.update()

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._float:
            torch._foreach_lerp_([x for x, _ in self._float], [y for _, y in self._float], 1.0 - d)
        for x, y in self._other:
            x.copy_(y)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])


class LRMonitor(Callback):
    """Adds each parameter group's learning rate to the epoch's logged values (``lr/<group>``): the lr
    of the epoch's last optimizer step (the scheduler has already moved on to the next one)."""

    def on_train_epoch_end(self, trainer: "Trainer") -> None:
        if trainer.optimizer is None:
            return
        used = getattr(trainer, "step_lrs", None)
        for i, group in enumerate(trainer.optimizer.param_groups):
            trainer.epoch_log[f"lr/{group.get('name', i)}"] = used[i] if used else float(group["lr"])


def check_callbacks(callbacks: list[Any]) -> list[Callback]:
    """Refuse objects that are not :class:`Callback` s (a common slip: passing the class)."""
    out = []
    for cb in callbacks:
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(f"callbacks=[{cb.__name__}] passes the class; pass an instance: {cb.__name__}(...)")
        if not isinstance(cb, Callback):
            warnings.warn(f"{type(cb).__name__} does not subclass zoo_core.train.callbacks.Callback; "
                          "only the hooks it defines are called", stacklevel=3)
        for name in dir(type(cb)):
            if name.startswith("on_") and name not in HOOKS:
                from ..errors import UnknownNameError

                raise UnknownNameError("callback hook", name, HOOKS, f"in {type(cb).__name__}; the Trainer "
                                       "would never call it")
        out.append(cb)
    return out
