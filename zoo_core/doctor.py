"""``zoo plugins doctor``: a full diagnosis of the installed plugins, for when something is wrong.

It shows every distribution that declares a ``zoo.plugins`` entry point (metadata seen twice, as
editable installs and stale ``*.egg-info`` folders do, is listed too), and for every plugin: its
version, the zoo versions it declares (``zoo_requires``), the hooks it implements, what it
registered, and its load error with the full traceback. Problems (failed plugins, unknown hooks or
hook arguments, name collisions, a short name a third party's plugin shares with another plugin
unless ``ZOO_PROVIDER_PRIORITY`` settles it, an unsupported zoo version, hook functions missing
``@hookimpl``, duplicate metadata that disagrees) are summarised at the end with the fix, and make the exit
status 1. Discovery runs in a private registry and never in strict mode, so one broken plugin
cannot hide the others.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from . import hookspecs
from ._version import __version__
from .providers import clashes
from .registry import HOOK_KINDS, PluginInfo, Registry, discover

ENV_VARS = ("ZOO_STRICT_PLUGINS", "ZOO_DISABLE_PLUGINS", "ZOO_LOAD_PLUGINS", "ZOO_PROVIDER_PRIORITY")


@dataclass
class EntryPointRow:
    """One ``zoo.plugins`` entry point as one distribution's metadata declares it."""

    name: str
    value: str
    distribution: str
    version: str
    location: str


@dataclass
class Diagnosis:
    """Everything the doctor found: the entry points, the registry, and the problems."""

    entry_points: list[EntryPointRow]
    registry: Registry
    skipped: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def scan_entry_points() -> list[EntryPointRow]:
    """Every ``zoo.plugins`` entry point of every distribution on ``sys.path``, duplicates included."""
    rows = []
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == hookspecs.ENTRY_POINT_GROUP:
                where = getattr(dist, "_path", None) or dist.locate_file("")
                rows.append(EntryPointRow(ep.name, ep.value, dist.metadata["Name"] or "?",
                                          dist.version or "?", str(where)))
    return sorted(rows, key=lambda r: (r.name, r.value, r.location))


def _module_of(info: PluginInfo) -> Any:
    return sys.modules.get(info.module.partition(":")[0])


def unmarked_hooks(module: Any) -> list[str]:
    """Functions named like a hook (``register_models``) that lack ``@hookimpl``: the zoo ignores them."""
    marker = f"{hookspecs.PROJECT}_impl"
    return sorted(name for name in HOOK_KINDS
                  if callable(getattr(module, name, None)) and not hasattr(getattr(module, name), marker))


def diagnose() -> Diagnosis:
    """Discover the plugins in a private, non-strict registry and collect every problem."""
    old = os.environ.pop("ZOO_STRICT_PLUGINS", None)
    try:
        registry = discover()
    finally:
        if old is not None:
            os.environ["ZOO_STRICT_PLUGINS"] = old
    diag = Diagnosis(scan_entry_points(), registry)
    _check_duplicates(diag)
    for row in diag.entry_points:
        if row.name not in registry.plugins and not any(p.startswith(row.name + " (") for p in registry.plugins):
            diag.skipped[row.name] = _why_skipped(row.name)
    for info in registry.plugins.values():
        _check_plugin(diag, info)
    for key, dists in sorted(registry.collisions.items()):
        if not key.startswith("plugin:"):  # plugin-name clashes are reported with the plugin
            diag.problems.append(f"{key.partition(':')[0]} {key.partition(':')[2]!r} is registered by "
                                 f"{' and '.join(map(repr, dists))}: uninstall one of them")
    for clash in clashes(registry):  # a short name a third party shares: which one `zoo.load(short)` takes
        if clash.user_decided:
            diag.notes.append(f"short name clash, settled by ZOO_PROVIDER_PRIORITY: {clash}")
        else:
            diag.problems.append(f"short name clash: {clash}")
    return diag


def _why_skipped(name: str) -> str:
    if name in {p.strip() for p in os.environ.get("ZOO_DISABLE_PLUGINS", "").split(",")}:
        return "disabled by ZOO_DISABLE_PLUGINS"
    return "not in ZOO_LOAD_PLUGINS"


def _check_duplicates(diag: Diagnosis) -> None:
    by_dist: dict[str, list[EntryPointRow]] = {}
    for row in diag.entry_points:
        by_dist.setdefault(row.distribution.lower().replace("_", "-"), []).append(row)
    for dist, rows in sorted(by_dist.items()):
        locations = sorted({r.location for r in rows})
        if len(locations) < 2:
            continue
        declared = {loc: sorted((r.name, r.value) for r in rows if r.location == loc) for loc in locations}
        same = len({tuple(v) for v in declared.values()}) == 1
        text = (f"distribution {dist!r} has metadata in {len(locations)} places ({', '.join(locations)}), "
                "as an editable install or a stale *.egg-info folder leaves it; the zoo uses the first "
                "on sys.path")
        if same:
            diag.notes.append(text + " (they declare the same entry points: harmless, deduplicated)")
        else:
            diag.problems.append(text + f", and they declare different entry points {declared}: delete the "
                                 "stale metadata folder and reinstall the package")


