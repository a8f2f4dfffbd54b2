"""Segmentation models and heads of the torchvision plugin, as data (no torch/torchvision import).

Called by ``dense_specs``. Every model row builds through :func:`zoo_torchvision.segmentation.build`;
its weights tags are the members of the model's torchvision Weights enum (checked by
``tests/test_segmentation_models.py``). The ``deeplabv3`` head (torchvision's ASPP ``DeepLabHead``)
sits on any backbone: it reads one feature map, so a ViT's single stride-16 map feeds it directly.
The ``fpn`` and ``upernet`` heads (:mod:`zoo_torchvision.seg_heads`) fuse a pyramid of maps.
"""

from __future__ import annotations

from typing import Any, Callable

from zoo_core.specs import EXPORT_FORMATS

BUILDER = "zoo_torchvision.segmentation:build"
WEIGHTS_INFO = "zoo_torchvision.segmentation:weights_info"
HEAD_BUILDER = "zoo_torchvision.seg_heads:build_deeplabv3_head"
PRIORITY = 30
INPUT_SIZE = (3, 520, 520)

#: (name, family, description)
MODELS: tuple[tuple[str, str, str], ...] = (
    ("deeplabv3_resnet50", "deeplabv3", "DeepLabV3, ResNet-50, with auxiliary FCN head (COCO-VOC mIoU 66.4)"),
    ("deeplabv3_resnet101", "deeplabv3", "DeepLabV3, ResNet-101, with auxiliary FCN head (COCO-VOC mIoU 67.4)"),
    ("deeplabv3_mobilenet_v3_large", "deeplabv3",
     "DeepLabV3, MobileNetV3-Large, with auxiliary FCN head (COCO-VOC mIoU 60.3)"),
    ("fcn_resnet50", "fcn", "FCN, ResNet-50, with auxiliary head (COCO-VOC mIoU 60.5)"),
    ("fcn_resnet101", "fcn", "FCN, ResNet-101, with auxiliary head (COCO-VOC mIoU 63.7)"),
    ("lraspp_mobilenet_v3_large", "lraspp", "Lite R-ASPP, MobileNetV3-Large, for phones (COCO-VOC mIoU 57.9)"),
)
WEIGHTS = ("COCO_WITH_VOC_LABELS_V1",)

#: the deeplabv3 head reads the deepest map (any stride): one map is enough
DEEPLABV3_REQUIRES = {"min_levels": 1}
#: the fpn and upernet heads fuse a pyramid: 2+ maps at stride >= 4 (P2-P5 on a ResNet); a ViT/16 gets
#: the simple feature pyramid in front
PYRAMID_REQUIRES = {"min_levels": 2, "min_stride": 4, "single_level_ok": False}

#: (head name, builder, requires, saved options, description) of the composable segmentation heads
SEG_HEADS: tuple[tuple[str, str, dict[str, Any], tuple[str, ...], str], ...] = (
    ("deeplabv3", HEAD_BUILDER, DEEPLABV3_REQUIRES, ("level", "atrous_rates"),
     "DeepLabV3 ASPP head (torchvision's DeepLabHead) on the backbone's deepest feature map"),
    ("fpn", "zoo_torchvision.seg_heads:build_fpn_head", PYRAMID_REQUIRES,
     ("fpn_channels", "head_channels", "max_levels"),
     "Semantic FPN (Panoptic FPN's semantic branch, Kirillov et al.) over the backbone's pyramid; also an smp "
     "*model* `fpn` (zoo.load('fpn')), this is the head for zoo.build(..., head='fpn')"),
    ("upernet", "zoo_torchvision.seg_heads:build_upernet_head", PYRAMID_REQUIRES,
     ("channels", "pool_scales", "max_levels"),
     "UPerNet (pyramid pooling + FPN fusion, Xiao et al.) over the backbone's pyramid; also an smp *model* "
     "`upernet` (zoo.load('upernet')), this is the head for zoo.build(..., head='upernet')"),
)


def register_models(register: Callable[..., Any]) -> None:
    """One spec per row of :data:`MODELS`."""
    for name, family, description in MODELS:
        register(name, BUILDER, tasks=("segmentation",), priority=PRIORITY, input_size=INPUT_SIZE, weights=WEIGHTS,
                 weights_info=WEIGHTS_INFO, kwargs={"family": family}, export_formats=EXPORT_FORMATS,
                 description=description, saved_options=("aux_loss", "image_size"))


def register_heads(register: Callable[..., Any]) -> None:
    """One head per row of :data:`SEG_HEADS`: ``deeplabv3`` (torchvision's ASPP head on the deepest map of
    any backbone, ViT included), ``fpn`` and ``upernet`` (on any pyramid; a ViT through the simple
    feature pyramid)."""
    for name, builder, requires, saved, description in SEG_HEADS:
        register(name, builder, task="segmentation", requires=requires, priority=PRIORITY, description=description,
                 saved_options=saved)
