"""Segmentation models and heads of the torchvision plugin (filled in by the segmentation work).

Same shape as ``det_specs.py``: tables of data plus ``register_models``/``register_heads``, called by
``dense_specs``. No torch/torchvision import here.
"""

from __future__ import annotations

from typing import Any, Callable


def register_models(register: Callable[..., Any]) -> None:
    """Register the segmentation model table (none yet)."""


def register_heads(register: Callable[..., Any]) -> None:
    """Register segmentation heads buildable on any backbone (none yet)."""
