"""Where the zoo keeps its files, and whether it may use the network. Imports nothing heavy (no torch),
so the catalog code (``zoo list``, plugins' cached model lists) can use it."""

from __future__ import annotations

import os
from pathlib import Path


def zoo_home() -> Path:
    """The cache root: ``$ZOO_HOME``, read at call time, else ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "zoo")


def offline() -> bool:
    """True when ``ZOO_OFFLINE`` is set to 1/true: no network call is ever made."""
    return os.environ.get("ZOO_OFFLINE", "").lower() in {"1", "true", "yes"}
