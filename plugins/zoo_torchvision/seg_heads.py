"""Segmentation heads on any zoo backbone: ``deeplabv3``, ``fpn`` (semantic FPN) and ``upernet``.

- ``deeplabv3``: torchvision's ASPP ``DeepLabHead`` on one map (the deepest, or ``level=``), so a
  ViT's single stride-16 patch grid feeds it without an adapter.
- ``fpn``: the semantic branch of Panoptic FPN (Kirillov et al., 2019): an FPN over the maps at stride
  >= 4, each level brought to the shallowest one's resolution by conv + 2x upsampling stages, summed,
  then a 1x1 classifier.
- ``upernet``: UPerNet (Xiao et al., 2018): a pyramid pooling module on the deepest map feeds an FPN's
  top-down path; every level, upsampled to the shallowest, is concatenated and fused by a 3x3 conv.

The pyramid heads (``fpn``, ``upernet``) need 2+ maps at stride >= 4; a ViT gets the simple feature
pyramid in front. Their norm layers are GroupNorm (batch-size independent, so batch 1 trains). Every
head's logits are upsampled (bilinear) to the input size, so the network's output is ``(B, C, H, W)``
at the input's height and width whatever the backbone's stride.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from zoo_core.backbone import Backbone, HeadRequirements, usable_levels
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.specs import HeadSpec, accepted_options, refuse_unknown_options

#: the class-dependent layer (last 1x1 conv) of DeepLabHead, re-initialised for another class count
HEAD_PREFIX = "classifier.4"
#: ... and of the fpn and upernet heads
PYRAMID_HEAD_PREFIX = "classifier"


class DeepLabV3OnBackbone(nn.Module):
    """``backbone -> maps[level] -> DeepLabHead -> upsample to the input size``."""

    def __init__(self, backbone: Backbone, num_classes: int, level: int = -1,
                 atrous_rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        self.backbone = backbone
        self.level = level
        self.classifier = DeepLabHead(int(backbone.feature_info.channels(level)), num_classes, tuple(atrous_rates))

    def forward(self, x: Tensor) -> Tensor:
        feature = self.backbone(x)[self.level]
        return F.interpolate(self.classifier(feature), size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_deeplabv3_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, level: int = -1,
                         atrous_rates: Sequence[int] = (12, 24, 36), **options: Any) -> BuiltModel:
    """DeepLabV3 on ``backbone``'s map ``level`` (default the deepest) with ASPP ``atrous_rates``."""
    refuse_options(spec, build_deeplabv3_head, options)
    if not -len(backbone.feature_info) <= level < len(backbone.feature_info):
        raise ValueError(f"head {spec.qualified_name}: level={level} but the backbone has "
                         f"{len(backbone.feature_info)} maps ({backbone.feature_info})")
    net = DeepLabV3OnBackbone(backbone, num_classes, level, atrous_rates)
    return BuiltModel(net=net, preprocess=preprocess_of(backbone), num_classes=num_classes, head=(HEAD_PREFIX,))


def refuse_options(spec: HeadSpec, builder: Callable[..., Any], options: dict[str, Any]) -> None:
    """An OptionError naming the options ``builder`` does not take, listing those it does."""
    refuse_unknown_options(options, accepted_options(builder, passed=("spec", "backbone", "num_classes")),
                           what=f"head {spec.qualified_name}")


def preprocess_of(backbone: Backbone) -> Preprocess:
    """The backbone's normalisation, at its fixed input size when it has one (a ViT without dynamic size)."""
    pre = backbone.preprocess
    return pre.with_size(backbone.fixed_input_size) if backbone.fixed_input_size is not None else pre


# ---- the pyramid heads: fpn (semantic FPN) and upernet ------------------------------------------------
def conv_norm_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias) + GroupNorm (up to 32 groups that divide ``cout``) + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.GroupNorm(math.gcd(32, cout), cout), nn.ReLU(inplace=True))


def top_down(laterals: list[Tensor], mode: str = "nearest") -> list[Tensor]:
    """FPN's top-down pathway: each map (shallowest first) plus the upsampled sum of the coarser ones."""
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        merged.insert(0, lateral + resize(merged[0], lateral.shape[-2:], mode))
    return merged


def resize(x: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    return F.interpolate(x, size=tuple(size), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))


