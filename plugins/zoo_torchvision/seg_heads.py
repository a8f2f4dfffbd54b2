"""The ``deeplabv3`` head: torchvision's ASPP ``DeepLabHead`` on the deepest map of any zoo backbone.

The head reads one feature map (the deepest, or ``level=``), so a ViT's single stride-16 patch grid
feeds it without an adapter; logits are upsampled (bilinear) to the input size, so the network's
output has the input's height and width whatever the backbone's stride.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from zoo_core.backbone import Backbone
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel
from zoo_core.specs import HeadSpec

#: the class-dependent layer (last 1x1 conv) of DeepLabHead, re-initialised for another class count
HEAD_PREFIX = "classifier.4"


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
    if options:
        raise OptionError(f"head {spec.qualified_name} got unknown option(s) {sorted(options)}; "
                          "known: level, atrous_rates")
    if not -len(backbone.feature_info) <= level < len(backbone.feature_info):
        raise ValueError(f"head {spec.qualified_name}: level={level} but the backbone has "
                         f"{len(backbone.feature_info)} maps ({backbone.feature_info})")
    net = DeepLabV3OnBackbone(backbone, num_classes, level, atrous_rates)
    pre = backbone.preprocess
    if backbone.fixed_input_size is not None:
        pre = pre.with_size(backbone.fixed_input_size)
    return BuiltModel(net=net, preprocess=pre, num_classes=num_classes, head=(HEAD_PREFIX,))
