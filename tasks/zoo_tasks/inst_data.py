"""COCO instance-segmentation data: the detection reader's images and boxes, plus one mask per box.

The images, boxes, labels and every bad-box rule are :mod:`.det_data`'s (the file is read and checked
once, by :func:`~.det_data.read_coco`); this module adds each kept annotation's ``segmentation``,
read with pycocotools as COCO defines it:

- polygons: a list of ``[x1, y1, x2, y2, ...]`` lists in pixels (several for one object in parts);
- RLE: ``{"size": [height, width], "counts": [...]}`` (uncompressed, as COCO writes crowd regions) or
  ``{"size": ..., "counts": "string"}`` (compressed, as pycocotools encodes).

Each becomes one compressed RLE at the image's size. Refused with a :class:`DataError` naming the file, the
image id and the annotation id: a polygon with fewer than 3 points (or an odd number of values, or a value
that is not a finite number), an RLE whose ``size`` is not the image's or whose counts do not add up to it,
a mask with no pixel inside the image (wholly outside, or degenerate), an annotation without a
``segmentation``. ``iscrowd=1`` regions stay out of the training targets (as for boxes) and go to COCOeval
as crowd, masks included. Only COCO json carries masks: YOLO txt and Pascal VOC sources are refused by name.

Samples: ``(image, {"boxes", "labels", "masks" (N, H, W) uint8}, meta)``; ``meta["gt_rles"]`` holds every
annotation's RLE (crowd too, in step with ``meta["gt_boxes"]``) for COCOeval's ``segm``. Masks follow
the image through the flip and the detection augmentation (:mod:`.det_augment`: colour and scale jitter,
IoU crop, your ``train_transform``); ``mosaic`` cannot carry masks and is refused by the task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from zoo_core.errors import DataError

from .det_data import CocoDetection, CocoIndex, load_coco_json, read_coco, resolve_source
from .formats.detection import detection_format

#: a compressed COCO RLE: ``{"size": [h, w], "counts": bytes}`` (pycocotools' own form)
Rle = dict[str, Any]


def read_instances(source: Any, split: str, *, class_names: Sequence[str] | None = None, train: bool = True,
                   filter_empty: bool = False, fmt: str | None = None) -> tuple[CocoIndex, dict[Any, Rle]]:
    """The COCO data at ``source`` (any form :func:`~.det_data.resolve_source` takes): the detection index and,
    per kept annotation id, its mask as a compressed RLE (see the module docstring for what is refused)."""
    name, where = detection_format(source, split, fmt)
    if name != "coco":
        raise DataError(f"{where}: {name.upper()} annotations hold boxes only; instance segmentation reads COCO "
                        "json with a polygon or RLE 'segmentation' per annotation (`zoo data convert` writes COCO, "
                        "then add the masks)", Path(str(where)))
    json_path, images_dir = resolve_source(where, split)
    roots = [Path(where)] if not isinstance(where, (tuple, list)) and Path(where).is_dir() else []
    raw = load_coco_json(json_path)
    index = read_coco(json_path, images_dir, class_names=class_names, train=train, filter_empty=filter_empty,
                      roots=roots, raw=raw)
    by_id = {ann["id"]: ann for ann in raw["annotations"]}
    rles = {}
    for rec in index.records:
        for aid in rec.ann_ids:
            rles[aid] = segmentation_rle(by_id[aid].get("segmentation"), rec.height, rec.width,
                                         where=f"{json_path}: image {rec.image_id}, annotation {aid}")
    return index, rles


def segmentation_rle(seg: Any, height: int, width: int, *, where: str) -> Rle:
    """One COCO ``segmentation`` (polygons or RLE) as a compressed RLE of a ``height`` x ``width`` image;
    ``where`` (file, image id, annotation id) starts every error."""
    from pycocotools import mask as mask_util

    if isinstance(seg, dict):
        rle = _rle(seg, height, width, where)
    elif isinstance(seg, list) and seg:
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     and math.isfinite(v) for v in poly):
                raise DataError(f"{where}: polygon {k} is {str(poly)[:60]}; a polygon 'segmentation' is a list "
                                "of [x1, y1, x2, y2, ...] lists of finite numbers (pixels)")
            if len(poly) < 6 or len(poly) % 2:
                raise DataError(f"{where}: polygon {k} has {len(poly)} value(s); a polygon needs at least 3 "
                                "(x, y) points, an even number of values: fix it or drop the annotation")
        rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
    else:
        raise DataError(f"{where}: no usable 'segmentation' ({str(seg)[:60]}); instance segmentation needs a "
                        "polygon list or an RLE {size, counts} on every annotation: add it, or drop the annotation")
    if int(mask_util.area(rle)) == 0:
        raise DataError(f"{where}: its mask covers no pixel of the {width}x{height} image (outside the image, or "
                        "degenerate); fix the coordinates or drop the annotation")
    return rle


def _rle(seg: dict[str, Any], height: int, width: int, where: str) -> Rle:
    """A COCO RLE dict checked against the image's size, compressed."""
    from pycocotools import mask as mask_util

    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and [*size] == [height, width]):
        raise DataError(f"{where}: RLE size {size!r} is not the image's [height, width] = [{height}, {width}]; "
                        "encode the mask at the image's size")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) or \
                sum(counts) != height * width:
            raise DataError(f"{where}: uncompressed RLE counts must be non-negative integers adding up to "
                            f"height x width = {height * width}")
        return mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    if isinstance(counts, (str, bytes)):
        rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        try:
            mask_util.decode(rle)  # the only check of a compressed string: it must decode to exactly h x w
        except Exception as exc:
            raise DataError(f"{where}: compressed RLE counts do not decode to a {height}x{width} mask ({exc})") from exc
        return rle
    raise DataError(f"{where}: RLE counts is {type(counts).__name__}; expected a list of run lengths or a "
                    "compressed string")


