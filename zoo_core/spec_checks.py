"""What registration checks in a plugin before its specs enter the catalog.

Torch-free (listing the catalog imports no model code): a spec's fields are checked when the plugin
registers them, so a mistake is the plugin author's error at once, naming the plugin and the spec,
instead of a puzzling failure the first time a user loads the model.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from ._version import __version__
from .errors import PluginError
from .specs import EXPORT_FORMATS, HEAD_REQUIREMENT_KEYS


def checked_fields(plugin: str, kind: str, name: Any, builder: Any, fields: dict[str, Any],
                   allowed: set[str]) -> dict[str, Any]:
    """The fields of one ``register(name, builder, **fields)`` call, normalised (lists -> tuples) and
    checked; a :class:`PluginError` naming the plugin and the spec otherwise."""
    bad = set(fields) - allowed
    if bad:
        raise PluginError(f"plugin {plugin!r}: register({name!r}) got unknown field(s) {sorted(bad)} for a "
                          f"{kind}; allowed: {sorted(allowed)}")
    if not isinstance(name, str) or not name or ":" in name:
        raise PluginError(f"plugin {plugin!r}: {kind} name {name!r} must be a non-empty string without ':'")
    if not isinstance(builder, str) or ":" not in builder:
        raise PluginError(f"plugin {plugin!r}: {kind} {name!r} builder must be a 'module:function' string, "
                          f"got {builder!r}")
    fields = dict(fields)
    for key in ("tasks", "aliases", "weights", "export_formats", "saved_options"):
        if key in fields:
            fields[key] = (fields[key],) if isinstance(fields[key], str) else tuple(fields[key])
    if isinstance(fields.get("input_size"), list):
        fields["input_size"] = tuple(fields["input_size"])
    problem = spec_problem(kind, fields)
    if problem:
        raise PluginError(f"plugin {plugin!r}: {kind} {name!r}: {problem}")
    return fields


def spec_problem(kind: str, fields: dict[str, Any]) -> str | None:
    """What is wrong with a spec's fields, checked at registration (not when a user first loads it)."""
    if kind == "model" and not fields.get("tasks"):
        return "tasks=(...) must name at least one task it supports, e.g. tasks=('cls',)"
    size = fields.get("input_size")
    if size is not None and not (isinstance(size, tuple) and len(size) == 3
                                 and all(isinstance(v, int) and v > 0 for v in size)):
        return f"input_size={size!r} must be (channels, height, width), positive integers"
    unknown = sorted(set(fields.get("export_formats") or ()) - set(EXPORT_FORMATS))
    if unknown:
        return f"export_formats {unknown} are not formats the zoo exports; known: {', '.join(EXPORT_FORMATS)}"
    saved = fields.get("saved_options") or ()
    if not all(isinstance(k, str) and k.isidentifier() for k in saved):
        return (f"saved_options={saved!r} must be option names (identifiers), e.g. saved_options=('img_size',): "
                "the builder options a saved config may set when the model is rebuilt from it")
    if kind == "head":
        bad = sorted(set(fields.get("requires") or {}) - set(HEAD_REQUIREMENT_KEYS))
        if bad:
            return f"requires has unknown key(s) {bad}; allowed: {', '.join(HEAD_REQUIREMENT_KEYS)}"
    return None


def check_requires(module: Any, name: str) -> None:
    """The plugin module's ``zoo_requires`` (a version specifier) must accept this zoo."""
    req = getattr(module, "zoo_requires", None)
    if not req:
        return
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:  # pragma: no cover - packaging ships with pip/setuptools
        return
    try:
        supported = SpecifierSet(str(req))
    except InvalidSpecifier as exc:
        raise PluginError(f"plugin {name!r}: zoo_requires = {req!r} is not a version specifier ({exc}); "
                          "write it like '>=0.1,<0.3'") from exc
    if __version__ not in supported:
        raise PluginError(f"plugin {name!r} supports zoo {req}, but this is zoo {__version__}; "
                          f"upgrade the plugin or install a zoo version it supports")


class _CtrlCWatch:
    """While plugins load: whether a real SIGINT (the user's Ctrl-C) arrived, so that a plugin raising
    ``KeyboardInterrupt`` itself is told from the user stopping the command."""

    active = False
    seen = False


@contextlib.contextmanager
def watching_ctrl_c() -> Iterator[None]:
    """Record real SIGINTs during the body (main thread, default handler only; elsewhere every
    ``KeyboardInterrupt`` counts as the user's, as before)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        _CtrlCWatch.seen = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handle)
    _CtrlCWatch.active, _CtrlCWatch.seen = True, False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _CtrlCWatch.active = False


def contained(exc: BaseException) -> bool:
    """Is ``exc``, raised by a plugin at import or in a hook, only that plugin's failure?

    Every exception is, and so is any other ``BaseException``: a plugin calling ``sys.exit()`` or
    ``exit()``, or raising ``KeyboardInterrupt`` itself, must not end every zoo command without a
    word. Only the user's real Ctrl-C and ``GeneratorExit`` go through.
    """
    if isinstance(exc, KeyboardInterrupt):
        return _CtrlCWatch.active and not _CtrlCWatch.seen
    return not isinstance(exc, GeneratorExit)


def describe_failure(exc: BaseException) -> str:
    """The one-line error ``zoo plugins`` shows for a plugin that raised ``exc`` while loading."""
    if isinstance(exc, SystemExit):
        return (f"SystemExit: the plugin called sys.exit({exc.code!r}) while loading; a plugin must raise an "
                "exception instead")
    return f"{type(exc).__name__}: {exc}"
