"""``zoo.build(task, backbone=..., head=...)``: any backbone under any head whose needs it meets.

The path from a call to the networks is plain: resolve the backbone and head specs, call the
backbone builder, check its declared :class:`~zoo_core.backbone.FeatureInfo` against a real forward,
check the pairing (:func:`~zoo_core.backbone.why_incompatible`; a single stride-16 map in front of a
pyramid head gets a :class:`~zoo_core.backbone.SimpleFeaturePyramid`), call the head builder, and
wrap the result in a :class:`~zoo_core.model.ZooModel` whose config says how to rebuild it and whose
``backbone_prefixes`` name where the trunk sits in the head's network (:func:`backbone_prefix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import IncompatibleError, PluginError, ZooError
from .registry import get_registry
from .specs import BackboneSpec, HeadSpec

if TYPE_CHECKING:
    from torch import nn

    from .backbone import Backbone
    from .features import FeatureInfo, Fit, HeadRequirements
    from .model import ZooModel


def build(task: str, *, backbone: str, head: str, num_classes: int | None = None,
          class_names: Sequence[str] | None = None, pretrained: str | None = None,
          backbone_options: Mapping[str, Any] | None = None, adapter_channels: int = 256,
          seed: int | None = None, **options: Any) -> "ZooModel":
    """Build a task model from a backbone name and a head name.

    ``backbone``: ``"timm:vit_small_patch16_224"``, ``"torchvision:resnet50"`` or a short name.
    ``head``: e.g. ``"faster_rcnn"`` (resolved among the heads of ``task``). ``pretrained``: a
    weights tag of the backbone (``"default"``: its first), fetched offline-first; the head starts
    random. ``backbone_options`` go to the backbone builder (e.g. ``{"img_size": 64}`` for a ViT),
    ``options`` to the head builder. ``adapter_channels``: width of the simple feature pyramid
    inserted for single-map backbones. Raises :class:`IncompatibleError` with the reason when the
    backbone cannot feed the head. ``seed``: build under this seed (repeatable initialisation of the
    head and adapter; see :func:`zoo_core.load`).
    """
    from .train.numerics import seeded

    with seeded(seed):
        return _build(task, backbone=backbone, head=head, num_classes=num_classes, class_names=class_names,
                      pretrained=pretrained, backbone_options=backbone_options,
                      adapter_channels=adapter_channels, options=options)


def announce_short_names(reg: Any, chosen: Sequence[tuple[str, Any, str | None]]) -> None:
    """Warn which provider each short name (as the user typed it) took when a third party's plugin shares
    it (:func:`zoo_core.providers.announce_choice`); a qualified ``plugin:name`` is the user's choice."""
    from .providers import announce_choice

    for typed, spec, task in chosen:
        if ":" not in typed:
            announce_choice(reg, spec, task=task)


def _build(task: str, *, backbone: str, head: str, num_classes: int | None, class_names: Sequence[str] | None,
           pretrained: str | None, backbone_options: Mapping[str, Any] | None, adapter_channels: int,
           options: dict[str, Any]) -> "ZooModel":
    from .api import check_classes
    from .model import BuiltModel, ZooModel

    reg = get_registry()
    task_name = reg.canonical_task(task)
    bspec = reg.resolve("backbone", backbone)
    hspec = reg.resolve("head", head, task=task_name)
    assert isinstance(bspec, BackboneSpec) and isinstance(hspec, HeadSpec)
    announce_short_names(reg, ((backbone, bspec, None), (head, hspec, task_name)))
    num_classes, class_names = check_classes(task_name, num_classes, class_names)
    if num_classes is None:
        raise ValueError(f"zoo.build({task_name!r}, head={head!r}) needs num_classes= or class_names=")
    trunk, provenance = build_backbone(bspec, pretrained=pretrained, options=backbone_options)
    net_backbone = fit_backbone(trunk, bspec, hspec, adapter_channels=adapter_channels)
    built = hspec.call_builder(backbone=net_backbone, num_classes=num_classes, **options)
    if not isinstance(built, BuiltModel):
        raise ZooError(f"builder {hspec.builder!r} of head {hspec.qualified_name!r} returned "
                       f"{type(built).__name__}, not zoo_core.model.BuiltModel (plugin {hspec.distribution})")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(built.num_classes)]
    saved_options: dict[str, Any] = dict(options)
    if backbone_options:
        saved_options["backbone_options"] = dict(backbone_options)
    if adapter_channels != 256:
        saved_options["adapter_channels"] = adapter_channels
    config = {"backbone": bspec.qualified_name, "head": hspec.qualified_name, "task": task_name,
              "num_classes": built.num_classes, "options": saved_options}
    if built.extra.get("task_options"):  # the head's defaults for the task (e.g. U-Net's loss)
        config["task_options"] = dict(built.extra["task_options"])
    return ZooModel(built.net, task=task_name, class_names=names, preprocess=built.preprocess, config=config,
                    head=built.head, export_formats=built.export_formats, provenance=provenance,
                    export_options=built.extra.get("export"),
                    backbone=built.backbone or (backbone_prefix(built.net, trunk, hspec),))


