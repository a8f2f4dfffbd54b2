"""Task options shared by every built-in task: constructor defaults, overridden per model.

A task lists its options and their defaults in ``option_defaults``; :meth:`OptionsMixin.options`
merges, for one model, the task's defaults with ``model.config["task_options"]`` (which a plugin
fills from ``BuiltModel.extra["task_options"]`` — e.g. U-Net's ``{"loss": "dice_ce"}`` — and a
user may edit). Unknown constructor options are refused with the known ones listed.

Values are checked where they enter and where they are read: ``unit_interval_options`` lie in [0, 1],
``option_checks`` maps a key to its checker (:mod:`.option_checks`), and ``option_rules`` check options
together (a custom transform with the task's own augmentation options is refused).
:meth:`OptionsMixin.check_options` is what ``zoo.load(task_options=...)`` calls.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, ClassVar, Mapping

from zoo_core.errors import OptionError


class OptionsMixin:
    """``__init__(**options)`` checked against ``option_defaults``; ``options(model)`` merged per model."""

    option_defaults: ClassVar[dict[str, Any]] = {}
    #: options that are probabilities or fractions: checked to lie in [0, 1] where they are read, so a
    #: typo (hflip=2) is named instead of failing inside a transform
    unit_interval_options: ClassVar[tuple[str, ...]] = ("hflip", "label_smoothing")
    #: key -> ``check(key, value)`` raising OptionError (see :mod:`.option_checks`)
    option_checks: ClassVar[Mapping[str, Callable[[str, Any], None]]] = {}
    #: ``rule(merged options) -> merged options``: checks across keys, may resolve a value (``"auto"``)
    option_rules: ClassVar[tuple[Callable[[dict[str, Any]], dict[str, Any]], ...]] = ()

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.option_defaults)
        if unknown:
            raise OptionError(f"{type(self).__name__} got unknown option(s) {sorted(unknown)}; "
                              f"known: {sorted(self.option_defaults)}")
        self.check_options(options)
        self.defaults = {**self.option_defaults, **options}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Check each of ``options``' values by its key's rule (unknown keys are the caller's to refuse)."""
        for key, value in options.items():
            if key in self.unit_interval_options:
                self.unit_value(key, value)
            check = self.option_checks.get(key)
            if check is not None:
                check(key, value)

    def options(self, model: Any = None) -> dict[str, Any]:
        """The options for ``model``: defaults overridden by ``model.config["task_options"]``, checked."""
        extra = dict((getattr(model, "config", None) or {}).get("task_options") or {})
        merged = {**self.defaults, **{k: v for k, v in extra.items() if k in self.option_defaults}}
        self.check_options(merged)
        for rule in self.option_rules:
            merged = rule(merged)
        return merged

    def unit_value(self, key: str, value: Any) -> float:
        """``value`` of option ``key`` as a float in [0, 1]; anything else (NaN, 5, "abc") is an OptionError.

        Bools and numpy numbers are numbers too (``hflip=False``: never flip). Also for the same option
        passed to ``predict(..., key=value)``.
        """
        if not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise OptionError(f"task option {key}={value!r}: must be a number in [0, 1] (a probability or "
                              f"fraction); default {self.option_defaults[key]!r}")
        return float(value)

    @staticmethod
    def whole_value(key: str, value: Any) -> int:
        """``value`` of option ``key`` as an int >= 1; anything else (0, -2, 2.5, "abc", True) is an OptionError."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
            raise OptionError(f"option {key}={value!r}: must be a whole number >= 1")
        return int(value)

    @classmethod
    def size_value(cls, key: str, value: Any) -> tuple[int, int]:
        """``value`` of option ``key`` (``n`` or ``[height, width]``, each a whole number >= 1) as ``(h, w)``."""
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return (cls.whole_value(key, value[0]), cls.whole_value(key, value[1]))
        try:
            side = cls.whole_value(key, value)
        except OptionError:
            raise OptionError(f"option {key}={value!r}: must be a size in pixels, n or [height, width], "
                              "whole numbers >= 1") from None
        return (side, side)
