"""Checks for task option values, each named by the key it checks; the tasks declare which key gets which.

A checker is ``check(key, value) -> None`` and raises :class:`~zoo_core.errors.OptionError` naming the
key, the value and what is allowed. :class:`~.task_options.OptionsMixin` runs them where options enter
(the task's constructor, ``zoo.load(task_options=...)``) and again where they are read (a user may edit
``model.config["task_options"]`` by hand), so a typo fails before the first step instead of inside a
transform. Options holding code (a custom loss, metrics, a transform) are checked for their shape only:
they run in the user's process and are never saved (:mod:`zoo_core.unsaved`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterator, Mapping, Sequence

from zoo_core.errors import OptionError

Checker = Callable[[str, Any], None]


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def number(lo: float | None = None, hi: float | None = None, *, what: str = "") -> Checker:
    """A finite real in ``[lo, hi]`` (either bound may be open-ended with None)."""
    def check(key: str, value: Any) -> None:
        if not _number(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (f"in [{lo}, {hi}]" if lo is not None and hi is not None else
                      f">= {lo}" if lo is not None else f"<= {hi}")
            raise OptionError(f"task option {key}={_short(value)}: must be a number {bounds}{what}")
    return check


def whole(lo: int, hi: int | None = None) -> Checker:
    """A whole number in ``[lo, hi]``."""
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo or \
                (hi is not None and value > hi):
            bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise OptionError(f"task option {key}={_short(value)}: must be a whole number {bounds}")
    return check


def choice(*names: str | None) -> Checker:
    """One of ``names`` (strings compared case-insensitively; ``None`` listed means "off" is allowed)."""
    def check(key: str, value: Any) -> None:
        if value is None and None in names:
            return
        if not isinstance(value, str) or value.lower() not in {n for n in names if n is not None}:
            shown = ", ".join("None" if n is None else repr(n) for n in names)
            raise OptionError(f"task option {key}={_short(value)}: must be one of {shown}")
    return check


def fraction_range(key: str, value: Any) -> None:
    """``(lo, hi)`` with ``0 < lo <= hi <= 1`` (a crop's area range)."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)
            and 0 < value[0] <= value[1] <= 1):
        raise OptionError(f"task option {key}={_short(value)}: must be (low, high) with 0 < low <= high <= 1, "
                          "e.g. (0.5, 1.0)")


def factor_range(key: str, value: Any) -> None:
    """None (off) or ``(lo, hi)`` with ``0 < lo <= hi`` (scale factors)."""
    if value is None:
        return
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value)
            and 0 < value[0] <= value[1] <= 10):
        raise OptionError(f"task option {key}={_short(value)}: must be None (off) or (low, high) scale factors "
                          "with 0 < low <= high <= 10, e.g. (0.5, 2.0)")


def color_jitter(key: str, value: Any) -> None:
    """A strength in [0, 1] (brightness, contrast and saturation; 0 is off) or ``(b, c, s, hue)``."""
    if _number(value) and 0 <= value <= 1:
        return
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(_number(v) and v >= 0 for v in value) \
            and value[3] <= 0.5:
        return
    raise OptionError(f"task option {key}={_short(value)}: must be a strength in [0, 1] (brightness, contrast and "
                      "saturation; 0 is off) or (brightness, contrast, saturation, hue) each >= 0, hue <= 0.5")


def code_or_none(kind: str, example: str) -> Checker:
    """None or a callable (a custom loss): code passed in Python, never read from a file."""
    def check(key: str, value: Any) -> None:
        if value is not None and not callable(value):
            raise OptionError(f"task option {key}={_short(value)}: must be None or a callable {kind}, e.g. {example}")
    return check


def name_or_code(names: Sequence[str], kind: str) -> Checker:
    """One of ``names`` (a built-in by name) or a callable (a custom one)."""
    def check(key: str, value: Any) -> None:
        if callable(value):
            return
        if not isinstance(value, str) or value.lower().replace("+", "_").replace("-", "_") not in \
                {n.lower() for n in names}:
            raise OptionError(f"task option {key}={_short(value)}: must be one of {', '.join(map(repr, names))} "
                              f"or a callable {kind}")
    return check


def extra_metrics(key: str, value: Any) -> None:
    """None or ``{name: torchmetrics Metric or callable (outputs, batch) -> number or dict}``."""
    if value is None:
        return
    from torchmetrics import Metric

    if not isinstance(value, Mapping) or not value:
        raise OptionError(f"task option {key}={_short(value)}: must be a dict naming each extra metric, e.g. "
                          "{'auroc': MulticlassAUROC(num_classes=10), 'mean_conf': my_fn}")
    for name, metric in value.items():
        if not isinstance(name, str) or not name or any(c in name for c in ",\n\r\"") or name.strip() != name:
            raise OptionError(f"task option {key}: metric name {_short(name)} must be a non-empty string without "
                              "commas, quotes or line breaks (it becomes a metrics.csv column)")
        if not (isinstance(metric, Metric) or callable(metric)):
            raise OptionError(f"task option {key}[{name!r}]={_short(metric)}: must be a torchmetrics Metric or a "
                              "callable (outputs, batch) -> number or dict of numbers")


def _steps(transform: Any) -> Iterator[Any]:
    """Every transform inside ``transform`` (Compose, RandomApply, RandomChoice, RandomOrder nest lists)."""
    yield transform
    for child in getattr(transform, "transforms", None) or ():
        yield from _steps(child)


def transform_or_none(*, joint: str | None) -> Checker:
    """None or a transform for the task's images; ``joint`` names what must move with the image
    (``"masks"``, ``"boxes"``), which only a ``torchvision.transforms.v2`` transform does."""
    def check(key: str, value: Any) -> None:
        if value is None:
            return
        from torchvision.transforms import v2

        if joint is not None and not isinstance(value, v2.Transform):
            raise OptionError(f"task option {key}={_short(value)}: must be a torchvision.transforms.v2 transform "
                              f"(e.g. v2.Compose([...])): only v2 transforms move the {joint} with the image")
        if not callable(value):
            raise OptionError(f"task option {key}={_short(value)}: must be a callable transform, e.g. "
                              "v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip()])")
        for step in _steps(value):
            if isinstance(step, v2.Normalize):
                raise OptionError(f"task option {key}: leave v2.Normalize out of the pipeline; the task converts "
                                  "to float, resizes to the model's input size and normalises with the model's "
                                  "mean/std after your transform")
    return check
