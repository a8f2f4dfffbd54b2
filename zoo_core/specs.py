"""Catalog entries: plain, frozen data that names a builder without importing it.

Nothing here imports torch, so listing thousands of specs is cheap.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

from .errors import (BuilderTypeError, BuilderValueError, OptionError, PluginError, PluginImportError,
                     ZooError)


#: every format :meth:`zoo_core.model.ZooModel.export` writes (and verifies by running the result)
EXPORT_FORMATS = ("onnx", "torchscript", "torch_export")
#: the keys a ``HeadSpec.requires`` dict may hold (the fields of zoo_core.backbone.HeadRequirements,
#: named here so registration can check them without importing torch)
HEAD_REQUIREMENT_KEYS = ("min_levels", "strides", "min_stride", "max_stride", "single_level_ok")


@dataclass(frozen=True)
class Spec:
    """Common fields of every catalog entry.

    ``plugin`` (the entry-point name) and ``distribution`` are filled in by the registry; a plugin
    never sets them itself.
    """

    name: str
    builder: str
    description: str = ""
    plugin: str = ""
    distribution: str = ""

    kind = "spec"
    #: the keyword arguments the zoo itself passes to every builder of this kind (not user options)
    builder_args: ClassVar[tuple[str, ...]] = ()
    #: whether the builder's first argument is the spec (a task's builder takes none)
    passes_spec: ClassVar[bool] = True

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, which always resolves to exactly this entry."""
        return f"{self.plugin}:{self.name}"

    @property
    def where(self) -> str:
        """``model 'plugin:name' (plugin 'p', distribution 'd')``: how errors name this entry."""
        return (f"{self.kind} {self.qualified_name!r} (plugin {self.plugin!r}, distribution "
                f"{self.distribution or 'unknown'!r})")

    def load_builder(self) -> Callable[..., Any]:
        """Import and return the builder function named by ``builder``.

        A module that does not import is a one-line :class:`PluginImportError` naming the plugin, its
        distribution, the spec and the module (the zoo command prints it without a traceback).
        """
        return import_object(self.builder, what=f"{self.where}: builder {self.builder!r}")

    def call_builder(self, *args: Any, **kwargs: Any) -> Any:
        """``builder(self, *args, **kwargs)`` (``builder(*args, **kwargs)`` for a task); whatever the builder
        raises names the spec and its plugin.

        The zoo's own errors (``OptionError``, ``IncompatibleError``...) pass unchanged: they already
        say what and where. A ``ValueError``/``TypeError`` (usually about an option or class count the
        user gave) keeps its message and its category (:class:`BuilderValueError` /
        :class:`BuilderTypeError`), with the builder named after it unless the message already names
        the spec. Anything else (a plugin's KeyError, AttributeError, even ``sys.exit``) becomes a
        :class:`PluginError`. The original is always ``__cause__``. A keyword the builder's signature
        cannot take is refused first, as an :class:`OptionError` listing those it takes.
        """
        builder = self.load_builder()
        self._check_arguments(builder, args, kwargs)
        try:
            return builder(*((self,) if self.passes_spec else ()), *args, **kwargs)
        except ZooError:
            raise
        except (ValueError, TypeError) as exc:
            message = str(exc)
            if self.qualified_name not in message:
                message = f"{message} (raised by the builder {self.builder!r} of {self.where})"
            raise (BuilderValueError if isinstance(exc, ValueError) else BuilderTypeError)(message) from exc
        except (Exception, SystemExit) as exc:
            raise PluginError(f"the builder {self.builder!r} of {self.where} failed: {type(exc).__name__}: "
                              f"{exc}") from exc

    def _check_arguments(self, builder: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse keywords a builder without ``**options`` cannot take, before it runs.

        Options are the user's: an :class:`OptionError` listing the ones the builder takes. An argument
        the zoo itself passes (:attr:`builder_args`) missing from the signature is the plugin's bug.
        """
        try:
            params = inspect.signature(builder).parameters
        except (TypeError, ValueError):  # a builtin or C callable: nothing to read
            return
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        named = [n for n, p in list(params.items())[int(self.passes_spec):]
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in kwargs if k not in named]
        contract = [k for k in unknown if k in self.builder_args]
        if contract:
            raise PluginError(f"the builder {self.builder!r} of {self.where} does not take {contract}, which the "
                              f"zoo passes to every {self.kind} builder (see zoo_core.hookspecs)")
        if unknown:
            accepted = sorted(set(named) - set(self.builder_args))
            raise OptionError(f"{self.qualified_name} (builder {self.builder!r}) does not accept option(s) "
                              f"{sorted(unknown)}; it takes {accepted or 'none'}")


@dataclass(frozen=True)
class TaskSpec(Spec):
    """A task: its builder returns a :class:`zoo_core.task.Task`."""

    aliases: tuple[str, ...] = ()
    kind = "task"
    passes_spec = False


@dataclass(frozen=True)
class ModelSpec(Spec):
    """A name that builds a whole task model (architecture + head + preprocessing)."""

    tasks: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int, int] | None = None
    weights: tuple[str, ...] = ()
    #: ``"module:function"``; ``function(spec)`` returns a list of
    #: :class:`zoo_core.model.PretrainedWeights` describing every tag in ``weights`` (for
    #: ``zoo.list_weights`` and ``zoo pull``) without building the network.
    weights_info: str = ""
    export_formats: tuple[str, ...] = ()
    priority: int = 0
    #: the builder options a saved config (a saved model's config.json, a checkpoint) may set when the
    #: model is rebuilt from it; any other option there is refused, and so is any path-like value
    #: (see :mod:`zoo_core.saved_options`). Options typed in Python are never limited by this.
    saved_options: tuple[str, ...] = ()
    kind = "model"
    builder_args = ("task", "num_classes", "pretrained")


@dataclass(frozen=True)
class BackboneSpec(Spec):
    """A feature extractor usable under any compatible head."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[str, ...] = ()
    weights_info: str = ""
    priority: int = 0
    #: as :attr:`ModelSpec.saved_options`: the options a saved config may set for this builder
    saved_options: tuple[str, ...] = ()
    kind = "backbone"
    builder_args = ("pretrained",)


@dataclass(frozen=True)
class HeadSpec(Spec):
    """A task head built on top of a backbone's feature maps."""

    task: str = ""
    requires: Mapping[str, Any] = field(default_factory=dict)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    #: as :attr:`ModelSpec.saved_options`: the options a saved config may set for this builder
    saved_options: tuple[str, ...] = ()
    kind = "head"
    builder_args = ("backbone", "num_classes")


SPEC_TYPES: dict[str, type[Spec]] = {
    "task": TaskSpec,
    "model": ModelSpec,
    "backbone": BackboneSpec,
    "head": HeadSpec,
}


def import_object(path: str, what: str = "object") -> Any:
    """Import ``"package.module:attr"`` and return the attribute, with an error that says which.

    A module that fails to import (a missing dependency, a syntax error, even ``sys.exit`` at import)
    is a :class:`PluginImportError` (a ``PluginError`` and an ``ImportError``) in one line.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what}: {path!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise PluginImportError(f"{what}: cannot import module {module_name!r} ({detail}); install what the "
                                "plugin needs, or fix the module name it registered") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginImportError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None


def accepted_options(*targets: Callable[..., Any], passed: Iterable[str] = ()) -> set[str]:
    """The keyword parameters ``targets`` name: ``self``, ``*args``/``**kwargs`` and ``passed`` (what the
    builder fills in itself) left out."""
    accepted: set[str] = set()
    for target in targets:
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # a builtin or C callable: names nothing
            continue
        accepted |= {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return accepted - {"self"} - set(passed)


def init_options(cls: type) -> set[str]:
    """The keyword parameters of ``cls.__init__``, and of its bases' while an ``__init__`` passes
    ``**kwargs`` on (``class Distilled(ViT): def __init__(self, *args, **kwargs)``); torch's own
    classes end the walk (``nn.Module`` takes no options)."""
    names: set[str] = set()
    for klass in getattr(cls, "__mro__", ()):
        if klass is object or klass.__module__.partition(".")[0] == "torch":
            break
        init = vars(klass).get("__init__")
        if init is None:
            continue
        names |= accepted_options(init)
        try:
            if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
                break
        except (TypeError, ValueError):
            break
    return names


def module_options(module: Any) -> set[str]:
    """Every parameter name of the functions and classes defined in ``module``.

    A library's entry point often hands ``**kwargs`` to a private helper that consumes some of them
    (torchvision's ``_mobilenet_v3_conf(width_mult=...)``, timm's ``_create_*``): such names are
    options too, even though the model class does not list them.
    """
    names: set[str] = set()
    for obj in list(vars(module).values()) if module is not None else ():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            names |= accepted_options(obj.__init__) if "__init__" in vars(obj) else set()
        elif inspect.isfunction(obj):
            names |= accepted_options(obj)
    return names


def refuse_unknown_options(options: Mapping[str, Any], accepted: Iterable[str], *, what: str,
                           also_known: Iterable[str] = ()) -> None:
    """An :class:`OptionError` naming the ``options`` outside ``accepted`` and listing ``accepted``.

    ``also_known``: names let through without being listed (e.g. what a library's factory consumes).
    """
    accepted = set(accepted)
    unknown = sorted(set(options) - accepted - set(also_known))
    if unknown:
        raise OptionError(f"{what} does not accept option(s) {unknown}; it takes {sorted(accepted) or 'none'}. "
                          "Task settings (loss, augmentation) go in zoo.load(..., task_options={...})")


def check_options(target: Callable[..., Any], options: Mapping[str, Any], *, what: str,
                  passed: tuple[str, ...] = ()) -> None:
    """Refuse ``options`` that ``target`` does not name as parameters, before calling it.

    Many library constructors end in ``**kwargs`` and drop what they do not know (torchvision's
    segmentation builders, smp's models on non-timm encoders), so a misspelt option would build the
    default model without a word. ``passed`` lists parameters the builder already fills in itself.
    """
    if options:
        refuse_unknown_options(options, accepted_options(target, passed=passed), what=what)
