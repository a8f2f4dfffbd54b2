"""Keypoint models and heads of the torchvision plugin, as data (no torch/torchvision import).

Keypoint R-CNN by name (``keypointrcnn_resnet50_fpn``, with the tags of torchvision's
``KeypointRCNN_ResNet50_FPN_Weights``, described, never downloaded here) and the composable
``keypoint_rcnn`` head on any backbone the ``faster_rcnn`` head takes. Both build through
:mod:`zoo_torchvision.keypoints`. Labels: the zoo numbers classes 0..K-1 (COCO's weights: one,
``person``); inside, torchvision's model has K+1 box outputs with 0 as background. The keypoints are
builder options: ``keypoint_names`` (default COCO's 17 person keypoints, as the weights), ``skeleton``
(0-based pairs), or just ``num_keypoints``.
"""

from __future__ import annotations

from typing import Any, Callable

from .det_specs import FASTER_RCNN_REQUIRES, HEAD_SAVED_OPTIONS, SAVED_OPTIONS

BUILDER = "zoo_torchvision.keypoints:build"
WEIGHTS_INFO = "zoo_torchvision.detection:weights_info"
HEAD_BUILDER = "zoo_torchvision.keypoints:build_keypoint_rcnn_head"
PRIORITY = 30
TASK = "keypoints"
#: the keypoint layout and torchvision's keypoint-branch options, saved with the model
KEYPOINT_OPTIONS = ("keypoint_names", "skeleton", "num_keypoints")
KP_SAVED_OPTIONS = SAVED_OPTIONS + KEYPOINT_OPTIONS
KP_HEAD_SAVED_OPTIONS = HEAD_SAVED_OPTIONS + KEYPOINT_OPTIONS + ("keypoint_channels", "keypoint_layers")

#: state-dict prefixes (inside torchvision's model) of the layers that depend on the classes or the
#: keypoints: the box predictor and the keypoint predictor (one heatmap per keypoint)
HEADS: tuple[str, ...] = ("roi_heads.box_predictor", "roi_heads.keypoint_predictor")
#: state-dict prefix of the ImageNet-pretrained trunk (what freeze_backbone and trainable layers act on)
BACKBONES: tuple[str, ...] = ("backbone.body",)

#: (name, default min_size of the resize inside the model, weights tags, description)
MODELS: tuple[tuple[str, int, tuple[str, ...], str], ...] = (
    ("keypointrcnn_resnet50_fpn", 800, ("COCO_V1", "COCO_LEGACY"),
     "Keypoint R-CNN, ResNet-50 FPN, 17 COCO person keypoints (COCO keypoint mAP 65.0, box mAP 54.6)"),
)


def register_models(register: Callable[..., Any]) -> None:
    """One spec per row of :data:`MODELS`, for the ``keypoints`` task."""
    for name, min_size, tags, description in MODELS:
        register(name, BUILDER, tasks=(TASK,), priority=PRIORITY, input_size=(3, min_size, min_size),
                 weights=tags, weights_info=WEIGHTS_INFO, description=description, saved_options=KP_SAVED_OPTIONS)


def register_heads(register: Callable[..., Any]) -> None:
    """``keypoint_rcnn``: Faster R-CNN's FPN, RPN and box head plus torchvision's keypoint head, on any backbone
    the ``faster_rcnn`` head takes."""
    register("keypoint_rcnn", HEAD_BUILDER, task=TASK, requires=FASTER_RCNN_REQUIRES, priority=PRIORITY,
             description="Keypoint R-CNN (torchvision ops): FPN, RPN, RoIAlign box and keypoint heads over the "
                         "backbone's maps", saved_options=KP_HEAD_SAVED_OPTIONS)