def _check_plugin(diag: Diagnosis, info: PluginInfo) -> None:
    module = _module_of(info)
    if module is not None:
        for name in unmarked_hooks(module):
            diag.problems.append(f"plugin {info.name!r}: {info.module}.{name} is not decorated with "
                                 "@zoo_core.hookimpl, so the zoo never calls it: add the decorator")
    if info.ok:
        if not info.registered:
            diag.notes.append(f"plugin {info.name!r} loaded but registered nothing")
        return
    err = info.error or ""
    if "PluginValidationError" in err or "unknown hook" in err:
        fix = ("hook names and arguments must match zoo_core.hookspecs (hooks: "
               f"{', '.join(HOOK_KINDS)}; each takes only `register`)")
    elif "supports zoo" in err:
        fix = "install a plugin release made for this zoo, or a zoo version inside its zoo_requires"
    elif "claimed by distributions" in err or "registered twice" in err:
        fix = "two installed distributions claim the same name: uninstall one of them"
    else:
        fix = "fix the error above in the plugin (the traceback shows where); ZOO_DISABLE_PLUGINS=" \
              f"{info.name.split(' ')[0]} skips it meanwhile"
    diag.problems.append(f"plugin {info.name!r} ({info.distribution or info.module}) failed to load: "
                         f"{err.splitlines()[0] if err else '?'} -> {fix}")


def _registered(reg: Registry, plugin: str, limit: int = 5) -> list[str]:
    out = []
    for kind in ("task", "model", "backbone", "head"):
        names = [s.name for s in reg.specs(kind) if s.plugin == plugin]
        if names:
            limit_here = len(names) if kind == "task" else limit  # a plugin's tasks are few: all named
            shown = ", ".join(names[:limit_here]) + (f", ... (+{len(names) - limit_here})" if len(names) > limit_here else "")
            out.append(f"{len(names)} {kind}{'s' if len(names) != 1 else ''}: {shown}")
    return out


def render(diag: Diagnosis, write: Callable[[str], Any]) -> None:
    """Write the diagnosis as text, one ``write`` call per line."""
    reg = diag.registry
    write(f"zoo {__version__} (plugin API {hookspecs.PLUGIN_API_VERSION}), Python "
          f"{sys.version.split()[0]}, {os.path.dirname(os.path.abspath(__file__))}")
    write("environment: " + ", ".join(f"{v}={os.environ[v]!r}" if v in os.environ else f"{v} unset"
                                      for v in ENV_VARS))
    write("")
    write(f"entry points in group {hookspecs.ENTRY_POINT_GROUP!r} ({len(diag.entry_points)}):")
    for r in diag.entry_points:
        write(f"  {r.name:<14} {r.value:<34} {r.distribution} {r.version}  [{r.location}]")
    write("")
    write(f"plugins ({len(reg.plugins)}):")
    for info in sorted(reg.plugins.values(), key=lambda p: p.name):
        module = _module_of(info)
        requires = getattr(module, "zoo_requires", None) if module is not None else None
        status = "ok" if info.ok else "FAILED"
        write(f"  [{status}] {info.name}  ({info.distribution or 'no distribution'} {info.version or ''})".rstrip()
              + f"  module {info.module}")
        write(f"      zoo_requires: {requires or '(any)'}")
        write(f"      hooks: {', '.join(info.hooks) or '(none)'}")
        for line in _registered(reg, info.name) or (["registered: nothing"] if info.ok else []):
            write(f"      {line}")
        if not info.ok:
            first, *rest = (info.error or "").splitlines() or [""]
            write(f"      error: {first}")
            for line in rest:
                write(f"             {line}")
            for line in (info.traceback or "").rstrip().splitlines():
                write(f"        | {line}")
    for name, why in sorted(diag.skipped.items()):
        write(f"  [skipped] {name}  ({why})")
    write("")
    for note in diag.notes:
        write(f"note: {note}")
    if diag.problems:
        write(f"{len(diag.problems)} problem(s):")
        for p in diag.problems:
            write(f"  - {p}")
    ok = sum(p.ok for p in reg.plugins.values())
    write(f"summary: {len(reg.plugins)} plugin(s), {ok} ok, {len(reg.plugins) - ok} failed, "
          f"{len(diag.skipped)} skipped; {len(diag.problems)} problem(s)")


def run_doctor(out: TextIO | None = None) -> int:
    """Print the diagnosis (to ``out``, default stdout); return 1 when there are problems, else 0."""
    stream = out or sys.stdout
    diag = diagnose()
    render(diag, lambda line: print(line, file=stream))
    return 1 if diag.problems else 0
