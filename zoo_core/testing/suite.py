"""The conformance suite's entry points: check one spec, or every spec of a plugin.

:func:`check_spec` dispatches on the kind of spec (models: :mod:`.checks`; tasks, backbones and
heads: :mod:`.component_checks`); :func:`check_plugin` runs it over a plugin's specs (or a
deterministic sample of them); :func:`plugin_specs` says which those are.
"""

from __future__ import annotations

from typing import Sequence

from ..registry import Registry, get_registry
from ..specs import ModelSpec, Spec
from .checks import check_model_spec
from .component_checks import check_component
from .report import CheckResult, SpecReport


def check_spec(spec: str | Spec, *, task: str | None = None, checks: Sequence[str] | None = None,
               backbone: str | None = None, max_params: int | None = None,
               registry: Registry | None = None) -> SpecReport:
    """Check one spec (a :class:`Spec` or a qualified name such as ``"myzoo:tiny_cnn"``).

    ``task``: which of a model's tasks to check (default: every task it declares, each result naming
    its task); ``checks``: a subset of the check names (their prerequisites run too); ``backbone``: what
    a head is built on (default: the smallest compatible backbone of the head's own plugin, else the
    first fitting one of :data:`~zoo_core.testing.component_checks.BUILTIN_BACKBONES`; a head none can
    feed fails); ``max_params``: skip models larger than this (counted on the meta device).
    Returns a :class:`SpecReport`; call ``report.raise_for_failures()`` to turn failures into a
    :class:`ConformanceError` that names the plugin, the spec, each failed check and its fix.
    """
    if isinstance(spec, str):
        spec = find_spec(spec, registry)
    if isinstance(spec, ModelSpec):
        return check_model_spec(spec, task=task, checks=checks, max_params=max_params)
    return check_component(spec, checks=checks, backbone=backbone)


def find_spec(name: str, registry: Registry | None = None) -> Spec:
    """The spec called ``name`` (``plugin:name``, or ``kind:plugin:name`` when kinds share a name)."""
    reg = registry or get_registry()
    kinds = ("model", "backbone", "head", "task")
    kind, _, rest = name.partition(":")
    if kind in kinds and rest.count(":") == 1:
        return reg.resolve(kind, rest)
    errors = []
    for kind in kinds:
        try:
            return reg.resolve(kind, name)
        except LookupError as exc:
            errors.append(exc)
    raise errors[0]


def plugin_specs(name: str, *, sample: int | None = None, registry: Registry | None = None) -> list[Spec]:
    """Every spec plugin ``name`` registered (tasks first); ``sample`` keeps N models/backbones/heads.

    The sample is deterministic: tasks are always kept, and the other specs are taken evenly spaced
    from the sorted list so a large family is covered from end to end.
    """
    from ..errors import UnknownNameError

    reg = registry or get_registry()
    if name not in reg.plugins:
        if name in reg.skipped:
            raise UnknownNameError("plugin", name, (), f"plugin {name!r} is installed but was not loaded on purpose "
                                   f"({reg.skipped[name]}); unset that variable to check it")
        raise UnknownNameError("plugin", name, reg.plugins, "`zoo plugins` lists the installed plugins")
    tasks = [s for s in reg.specs("task") if s.plugin == name]
    rest = [s for kind in ("model", "backbone", "head") for s in reg.specs(kind) if s.plugin == name]
    if sample is not None and 0 < sample < len(rest):
        rest = [rest[i * len(rest) // sample] for i in range(sample)]
    return [*tasks, *rest]


def check_plugin(name: str, *, sample: int | None = None, checks: Sequence[str] | None = None,
                 backbone: str | None = None, max_params: int | None = None) -> list[SpecReport]:
    """Check every spec of plugin ``name`` (see :func:`plugin_specs`); a plugin that failed to load
    gives one failing report carrying its error and traceback."""
    reg = get_registry()
    info = reg.plugins.get(name)
    if info is not None and not info.ok:
        report = SpecReport("plugin", name, name, info.distribution or "")
        report.results.append(CheckResult("load", "fail", f"{info.error}\n{info.traceback or ''}".rstrip(),
                                          "fix the import error above (`zoo plugins doctor` shows it too)"))
        return [report]
    return [check_spec(s, checks=checks, backbone=backbone, max_params=max_params)
            for s in plugin_specs(name, sample=sample)]
