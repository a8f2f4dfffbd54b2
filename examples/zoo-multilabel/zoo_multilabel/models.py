"""The ``mlcnn`` network: a small CNN with one output logit per label."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo_core.model import BuiltModel, Preprocess


class MultiLabelCNN(nn.Module):
    """Conv-BN-ReLU stages (each halving the resolution), global average pooling, a linear head."""

    def __init__(self, widths: Sequence[int], num_labels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for width in widths:
            layers += [nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            prev = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def build_mlcnn(spec: Any, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
                **options: Any) -> BuiltModel:
    """Build an ``mlcnn`` variant (``spec.kwargs["widths"]``) with ``num_classes`` labels (default 4)."""
    if pretrained is not None:
        raise ValueError(f"{spec.name} has no pretrained weights (asked for {pretrained!r})")
    n = num_classes or 4
    return BuiltModel(net=MultiLabelCNN(spec.kwargs["widths"], n), num_classes=n, head=("head",),
                      backbone=("features",),
                      preprocess=Preprocess(input_size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
                      export_formats=("onnx", "torchscript"))
