"""timm models as zoo backbones, through ``timm.create_model(..., features_only=True)``.

Hierarchical models (ResNet, ConvNeXt, EfficientNet, Swin...) give their maps at strides 2/4..32.
Plain ViTs give intermediate outputs that all share one stride (16 for patch 16): the backbone keeps
only the last, a single stride-16 map, and ``zoo.build`` puts a simple feature pyramid in front of
heads that need several. ViTs are created with ``dynamic_img_size=True`` where timm allows it, so
they accept any input size divisible by the patch (the detector's resize pads to 32).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from zoo_core.backbone import Backbone, FeatureInfo
from zoo_core.errors import IncompatibleError
from zoo_core.specs import BackboneSpec

from .classification import _cfg_dict, describe, preprocess_from_cfg
from .options import check_timm_options

PREFIX = "model."


class TimmBackbone(Backbone):
    """A timm ``features_only`` network; ``last_only`` keeps just the deepest map (plain ViTs)."""

    def __init__(self, net: nn.Module, last_only: bool = False) -> None:
        super().__init__()
        self.model = net
        self.last_only = last_only
        chans, reds = net.feature_info.channels(), net.feature_info.reduction()
        if last_only:
            chans, reds = chans[-1:], reds[-1:]
        self.feature_info = FeatureInfo.of(chans, reds)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = self.model(x)
        maps = list(maps.values()) if isinstance(maps, dict) else list(maps)
        return maps[-1:] if self.last_only else maps


def _create(arch: str, options: dict[str, Any]) -> nn.Module:
    import timm

    try:
        return timm.create_model(arch, pretrained=False, features_only=True,
                                 **{"dynamic_img_size": True, **options})
    except TypeError:  # the architecture has no dynamic_img_size: fixed (or fully convolutional) input
        pass
    try:
        return timm.create_model(arch, pretrained=False, features_only=True, **options)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise IncompatibleError(f"timm model {arch!r} cannot be used as a backbone: features_only "
                                f"failed ({type(exc).__name__}: {exc}). Pick a model from "
                                "`zoo.list_backbones()` that timm supports with features_only") from exc


def build_backbone(spec: BackboneSpec, *, pretrained: str | None = None, **options: Any) -> TimmBackbone:
    """timm model ``spec.name`` as a backbone; ``options`` go to ``timm.create_model`` (``img_size``,
    ``out_indices``, ``drop_path_rate``...). ``pretrained`` describes the tag's weights for the zoo."""
    arch = f"{spec.name}.{pretrained}" if pretrained else spec.name
    check_timm_options(spec.name, options, what=f"backbone timm:{spec.name}")  # unknown options: OptionError
    net = _create(arch, dict(options))
    reds = net.feature_info.reduction()
    bb = TimmBackbone(net, last_only=len(reds) > 1 and len(set(reds)) == 1)
    cfg = _cfg_dict(getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None))
    bb.preprocess = preprocess_from_cfg(cfg, options.get("img_size"))
    bb.in_chans = int(options.get("in_chans", bb.preprocess.in_chans))
    if cfg.get("fixed_input_size") and not _dynamic(net):
        bb.fixed_input_size = tuple(bb.preprocess.input_size)  # type: ignore[assignment]
    if pretrained is not None:
        bb.pretrained = describe(spec.name, pretrained, cfg)
        bb.map_state_dict = classifier_keys(bb)
    return bb


def _dynamic(net: nn.Module) -> bool:
    inner = getattr(net, "model", net)
    return bool(getattr(inner, "dynamic_img_size", False))


def classifier_keys(bb: nn.Module) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """A ``map_state_dict`` for timm's classification checkpoints: each key is matched to the
    features-only layout (``model.`` prefix; timm flattens ``stages.0`` to ``stages_0``); keys with
    no match (the classifier) are dropped."""
    def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        own = bb.state_dict()
        out = {}
        for key, value in state.items():
            for cand in _candidates(key):
                if cand in own:
                    out[cand] = value
                    break
        return out

    return convert


def _candidates(key: str) -> list[str]:
    base = key[len(PREFIX):] if key.startswith(PREFIX) else key
    parts = base.split(".")
    flat = [".".join(parts[:i]).replace(".", "_") + ("." if i < len(parts) else "") + ".".join(parts[i:])
            for i in range(2, min(len(parts), 3) + 1)]
    return [PREFIX + base, *(PREFIX + f for f in flat)]
