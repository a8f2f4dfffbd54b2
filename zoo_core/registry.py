"""Plugin discovery, the catalog of specs, and name resolution.

Discovery reads the ``zoo.plugins`` entry points, imports each plugin module, validates its hook
implementations against :mod:`zoo_core.hookspecs`, and calls its hooks with a ``register`` callable
bound to that plugin. A plugin that fails to import or whose hook raises is recorded with its error
and skipped; everything else keeps working (``ZOO_STRICT_PLUGINS=1`` turns that into an error).

Short-name resolution (``resnet50`` provided by several plugins) is deterministic:

1. a qualified name ``plugin:name`` always picks that plugin;
2. otherwise only providers that support the requested task are considered;
3. among them, plugins listed in ``ZOO_PROVIDER_PRIORITY`` (comma separated, read at call time) or
   set with :func:`set_provider_priority` come first, in that order;
4. then the spec with the higher ``priority`` field (built-ins: torchvision 30, smp 20, timm 10;
   third-party default 0);
5. then the plugin name, alphabetically.

When a third party's plugin shares a short name with another plugin, ``zoo plugins doctor`` reports the
clash and ``zoo.load`` warns which provider it took (:mod:`zoo_core.providers`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata as md
import os
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownNameError, warn
from .providers import OWN_DISTRIBUTION, best_first, provider_priority, set_provider_priority  # noqa: F401
from .spec_checks import check_requires as _check_requires
from .spec_checks import checked_fields, contained, describe_failure, watching_ctrl_c
from .specs import SPEC_TYPES, ModelSpec, Spec, TaskSpec

HOOK_KINDS = {"register_tasks": "task", "register_models": "model",
              "register_backbones": "backbone", "register_heads": "head"}

@dataclass
class PluginInfo:
    """One discovered plugin, whether it loaded or not."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    traceback: str | None = None
    hooks: tuple[str, ...] = ()
    registered: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def strict_plugins() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class Registry:
    """The catalog: every spec every plugin registered, indexed by kind and name."""

    def __init__(self) -> None:
        self.plugins: dict[str, PluginInfo] = {}
        self._specs: dict[str, dict[str, Spec]] = {k: {} for k in SPEC_TYPES}
        self._short: dict[str, dict[str, list[Spec]]] = {k: {} for k in SPEC_TYPES}
        self._task_alias: dict[str, str] = {}
        self.collisions: dict[str, list[str]] = {}
        #: problems that do not stop loading (e.g. an env var naming no installed plugin)
        self.warnings: list[str] = []
        #: installed plugins left unloaded on purpose: name -> the variable that said so
        self.skipped: dict[str, str] = {}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)

    # ---- registration -------------------------------------------------------------------------
    def add_plugin(self, module: types.ModuleType | Any, name: str, *, distribution: str | None = None,
                   version: str | None = None) -> PluginInfo:
        """Validate a plugin module and run its hooks; record (not raise) its failure."""
        info = self.plugins.get(name) or PluginInfo(name, getattr(module, "__name__", repr(module)),
                                                    distribution, version)
        self.plugins[name] = info
        try:
            _check_requires(module, name)
            self._pm.register(module, name=name)
            callers = self._pm.get_hookcallers(module) or []
            for hc in callers:
                if not hc.has_spec():
                    known = [h for h in HOOK_KINDS]
                    raise PluginError(UnknownNameError("hook", hc.name, known).args[0]
                                      + f" (in plugin {name!r}; hooks are listed in zoo_core.hookspecs)")
            info.hooks = tuple(sorted(hc.name for hc in callers))
            staged: list[Spec] = []
            for hook in HOOK_KINDS:  # tasks first, so models can name them by alias
                for impl in getattr(self._pm.hook, hook).get_hookimpls():
                    if impl.plugin is module:
                        impl.function(**{a: self._registrar(HOOK_KINDS[hook], info, staged)
                                         for a in impl.argnames})
            for spec in staged:
                self._add(spec)
            for spec in staged:
                info.registered[spec.kind] = info.registered.get(spec.kind, 0) + 1
        except BaseException as exc:  # a broken plugin must not break the zoo (not even by sys.exit)
            if self._pm.is_registered(module):
                self._pm.unregister(module)
            self._fail(info, exc)
        return info

    def _registrar(self, kind: str, info: PluginInfo, staged: list[Spec]):
        cls = SPEC_TYPES[kind]
        names = {f.name for f in dataclasses.fields(cls)} - {"plugin", "distribution", "name", "builder"}

        def register(name: str, builder: str, **fields: Any) -> None:
            fields = checked_fields(info.name, kind, name, builder, fields, names)
            staged.append(cls(name=name, builder=builder, plugin=info.name,
                              distribution=info.distribution or "", **fields))

        return register

    def _add(self, spec: Spec) -> None:
        table = self._specs[spec.kind]
        qn = spec.qualified_name
        if qn in table:
            other = table[qn]
            dists = sorted({other.distribution or other.plugin, spec.distribution or spec.plugin})
            if len(dists) == 1:  # one plugin registering a name twice: its own bug, nothing to uninstall
                raise PluginError(f"{spec.kind} {qn!r} is registered twice by plugin {spec.plugin!r} "
                                  f"({dists[0]}); each name must be registered once")
            self.collisions[f"{spec.kind}:{qn}"] = dists
            raise PluginError(f"{spec.kind} {qn!r} is registered twice, by distributions "
                              f"{' and '.join(map(repr, dists))}; uninstall one of them")
        if isinstance(spec, TaskSpec):  # task names and aliases are global: "cls" must mean one task
            for alias in (spec.name, *spec.aliases):
                owner = self._task_alias.get(alias.lower())
                if owner is not None:
                    other = self._short["task"][owner][0]
                    raise PluginError(f"task {qn!r} wants the name {alias!r}, which task {other.qualified_name!r} "
                                      f"(distribution {other.distribution or other.plugin!r}) already has; task names "
                                      "and aliases must be unique: rename the task or its alias")
        table[qn] = spec
        self._short[spec.kind].setdefault(spec.name, []).append(spec)
        if isinstance(spec, TaskSpec):
            for alias in (spec.name, *spec.aliases):
                self._task_alias[alias.lower()] = spec.name

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        """Record a plugin's failure (warn, or raise under ZOO_STRICT_PLUGINS); Ctrl-C is re-raised."""
        if not contained(exc):
            raise exc
        info.error = describe_failure(exc)
        info.traceback = "".join(traceback.format_exception(exc))
        if strict_plugins():
            raise PluginError(f"plugin {info.name!r} ({info.module}) failed to load: {info.error} "
                              "(ZOO_STRICT_PLUGINS=1 makes this an error)") from exc
        try:  # under -W error a warning must not take every other plugin down with this one
            warn(f"plugin {info.name!r} ({info.distribution or info.module}) failed to load and is left out: "
                 f"{info.error}. `zoo plugins` shows its traceback; ZOO_STRICT_PLUGINS=1 makes this an error")
        except Warning:
            pass

    def withdraw(self, name: str) -> None:
        """Remove every spec plugin ``name`` registered (its entry-point name turned out to be contested)."""
        for kind, table in self._specs.items():
            for qn in [qn for qn, spec in table.items() if spec.plugin == name]:
                spec = table.pop(qn)
                self._short[kind][spec.name].remove(spec)
        self._task_alias = {a: t for a, t in self._task_alias.items() if self._short["task"].get(t)}

    def finalize(self) -> "Registry":
        """Canonicalise the task names models declare (``"cls"`` -> ``"classification"``)."""
        for qn, spec in list(self._specs["model"].items()):
            assert isinstance(spec, ModelSpec)
            canon = tuple(self._task_alias.get(t.lower(), t) for t in spec.tasks)
            if canon != spec.tasks:
                new = dataclasses.replace(spec, tasks=canon)
                self._specs["model"][qn] = new
                lst = self._short["model"][spec.name]
                lst[lst.index(spec)] = new
        for kind in ("head",):
            for qn, spec in list(self._specs[kind].items()):
                canon = self._task_alias.get(getattr(spec, "task", "").lower(), getattr(spec, "task", ""))
                if canon != getattr(spec, "task", ""):
                    self._specs[kind][qn] = new = dataclasses.replace(spec, task=canon)
                    lst = self._short[kind][spec.name]
                    lst[lst.index(spec)] = new
        return self

    # ---- queries ------------------------------------------------------------------------------
    def specs(self, kind: str) -> list[Spec]:
        """Every spec of a kind, sorted by qualified name."""
        return [self._specs[kind][k] for k in sorted(self._specs[kind])]

    def canonical_task(self, name: str) -> str:
        """``"cls"`` -> ``"classification"``; unknown names raise with suggestions."""
        try:
            return self._task_alias[name.lower()]
        except KeyError:
            raise UnknownNameError("task", name, self._task_alias, self._failed_hint()) from None

    def task_spec(self, name: str) -> TaskSpec:
        canon = self.canonical_task(name)
        spec = self._short["task"][canon][0]
        assert isinstance(spec, TaskSpec)
        return spec

    def providers(self, kind: str, name: str, task: str | None = None) -> list[Spec]:
        """Every spec registered under a short name, best first (see the module docstring)."""
        found = list(self._short[kind].get(name, []))
        if task is not None:
            found = [s for s in found if _supports(s, task)]
        return best_first(found)

    def resolve(self, kind: str, name: str, *, task: str | None = None,
                provider: str | None = None) -> Spec:
        """Find the spec ``name`` means. Raises :class:`UnknownNameError` listing close names."""
        canon = self.canonical_task(task) if task else None
        plugin, sep, short = name.rpartition(":")
        plugin = plugin if sep else (provider or "")
        if plugin:
            key = f"{kind}:{plugin}:{short}"
            if key in self.collisions or f"plugin:{plugin}" in self.collisions:  # never the alphabetical winner
                dists = self.collisions.get(key) or self.collisions[f"plugin:{plugin}"]
                raise PluginError(f"{kind} {plugin}:{short} is claimed by distributions "
                                  f"{' and '.join(map(repr, dists))}; uninstall one of them")
            spec = self._specs[kind].get(f"{plugin}:{short}")
            if spec is None:
                if plugin in self.plugins and not self.plugins[plugin].ok:
                    raise UnknownNameError(kind, name, (), f"plugin {plugin!r} failed to load: "
                                           f"{self.plugins[plugin].error}")
                raise UnknownNameError(kind, name, self._specs[kind], self._failed_hint())
            if canon and not _supports(spec, canon):
                raise _task_mismatch(spec, canon)
            return spec
        found = self.providers(kind, short, canon)
        if found:
            return found[0]
        other = self.providers(kind, short)
        if other:
            raise _task_mismatch(other[0], canon or "")
        raise UnknownNameError(kind, name, self._short[kind], self._failed_hint())

    def _failed_hint(self) -> str:
        failed = [p for p in self.plugins.values() if not p.ok]
        hints = []
        if failed:
            hints.append("Plugin(s) that might provide it failed to load: " + "; ".join(
                f"{p.name} ({p.error})" for p in failed) + " (see `zoo plugins`)")
        if self.skipped:
            hints.append("Plugin(s) not loaded on purpose: " + ", ".join(
                f"{name} ({why})" for name, why in sorted(self.skipped.items())))
        return " ".join(hints)

    def list(self, kind: str, pattern: str | Iterable[str] | None = None, *, task: str | None = None,
             plugin: str | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
        """Sorted unique short names, filtered by glob pattern(s), task and plugin."""
        canon = self.canonical_task(task) if task else None
        pats = [pattern] if isinstance(pattern, str) else list(pattern or [])
        excl = [exclude] if isinstance(exclude, str) else list(exclude or [])
        names = set()
        for spec in self._specs[kind].values():
            if plugin and spec.plugin != plugin:
                continue
            if canon and not _supports(spec, canon):
                continue
            if pats and not any(fnmatch.fnmatch(spec.name, p) or fnmatch.fnmatch(spec.qualified_name, p)
                                for p in pats):
                continue
            if any(fnmatch.fnmatch(spec.name, p) for p in excl):
                continue
            names.add(spec.name)
        return sorted(names)


def _supports(spec: Spec, task: str) -> bool:
    if isinstance(spec, ModelSpec):
        return task in spec.tasks
    if hasattr(spec, "task") and getattr(spec, "task"):
        return getattr(spec, "task") == task
    return True


def _task_mismatch(spec: Spec, task: str) -> Exception:
    from .errors import IncompatibleError

    tasks = getattr(spec, "tasks", None) or (getattr(spec, "task", ""),)
    return IncompatibleError(f"{spec.kind} {spec.qualified_name!r} does not support task {task!r}; "
                             f"it supports {', '.join(tasks)}. Pick another model "
                             f"(`zoo list --task {task}`) or another task")


# OWN_DISTRIBUTION (from .providers): the built-in plugins load first and keep their names (a stranger's
# plugin cannot take over ``torchvision:`` or the ``cls`` task by sorting earlier)


def _is_own(ep: md.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name.lower() == OWN_DISTRIBUTION


def _entry_points() -> list[md.EntryPoint]:
    seen: dict[tuple[str, str], md.EntryPoint] = {}
    for ep in md.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        seen.setdefault((ep.name, ep.value), ep)  # editable installs can list a dist twice
    return sorted(seen.values(), key=lambda e: (not _is_own(e), e.name, e.value))


def discover(extra: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Build a registry from the installed entry points (plus ``extra`` (name, module) pairs)."""
    with watching_ctrl_c():  # a plugin raising KeyboardInterrupt is contained; the user's Ctrl-C is not
        return _discover(extra)


def _discover(extra: Iterable[tuple[str, Any]]) -> Registry:
    reg = Registry()
    disabled = _env_list("ZOO_DISABLE_PLUGINS") or set()
    allowed = _env_list("ZOO_LOAD_PLUGINS")
    by_name: dict[str, md.EntryPoint] = {}
    entry_points = _entry_points()
    for ep in entry_points:
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            reg.skipped[ep.name] = "ZOO_DISABLE_PLUGINS" if ep.name in disabled else "not in ZOO_LOAD_PLUGINS"
            continue
        dist = getattr(ep, "dist", None)
        dname, dver = (dist.name, dist.version) if dist is not None else (None, None)
        if ep.name in by_name:
            first = by_name[ep.name]
            fd = first.dist.name if getattr(first, "dist", None) else first.value
            info = PluginInfo(ep.name + f" ({dname})", ep.value, dname, dver)
            reg.plugins[info.name] = info
            if _is_own(first):  # the built-in keeps its name; only the newcomer fails
                reg._fail(info, PluginError(f"plugin name {ep.name!r} of distribution {dname!r} is the name of the "
                                            "zoo's built-in plugin; the distribution must register under another "
                                            "entry-point name"))
                continue
            reg.collisions[f"plugin:{ep.name}"] = [fd, dname or ep.value]
            clash = PluginError(f"plugin name {ep.name!r} is claimed by distributions {fd!r} and {dname!r}; "
                                "uninstall one of them")
            reg.withdraw(ep.name)  # neither wins: the first one's models would pass for the other's
            reg._fail(reg.plugins[ep.name], clash)
            reg._fail(info, clash)
            continue
        by_name[ep.name] = ep
        info = PluginInfo(ep.name, ep.value, dname, dver)
        reg.plugins[ep.name] = info
        try:
            module = ep.load()
        except BaseException as exc:  # _fail re-raises only Ctrl-C
            reg._fail(info, exc)
            continue
        reg.add_plugin(module, ep.name, distribution=dname, version=dver)
    installed = {ep.name for ep in entry_points}
    for var, names in (("ZOO_DISABLE_PLUGINS", disabled), ("ZOO_LOAD_PLUGINS", allowed or set())):
        unknown = sorted(set(names) - installed)
        if unknown:  # a typo here would silently load (or drop) the plugin the user meant
            message = (f"{var} names {', '.join(unknown)}, which no installed plugin is called; installed "
                       f"plugins: {', '.join(sorted(installed)) or 'none'}")
            reg.warnings.append(message)
            warn(message)
    for name, module in extra:
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except BaseException as exc:
                reg._fail(reg.plugins.setdefault(name, PluginInfo(name, module)), exc)
                continue
        reg.add_plugin(module, name)
    return reg.finalize()


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = discover()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the discovered registry (or install ``registry``): tests and plugin authors use this."""
    global _REGISTRY
    _REGISTRY = registry