def backbone_prefix(net: "nn.Module", trunk: "Backbone", hspec: HeadSpec) -> str:
    """Where the backbone builder's module sits in the head builder's ``net``: its state-dict prefix.

    The pretrained part of a composed model is exactly that module (the trunk; a simple feature
    pyramid the zoo put around it is new, so it trains with the head). It is found by identity, so
    any head builder works unchanged. A builder that put a copy of the backbone into its network
    (or none) is refused: the zoo could not tell which parameters are pretrained, and
    ``freeze_backbone`` would freeze the wrong ones; it must use the module it was given, or name
    it in ``BuiltModel(backbone=(...))``.
    """
    for name, module in net.named_modules():
        if module is trunk and name:
            return name
    raise PluginError(f"head {hspec.qualified_name} (plugin {hspec.plugin}): the network its builder "
                      f"{hspec.builder!r} returned does not hold the backbone module it was given as a "
                      "submodule, so the zoo cannot tell the pretrained backbone's parameters from the new "
                      "ones (freeze_backbone, backbone_lr_mult). Put the `backbone` argument itself into "
                      "the network (not a copy), or list its state-dict prefixes in BuiltModel(backbone=(...))")


def build_composed(task: str, *, backbone: str, head: str, num_classes: int | None,
                   class_names: Sequence[str] | None, weights_path: Path | None, strict: bool = True,
                   options: Mapping[str, Any] | None = None, source: str = "a saved config") -> "ZooModel":
    """Rebuild a saved composed model (``config["backbone"]``/``["head"]``) and load its weights.

    ``options`` come from a file (``source``, named in errors): they pass only as far as the backbone
    and head declare them, with no path in them (:func:`zoo_core.saved_options.check_composed_options`).
    """
    from .api import load_weights
    from .saved_options import check_composed_options

    reg = get_registry()
    bspec, hspec = reg.resolve("backbone", backbone), reg.resolve("head", head, task=task)
    fix = (f"model = zoo.build({task!r}, backbone={bspec.qualified_name!r}, head={hspec.qualified_name!r}, "
           "num_classes=..., backbone_options={...}, <head option>=...), then "
           f"zoo_core.api.load_weights(model, Path({str(weights_path)!r}))")
    checked = check_composed_options(bspec, hspec, options, source=source, fix=fix)
    model = build(task, backbone=backbone, head=head, num_classes=num_classes, class_names=class_names,
                  **checked)
    if weights_path is not None:
        model.provenance["weights"] = str(weights_path)
        load_weights(model, Path(weights_path), head=model.head_prefixes, strict=strict,
                     label=f"{backbone} + {head}")
    return model


