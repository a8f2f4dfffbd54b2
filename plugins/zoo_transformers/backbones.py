"""DINOv2 and SigLIP image towers from transformers as zoo backbones: one feature map each.

A plain ViT gives one map: its patch tokens laid out on the patch grid, ``(B, C, H/p, W/p)``, after the
model's final LayerNorm (DINOv2's class token is left out). Its stride is the patch size: 14 for DINOv2,
16 for SigLIP. Position embeddings are interpolated to the input's grid, so any input size works (sides
are floored to a multiple of the patch).

Heads that read one map (``deeplabv3``) sit on either directly. Heads that need a pyramid get the zoo's
simple feature pyramid in front, which needs a stride divisible by 4: SigLIP's 16 fits, DINOv2's 14 does not
and such a pairing is refused with that reason. ``feature_stride=16`` resamples DINOv2's map (bilinear) to
stride 16 so pyramid heads fit too (the map is then ``input / 16``; with the native stride nothing is resampled).

Networks are built from configs with random weights (nothing downloads); a tag's Hub ``model.safetensors``
is described for the zoo to fetch, and its keys renamed as transformers renames them
(:func:`zoo_transformers.hf.hub_keys`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from zoo_core.backbone import Backbone, FeatureInfo
from zoo_core.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess, PretrainedWeights
from zoo_core.specs import BackboneSpec, check_options

from .hf import hub_keys, hub_weights, require_transformers
from .seg_catalog import BACKBONES

PREFIX = "hf."
#: the transformers classes of each family, and whether its token sequence starts with a class token
FAMILIES: dict[str, dict[str, Any]] = {
    "dinov2": {"model": "Dinov2Model", "config": "Dinov2Config", "class_token": True, "interpolate_arg": False,
               "preprocess": Preprocess(input_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                        interpolation="bicubic")},
    "siglip": {"model": "SiglipVisionModel", "config": "SiglipVisionConfig", "class_token": False,
               "interpolate_arg": True, "extra_config": {"vision_use_head": False},
               "preprocess": Preprocess(input_size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                        interpolation="bicubic")},
}


class ViTPatchBackbone(Backbone):
    """A transformers ViT (``hf``) whose patch tokens become one ``(B, C, H/p, W/p)`` map.

    ``stride``: the declared stride of the map; when it differs from the patch size the patch grid is
    resampled (bilinear) to ``input // stride``.
    """

    def __init__(self, hf: nn.Module, *, patch: int, channels: int, class_token: bool, interpolate_arg: bool,
                 stride: int | None = None) -> None:
        super().__init__()
        self.hf = hf
        self.patch, self.class_token, self.interpolate_arg = patch, class_token, interpolate_arg
        self.stride = int(stride or patch)
        self.feature_info = FeatureInfo(((channels, self.stride),))

    def forward(self, x: Tensor) -> list[Tensor]:
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate_arg else {}
        tokens = self.hf(pixel_values=x, return_dict=True, **kwargs).last_hidden_state
        if self.class_token:
            tokens = tokens[:, 1:]
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], h, w)
        if self.stride != self.patch:
            fmap = F.interpolate(fmap, size=(x.shape[-2] // self.stride, x.shape[-1] // self.stride),
                                 mode="bilinear", align_corners=False)
        return [fmap]


def describe(spec: BackboneSpec, tag: str) -> PretrainedWeights:
    """Tag ``tag`` of backbone ``spec``: its Hub ``model.safetensors`` and licence."""
    row = BACKBONES[spec.name]
    t = row["tags"][tag]
    return hub_weights(t["repo"], tag, license=t["license"], preprocess=FAMILIES[row["family"]]["preprocess"])


def weights_info(spec: BackboneSpec) -> list[PretrainedWeights]:
    """Every tag of a DINOv2/SigLIP backbone, described (``zoo.list_weights``, ``zoo pull``)."""
    return [describe(spec, tag) for tag in spec.weights]


def build_backbone(spec: BackboneSpec, *, pretrained: str | None = None,
                   image_size: int | Sequence[int] | None = None, feature_stride: int | None = None,
                   **options: Any) -> ViTPatchBackbone:
    """Backbone ``spec.name`` with random weights (``pretrained`` describes the tag's file for the zoo).

    ``image_size``: the preprocessing size (default 224; the position embeddings follow any size).
    ``feature_stride``: the output map's stride (default the patch size; see the module doc).
    ``options``: fields of the transformers config (``hidden_size``, ``num_hidden_layers``...; unknown
    ones are an OptionError).
    """
    tr = require_transformers(f"backbone {spec.qualified_name}")
    row = BACKBONES[spec.name]
    fam = FAMILIES[row["family"]]
    config_cls = getattr(tr, fam["config"])
    check_options(config_cls.__init__, options, what=f"backbone {spec.qualified_name}")
    config = config_cls(**{**row["config"], **fam.get("extra_config", {}), **options})
    if feature_stride is not None and int(feature_stride) < 1:
        raise ValueError(f"backbone {spec.qualified_name}: feature_stride must be a positive number of pixels, "
                         f"got {feature_stride}")
    hf = getattr(tr, fam["model"])(config)
    bb = ViTPatchBackbone(hf, patch=int(config.patch_size), channels=int(config.hidden_size),
                          class_token=fam["class_token"], interpolate_arg=fam["interpolate_arg"],
                          stride=feature_stride)
    pre: Preprocess = fam["preprocess"]
    bb.preprocess = pre if image_size is None else pre.with_size(image_size)  # type: ignore[arg-type]
    bb.in_chans = int(config.num_channels)
    drop = tuple(d for t in row["tags"].values() for d in t.get("drop", ()))
    bb.map_state_dict = hub_keys(hf, PREFIX, drop=drop)
    if pretrained is not None:
        bb.pretrained = describe(spec, pretrained)
    return bb
