"""The whole zoo plugin contract.

A plugin is any importable module named by an entry point in the group ``zoo.plugins``::

    # pyproject.toml of your package
    [project.entry-points."zoo.plugins"]
    myzoo = "myzoo.plugin"          # the entry-point name is the plugin's name: "myzoo:<model>"

The module defines one or more of the hook functions below, each decorated with
``@zoo_core.hookimpl``. Every hook receives a ``register`` callable and calls it once per thing it adds.
Builders are named as ``"module:function"`` strings, so reading the catalog (``zoo list``) imports
none of your model code and not even torch.

Stability rules (plugin API version :data:`PLUGIN_API_VERSION`): hook names and argument names are
never renamed or removed; new optional arguments may be added. A plugin may declare the zoo versions
it supports with a module attribute ``zoo_requires = ">=0.1,<1"``.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT = "zoo"
ENTRY_POINT_GROUP = "zoo.plugins"
PLUGIN_API_VERSION = "1.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable a hook receives: ``register(name, builder, **fields)``."""

    def __call__(self, name: str, builder: str, **fields: Any) -> None: ...


@hookspec
def register_tasks(register: Register) -> None:
    """Add tasks (e.g. classification, detection).

    Call ``register(name, builder, aliases=(), description="")``. ``builder`` is a
    ``"module:function"`` string; the function takes no arguments and returns a
    :class:`zoo_core.task.Task`. ``aliases`` are extra names users may type (``"cls"``).
    """


@hookspec
def register_models(register: Register) -> None:
    """Add models: names that build a whole task model.

    Call ``register(name, builder, tasks=("classification",), **fields)`` with the fields of
    :class:`zoo_core.specs.ModelSpec`: ``kwargs`` (fixed builder arguments, so a family registers a
    table of variants and one builder), ``input_size`` (C, H, W), ``weights`` (known pretrained
    tags, default first), ``export_formats``, ``priority`` (which provider a short name picks),
    ``saved_options`` (the builder options a saved model's config may set when it is rebuilt; any
    other option in a saved config is refused), ``description``. The builder is called as
    ``builder(spec, task=..., num_classes=..., pretrained=tag_or_None, **options)``, for every task in
    ``tasks`` (the conformance suite checks each), and returns a :class:`zoo_core.model.BuiltModel`
    whose ``num_classes`` the task accepts (``Task.validate_num_classes``), whose ``head`` names the
    classifier's state-dict prefixes and ``backbone`` the pretrained feature extractor's (what
    ``freeze_backbone`` freezes). It must never download anything: it describes pretrained weights and
    the zoo fetches them offline-first. Whatever it raises reaches the user naming the builder, the
    spec, the plugin and its distribution, with the original exception as the cause.
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Add feature extractors for :func:`zoo_core.build`.

    Call ``register(name, builder, **fields)`` with the fields of :class:`zoo_core.specs.BackboneSpec`.
    The builder is called as ``builder(spec, pretrained=tag_or_None, **options)`` and returns a
    :class:`zoo_core.backbone.Backbone`: a module whose forward returns a list of feature maps and
    whose ``feature_info`` states the channels and stride of each (checked, not trusted).
    """


@hookspec
def register_heads(register: Register) -> None:
    """Add task heads that can sit on any compatible backbone.

    Call ``register(name, builder, task="segmentation", **fields)`` with the fields of
    :class:`zoo_core.specs.HeadSpec`: ``requires``, what the head needs of the backbone's maps (a dict
    of :class:`zoo_core.features.HeadRequirements` keys: ``min_levels``, ``strides``, ``min_stride``,
    ``max_stride``, ``single_level_ok``; ``zoo.build`` checks it, ``zoo info HEAD`` and ``zoo compat``
    print it), ``kwargs``, ``priority``, ``saved_options``, ``description``. The builder is called as
    ``builder(spec, backbone=Backbone, num_classes=int, **options)`` (no ``pretrained``: the backbone
    comes with its weights). ``backbone(x)`` returns a list of maps, shallowest first, described by
    ``backbone.feature_info``; ``backbone.preprocess`` is how its input is normalised. It returns a
    :class:`zoo_core.model.BuiltModel` whose ``net`` holds that ``backbone`` module itself (not a copy:
    the zoo finds it there by identity and declares it the composed model's backbone), whose ``head``
    names the classifier's prefixes, with ``preprocess=backbone.preprocess``. A segmentation head's
    network returns logits ``(B, num_classes, H, W)`` at the input size. The README's plugin guide
    has a worked head.
    """
