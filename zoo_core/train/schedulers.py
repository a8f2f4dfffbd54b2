"""Learning-rate schedules with linear warmup, stepped once per optimizer step.

Each parameter group's lr is ``group["base_lr"] x factor(step)``: a linear warmup from
``warmup_start_factor`` to 1 over ``warmup_steps``, then

- ``cosine``: half a cosine from 1 down to ``min_lr_ratio`` at the last step;
- ``step``: ``step_gamma ** (epoch // step_epochs)``;
- ``plateau``: 1, multiplied by ``step_gamma`` whenever the monitored metric has not improved for
  ``plateau_patience`` validations (:meth:`LRSchedule.on_validation`);
- ``onecycle``: cosine rise from 1/25 to 1 over the warmup (30% of the run if no warmup was set),
  then cosine decay to 1/(25 x 10^4) (the one-cycle policy; momentum is not cycled);
- ``constant``: 1.

The state is a few numbers (``state_dict``), so it checkpoints under ``weights_only`` loading.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig

ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def _cos_interp(start: float, end: float, t: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


class LRSchedule:
    """Sets every group's lr from its ``base_lr``; call :meth:`step` after each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, *, steps_per_epoch: int,
                 mode: str = "max") -> None:
        self.optimizer = optimizer
        self.kind = config.scheduler
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = self.steps_per_epoch * config.max_epochs
        self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        if self.kind == "onecycle" and self.warmup_steps == 0:
            self.warmup_steps = max(1, int(0.3 * self.total_steps))
        self.start_factor = config.warmup_start_factor
        self.min_lr_ratio = config.min_lr_ratio
        self.step_epochs = max(1, config.step_epochs)
        self.gamma = config.step_gamma
        self.patience = config.plateau_patience
        self.mode = mode
        self.step_count = 0
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self._apply()

    def factor(self, step: int) -> float:
        """The lr multiplier at optimizer step ``step`` (0 = the first step)."""
        w = self.warmup_steps
        if self.kind == "onecycle":
            if step < w:
                return _cos_interp(1.0 / ONECYCLE_DIV, 1.0, step / w)
            return _cos_interp(1.0, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV),
                               (step - w) / max(1, self.total_steps - w - 1))
        if step < w:
            return self.start_factor + (1.0 - self.start_factor) * step / w
        if self.kind == "cosine":
            return _cos_interp(1.0, self.min_lr_ratio, (step - w) / max(1, self.total_steps - w - 1))
        if self.kind == "step":
            return self.gamma ** ((step // self.steps_per_epoch) // self.step_epochs)
        if self.kind == "plateau":
            return self.plateau_scale
        return 1.0

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def on_validation(self, value: float | None) -> None:
        """Feed the monitored metric (plateau schedule only; others ignore it)."""
        if self.kind != "plateau" or value is None or not math.isfinite(value):
            return
        better = self.plateau_best is None or (value > self.plateau_best if self.mode == "max"
                                                else value < self.plateau_best)
        if better:
            self.plateau_best, self.plateau_bad = float(value), 0
            return
        self.plateau_bad += 1
        if self.plateau_bad >= self.patience:
            self.plateau_scale *= self.gamma
            self.plateau_bad = 0
            self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The position in the schedule, plus its length and current factor (so a resume with other
        settings can say how the schedule changed; they are not restored)."""
        return {"kind": self.kind, "step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "factor": self.factor(self.step_count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = state["plateau_best"]
        self.plateau_bad = int(state["plateau_bad"])
        self._apply()
