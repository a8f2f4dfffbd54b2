"""torchvision classification trunks as zoo backbones (ResNet, ResNeXt, MobileNet, EfficientNet, ConvNeXt,
RegNet, MNASNet).

A trunk is the classifier with its pooling and classifier removed, run as a list of steps (its
top-level stages); the feature map after the last step at each stride is an output. Channels and
strides are read from the modules themselves (convolution and pooling strides, the last layer's
width) and then checked against a real forward by the zoo.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models

from zoo_core.backbone import Backbone, FeatureInfo
from zoo_core.model import PretrainedWeights
from zoo_core.specs import BackboneSpec

from .options import check_model_options
from .tv_weights import describe, preprocess_of, entry

#: the ordered stages of each family (dotted paths; ``"features.*"`` means every child of ``features``)
STEPS: dict[str, tuple[str, ...]] = {
    "resnet": ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    "regnet": ("stem", "trunk_output.*"),
    "mobilenet_v2": ("features.*",), "mobilenet_v3": ("features.*",), "efficientnet": ("features.*",),
    "convnext": ("features.*",), "mnasnet": ("layers.*",),
}
STEPS["resnext"] = STEPS["wide_resnet"] = STEPS["resnet"]
#: modules dropped from the classifier (kept out of the state dict; ignored when loading its weights)
DROPPED = ("fc", "avgpool", "classifier")


class TorchvisionTrunk(Backbone):
    """A torchvision classifier's trunk returning its feature map at every stride (2..32)."""

    def __init__(self, body: nn.Module, family: str) -> None:
        super().__init__()
        for name in DROPPED:
            if hasattr(body, name):
                delattr(body, name)
        self.body = body
        self.step_names = expand_steps(body, STEPS[family])
        steps = [body.get_submodule(n) for n in self.step_names]
        strides, stride, chans, channels = [], 1, 0, []
        self.out_indices: list[int] = []
        for i, step in enumerate(steps):
            stride *= module_stride(step)
            chans = out_channels(step) or chans
            if self.out_indices and strides[-1] == stride:
                self.out_indices[-1], channels[-1] = i, chans
            else:
                self.out_indices.append(i)
                strides.append(stride)
                channels.append(chans)
        self.feature_info = FeatureInfo.of(channels, strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        out, wanted = [], set(self.out_indices)
        for i, name in enumerate(self.step_names[: self.out_indices[-1] + 1]):
            x = self.body.get_submodule(name)(x)
            if i in wanted:
                out.append(x)
        return out


def expand_steps(body: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """``"features.*"`` -> ``["features.0", "features.1", ...]``; plain names pass through."""
    names: list[str] = []
    for p in patterns:
        if p.endswith(".*"):
            parent = p[:-2]
            names += [f"{parent}.{c}" for c, _ in body.get_submodule(parent).named_children()]
        else:
            names.append(p)
    return names


def module_stride(m: nn.Module) -> int:
    """The spatial stride of a module: product along a Sequential, the largest among parallel branches."""
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        s = m.stride
        return int(s[0] if isinstance(s, tuple) else s)
    children = list(m.children())
    if isinstance(m, nn.Sequential):
        out = 1
        for c in children:
            out *= module_stride(c)
        return out
    return max((module_stride(c) for c in children), default=1)


def out_channels(m: nn.Module) -> int:
    """Width of the last layer (conv, linear or norm) inside ``m``; 0 when it has none."""
    width = 0
    for sub in m.modules():
        if isinstance(sub, nn.Conv2d):
            width = sub.out_channels
        elif isinstance(sub, nn.Linear):
            width = sub.out_features
        elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
            width = sub.num_features
        elif isinstance(sub, nn.GroupNorm):
            width = sub.num_channels
        elif isinstance(sub, nn.LayerNorm):
            width = sub.normalized_shape[0]
    return width


def build_backbone(spec: BackboneSpec, *, pretrained: str | None = None, **options: Any) -> TorchvisionTrunk:
    """The trunk of torchvision model ``spec.name`` (random init; ``pretrained`` describes weights)."""
    check_model_options(spec.name, options, what=f"backbone torchvision:{spec.name}")  # unknown: OptionError
    body = models.get_model(spec.name, weights=None, **options)
    trunk = TorchvisionTrunk(body, spec.kwargs["family"])
    if pretrained is not None:
        trunk.pretrained = describe(spec.name, pretrained)
        trunk.preprocess = preprocess_of(entry(spec.name, pretrained))
        trunk.map_state_dict = classifier_keys(trunk)
    return trunk


def classifier_keys(trunk: nn.Module):
    """A ``map_state_dict`` for torchvision's classification files: ``body.`` prefix, classifier dropped."""
    def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in state.items():
            if k.split(".", 1)[0] in DROPPED:
                continue
            out[k if k.startswith("body.") else "body." + k] = v
        return out

    return convert


def weights_info(spec: BackboneSpec) -> list[PretrainedWeights]:
    """The ImageNet weights every tag of a backbone spec names."""
    return [describe(spec.name, tag) for tag in spec.weights]
