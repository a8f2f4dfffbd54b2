"""What ``model.save`` cannot keep: code a user put in the task options, or a task object set on the model.

A custom loss, extra metrics or a transform (``zoo.load(..., task_options={"loss": fn})``) and a Task
subclass set as ``model.task_impl`` are code from the user's script. ``config.json`` is data, and
loading never imports or runs code a config names (:mod:`zoo_core.saved_options`), so they are not
saved: ``model.save`` writes every other option, warns naming what it left out, and records each left-out
option under ``unsaved_task_options`` as a description (``"my_losses:focal"``, the class or function's
import path when it has one), for people and the model card only. ``zoo.load`` warns that they are
missing; pass them again (``zoo.load(dir, task_options={"loss": focal})``) to fine-tune with them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .model import ZooModel

UNSAVED_KEY = "unsaved_task_options"


def describe(value: Any) -> str:
    """``module:qualname`` of a function or of an object's class (``<lambda>`` and locals as written)."""
    target = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    module = getattr(target, "__module__", None) or "?"
    text = f"{module}:{getattr(target, '__qualname__', type(value).__name__)}"
    if isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    return text


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def saveable_config(model: "ZooModel") -> dict[str, Any]:
    """``model.config`` as ``config.json`` holds it: task options that are not JSON data are left out
    (named in a warning and described under ``unsaved_task_options``)."""
    from .errors import warn

    config = dict(model.config)
    data = set(getattr(model.task_impl, "data_options", ()) or ())  # the run's data, not the model
    options = {k: v for k, v in (config.get("task_options") or {}).items() if k not in data}
    if "task_options" in config:
        config["task_options"] = options
    left = {k: describe(v) for k, v in options.items() if not _jsonable(v)}
    own_task = model.__dict__.get("_own_task")
    if own_task is not None:
        left["task_impl"] = describe(own_task)
    config.pop(UNSAVED_KEY, None)
    if not left:
        return config
    config["task_options"] = {k: v for k, v in options.items() if k not in left}
    config[UNSAVED_KEY] = left
    warn(f"model.save: not saved, code from your script: {', '.join(f'{k} ({v})' for k, v in left.items())}. A "
         "saved config is data (loading never runs code), so the saved model trains and evaluates with the task's "
         "defaults for these; pass them again after loading, e.g. zoo.load(dir, task_options={...})"
         + (", and set model.task_impl again" if own_task is not None else ""))
    return config


def warn_unsaved(config: Mapping[str, Any], where: str) -> None:
    """Warn, on load, that a saved model was trained with code that was not saved."""
    from .errors import warn

    left = config.get(UNSAVED_KEY)
    if isinstance(left, Mapping) and left:
        shown = ", ".join(f"{k} ({v})" for k, v in left.items() if isinstance(k, str))
        warn(f"{where}: the model was saved with {shown}, code that was not saved; it now uses the task's defaults "
             "for it. To fine-tune with it again pass it yourself, e.g. zoo.load(dir, task_options={...})")