class PyramidHead(nn.Module):
    """``backbone -> maps at levels -> decode(maps) -> 1x1 classifier -> upsample to the input size``."""

    def __init__(self, backbone: Backbone, levels: Sequence[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.levels = list(levels)
        self.channels = [int(backbone.feature_info.channels(i)) for i in self.levels]  # type: ignore[arg-type]
        self.strides = [int(backbone.feature_info.reduction(i)) for i in self.levels]  # type: ignore[arg-type]

    def decode(self, maps: list[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone(x)
        return resize(self.classifier(self.decode([feats[i] for i in self.levels])), x.shape[-2:])


class SemanticFPN(PyramidHead):
    """Panoptic FPN's semantic branch: FPN (``fpn_channels``) over the maps, then per level
    ``log2(stride / shallowest stride)`` stages of 3x3 conv (``head_channels``) + 2x upsampling (one
    conv on the shallowest level), summed at the shallowest level's resolution."""

    def __init__(self, backbone: Backbone, levels: Sequence[int], num_classes: int, fpn_channels: int = 256,
                 head_channels: int = 128) -> None:
        super().__init__(backbone, levels)
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, 1) for c in self.channels)
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in self.channels)
        self.branches = nn.ModuleList()
        for stride in self.strides:
            stages = max(1, round(math.log2(stride / self.strides[0])))
            self.branches.append(nn.Sequential(*(conv_norm_relu(fpn_channels if j == 0 else head_channels,
                                                                head_channels) for j in range(stages))))
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def decode(self, maps: list[Tensor]) -> Tensor:
        pyramid = top_down([lateral(m) for lateral, m in zip(self.lateral, maps)])
        size = maps[0].shape[-2:]
        total: Tensor | None = None
        for level, (branch, smooth, p) in enumerate(zip(self.branches, self.smooth, pyramid)):
            p = smooth(p)
            for j, stage in enumerate(branch):
                p = stage(p)
                if level:  # 2x per stage; the last lands exactly on the shallowest level's size
                    p = resize(p, size) if j == len(branch) - 1 else F.interpolate(
                        p, scale_factor=2.0, mode="bilinear", align_corners=False)
            total = p if total is None else total + p
        assert total is not None
        return total


class UPerNet(PyramidHead):
    """UPerNet: a pyramid pooling module (``pool_scales``) on the deepest map tops an FPN whose levels,
    upsampled to the shallowest and concatenated, a 3x3 conv fuses (``channels`` wide throughout).

    The pooled branches are conv + ReLU without a norm: GroupNorm of a 1x1 pooled map would zero it."""

    def __init__(self, backbone: Backbone, levels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__(backbone, levels)
        top = self.channels[-1]
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(int(s)), nn.Conv2d(top, channels, 1),
                                               nn.ReLU(inplace=True)) for s in pool_scales)
        self.ppm_fuse = conv_norm_relu(top + len(self.ppm) * channels, channels)
        self.lateral = nn.ModuleList(conv_norm_relu(c, channels, 1) for c in self.channels[:-1])
        self.smooth = nn.ModuleList(conv_norm_relu(channels, channels) for _ in self.channels[:-1])
        self.fuse = conv_norm_relu(len(self.channels) * channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def decode(self, maps: list[Tensor]) -> Tensor:
        top = maps[-1]
        pooled = [resize(branch(top), top.shape[-2:]) for branch in self.ppm]
        laterals = [lateral(m) for lateral, m in zip(self.lateral, maps)]
        laterals.append(self.ppm_fuse(torch.cat([top, *pooled], 1)))
        merged = top_down(laterals, mode="bilinear")
        outs = [smooth(p) for smooth, p in zip(self.smooth, merged)] + [merged[-1]]
        size = outs[0].shape[-2:]
        return self.fuse(torch.cat([outs[0], *(resize(o, size) for o in outs[1:])], 1))


def pyramid_levels(spec: HeadSpec, backbone: Backbone, max_levels: int) -> list[int]:
    """The deepest ``max_levels`` maps in the head's stride range (stride >= 4: P2-P5 on a ResNet)."""
    if max_levels < 2:
        raise OptionError(f"head {spec.qualified_name}: max_levels={max_levels}; a pyramid head reads 2 or more")
    return usable_levels(backbone.feature_info, HeadRequirements.from_dict(spec.requires))[-max_levels:]


def build_fpn_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, fpn_channels: int = 256,
                   head_channels: int = 128, max_levels: int = 4, **options: Any) -> BuiltModel:
    """Semantic FPN on ``backbone``'s deepest ``max_levels`` maps at stride >= 4 (:class:`SemanticFPN`)."""
    refuse_options(spec, build_fpn_head, options)
    net = SemanticFPN(backbone, pyramid_levels(spec, backbone, max_levels), num_classes, fpn_channels, head_channels)
    return BuiltModel(net=net, preprocess=preprocess_of(backbone), num_classes=num_classes,
                      head=(PYRAMID_HEAD_PREFIX,))


def build_upernet_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, channels: int = 512,
                       pool_scales: Sequence[int] = (1, 2, 3, 6), max_levels: int = 4, **options: Any) -> BuiltModel:
    """UPerNet on ``backbone``'s deepest ``max_levels`` maps at stride >= 4 (:class:`UPerNet`)."""
    refuse_options(spec, build_upernet_head, options)
    net = UPerNet(backbone, pyramid_levels(spec, backbone, max_levels), num_classes, channels, pool_scales)
    return BuiltModel(net=net, preprocess=preprocess_of(backbone), num_classes=num_classes,
                      head=(PYRAMID_HEAD_PREFIX,))
