"""Ctrl-C during ``fit``: finish the optimizer step, save ``last.pt``, say how to resume, exit 130.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside ``optimizer.step()`` (half the
parameters updated) or between the step and the scheduler: a checkpoint written then would not be
the state of any step. So while a run trains, the first SIGINT only sets a flag; the loop looks at
it after each optimizer step (and at epoch ends), where the model, optimizer, scheduler, scaler and
data position agree, writes the mid-epoch ``last.pt`` there and raises :class:`TrainingInterrupted`.
A second Ctrl-C raises at once (nothing more is saved). DataLoader workers made by the Trainer
ignore SIGINT (the terminal sends it to the whole process group), so they live until the loader
shuts them down; a user's own loader whose workers die on it still stops the run cleanly at the
last finished step.

The flag is used in the main thread of a single process only: signal handlers cannot be set
elsewhere, and under ``torchrun`` ranks would see the signal at different steps (a checkpoint save
is collective). There, Ctrl-C stops at once and the message names the last checkpoint written.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C; the message says what was saved and how to resume."""

    def __str__(self) -> str:  # KeyboardInterrupt's str() is its args, which is what we want, but be explicit
        return str(self.args[0]) if self.args else "training interrupted"


class InterruptFlag:
    """While active, the first SIGINT sets :attr:`requested`; the second raises KeyboardInterrupt."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "InterruptFlag":
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt("second Ctrl-C: stopped at once")
        self.requested = True
        print("\nCtrl-C: stopping at the next optimizer step (or once the running validation ends) and saving "
              "last.pt (press Ctrl-C again to stop at once, saving nothing)", file=sys.stderr, flush=True)


def resume_hint(out_dir: Path) -> str:
    """How to continue a run in ``out_dir`` from Python and from the command line."""
    return (f"resume with trainer.fit(model, ..., resume='last') (out_dir={str(out_dir)!r}) or "
            f"`zoo train ... --out-dir {out_dir} --resume last`")


def interrupted(checkpoint: Path | None, out_dir: Path, where: str) -> TrainingInterrupted:
    """The exception to raise after Ctrl-C, naming what was saved (or the last good checkpoint)."""
    if checkpoint is not None and checkpoint.exists():
        return TrainingInterrupted(f"training interrupted {where}; {checkpoint} holds this run's state: "
                                   f"{resume_hint(out_dir)}")
    return TrainingInterrupted(f"training interrupted {where}; no checkpoint of this run was written yet, "
                               "so there is nothing to resume: start the run again")
