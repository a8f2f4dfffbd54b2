"""torchvision's detectors in the zoo, and the ``faster_rcnn`` head on any zoo backbone.

Every network is wrapped in :class:`Detector`, whose labels are the zoo's (0..K-1, indexing
``model.class_names``); inside, torchvision's model has K+1 outputs and sees label+1, index 0 being
background (Faster R-CNN) or unused (RetinaNet, FCOS, SSD) — the layout of torchvision's COCO
weights, which therefore load unchanged. ``forward(images, targets)`` returns torchvision's loss
dict in training mode and, in eval mode, one dict (boxes xyxy in the pixels of each input image,
scores, labels) per image. Nothing here downloads: ``weights_backbone`` is always None and COCO
weights are described (:func:`weights_info`) for the zoo to fetch offline-first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from torch import Tensor, nn
from torchvision.models import detection as tvd
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from zoo_core.backbone import Backbone, HeadRequirements, usable_levels
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel, Preprocess, PretrainedWeights
from zoo_core.specs import HeadSpec, ModelSpec

from .det_specs import BACKBONES, HEADS
from .options import check_head_options, check_model_options
from .tv_weights import HASH_IN_NAME, entry

PREFIX = "detector."
#: torchvision's rule for fine-tuning from pretrained weights: the last 3 ResNet stages train
RESNET_TRAINABLE_LAYERS = 3


class Detector(nn.Module):
    """A torchvision detection network speaking the zoo's labels (see the module docstring)."""

    def __init__(self, detector: nn.Module, label_offset: int = 1) -> None:
        super().__init__()
        self.detector = detector
        self.label_offset = label_offset
        t = detector.transform
        self._max_over_min = float(t.max_size) / float(t.min_size[-1])

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        if targets is not None:
            targets = [{**t, "labels": t["labels"].long() + self.label_offset} for t in targets]
        out = self.detector(images, targets)
        if self.training:
            return out
        return [{**d, "labels": d["labels"] - self.label_offset} for d in out]

    def set_input_size(self, size: Sequence[int]) -> None:
        """Resize inputs so the short side is ``min(size)`` (long side capped at the model's ratio)."""
        t = self.detector.transform
        short = int(min(size))
        if t.fixed_size is not None:
            t.fixed_size = (int(size[0]), int(size[1]))
        t.min_size = (short,)
        t.max_size = int(round(short * self._max_over_min))


# ---- whole models by name -----------------------------------------------------------------------
def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          **options: Any) -> BuiltModel:
    """Build ``spec.name`` with ``num_classes`` zoo classes (default: COCO's 90 category slots).

    ``options`` go to torchvision's constructor (``min_size``, ``max_size``, ``box_score_thresh``...).
    With a weights tag the backbone's BatchNorm layers are frozen, as torchvision does when it
    fine-tunes from pretrained weights.
    """
    family = spec.kwargs["family"]
    return torchvision_detector(spec, num_classes=num_classes, pretrained=pretrained, options=options,
                                head=HEADS[family], backbone=BACKBONES[family])


#: (model, weights tag) whose BatchNorm torchvision runs with eps 0 after loading (``overwrite_eps``: those
#: weights were trained so); any other tag keeps the default eps
ZERO_EPS = {("fasterrcnn_resnet50_fpn", "COCO_V1"), ("maskrcnn_resnet50_fpn", "COCO_V1"),
            ("keypointrcnn_resnet50_fpn", "COCO_V1"), ("retinanet_resnet50_fpn", "COCO_V1")}


