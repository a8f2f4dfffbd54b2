"""A segmentation head: zoo.build puts it on any backbone whose feature maps it accepts."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core.backbone import Backbone, HeadRequirements, usable_levels
from zoo_core.model import BuiltModel


class LiteSegNet(nn.Module):
    """The backbone, then a 3x3 conv on one of its maps and a 1x1 classifier; logits at the input size."""

    def __init__(self, backbone: Backbone, level: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone  # the module zoo.build gave the builder, as it is: never a copy
        self.level = level
        self.decoder = nn.Sequential(
            nn.Conv2d(backbone.feature_info.channels(level), channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.backbone(x)[self.level]  # the backbone returns a list of maps, shallowest first
        logits = self.classifier(self.decoder(feature))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, C, H, W)


def build_liteseg(spec: Any, *, backbone: Backbone, num_classes: int, channels: int = 64) -> BuiltModel:
    """``zoo.build("segmentation", backbone=..., head="liteseg", num_classes=N, channels=64)``.

    ``spec.requires`` is the dict the plugin registered; zoo.build already checked that the backbone
    meets it, so there is a map in the stride range: the head uses the deepest one.
    """
    level = usable_levels(backbone.feature_info, HeadRequirements.from_dict(spec.requires))[-1]
    net = LiteSegNet(backbone, level, channels, num_classes)
    return BuiltModel(net=net, num_classes=num_classes, head=("classifier",), preprocess=backbone.preprocess,
                      export_formats=("onnx",))
