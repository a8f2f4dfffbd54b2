"""The one-stage ``retinanet`` and ``fcos`` heads on any zoo backbone (torchvision's implementations).

Composed like ``faster_rcnn`` (:func:`zoo_torchvision.detection.build_faster_rcnn_head`): an FPN
(:class:`~zoo_torchvision.detection.FPNOverBackbone`) over the backbone's maps at stride >= 8 (P3-P5
on a ResNet or ConvNeXt, the stride-8/16/32 maps of the simple feature pyramid on a ViT), plus the P6
and P7 levels torchvision's RetinaNet and FCOS add (``LastLevelP6P7`` over P5), then torchvision's
``RetinaNet`` / ``FCOS`` with their own heads, losses (focal loss; FCOS's GIoU and centerness) and
post-processing. The trunk is the pretrained backbone; the FPN and heads are new and train under
``freeze_backbone``.

Labels: torchvision's COCO RetinaNet/FCOS keep an unused class 0 so their weights load; these heads
never load COCO weights, so their class outputs are exactly the zoo's 0..K-1 (no offset).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn
from torchvision.models import detection as tvd
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from zoo_core.backbone import Backbone, HeadRequirements, usable_levels
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel
from zoo_core.specs import HeadSpec

from .detection import EXPORT_HINTS, PREFIX, Detector, FPNOverBackbone, preprocess_of
from .options import check_head_options

#: the class-dependent layer of both heads (re-initialised for another class count)
CLS_LOGITS = "head.classification_head.cls_logits"
#: what each builder makes itself: never a user option
BUILT = ("anchor_generator", "head")
#: P6 and P7 sit at 2x and 4x the deepest backbone level's stride
EXTRA_LEVELS = (2, 4)
#: RetinaNet's three anchor scales per level, times its 4x-stride base size (torchvision: 32 at P3)
RETINANET_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))


def pyramid_strides(backbone: Backbone, spec: HeadSpec, max_levels: int) -> tuple[list[int], list[int]]:
    """The backbone levels the FPN reads (the shallowest ``max_levels`` at stride >= 8, i.e. P3 up) and
    the stride of every pyramid level including P6 and P7."""
    if max_levels < 1:
        raise OptionError(f"head {spec.qualified_name}: max_levels={max_levels}; it must be >= 1 (3 reads P3-P5)")
    levels = usable_levels(backbone.feature_info, HeadRequirements.from_dict(spec.requires))[:max_levels]
    strides = [int(backbone.feature_info.reduction(i)) for i in levels]  # type: ignore[arg-type]
    return levels, strides + [strides[-1] * k for k in EXTRA_LEVELS]


def _compose(spec: HeadSpec, builder: Callable[..., Any], detector: type, *, backbone: Backbone, num_classes: int,
             min_size: int, max_size: int, fpn_channels: int, max_levels: int,
             make: Callable[[list[int]], tuple[nn.Module, nn.Module]], options: dict[str, Any]) -> BuiltModel:
    """FPN (P3-P7) over ``backbone`` + ``detector`` (RetinaNet or FCOS) with ``make(strides)``'s
    (anchor generator, head), wrapped in the zoo's :class:`Detector`."""
    check_head_options(builder, options, what=f"head {spec.qualified_name}", detector=detector, built=BUILT)
    levels, strides = pyramid_strides(backbone, spec, max_levels)
    body = FPNOverBackbone(backbone, levels, fpn_channels, extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
    anchors, head = make(strides)
    pre = backbone.preprocess
    if backbone.fixed_input_size is not None:
        options.setdefault("fixed_size", tuple(backbone.fixed_input_size))
        min_size = max_size = max(backbone.fixed_input_size)
    net = detector(body, num_classes=num_classes, min_size=min_size, max_size=max_size, image_mean=list(pre.mean),
                   image_std=list(pre.std), anchor_generator=anchors, head=head, **options)
    return BuiltModel(net=Detector(net, label_offset=0), preprocess=preprocess_of(net), num_classes=num_classes,
                      head=(PREFIX + CLS_LOGITS,), export_formats=("onnx",), extra={"export": EXPORT_HINTS})


def build_retinanet_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, min_size: int = 800,
                         max_size: int = 1333, fpn_channels: int = 256, max_levels: int = 3,
                         **options: Any) -> BuiltModel:
    """RetinaNet on ``backbone``: FPN P3-P7 (``fpn_channels`` wide), 9 anchors per location.

    Anchors as torchvision's: 4x each level's stride (32..512 on a ResNet) at scales 2^0, 2^(1/3),
    2^(2/3) and ratios 0.5, 1, 2. ``options`` go to torchvision's ``RetinaNet`` (``score_thresh``,
    ``nms_thresh``, ``detections_per_img``, ``fg_iou_thresh``, ``topk_candidates``...).
    """
    def make(strides: list[int]) -> tuple[nn.Module, nn.Module]:
        sizes = tuple(tuple(int(4 * s * k) for k in RETINANET_SCALES) for s in strides)
        anchors = tvd.anchor_utils.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        return anchors, tvd.retinanet.RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes)

    return _compose(spec, build_retinanet_head, tvd.RetinaNet, backbone=backbone, num_classes=num_classes,
                    min_size=min_size, max_size=max_size, fpn_channels=fpn_channels, max_levels=max_levels,
                    make=make, options=options)


def build_fcos_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, min_size: int = 800,
                    max_size: int = 1333, fpn_channels: int = 256, max_levels: int = 3, num_convs: int = 4,
                    **options: Any) -> BuiltModel:
    """FCOS (anchor-free) on ``backbone``: FPN P3-P7, one location per pixel of each level.

    As torchvision's: each level's "anchor" is one box of its stride's size (8..128 on a ResNet), the
    head has ``num_convs`` GroupNorm(32) conv layers per branch, so ``fpn_channels`` must be a multiple
    of 32. ``options`` go to torchvision's ``FCOS`` (``score_thresh``, ``center_sampling_radius``...).
    """
    if fpn_channels % 32:
        raise OptionError(f"head {spec.qualified_name}: fpn_channels={fpn_channels}, but FCOS's head normalises "
                          "with GroupNorm(32 groups): use a multiple of 32 (e.g. fpn_channels=32)")

    def make(strides: list[int]) -> tuple[nn.Module, nn.Module]:
        anchors = tvd.anchor_utils.AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        return anchors, tvd.fcos.FCOSHead(fpn_channels, 1, num_classes, num_convs=num_convs)

    return _compose(spec, build_fcos_head, tvd.FCOS, backbone=backbone, num_classes=num_classes,
                    min_size=min_size, max_size=max_size, fpn_channels=fpn_channels, max_levels=max_levels,
                    make=make, options=options)


__all__ = ["build_retinanet_head", "build_fcos_head", "pyramid_strides", "CLS_LOGITS"]
