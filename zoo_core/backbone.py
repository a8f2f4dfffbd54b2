"""The backbone contract: feature maps with declared channels and strides, and what heads need.

A backbone is an ``nn.Module`` whose ``forward(x)`` returns a list of feature maps, shallowest
first, and whose ``feature_info`` (:class:`FeatureInfo`, like timm's) states the channels and the
stride (reduction) of each. A head declares what it needs as :class:`HeadRequirements`;
:func:`fit` says whether (and why not) a backbone can feed it; both live in the torch-free
:mod:`zoo_core.features` and are importable from here. Declarations are checked, not trusted:
:func:`check_feature_info` runs a dummy forward and compares.

:class:`SimpleFeaturePyramid` (ViTDet's "simple feature pyramid") turns one map at stride ``s``
(a ViT's stride-16 patch grid) into four maps at ``s/4, s/2, s, 2s``, so pyramid heads such as
Faster R-CNN can sit on a plain ViT. Nothing here knows a model library.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from .errors import PluginError
# the pairing rules live in the torch-free .features (zoo info reads them); re-exported here
from .features import (PYRAMID_SCALES, FeatureInfo, Fit, HeadRequirements, fit, pyramid_why_not,  # noqa: F401
                       usable_levels, why_incompatible)
from .model import Preprocess, PretrainedWeights


class Backbone(nn.Module):
    """Base of every backbone: ``forward(x) -> list[Tensor]`` matching ``feature_info``.

    Subclasses set ``feature_info`` in ``__init__``. Optional attributes the zoo reads:
    ``preprocess`` (normalisation and size the trunk was trained with), ``pretrained`` (a
    :class:`PretrainedWeights` the builder describes when asked for a tag; the zoo fetches it),
    ``map_state_dict`` (converts the weights file's keys to this module's) and ``fixed_input_size``
    (``(H, W)`` when the trunk only accepts one size, e.g. a ViT without dynamic size).
    """

    feature_info: FeatureInfo
    preprocess: Preprocess = Preprocess()
    pretrained: PretrainedWeights | None = None
    map_state_dict: Any = None
    fixed_input_size: tuple[int, int] | None = None
    in_chans: int = 3

    def forward(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_size(feature_info: FeatureInfo, fixed: tuple[int, int] | None = None) -> tuple[int, int]:
    """A small input size divisible by every declared stride, with every level at least 2x2 pixels."""
    if fixed is not None:
        return fixed
    reds = feature_info.reduction()
    unit = math.lcm(*reds)  # type: ignore[arg-type]
    side = unit * max(1, math.ceil(max(64, 2 * max(reds)) / unit))  # type: ignore[arg-type]
    return side, side


@torch.no_grad()
def check_feature_info(backbone: nn.Module, input_size: Sequence[int] | None = None, *,
                       name: str = "") -> list[tuple[int, ...]]:
    """Run a dummy forward and compare the real maps with ``backbone.feature_info``.

    ``input_size`` is ``(C, H, W)`` or ``(H, W)`` (default: :func:`check_size`). Raises
    :class:`PluginError` naming the backbone (``name``: plugin/spec) when the number of maps,
    their channels or their strides differ from the declaration. Returns the real shapes.
    """
    label = name or type(backbone).__name__
    info = getattr(backbone, "feature_info", None)
    if not isinstance(info, FeatureInfo):
        raise PluginError(f"backbone {label}: feature_info is {type(info).__name__}, not a "
                          "zoo_core.backbone.FeatureInfo; the plugin must declare it")
    if input_size is None:
        hw = check_size(info, getattr(backbone, "fixed_input_size", None))
        input_size = (getattr(backbone, "in_chans", 3), *hw)
    elif len(input_size) == 2:
        input_size = (getattr(backbone, "in_chans", 3), *input_size)
    c, h, w = (int(v) for v in input_size)
    param = next(iter(backbone.parameters()), None)
    x = torch.zeros(1, c, h, w, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    was_training = backbone.training
    backbone.eval()
    try:
        maps = backbone(x)
    finally:
        backbone.train(was_training)
    if isinstance(maps, Mapping):
        maps = list(maps.values())
    if not isinstance(maps, (list, tuple)) or not all(isinstance(m, Tensor) and m.dim() == 4 for m in maps):
        raise PluginError(f"backbone {label}: forward must return a list of (B, C, H, W) tensors, got "
                          f"{type(maps).__name__}")
    shapes = [tuple(m.shape) for m in maps]
    problems = []
    if len(maps) != len(info):
        problems.append(f"{len(maps)} maps but feature_info declares {len(info)}")
    for i, (m, (ch, red)) in enumerate(zip(maps, info.levels)):
        if m.shape[1] != ch:
            problems.append(f"map {i} has {m.shape[1]} channels, declared {ch}")
        if not (_fits(h, red, m.shape[2]) and _fits(w, red, m.shape[3])):
            problems.append(f"map {i} is {m.shape[2]}x{m.shape[3]} for a {h}x{w} input (stride "
                            f"~{h / max(m.shape[2], 1):g}), declared stride {red}")
    if problems:
        raise PluginError(f"backbone {label}: feature_info does not match the real feature maps "
                          f"({'; '.join(problems)}). Declared: {info}; real shapes: {shapes}. "
                          "Fix the plugin's FeatureInfo")
    return shapes


def _fits(size: int, stride: int, got: int) -> bool:
    return got in {size // stride, math.ceil(size / stride)}


# ---- the simple feature pyramid -------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(Backbone):
    """One map at stride ``s`` -> maps at ``s/4, s/2, s, 2s`` (ViTDet): deconvolutions up, pooling down.

    Wraps a :class:`Backbone` with a single output whose stride is divisible by 4 (a ViT/16 gives
    strides 4, 8, 16, 32); each level is projected to ``out_channels`` by a 1x1 conv + LayerNorm.
    """

    SCALES = PYRAMID_SCALES

    def __init__(self, trunk: Backbone, out_channels: int = 256) -> None:
        super().__init__()
        reason = self.why_not(trunk.feature_info)
        if reason:
            raise ValueError(reason)
        dim, stride = trunk.feature_info.levels[0]
        self.trunk = trunk
        self.preprocess = trunk.preprocess
        self.fixed_input_size = trunk.fixed_input_size
        self.in_chans = trunk.in_chans
        self.pretrained = trunk.pretrained
        self.stages = nn.ModuleList()
        for scale in self.SCALES:
            layers: list[nn.Module] = []
            ch = dim
            if scale == 4.0:
                layers += [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                           nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
                ch = dim // 4
            elif scale == 2.0:
                layers += [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)]
                ch = dim // 2
            elif scale == 0.5:
                layers += [nn.MaxPool2d(2, 2)]
            layers += [nn.Conv2d(ch, out_channels, 1, bias=False), LayerNorm2d(out_channels)]
            self.stages.append(nn.Sequential(*layers))
        self.feature_info = FeatureInfo(tuple((out_channels, int(stride / s)) for s in self.SCALES))

    #: why this adapter cannot expand a FeatureInfo (None when it can)
    why_not = staticmethod(pyramid_why_not)

    def forward(self, x: Tensor) -> list[Tensor]:
        (feat,) = self.trunk(x)
        return [stage(feat) for stage in self.stages]
