"""Every timm model as a classifier. Reading this module imports neither torch nor timm.

The names, pretrained tags and input sizes come from :mod:`zoo_timm.catalog` (a JSON cache per
installed timm version). One builder, :func:`zoo_timm.classification.build`, makes all of them.
"""

from __future__ import annotations

from typing import Any, Callable

from zoo_core.specs import EXPORT_FORMATS

from .catalog import load_catalog

BUILDER = "zoo_timm.classification:build"
WEIGHTS_INFO = "zoo_timm.classification:weights_info"
PRIORITY = 10


def register_models(register: Callable[..., Any]) -> None:
    """Register every model of the installed timm for classification."""
    for name, entry in load_catalog().items():
        size = entry.get("input_size")
        register(name, BUILDER, tasks=("classification",), priority=PRIORITY,
                 input_size=tuple(size) if size else None, weights=tuple(entry.get("weights") or ()),
                 weights_info=WEIGHTS_INFO, export_formats=EXPORT_FORMATS, description=f"timm {name} classifier")
