"""The plugin conformance suite: checks that a plugin's specs honour the zoo's contracts.

>>> from zoo_core.testing import check_plugin, check_spec
>>> report = check_spec("myzoo:tiny_cnn")      # or a Spec
>>> report.raise_for_failures()                # ConformanceError naming plugin, spec, check, fix

``pytest --zoo-plugin=NAME`` (the ``pytest11`` plugin :mod:`zoo_core.testing.pytest_plugin`) runs
:func:`check_plugin` as one test per spec. Importing this package is cheap; the checks import
torch when they run.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "check_spec": "zoo_core.testing.suite",
    "check_plugin": "zoo_core.testing.suite",
    "plugin_specs": "zoo_core.testing.suite",
    "find_spec": "zoo_core.testing.suite",
    "MODEL_CHECKS": "zoo_core.testing.checks",
    "CheckResult": "zoo_core.testing.report",
    "SpecReport": "zoo_core.testing.report",
    "ConformanceError": "zoo_core.testing.report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo_core.testing' has no attribute {name!r}")