def torchvision_detector(spec: ModelSpec, *, num_classes: int | None, pretrained: str | None,
                         options: dict[str, Any], head: Sequence[str], backbone: Sequence[str],
                         wrap: Any = Detector, **constructor: Any) -> BuiltModel:
    """torchvision's ``spec.name`` (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD) as a zoo model.

    ``num_classes`` zoo classes (default: the COCO weights' categories less the background); ``options``
    (the user's, checked first: :class:`OptionError`) and ``constructor`` go to torchvision's builder, which
    never downloads. ``head``/``backbone``: state-dict prefixes inside torchvision's model; ``wrap`` makes
    the zoo's network (labels 0..K-1) of it.

    Built for a weights tag, the network is laid out as torchvision fine-tunes from it: the backbone's
    BatchNorm frozen (eps 0 where torchvision sets it, :data:`ZERO_EPS`) and a ResNet trunk's first stages
    too. The option ``as_trained_from=TAG`` (recorded in the saved config) rebuilds that layout without
    loading weights, so a saved fine-tuned model reloads with the same numbers.
    """
    trained_from = options.pop("as_trained_from", None)
    if trained_from is not None and trained_from not in spec.weights:
        raise OptionError(f"torchvision:{spec.name}: as_trained_from={trained_from!r} is not one of its weights "
                          f"tags {list(spec.weights)}")
    layout = pretrained if pretrained is not None else trained_from
    coco = entry(spec.name, "COCO_V1")
    n = num_classes if num_classes is not None else len(coco.meta["categories"]) - 1
    check_model_options(spec.name, options, what=f"torchvision:{spec.name}", detector=True)  # OptionError
    net = getattr(tvd, spec.name)(weights=None, weights_backbone=None, num_classes=n + 1, **constructor, **options)
    if layout is not None:
        freeze_batchnorm(net.backbone, eps=0.0 if (spec.name, layout) in ZERO_EPS else None)
        if hasattr(net.backbone, "body") and hasattr(net.backbone.body, "layer4"):  # ResNet trunks (not SSD's)
            freeze_early_layers(net.backbone.body, RESNET_TRAINABLE_LAYERS)
    wrapped = wrap(net)
    return BuiltModel(net=wrapped, preprocess=preprocess_of(net), num_classes=n,
                      head=tuple(PREFIX + h for h in head), backbone=tuple(PREFIX + b for b in backbone),
                      pretrained=describe(spec.name, pretrained) if pretrained else None,
                      map_state_dict=torchvision_keys(wrapped), export_formats=("onnx",),
                      extra={"export": EXPORT_HINTS,
                             **({"rebuild_options": {"as_trained_from": layout}} if layout else {})})


#: torchvision detectors trace to ONNX at a fixed batch (their transform loops over images) with the
#: TorchScript-based exporter; their data-dependent post-processing does not script or torch.export
EXPORT_HINTS = {"dynamic_batch": False, "onnx_exporter": "torchscript",
                "reasons": {"torchscript": "its post-processing is data-dependent",
                            "torch_export": "its post-processing is data-dependent"}}


def preprocess_of(net: nn.Module) -> Preprocess:
    """The zoo's Preprocess of a torchvision detector: its resize target and (internal) normalisation."""
    t = net.transform
    size = (int(t.fixed_size[0]), int(t.fixed_size[1])) if t.fixed_size else (int(t.min_size[-1]),) * 2
    return Preprocess(input_size=size, mean=tuple(t.image_mean), std=tuple(t.image_std))


