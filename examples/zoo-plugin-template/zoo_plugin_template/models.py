"""The network and its builder. Imported only when a model of this plugin is built."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo_core.model import BuiltModel, Preprocess


class TinyCNN(nn.Module):
    """Conv-BN-ReLU stages, each halving the resolution, then global pooling and a linear classifier."""

    def __init__(self, widths: Sequence[int], num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for width in widths:
            layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            prev = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build_tinycnn(spec: Any, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
                  **options: Any) -> BuiltModel:
    """Build a ``tinycnn`` variant: ``spec.kwargs`` holds the variant's widths.

    The zoo calls this with ``pretrained=None`` (random init) or a weights tag the spec declared;
    this family publishes no weights. ``head`` names the classifier's state-dict prefix so that
    ``num_classes=`` re-initialises only it; ``backbone`` names the feature extractor's, the part the
    Trainer's ``freeze_backbone`` freezes and ``backbone_lr_mult`` slows.
    """
    if pretrained is not None:
        raise ValueError(f"{spec.name} has no pretrained weights (asked for {pretrained!r})")
    n = num_classes or 10
    net = TinyCNN(spec.kwargs["widths"], n)
    return BuiltModel(net=net, num_classes=n, head=("classifier",), backbone=("features",),
                      preprocess=Preprocess(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
