"""Which options a timm model takes, checked before timm builds it.

``timm.create_model(name, **options)`` hands options through the model's entry point to its class.
A misspelt one either ends in a raw ``TypeError`` deep inside timm or, for the classes that take
``**kwargs``, is dropped without a word. Here an option is refused up front, with the model's own
options listed, when nothing on that path names it: not the model class (nor the bases it passes
``**kwargs`` to), not ``timm.create_model``, not timm's builder, not a helper of the model's module.
"""

from __future__ import annotations

import functools
import sys
import typing
from typing import Any, Mapping

from zoo_core.errors import OptionError
from zoo_core.specs import accepted_options, init_options, module_options, refuse_unknown_options

#: what the zoo's builders give ``timm.create_model`` themselves
PASSED = ("model_name", "pretrained", "num_classes")
#: what timm's factory and builder consume before the model class sees the options
FACTORY = ("device", "dtype", "features_only", "out_indices", "feature_cls", "feature_cfg", "flatten_sequential",
           "output_fmt", "pruned", "use_naflex", "strict_img_size")


@functools.lru_cache(maxsize=None)
def model_class(name: str) -> type | None:
    """The class timm's entry point for ``name`` returns (its return annotation; None when unannotated)."""
    from timm.models import model_entrypoint

    fn = model_entrypoint(name.partition(".")[0])
    try:
        cls = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation timm cannot resolve: no static check for this model
        return None
    return cls if isinstance(cls, type) else None


@functools.lru_cache(maxsize=None)
def known_options(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(listed, also_known)``: the options named by the model class and ``timm.create_model`` (shown
    to the user), and the names timm's factory, builder and the model's module consume."""
    import timm
    from timm.models import build_model_with_cfg, model_entrypoint

    cls = model_class(name)
    listed = (init_options(cls) if cls is not None else set()) | accepted_options(timm.create_model)
    listed -= set(PASSED)
    fn = model_entrypoint(name.partition(".")[0])
    also = set(FACTORY) | accepted_options(build_model_with_cfg) | module_options(sys.modules.get(fn.__module__))
    if cls is not None:
        also |= module_options(sys.modules.get(cls.__module__))
    return frozenset(listed), frozenset(also)


def check_timm_options(name: str, options: Mapping[str, Any], *, what: str) -> None:
    """Refuse options no part of timm's path for model ``name`` names (an :class:`OptionError`)."""
    if not options:
        return
    if model_class(name) is None:  # timm's own TypeError is turned into an OptionError by create_checked
        return
    listed, also = known_options(name)
    refuse_unknown_options(options, listed, what=what, also_known=also)


def create_checked(arch: str, kwargs: Mapping[str, Any], options: Mapping[str, Any], *, what: str) -> Any:
    """``timm.create_model(arch, pretrained=False, **kwargs)`` after :func:`check_timm_options`; a
    ``TypeError`` timm still raises over the user's ``options`` becomes an :class:`OptionError`."""
    import timm

    check_timm_options(arch, options, what=what)
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as exc:
        if not options:
            raise
        cls = model_class(arch) or _built_class(arch)
        listed = sorted((init_options(cls) | accepted_options(timm.create_model)) - set(PASSED))
        raise OptionError(f"{what} could not be built with option(s) {sorted(options)} ({exc}); it takes "
                          f"{listed}") from exc


def _built_class(arch: str) -> type:
    """The class of ``arch`` built without options on the meta device (no memory, no weights)."""
    import timm
    import torch

    with torch.device("meta"):
        return type(timm.create_model(arch, pretrained=False))
