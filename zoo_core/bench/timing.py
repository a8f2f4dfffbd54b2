"""Wall-clock timing of device work without per-step synchronisation.

>>> timer = Timer(device)
>>> for _ in range(warmup): step()
>>> timer.start()
>>> for _ in range(steps): step()
>>> timer.stop()
>>> seconds = timer.seconds()          # the one synchronisation

On CUDA the start and stop are events recorded on the current stream, so queued kernels are timed,
not the Python that launched them; elsewhere ``time.perf_counter`` is read (CPU work is synchronous).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from ..train.callbacks import Callback

if TYPE_CHECKING:
    from ..train.trainer import Trainer


class Timer:
    """Elapsed time between :meth:`start` and :meth:`stop` on ``device``, read by :meth:`seconds`."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._start: Any = None
        self._stop: Any = None

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._start, self._stop = self._mark(), None

    def stop(self) -> None:
        if self._start is None:
            raise RuntimeError("Timer.stop() before Timer.start()")
        self._stop = self._mark()

    @property
    def done(self) -> bool:
        return self._stop is not None

    def seconds(self) -> float:
        """Seconds between start and stop (synchronises with the device on CUDA)."""
        if self._stop is None:
            raise RuntimeError("the timer was not stopped: fewer steps ran than asked for")
        if self.cuda:
            self._stop.synchronize()
            return self._start.elapsed_time(self._stop) / 1000.0
        return float(self._stop - self._start)


def time_loop(step: Any, *, steps: int, warmup: int, device: torch.device | str) -> float:
    """Call ``step()`` ``warmup`` times, then time ``steps`` calls; return the seconds of those."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(warmup):
        step()
    timer = Timer(device)
    timer.start()
    for _ in range(steps):
        step()
    timer.stop()
    return timer.seconds()


class StepTimer(Callback):
    """A Trainer callback timing optimizer steps ``warmup + 1`` to ``warmup + steps``.

    Pass it in ``Trainer(callbacks=[...])``; after ``fit``, :meth:`seconds` is the time those
    ``steps`` steps took (data loading between them included), nothing before or after (setup,
    compilation during warmup, the epoch-end checkpoint, saving the model).
    """

    def __init__(self, *, warmup: int, steps: int) -> None:
        self.warmup, self.steps = int(warmup), int(steps)
        self.timer: Timer | None = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.timer = Timer(trainer.env.device)
        if self.warmup == 0:
            self.timer.start()

    def on_optimizer_step(self, trainer: "Trainer") -> None:
        assert self.timer is not None
        step = trainer.state.step
        if step == self.warmup and self.warmup > 0:
            self.timer.start()
        elif step == self.warmup + self.steps:
            self.timer.stop()

    def seconds(self) -> float:
        if self.timer is None:
            raise RuntimeError("StepTimer was not passed to a Trainer that ran")
        return self.timer.seconds()