def build_backbone(spec: BackboneSpec, *, pretrained: str | None = None,
                   options: Mapping[str, Any] | None = None, check: bool = True
                   ) -> tuple["Backbone", dict[str, Any]]:
    """Call a backbone builder, verify what it returned, and load its pretrained weights.

    Returns the backbone and a provenance dict. ``check`` runs :func:`check_feature_info`.
    """
    from . import weights as W
    from .backbone import Backbone, check_feature_info

    if pretrained == "default":
        if not spec.weights:
            raise ZooError(f"backbone {spec.qualified_name} knows no pretrained weights")
        pretrained = spec.weights[0]
    if pretrained is not None and spec.weights and pretrained not in spec.weights:
        from .errors import UnknownNameError

        raise UnknownNameError(f"weights tag of backbone {spec.qualified_name}", pretrained, spec.weights)
    bb = spec.call_builder(pretrained=pretrained, **dict(options or {}))
    if not isinstance(bb, Backbone):
        raise PluginError(f"builder {spec.builder!r} of backbone {spec.qualified_name!r} (plugin "
                          f"{spec.plugin}) returned {type(bb).__name__}, not a zoo_core.backbone.Backbone")
    if check:
        check_feature_info(bb, name=f"{spec.qualified_name} (plugin {spec.plugin})")
    provenance: dict[str, Any] = {"weights": None}
    if pretrained is not None:
        if bb.pretrained is None:
            raise ZooError(f"backbone {spec.qualified_name} knows no weights {pretrained!r}")
        source = W.fetch(bb.pretrained, plugin=spec.plugin, model=spec.name)
        report = W.load_into(bb, W.read_state_dict(source), source=str(source), strict=True,
                             map_state_dict=bb.map_state_dict)
        provenance.update(weights=f"{spec.qualified_name}.{pretrained} (backbone)", url=bb.pretrained.url,
                          license=bb.pretrained.license, backbone_report=str(report))
    return bb, provenance


def requirements(hspec: HeadSpec) -> "HeadRequirements":
    """A head spec's ``requires`` dict as :class:`HeadRequirements` (a bad dict names the head)."""
    from .features import HeadRequirements

    try:
        return HeadRequirements.from_dict(hspec.requires)
    except (PluginError, TypeError, ValueError) as exc:
        raise PluginError(f"head {hspec.qualified_name} (plugin {hspec.plugin}): bad requires: {exc}") from exc


def pairing(info: "FeatureInfo", hspec: HeadSpec) -> tuple[str | None, bool]:
    """``(reason or None, needs_adapter)`` for feeding a head from maps described by ``info``
    (:func:`zoo_core.features.fit`, the one rule ``zoo compat`` and ``zoo info`` print)."""
    from .features import fit

    verdict = fit(info, requirements(hspec))
    return verdict.reason, verdict.adapter


def fit_backbone(bb: "Backbone", bspec: BackboneSpec, hspec: HeadSpec, *, adapter_channels: int = 256
                 ) -> "Backbone":
    """The backbone itself, or wrapped in a simple feature pyramid, or an IncompatibleError."""
    from .backbone import SimpleFeaturePyramid

    reason, adapter = pairing(bb.feature_info, hspec)
    if reason is not None:
        raise IncompatibleError(f"backbone {bspec.qualified_name} ({bb.feature_info}) cannot feed head "
                                f"{hspec.qualified_name}: {reason}. `zoo.compat({bspec.name!r})` lists "
                                "the heads it can feed")
    return SimpleFeaturePyramid(bb, adapter_channels) if adapter else bb


def compat(backbone: str, *, task: str | None = None, options: Mapping[str, Any] | None = None
           ) -> dict[str, str | None]:
    """Which heads ``backbone`` can feed: ``{head qualified name: None (fits) or the reason}``.

    The backbone is built on the meta device (no memory, no weights; on the CPU when its constructor
    needs real tensors) to read its declared FeatureInfo; ``task`` restricts the heads to one task.
    :func:`compat_fits` also says which fit only through a simple feature pyramid.
    """
    return {head: verdict.reason for head, verdict in compat_fits(backbone, task=task, options=options).items()}


def compat_fits(backbone: str, *, task: str | None = None, options: Mapping[str, Any] | None = None
                ) -> "dict[str, Fit]":
    """As :func:`compat`, with each head's :class:`~zoo_core.features.Fit` (reason, adapter or not)."""
    import torch

    from .features import fit

    reg = get_registry()
    bspec = reg.resolve("backbone", backbone)
    assert isinstance(bspec, BackboneSpec)
    try:
        with torch.device("meta"):
            bb, _ = build_backbone(bspec, options=options, check=False)
    except (RuntimeError, NotImplementedError):  # some constructors read tensor values: build for real
        bb, _ = build_backbone(bspec, options=options, check=False)
    canon = reg.canonical_task(task) if task else None
    out: dict[str, Fit] = {}
    for hspec in reg.specs("head"):
        assert isinstance(hspec, HeadSpec)
        if canon and hspec.task != canon:
            continue
        out[hspec.qualified_name] = fit(bb.feature_info, requirements(hspec))
    return out
