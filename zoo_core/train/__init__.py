"""The shared Trainer: one loop for every task (see :mod:`zoo_core.train.trainer`).

Importing this package is cheap (no torch): :mod:`zoo_core.train.config` is read by the ``zoo train``
parser, and everything that needs torch lives in the sub-modules, imported on use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "NonFiniteLossError"):
        from . import trainer

        return getattr(trainer, name)
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'zoo_core.train' has no attribute {name!r}")
