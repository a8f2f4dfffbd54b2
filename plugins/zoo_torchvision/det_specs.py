"""Detection models and heads of the torchvision plugin, as data (no torch/torchvision import).

Every row builds through :func:`zoo_torchvision.detection.build`; its tags are the members of the
model's torchvision Weights enum (checked by ``tests/test_detection_models.py``). Labels: the zoo
numbers classes 0..K-1; the network inside uses K+1 outputs with 0 as background (Faster R-CNN) or
unused (RetinaNet, FCOS, SSD), exactly the layout of torchvision's COCO weights, so those load as is.
The composable heads (:data:`DET_HEADS`: ``faster_rcnn``, ``retinanet``, ``fcos``) put torchvision's
detectors on any zoo backbone (:mod:`zoo_torchvision.detection`, :mod:`zoo_torchvision.det_heads`).
"""

from __future__ import annotations

from typing import Any, Callable

BUILDER = "zoo_torchvision.detection:build"
WEIGHTS_INFO = "zoo_torchvision.detection:weights_info"
HEAD_BUILDER = "zoo_torchvision.detection:build_faster_rcnn_head"
PRIORITY = 30
#: the options a saved config may set when a detector is rebuilt from it (sizes, thresholds, sampling)
SAVED_OPTIONS = (
    "as_trained_from", "min_size", "max_size", "image_mean", "image_std", "size_divisible", "fixed_size", "trainable_backbone_layers",
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
    "rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_batch_size_per_image", "rpn_positive_fraction",
    "rpn_score_thresh", "box_score_thresh", "box_nms_thresh", "box_detections_per_img", "box_fg_iou_thresh",
    "box_bg_iou_thresh", "box_batch_size_per_image", "box_positive_fraction", "bbox_reg_weights", "score_thresh",
    "nms_thresh", "detections_per_img", "fg_iou_thresh", "bg_iou_thresh", "topk_candidates",
    "center_sampling_radius", "iou_thresh", "positive_fraction")
#: ... and on the faster_rcnn head (its own widths plus the detector's)
HEAD_SAVED_OPTIONS = SAVED_OPTIONS + ("fpn_channels", "representation_size", "max_levels")
#: ... and on the one-stage heads: RetinaNet's (its widths, the transform's sizes, its thresholds), FCOS's
RETINANET_SAVED_OPTIONS = ("fpn_channels", "max_levels", "min_size", "max_size", "size_divisible", "fixed_size",
                           "score_thresh", "nms_thresh", "detections_per_img", "fg_iou_thresh", "bg_iou_thresh",
                           "topk_candidates")
FCOS_SAVED_OPTIONS = ("fpn_channels", "max_levels", "num_convs", "min_size", "max_size", "size_divisible",
                      "fixed_size", "score_thresh", "nms_thresh", "detections_per_img", "topk_candidates",
                      "center_sampling_radius")

#: state-dict prefix (inside torchvision's model) of the class-dependent layers, per family
HEADS: dict[str, tuple[str, ...]] = {
    "fasterrcnn": ("roi_heads.box_predictor",),
    "retinanet": ("head.classification_head.cls_logits",),
    "fcos": ("head.classification_head.cls_logits",),
    "ssd": ("head.classification_head",),
}

#: state-dict prefix (inside torchvision's model) of the backbone, per family: the ImageNet-pretrained
#: trunk (torchvision's ``trainable_backbone_layers`` acts on the same part). The FPN, RPN and box heads,
#: pretrained on COCO or new, train with the head under freeze_backbone; SSD's ``extra`` layers too.
BACKBONES: dict[str, tuple[str, ...]] = {
    "fasterrcnn": ("backbone.body",),
    "retinanet": ("backbone.body",),
    "fcos": ("backbone.body",),
    "ssd": ("backbone.features",),
}

#: (name, family, default min_size of the resize inside the model, description)
MODELS: tuple[tuple[str, str, int, str], ...] = (
    ("fasterrcnn_resnet50_fpn", "fasterrcnn", 800, "Faster R-CNN, ResNet-50 FPN (COCO box mAP 37.0)"),
    ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn", 800, "Faster R-CNN v2, ResNet-50 FPN (COCO box mAP 46.7)"),
    ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn", 800,
     "Faster R-CNN, MobileNetV3-Large FPN (COCO box mAP 32.8)"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn", 320,
     "Faster R-CNN, MobileNetV3-Large FPN at 320 px, for CPUs and phones (COCO box mAP 22.8)"),
    ("retinanet_resnet50_fpn", "retinanet", 800, "RetinaNet, ResNet-50 FPN (COCO box mAP 36.4)"),
    ("retinanet_resnet50_fpn_v2", "retinanet", 800, "RetinaNet v2, ResNet-50 FPN (COCO box mAP 41.5)"),
    ("fcos_resnet50_fpn", "fcos", 800, "FCOS, ResNet-50 FPN, anchor-free (COCO box mAP 39.2)"),
    ("ssd300_vgg16", "ssd", 300, "SSD300, VGG-16 (COCO box mAP 25.1)"),
    ("ssdlite320_mobilenet_v3_large", "ssd", 320, "SSDlite320, MobileNetV3-Large (COCO box mAP 21.3)"),
)

#: the faster_rcnn head: FPN over any backbone with 2+ maps at stride >= 4 (a single stride-16 map,
#: e.g. a ViT's, gets the simple feature pyramid in front)
FASTER_RCNN_REQUIRES = {"min_levels": 2, "min_stride": 4, "single_level_ok": False}
#: retinanet and fcos (torchvision's P3-P7 layout): an FPN over 2+ maps at stride >= 8 (P3, P4, P5 when
#: the backbone has them), P6 and P7 added above the deepest; a ViT/16 gets the simple feature pyramid
ONE_STAGE_REQUIRES = {"min_levels": 2, "min_stride": 8, "single_level_ok": False}

#: (head name, builder, requires, saved options, description) of the composable detection heads
DET_HEADS: tuple[tuple[str, str, dict[str, Any], tuple[str, ...], str], ...] = (
    ("faster_rcnn", HEAD_BUILDER, FASTER_RCNN_REQUIRES, HEAD_SAVED_OPTIONS,
     "Faster R-CNN (torchvision ops) with an FPN over the backbone's maps"),
    ("retinanet", "zoo_torchvision.det_heads:build_retinanet_head", ONE_STAGE_REQUIRES, RETINANET_SAVED_OPTIONS,
     "RetinaNet (torchvision; focal loss, 9 anchors per location) with an FPN P3-P7 over the backbone's maps"),
    ("fcos", "zoo_torchvision.det_heads:build_fcos_head", ONE_STAGE_REQUIRES, FCOS_SAVED_OPTIONS,
     "FCOS (torchvision; anchor-free, centerness) with an FPN P3-P7 over the backbone's maps"),
)


def register_models(register: Callable[..., Any]) -> None:
    """One spec per row of :data:`MODELS`."""
    for name, family, min_size, description in MODELS:
        register(name, BUILDER, tasks=("detection",), priority=PRIORITY, input_size=(3, min_size, min_size),
                 weights=("COCO_V1",), weights_info=WEIGHTS_INFO, kwargs={"family": family},
                 description=description, saved_options=SAVED_OPTIONS)


def register_heads(register: Callable[..., Any]) -> None:
    """One head per row of :data:`DET_HEADS`: torchvision's Faster R-CNN (RPN + RoIAlign box head),
    RetinaNet and FCOS on any compatible backbone."""
    for name, builder, requires, saved, description in DET_HEADS:
        register(name, builder, task="detection", requires=requires, priority=PRIORITY, description=description,
                 saved_options=saved)
