"""torchvision's Keypoint R-CNN in the zoo, by name and as the ``keypoint_rcnn`` head on any zoo backbone.

Both are wrapped in :class:`KeypointDetector`, a :class:`~zoo_torchvision.detection.Detector` (zoo labels
0..K-1 outside, K+1 box outputs with background 0 inside, the layout of torchvision's COCO weights) that
names its points (``keypoint_names``, ``skeleton``: what the ``keypoints`` task reads). In training mode
``forward(images, targets)`` takes targets with ``keypoints`` ``(N, P, 3)`` and returns torchvision's loss
dict (``loss_keypoint`` beside the box and RPN losses); in eval mode each image's dict holds ``boxes``,
``scores``, ``labels``, ``keypoints`` ``(N, P, 3)`` in that input image's pixels and ``keypoints_scores``.

The points are builder options (saved with the model): ``keypoint_names`` (default: COCO's 17 person
keypoints, those of torchvision's weights), or ``num_keypoints`` alone (points named ``kp_0``...), and
``skeleton`` (0-based index pairs, drawn between points). Nothing here downloads: the weights tags of
``KeypointRCNN_ResNet50_FPN_Weights`` are described (:func:`~zoo_torchvision.detection.describe`) for the
zoo to fetch offline-first, and torchvision's own state-dict keys load
(:func:`~zoo_torchvision.detection.torchvision_keys`). ONNX export goes through the TorchScript-based
exporter at a fixed batch, as for the other detectors.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Sequence

from torch import nn
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from zoo_core.backbone import Backbone
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel
from zoo_core.specs import HeadSpec, ModelSpec

from .detection import PREFIX, Detector, build_faster_rcnn_head, torchvision_detector
from .kp_specs import BACKBONES, HEADS
from .tv_weights import entry

#: the keypoint predictor (one heatmap per point: depends on their number), under the Detector wrapper
KEYPOINT_PREDICTOR = PREFIX + "roi_heads.keypoint_predictor"
#: torchvision's Weights enum of the model whose COCO keypoint names are the default
WEIGHTS_OF = "keypointrcnn_resnet50_fpn"


class KeypointDetector(Detector):
    """A torchvision keypoint network speaking the zoo's labels and naming its points (see the module docstring)."""

    def __init__(self, detector: nn.Module, keypoint_names: Sequence[str], skeleton: Sequence[Sequence[int]] = ()
                 ) -> None:
        super().__init__(detector)
        self.keypoint_names = [str(n) for n in keypoint_names]
        self.skeleton = [(int(a), int(b)) for a, b in skeleton]


def keypoint_layout(keypoint_names: Sequence[str] | None, num_keypoints: int | None,
                    skeleton: Sequence[Sequence[int]] | None, *, what: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The points' names and skeleton from the builder options (see the module docstring), checked; an
    OptionError names the option and what it must be."""
    if num_keypoints is not None and (isinstance(num_keypoints, bool) or not isinstance(num_keypoints, numbers.Integral)
                                      or num_keypoints < 1):
        raise OptionError(f"{what}: num_keypoints={num_keypoints!r} must be a whole number >= 1")
    if keypoint_names is not None:
        names = list(keypoint_names) if isinstance(keypoint_names, (list, tuple)) else None
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise OptionError(f"{what}: keypoint_names={keypoint_names!r} must be a non-empty list of distinct "
                              "names, e.g. ['nose', 'left_eye', 'right_eye']")
        if num_keypoints is not None and num_keypoints != len(names):
            raise OptionError(f"{what}: num_keypoints={num_keypoints} but {len(names)} keypoint_names were given; "
                              "give one of them")
    elif num_keypoints is not None:
        names = [f"kp_{i}" for i in range(int(num_keypoints))]
    else:
        names = list(entry(WEIGHTS_OF, "COCO_V1").meta["keypoint_names"])
    pairs = []
    for pair in skeleton or ():
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v < len(names) for v in pair)
        if not ok:
            raise OptionError(f"{what}: skeleton entry {pair!r} must be a pair [i, j] of 0-based keypoint indices "
                              f"0..{len(names) - 1}")
        pairs.append((int(pair[0]), int(pair[1])))
    return names, pairs


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          keypoint_names: Sequence[str] | None = None, skeleton: Sequence[Sequence[int]] | None = None,
          num_keypoints: int | None = None, **options: Any) -> BuiltModel:
    """Build Keypoint R-CNN ``spec.name`` with ``num_classes`` zoo classes (default: the weights' one, person)
    and the points the keypoint options name (default COCO's 17).

    ``options`` go to torchvision's constructor (``min_size``, ``box_score_thresh``...), checked first. With a
    weights tag the trunk's BatchNorm is frozen and its first two stages too, as torchvision fine-tunes; other
    points than the weights' re-initialise only the keypoint predictor.
    """
    what = f"torchvision:{spec.name}"
    names, pairs = keypoint_layout(keypoint_names, num_keypoints, skeleton, what=what)
    built = torchvision_detector(spec, num_classes=num_classes, pretrained=pretrained, options=options, head=HEADS,
                                 backbone=BACKBONES, wrap=lambda net: KeypointDetector(net, names, pairs),
                                 num_keypoints=len(names))
    return built


def build_keypoint_rcnn_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int,
                             keypoint_names: Sequence[str] | None = None,
                             skeleton: Sequence[Sequence[int]] | None = None, num_keypoints: int | None = None,
                             keypoint_channels: int = 512, keypoint_layers: int = 8, **options: Any) -> BuiltModel:
    """Keypoint R-CNN on ``backbone``: the ``faster_rcnn`` head (its FPN, anchors, RPN and box head, its options:
    ``min_size``, ``fpn_channels``, ``representation_size``...) plus torchvision's keypoint branch, which is what
    ``torchvision.models.detection.KeypointRCNN`` adds to ``FasterRCNN``: a 14x14 RoIAlign over the same FPN
    levels, ``keypoint_layers`` 3x3 convolutions of ``keypoint_channels`` and a predictor of one 56x56 heatmap
    per point. The points: as :func:`build`'s keypoint options (default COCO's 17)."""
    what = f"head {spec.qualified_name}"
    names, pairs = keypoint_layout(keypoint_names, num_keypoints, skeleton, what=what)
    for key, value in (("keypoint_channels", keypoint_channels), ("keypoint_layers", keypoint_layers)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise OptionError(f"{what}: {key}={value!r} must be a whole number >= 1")
    built = build_faster_rcnn_head(spec, backbone=backbone, num_classes=num_classes, **options)
    net = built.net.detector
    heads = net.roi_heads
    heads.keypoint_roi_pool = MultiScaleRoIAlign(list(heads.box_roi_pool.featmap_names), output_size=14,
                                                 sampling_ratio=2)
    heads.keypoint_head = KeypointRCNNHeads(net.backbone.out_channels, [int(keypoint_channels)] * int(keypoint_layers))
    heads.keypoint_predictor = KeypointRCNNPredictor(int(keypoint_channels), len(names))
    return dataclasses.replace(built, net=KeypointDetector(net, names, pairs), head=(*built.head, KEYPOINT_PREDICTOR))
