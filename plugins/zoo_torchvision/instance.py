"""torchvision's Mask R-CNN in the zoo, by name and as the ``mask_rcnn`` head on any zoo backbone.

Both are wrapped in :class:`~zoo_torchvision.detection.Detector` (zoo labels 0..K-1 outside, K+1 outputs
with background 0 inside, the layout of torchvision's COCO weights): in training mode ``forward(images,
targets)`` takes targets with ``masks`` ``(N, H, W)`` and returns torchvision's loss dict (``loss_mask``
beside the box and RPN losses); in eval mode each image's dict holds ``boxes``, ``scores``, ``labels`` and
``masks`` ``(N, 1, H, W)``, probabilities pasted at that input image's size. Nothing here downloads:
``COCO_V1`` weights are described (:func:`~zoo_torchvision.detection.describe`) for the zoo to fetch
offline-first, and torchvision's own state-dict keys load (:func:`~zoo_torchvision.detection.torchvision_keys`).
ONNX export goes through the TorchScript-based exporter at a fixed batch, as for the other detectors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from zoo_core.backbone import Backbone
from zoo_core.model import BuiltModel
from zoo_core.specs import HeadSpec, ModelSpec

from .detection import PREFIX, build_faster_rcnn_head, torchvision_detector
from .inst_specs import BACKBONES, HEADS

#: the mask predictor's class-dependent 1x1 convolution (its state-dict prefix under the Detector wrapper)
MASK_LOGITS = PREFIX + "roi_heads.mask_predictor.mask_fcn_logits"


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          **options: Any) -> BuiltModel:
    """Build Mask R-CNN ``spec.name`` with ``num_classes`` zoo classes (default: COCO's 90 category slots).

    ``options`` go to torchvision's constructor (``min_size``, ``box_score_thresh``...), checked first. With a
    weights tag the trunk's BatchNorm is frozen and its first two stages too, as torchvision fine-tunes.
    """
    return torchvision_detector(spec, num_classes=num_classes, pretrained=pretrained, options=options, head=HEADS,
                                backbone=BACKBONES)


def build_mask_rcnn_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, mask_channels: int = 256,
                         mask_layers: int = 4, **options: Any) -> BuiltModel:
    """Mask R-CNN on ``backbone``: the ``faster_rcnn`` head (its FPN, anchors, RPN and box head, its options:
    ``min_size``, ``fpn_channels``, ``representation_size``...) plus torchvision's mask branch, which is what
    ``torchvision.models.detection.MaskRCNN`` adds to ``FasterRCNN``: a 14x14 RoIAlign over the same FPN
    levels, ``mask_layers`` 3x3 convolutions of ``mask_channels`` and a per-class 28x28 mask predictor."""
    if int(mask_channels) < 1 or int(mask_layers) < 1:
        from zoo_core.errors import OptionError

        raise OptionError(f"head {spec.qualified_name}: mask_channels={mask_channels!r} and "
                          f"mask_layers={mask_layers!r} must be whole numbers >= 1")
    built = build_faster_rcnn_head(spec, backbone=backbone, num_classes=num_classes, **options)
    net = built.net.detector
    heads = net.roi_heads
    heads.mask_roi_pool = MultiScaleRoIAlign(list(heads.box_roi_pool.featmap_names), output_size=14, sampling_ratio=2)
    heads.mask_head = MaskRCNNHeads(net.backbone.out_channels, [int(mask_channels)] * int(mask_layers), 1)
    heads.mask_predictor = MaskRCNNPredictor(int(mask_channels), int(mask_channels), num_classes + 1)
    return dataclasses.replace(built, head=(*built.head, MASK_LOGITS))