def describe(name: str, tag: str) -> PretrainedWeights:
    """Weights ``name.tag`` from torchvision's enum: url, cache name, hash prefix, COCO class names."""
    member = entry(name, tag)
    filename = member.url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(filename)
    categories = list(member.meta["categories"])[1:]  # drop "__background__": zoo labels start at 0
    return PretrainedWeights(tag=tag, url=member.url, filename=filename,
                             hash_prefix=match.group(1) if match else None, num_classes=len(categories),
                             class_names=categories, license="BSD-3-Clause (torchvision); COCO terms apply",
                             metrics=dict(member.meta.get("_metrics") or {}))


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every tag of a detection spec, described (for ``zoo.list_weights`` / ``zoo pull``)."""
    return [describe(spec.name, tag) for tag in spec.weights]


def torchvision_keys(net: nn.Module):
    """A ``map_state_dict`` that accepts torchvision's own files (no ``detector.`` prefix) and either
    BatchNorm flavour (frozen BN has no ``num_batches_tracked``)."""
    def convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
        own = net.state_dict()
        out = {(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in state.items()}
        out = {k: v for k, v in out.items() if k in own or not k.endswith("num_batches_tracked")}
        for k, v in own.items():
            if k.endswith("num_batches_tracked") and k not in out:
                out[k] = v
        return out

    return convert


def freeze_batchnorm(module: nn.Module, eps: float | None = None) -> nn.Module:
    """Replace every BatchNorm2d under ``module`` by a FrozenBatchNorm2d (in place; stats kept; ``eps`` when
    given, else the layer's own)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps if eps is None else eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, eps)
    return module


def freeze_early_layers(body: nn.Module, trainable: int) -> None:
    """Stop gradients in every parameterised top-level block of ``body`` but the last ``trainable``."""
    blocks = [m for m in body.children() if any(True for _ in m.parameters())]
    for block in blocks[:max(len(blocks) - trainable, 0)]:
        block.requires_grad_(False)


# ---- the faster_rcnn head on any backbone -------------------------------------------------------
class FPNOverBackbone(nn.Module):
    """A zoo Backbone + torchvision FPN, giving the OrderedDict of maps torchvision's detectors take.

    ``extra_blocks``: the levels the FPN adds above the deepest map (default: torchvision's max-pooled
    ``pool`` level of Faster R-CNN; RetinaNet and FCOS pass ``LastLevelP6P7``).
    """

    def __init__(self, backbone: Backbone, levels: Sequence[int], out_channels: int,
                 extra_blocks: nn.Module | None = None) -> None:
        super().__init__()
        self.body = backbone
        self.levels = list(levels)
        chans = [backbone.feature_info.channels(i) for i in self.levels]
        self.fpn = FeaturePyramidNetwork(chans, out_channels, extra_blocks=extra_blocks or LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), feats[lvl]) for i, lvl in enumerate(self.levels)))


def build_faster_rcnn_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int, min_size: int = 800,
                           max_size: int = 1333, fpn_channels: int = 256, representation_size: int = 1024,
                           max_levels: int = 4, **options: Any) -> BuiltModel:
    """Faster R-CNN on ``backbone``: FPN over its deepest ``max_levels`` maps at stride >= 4.

    Anchors are 8x each level's stride (torchvision's 32..512 on a ResNet), three aspect ratios;
    ``options`` go to torchvision's ``FasterRCNN`` (``box_score_thresh``, ``rpn_batch_size_per_image``...).
    """
    check_head_options(build_faster_rcnn_head, options, what=f"head {spec.qualified_name}")  # OptionError
    levels = usable_levels(backbone.feature_info, HeadRequirements.from_dict(spec.requires))[-max_levels:]
    strides = [backbone.feature_info.reduction(i) for i in levels]
    body = FPNOverBackbone(backbone, levels, fpn_channels)
    sizes = tuple((8 * s,) for s in strides) + ((16 * strides[-1],),)
    anchors = tvd.anchor_utils.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    roi_pool = MultiScaleRoIAlign([str(i) for i in range(len(levels))], output_size=7, sampling_ratio=2)
    box_head = tvd.faster_rcnn.TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    predictor = tvd.faster_rcnn.FastRCNNPredictor(representation_size, num_classes + 1)
    pre = backbone.preprocess
    if backbone.fixed_input_size is not None:
        options.setdefault("fixed_size", tuple(backbone.fixed_input_size))
        min_size = max_size = max(backbone.fixed_input_size)
    net = tvd.FasterRCNN(body, num_classes=None, min_size=min_size, max_size=max_size,
                         image_mean=list(pre.mean), image_std=list(pre.std), rpn_anchor_generator=anchors,
                         box_roi_pool=roi_pool, box_head=box_head, box_predictor=predictor, **options)
    wrapped = Detector(net)
    return BuiltModel(net=wrapped, preprocess=preprocess_of(net), num_classes=num_classes,
                      head=(PREFIX + "roi_heads.box_predictor",), export_formats=("onnx",),
                      extra={"export": EXPORT_HINTS})

