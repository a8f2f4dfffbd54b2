"""Numerics of a run: seeding, deterministic mode, and the non-finite loss guard.

The guard keeps the hot loop free of host syncs: each step appends an on-device "is the loss
finite" flag and the names of the batch's samples; :meth:`FiniteGuard.check` reads the flags back
(at log steps, before every checkpoint save, at epoch ends) and raises naming the first bad step.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import ZooError
from . import distributed as D


class NonFiniteLossError(ZooError, FloatingPointError):
    """The loss became NaN or Inf; the message names the step and the batch's samples."""


class FiniteGuard:
    """Records, without a host sync, whether each step's loss was finite and which samples it saw."""

    def __init__(self) -> None:
        self.flags: list[torch.Tensor] = []
        self.where: list[tuple[int, int, int, list[str]]] = []

    def record(self, loss: torch.Tensor, step: int, epoch: int, batch_index: int, meta: list[dict]) -> None:
        self.flags.append(torch.isfinite(loss.detach()))
        self.where.append((step, epoch, batch_index, [str(m.get("source", "?")) for m in meta[:8]]))

    def check(self, env: D.DistEnv, last_good: Path | None) -> None:
        if not self.flags:
            return
        ok = torch.stack(self.flags)
        bad = (~ok).any().to(torch.int32).reshape(1)
        D.all_reduce_sum(bad, env)
        if int(bad.item()):
            local = (~ok).nonzero()
            if local.numel():
                step, epoch, index, sources = self.where[int(local[0, 0])]
                where = f"at step {step + 1} (epoch {epoch + 1}, batch {index}); batch samples: {', '.join(sources)}"
            else:
                where = "on another rank"
            kept = f"the last good checkpoint is {last_good}" if last_good and last_good.exists() else \
                "no checkpoint had been written yet"
            raise NonFiniteLossError(f"the loss became NaN/Inf {where}. Training stopped; {kept}. Lower lr, "
                                     "set gradient_clip_val, use precision='32', or check these samples")
        self.flags.clear()
        self.where.clear()


@contextlib.contextmanager
def numerics(deterministic: bool):
    """Deterministic algorithms (or cuDNN autotuning) for the run, restored afterwards."""
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    change = deterministic != old[0]  # the call imports torch._inductor (seconds): only when needed
    if change:
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
    try:
        yield
    finally:
        if change:
            torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[2], old[3]


def _seed_host(seed: int) -> None:
    """Seed Python's, NumPy's and torch's CPU generators (after checking ``seed``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed!r}: expected a whole number in [0, 2**63)")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every device) with ``seed``.

    What ``Trainer(seed=)`` does at the start of ``fit``. Call it (or pass ``seed=`` to
    :func:`zoo_core.load` / :func:`zoo_core.build`) *before* building a model, so that its random
    initialisation (a new head, a decoder) is repeatable too.
    """
    _seed_host(seed)
    torch.manual_seed(seed)  # the CUDA generators too (queued until CUDA initialises)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the body with every generator seeded by ``seed``, then put the caller's generator states back.

    ``zoo.load(..., seed=7)`` builds under this: the model's initialisation is a function of the seed
    alone, and the caller's random streams (their own data shuffling, say) are not disturbed.
    ``None``: no seeding, the body draws from the current streams as usual.
    """
    if seed is None:
        yield
        return
    py, npy = random.getstate(), np.random.get_state()
    cuda = torch.cuda.is_initialized()  # not initialised: leave CUDA alone (no lazily queued seeding)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        try:
            _seed_host(seed)
            if cuda:
                torch.cuda.manual_seed_all(seed)
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)
