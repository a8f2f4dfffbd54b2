"""The builder behind torchvision's segmentation specs: DeepLabV3, FCN, LR-ASPP (see ``seg_specs.MODELS``).

Networks are made with ``weights=None, weights_backbone=None`` (torchvision never downloads here),
sized for ``num_classes``; the pretrained weights of a tag are described (:func:`describe`) so the
zoo fetches and loads them itself. Keys are torchvision's own.

DeepLabV3 and FCN are built with their auxiliary classifier (``aux_loss=True``, as their weights
were trained), so a forward returns ``{"out": logits, "aux": logits}``; the segmentation task adds
the auxiliary loss with a weight (its ``aux_weight`` option). ``aux_loss=False`` drops the branch
(its tensors in a checkpoint are then skipped). With ``num_classes`` other than the weights' 21, only
the last convolution of ``classifier``/``aux_classifier`` is re-initialised (the load report lists it).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models import get_model, get_model_builder

from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel, Preprocess, PretrainedWeights
from zoo_core.specs import ModelSpec, check_options

from .tv_weights import HASH_IN_NAME, entry

#: the last (class-dependent) convolution of each head, per family
HEADS: dict[str, tuple[str, ...]] = {
    "deeplabv3": ("classifier.4", "aux_classifier.4"),
    "fcn": ("classifier.4", "aux_classifier.4"),
    "lraspp": ("classifier.low_classifier", "classifier.high_classifier"),
}
HAS_AUX = ("deeplabv3", "fcn")
#: the ImageNet trunk every family keeps under ``backbone`` (what freeze_backbone freezes)
BACKBONE_PREFIX = "backbone"
VOC_CLASSES = 21


def preprocess_of(member: Any) -> Preprocess:
    """torchvision's evaluation preprocessing for segmentation weights (resize to ``resize_size``, no crop)."""
    t = member.transforms()
    size = int(t.resize_size[0]) if t.resize_size else 520
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocess(input_size=(size, size), mean=tuple(float(m) for m in t.mean),
                      std=tuple(float(s) for s in t.std), interpolation=str(interpolation))


def describe(name: str, tag: str) -> PretrainedWeights:
    """Weights ``name.tag`` from torchvision's enum: url, cache name, hash prefix, VOC class names, mIoU."""
    member = entry(name, tag)
    filename = member.url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(filename)
    categories = list(member.meta["categories"])
    return PretrainedWeights(tag=tag, url=member.url, filename=filename, hash_prefix=match.group(1) if match else None,
                             num_classes=len(categories), class_names=categories, preprocess=preprocess_of(member),
                             license="BSD-3-Clause (torchvision); COCO and VOC terms apply",
                             metrics=dict(member.meta.get("_metrics") or {}))


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every tag of a segmentation spec, described (for ``zoo.list_weights`` / ``zoo pull``)."""
    return [describe(spec.name, tag) for tag in spec.weights]


def drop_aux(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the auxiliary classifier's tensors from a checkpoint (for nets built with ``aux_loss=False``)."""
    return {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          aux_loss: bool | None = None, image_size: int | None = None, **options: Any) -> BuiltModel:
    """Build torchvision segmentation model ``spec.name``.

    ``num_classes`` defaults to the weights' 21 VOC classes. ``aux_loss`` (DeepLabV3, FCN; default
    True) keeps the auxiliary classifier. ``image_size`` sets the preprocessing size (default 520,
    as the weights were evaluated). Other ``options`` go to torchvision's constructor.
    """
    name, family = spec.name, spec.kwargs["family"]
    info = describe(name, pretrained) if pretrained else None
    tag = pretrained or (spec.weights[0] if spec.weights else None)
    preprocess = preprocess_of(entry(name, tag)) if tag else Preprocess(input_size=(520, 520))
    if image_size is not None:
        preprocess = preprocess.with_size(image_size)
    n = int(num_classes or VOC_CLASSES)
    # torchvision's segmentation builders take **kwargs and ignore them: refuse unknown ones here
    check_options(get_model_builder(name), options, what=f"torchvision:{name}",
                  passed=("weights", "weights_backbone", "num_classes", "aux_loss"))
    kwargs = dict(options)
    aux = family in HAS_AUX and (aux_loss is None or bool(aux_loss))
    if family in HAS_AUX:
        kwargs["aux_loss"] = aux
    elif aux_loss:
        raise ValueError(f"torchvision:{name} has no auxiliary classifier; drop aux_loss=True")
    try:
        net = get_model(name, weights=None, weights_backbone=None, num_classes=n, **kwargs)
    except TypeError as exc:
        raise OptionError(f"torchvision:{name} does not accept option(s) {sorted(options)}: {exc}") from exc
    heads = tuple(h for h in HEADS[family] if aux or not h.startswith("aux_"))
    if info is not None:
        info.preprocess = preprocess
    return BuiltModel(net=net, preprocess=preprocess, num_classes=n, head=heads, pretrained=info,
                      map_state_dict=None if aux or family not in HAS_AUX else drop_aux,
                      backbone=(BACKBONE_PREFIX,))