def decode_masks(rles: Sequence[Rle], height: int, width: int) -> torch.Tensor:
    """``(N, height, width)`` uint8 masks from compressed RLEs."""
    from pycocotools import mask as mask_util

    if not rles:
        return torch.zeros(0, height, width, dtype=torch.uint8)
    return torch.from_numpy(np.ascontiguousarray(mask_util.decode(list(rles)).transpose(2, 0, 1)))


def encode_masks(masks: torch.Tensor) -> list[Rle]:
    """Compressed RLEs of ``(N, H, W)`` binary masks (bool or 0/1)."""
    from pycocotools import mask as mask_util

    if masks.shape[0] == 0:
        return []
    arr = np.asfortranarray(masks.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0))
    return mask_util.encode(arr)


class CocoInstances(CocoDetection):
    """:class:`~.det_data.CocoDetection` samples with ``target["masks"]`` (non-crowd, in step with the boxes)
    and ``meta["gt_rles"]`` (every annotation), ``transform`` applied to image, boxes and masks together."""

    def __init__(self, index: CocoIndex, rles: dict[Any, Rle], transform: v2.Transform, *, train: bool) -> None:
        super().__init__(index, v2.Identity(), train=train)  # the base makes the boxes; the joint transform is ours
        self.rles, self.joint = rles, transform

    def _load(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        image, target, meta = super()._load(i)
        rec = self.index.records[i]
        meta["gt_rles"] = [self.rles[aid] for aid in rec.ann_ids]
        masks = decode_masks([self.rles[aid] for aid, crowd in zip(rec.ann_ids, rec.crowd) if not crowd],
                             rec.height, rec.width)
        h, w = image.shape[-2:]
        img, boxes, masks = self.joint(tv_tensors.Image(image),
                                       tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
                                       tv_tensors.Mask(masks))
        return (img.as_subclass(torch.Tensor),
                {"boxes": boxes.as_subclass(torch.Tensor), "labels": target["labels"],
                 "masks": masks.as_subclass(torch.Tensor)}, meta)
