"""Catalog entries: plain, frozen data that names a builder without importing it.

Nothing here imports torch, so listing thousands of specs is cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import OptionError, PluginError, ZooError


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

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, which always resolves to exactly this entry."""
        return f"{self.plugin}:{self.name}"

    def load_builder(self) -> Callable[..., Any]:
        """Import and return the builder function named by ``builder``."""
        return import_object(self.builder, what=f"builder of {self.kind} {self.qualified_name!r}")

    def call_builder(self, *args: Any, **kwargs: Any) -> Any:
        """``builder(self, *args, **kwargs)``; an unexpected exception names the spec and its plugin.

        ZooErrors, TypeErrors and ValueErrors pass unchanged (their messages are written for the user:
        options, class counts); anything else (a plugin's KeyError, AttributeError...) would reach the
        user with no hint of where it came from.
        """
        builder = self.load_builder()
        try:
            return builder(self, *args, **kwargs)
        except (ZooError, TypeError, ValueError):
            raise
        except Exception as exc:
            raise PluginError(f"the builder {self.builder!r} of {self.kind} {self.qualified_name!r} (plugin "
                              f"{self.plugin!r}, distribution {self.distribution or 'unknown'!r}) failed: "
                              f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class TaskSpec(Spec):
    """A task: its builder returns a :class:`zoo_core.task.Task`."""

    aliases: tuple[str, ...] = ()
    kind = "task"


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
    kind = "model"


@dataclass(frozen=True)
class BackboneSpec(Spec):
    """A feature extractor usable under any compatible head."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[str, ...] = ()
    weights_info: str = ""
    priority: int = 0
    kind = "backbone"


@dataclass(frozen=True)
class HeadSpec(Spec):
    """A task head built on top of a backbone's feature maps."""

    task: str = ""
    requires: Mapping[str, Any] = field(default_factory=dict)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    kind = "head"


SPEC_TYPES: dict[str, type[Spec]] = {
    "task": TaskSpec,
    "model": ModelSpec,
    "backbone": BackboneSpec,
    "head": HeadSpec,
}


def import_object(path: str, what: str = "object") -> Any:
    """Import ``"package.module:attr"`` and return the attribute, with an error that says which."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what}: {path!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ImportError(f"{what}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None


def check_options(target: Callable[..., Any], options: Mapping[str, Any], *, what: str,
                  passed: tuple[str, ...] = ()) -> None:
    """Refuse ``options`` that ``target`` does not name as parameters, before calling it.

    Many library constructors end in ``**kwargs`` and drop what they do not know (torchvision's
    segmentation builders, smp's models on non-timm encoders), so a misspelt option would build the
    default model without a word. ``passed`` lists parameters the builder already fills in itself.
    """
    import inspect

    accepted = {name for name, p in inspect.signature(target).parameters.items()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"} - set(passed)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise OptionError(f"{what} does not accept option(s) {unknown}; it takes {sorted(accepted) or 'none'}. "
                          "Task settings (loss, augmentation) go in zoo.load(..., task_options={...})")
