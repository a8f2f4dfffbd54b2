"""zoo: a plugin-based computer-vision model zoo for PyTorch with one task API.

>>> import zoo_core as zoo
>>> model = zoo.load("resnet50", task="cls", num_classes=10)

Importing this package is cheap (no torch): the catalog functions work without it, and everything
that needs torch is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .api import get_task, info, list_backbones, list_heads, list_models, list_plugins, list_tasks, load
from .errors import (DataError, IncompatibleError, PluginError, UnknownNameError, WeightsError,
                     ZooError)
from .hookspecs import hookimpl
from .registry import set_provider_priority

_LAZY = {
    "Trainer": "zoo_core.train.trainer",
    "evaluate": "zoo_core.evaluate",
    "build": "zoo_core.compose",
    "compat": "zoo_core.compose",
    "ZooModel": "zoo_core.model",
    "Preprocess": "zoo_core.model",
    "BuiltModel": "zoo_core.model",
    "PretrainedWeights": "zoo_core.model",
    "Task": "zoo_core.task",
    "Batch": "zoo_core.task",
    "Metrics": "zoo_core.task",
    "Classification": "zoo_core.task",
    "Detections": "zoo_core.task",
    "Instances": "zoo_core.task",
    "Keypoints": "zoo_core.task",
    "SegmentationMask": "zoo_core.task",
    "Backbone": "zoo_core.backbone",
    "FeatureInfo": "zoo_core.backbone",
    "list_weights": "zoo_core.weights_catalog",
    "export": "zoo_core.export",
    "seed_everything": "zoo_core.train.numerics",
}

__all__ = ["__version__", "load", "info", "list_models", "list_backbones", "list_heads", "list_tasks",
           "list_plugins", "get_task", "hookimpl", "set_provider_priority", "ZooError",
           "UnknownNameError", "PluginError", "IncompatibleError", "WeightsError", "DataError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo_core' has no attribute {name!r}")
