"""The zoo's exception types. Each message says what happened, to what, and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class UnknownNameError(ZooError, LookupError):
    """A model, task, backbone, head or plugin name that nothing registered."""

    def __init__(self, kind: str, name: str, candidates: Iterable[str] = (), hint: str = "") -> None:
        self.kind, self.name = kind, name
        self.suggestions = close_names(name, candidates)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        msg += f" (`zoo list` shows every {kind})" if kind == "model" else ""
        if hint:
            msg += f" {hint}" if msg.endswith("?") else f". {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0])


class PluginError(ZooError):
    """A plugin broke the contract: import failure (in strict mode), collision, bad hook or spec."""


class IncompatibleError(ZooError, ValueError):
    """A request that cannot be satisfied: a task the model lacks, a head the backbone cannot feed."""


class SettingError(ZooError, ValueError):
    """A Trainer setting of the wrong type or out of range (Python, flag or YAML): names the field,
    the value given, where it came from and what is allowed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class OptionError(ZooError, TypeError):
    """A keyword option that the model builder, head or task does not take (names the known ones)."""


class WeightsError(ZooError):
    """A weights file that is missing, unsafe, corrupt, or for another architecture."""


class ModelFolderError(WeightsError, FileNotFoundError):
    """A folder handed to ``zoo.load`` that holds no model: no ``config.json`` + weights, and none of a run
    folder's ``model/``, ``best.pt`` or ``last.pt``."""


class PluginImportError(PluginError, ImportError):
    """A module a spec names (its builder, its weights_info) that does not import: names the plugin,
    its distribution, the spec and the module, in one line."""


class BuilderError(ZooError):
    """A ``ValueError``/``TypeError`` raised inside a plugin's builder, re-raised naming the builder.

    The original is ``__cause__`` and its message is kept whole (it is usually about a value the user
    gave); the subclasses keep its category, so ``except ValueError`` still catches it.
    """


def shown_type(exc: BaseException) -> str:
    """The type name an error is shown under: a :class:`BuilderError`'s original (``ValueError``), since
    the wrapper only adds where it came from; any other error's own."""
    cause = exc.__cause__ if isinstance(exc, BuilderError) else None
    return type(cause if cause is not None else exc).__name__


class BuilderValueError(BuilderError, ValueError):
    """A builder's ``ValueError`` (see :class:`BuilderError`)."""


class BuilderTypeError(BuilderError, TypeError):
    """A builder's ``TypeError`` (see :class:`BuilderError`)."""


class DataError(ZooError, ValueError):
    """Bad input data: unreadable image, bad annotation, bad mask. Names the file and the fix."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(_unwrap_worker_message(message, type(self)))
        self.path = path


class NonFiniteOutputError(ZooError, FloatingPointError):
    """A model gave NaN/Inf outputs (or holds NaN/Inf weights, so it would): evaluation and ``predict``
    refuse to score them. The message says how many values and images, where, and what to check."""


class NonFiniteMetricError(ZooError, FloatingPointError):
    """A metric came out NaN/Inf from finite outputs: it is refused, never reported as a score."""


class InputError(ZooError, ValueError):
    """An input passed to ``predict`` that is not an image the model can take (dtype, shape, channels,
    values); the message names the input by its index, its shape and dtype, and what is expected."""


def _unwrap_worker_message(message: str, cls: type) -> str:
    """The original message of an error a DataLoader worker raised, without the worker's traceback.

    torch re-raises a worker's exception as ``cls("Caught X in DataLoader worker process N.\nOriginal
    Traceback ...\nmodule.X: message")``: the user would read a page of traceback before the line
    that names their file. Keep that line, and say which worker it came from.
    """
    text = str(message)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    head, _, original = text.rpartition(marker)
    if not head:
        return text
    where = text.split("\n", 1)[0].removeprefix(f"Caught {cls.__name__} ").rstrip(".")
    return f"{original.strip()} (raised {where})"


def close_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates closest to ``name`` (case-insensitive), best first."""
    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not hits:  # "resnet" should still suggest "resnet50": try prefix matches
        hits = [c for c in lowered if c.startswith(name.lower())][:n]
    return [lowered[h] for h in hits]


#: packages whose frames a user-facing warning skips, so it points at the user's line (plus every
#: loaded plugin's own modules, see :func:`_own_modules`)
_OWN_MODULES = ("zoo_core", "zoo_tasks", "zoo_torchvision", "zoo_timm", "zoo_smp")


def _own_modules() -> set[str]:
    """The zoo's packages, the package holding each discovered plugin, and its builders' modules.

    A plugin's package is the package its plugin module lives in (``acme.zoo.plugin`` -> ``acme.zoo``,
    so ``acme.app`` still counts as the user's code), or the module itself when it is a package or
    top-level. ``__main__`` never counts: a script that registers a plugin is still the user's code.
    """
    import sys

    from . import registry  # imported here: registry imports this module

    def package_of(module: str) -> str:
        loaded = sys.modules.get(module)
        if "." not in module or hasattr(loaded, "__path__"):
            return module
        return module.rpartition(".")[0]

    names = set(_OWN_MODULES)
    reg = registry._REGISTRY
    if reg is not None:  # never trigger discovery from inside a warning
        names |= {package_of(p.module.split(":")[0]) for p in reg.plugins.values() if p.module}
        names |= {spec.builder.split(":")[0] for kind in reg._specs.values() for spec in kind.values()}
    names.discard("__main__")
    return names


def _is_own(module: str, own: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in own)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside the zoo's own packages.

    A fixed ``stacklevel`` points at a different zoo line depending on the path taken (``zoo.load``
    -> builder -> loader, or the Trainer -> task -> reader); the user needs their own line.
    """
    import sys
    import warnings

    own = _own_modules()
    frame, level = sys._getframe(1), 2
    while frame is not None and _is_own(str(frame.f_globals.get("__name__", "")), own):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
