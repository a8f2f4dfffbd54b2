"""Instance-segmentation models and heads of the torchvision plugin, as data (no torch/torchvision import).

Mask R-CNN by name (``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn_v2``, each with torchvision's
``COCO_V1`` weights described, never downloaded here) and the composable ``mask_rcnn`` head on any
backbone the ``faster_rcnn`` head takes (a ViT through the simple feature pyramid). Both build through
:mod:`zoo_torchvision.instance`. Labels: the zoo numbers classes 0..K-1; inside, torchvision's model has
K+1 box and mask outputs with 0 as background, exactly the layout of its COCO weights.
"""

from __future__ import annotations

from typing import Any, Callable

from .det_specs import FASTER_RCNN_REQUIRES, HEAD_SAVED_OPTIONS, SAVED_OPTIONS

BUILDER = "zoo_torchvision.instance:build"
WEIGHTS_INFO = "zoo_torchvision.detection:weights_info"
HEAD_BUILDER = "zoo_torchvision.instance:build_mask_rcnn_head"
PRIORITY = 30
TASK = "instance"
#: the head's own widths, saved with a composed model beside the faster_rcnn head's
MASK_HEAD_SAVED_OPTIONS = HEAD_SAVED_OPTIONS + ("mask_channels", "mask_layers")

#: state-dict prefixes (inside torchvision's model) of the class-dependent layers: the box predictor and
#: the mask predictor's last convolution (its 2x upsampling ``conv5_mask`` does not depend on the classes)
HEADS: tuple[str, ...] = ("roi_heads.box_predictor", "roi_heads.mask_predictor.mask_fcn_logits")
#: state-dict prefix of the ImageNet-pretrained trunk (what freeze_backbone and trainable layers act on)
BACKBONES: tuple[str, ...] = ("backbone.body",)

#: (name, default min_size of the resize inside the model, description)
MODELS: tuple[tuple[str, int, str], ...] = (
    ("maskrcnn_resnet50_fpn", 800, "Mask R-CNN, ResNet-50 FPN (COCO box mAP 37.9, mask mAP 34.6)"),
    ("maskrcnn_resnet50_fpn_v2", 800, "Mask R-CNN v2, ResNet-50 FPN (COCO box mAP 47.4, mask mAP 41.8)"),
)


def register_models(register: Callable[..., Any]) -> None:
    """One spec per row of :data:`MODELS`, for the ``instance`` task."""
    for name, min_size, description in MODELS:
        register(name, BUILDER, tasks=(TASK,), priority=PRIORITY, input_size=(3, min_size, min_size),
                 weights=("COCO_V1",), weights_info=WEIGHTS_INFO, description=description,
                 saved_options=SAVED_OPTIONS)


def register_heads(register: Callable[..., Any]) -> None:
    """``mask_rcnn``: Faster R-CNN's FPN, RPN and box head plus torchvision's mask head, on any backbone the
    ``faster_rcnn`` head takes."""
    register("mask_rcnn", HEAD_BUILDER, task=TASK, requires=FASTER_RCNN_REQUIRES, priority=PRIORITY,
             description="Mask R-CNN (torchvision ops): FPN, RPN, RoIAlign box and mask heads over the backbone's maps",
             saved_options=MASK_HEAD_SAVED_OPTIONS)
