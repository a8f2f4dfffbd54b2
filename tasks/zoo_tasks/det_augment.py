"""Detection augmentation as task options: colour jitter, scale jitter, random IoU crop, mosaic, your transform.

============================ ======== ==============================================================
option                       default  effect (training only)
============================ ======== ==============================================================
``color_jitter``             0.0      as for classification (:mod:`.augment`); boxes unchanged
``scale_jitter``             None     ``(low, high)``: resize by a factor drawn in that range, then crop
                                      (zoomed in) or pad (zoomed out) back to the image's size, so objects
                                      change size relative to the image (large-scale jitter); a detector
                                      that resizes its input would undo a plain resize
``iou_crop``                 0.0      probability of torchvision's ``RandomIoUCrop`` (SSD's crop: a patch
                                      whose overlap with the boxes meets a random minimum IoU)
``mosaic``                   0.0      probability that a sample is a mosaic of four images (itself and
                                      three drawn at random): each resized to the image's size and cut
                                      at a random centre, one per quadrant (YOLO's mosaic)
``train_transform``          None     your own ``torchvision.transforms.v2`` pipeline, replacing the flip
                                      and the options above (mosaic still applies); it is called with
                                      ``(tv_tensors.Image (float, [0, 1]), {"boxes": tv_tensors.BoundingBoxes,
                                      "labels": tensor})``, so boxes and labels follow the image
============================ ======== ==============================================================

Order: the dataset's flip (``hflip``), mosaic, then colour jitter, scale jitter and IoU crop (or your
transform). After them boxes are clamped to the image and boxes left with a side under one pixel are
dropped with their labels (``ClampBoundingBoxes`` + ``SanitizeBoundingBoxes``): every target stays
valid. Draws come from torch's generator, seeded per sample by the Trainer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .augment import COLOR_CHECKS, COLOR_DEFAULTS, color_steps
from .option_checks import factor_range, number, transform_or_none

DETECTION_DEFAULTS: dict[str, Any] = {**COLOR_DEFAULTS, "scale_jitter": None, "iou_crop": 0.0, "mosaic": 0.0,
                                      "train_transform": None}
DETECTION_CHECKS = {**COLOR_CHECKS, "scale_jitter": factor_range, "iou_crop": number(0, 1), "mosaic": number(0, 1),
                    "train_transform": transform_or_none(joint="boxes")}


class ScaleJitter(v2.Transform):
    """Resize by a factor in ``scale_range``, then crop or pad back to the input's size (boxes follow)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.low, self.high = (float(v) for v in scale_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = next(x for x in flat_inputs if isinstance(x, tv_tensors.Image))
        h, w = image.shape[-2:]
        f = self.low + (self.high - self.low) * float(torch.rand(()))
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        top = int(torch.randint(0, nh - h + 1, ())) if nh > h else 0
        left = int(torch.randint(0, nw - w + 1, ())) if nw > w else 0
        ph = int(torch.randint(0, h - nh + 1, ())) if nh < h else 0
        pw = int(torch.randint(0, w - nw + 1, ())) if nw < w else 0
        return {"size": [nh, nw], "crop": (top, left, min(h, nh), min(w, nw)),
                "pad": [pw, ph, max(0, w - nw) - pw, max(0, h - nh) - ph]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes, tv_tensors.Mask)):
            return inpt
        out = TF.resize(inpt, params["size"], antialias=True)
        out = TF.crop(out, *params["crop"])
        return TF.pad(out, params["pad"], fill=0) if any(params["pad"]) else out


def detection_pipeline(opts: dict[str, Any]) -> v2.Compose | None:
    """The per-sample training augmentation the options ask for (None: nothing on), then clamp + sanitize."""
    user = opts.get("train_transform")
    if user is not None:
        steps: list[v2.Transform] = [user]
    else:
        steps = list(color_steps(opts))
        if opts.get("scale_jitter"):
            steps.append(ScaleJitter(tuple(opts["scale_jitter"])))
        if float(opts.get("iou_crop") or 0) > 0:
            steps.append(v2.RandomApply([v2.RandomIoUCrop()], p=float(opts["iou_crop"])))
    if not steps:
        return None
    return v2.Compose([*steps, v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)])


def _as_tv(image: Tensor, target: dict[str, Tensor]) -> tuple[tv_tensors.Image, dict[str, Any]]:
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    out = {**target, "boxes": boxes}
    if "masks" in target:  # instance masks (N, H, W) follow the geometry, and SanitizeBoundingBoxes, with the boxes
        out["masks"] = tv_tensors.Mask(target["masks"])
    return tv_tensors.Image(image), out


def _plain(image: Any, target: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    out = {k: (v.as_subclass(Tensor) if isinstance(v, Tensor) else v) for k, v in target.items()}
    out["boxes"] = out["boxes"].float().reshape(-1, 4)
    return image.as_subclass(Tensor), out


def mosaic(samples: list[tuple[Tensor, dict[str, Tensor], dict[str, Any]]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Four samples -> one image of the first one's size: a random centre splits it into quadrants, and
    each sample, resized to that size, gives the part of it that touches the centre (boxes clamped there,
    slivers under a pixel dropped with their labels)."""
    h, w = samples[0][0].shape[-2:]
    cy = int(torch.randint(h // 4, 3 * h // 4 + 1, ()))
    cx = int(torch.randint(w // 4, 3 * w // 4 + 1, ()))
    canvas = torch.zeros(samples[0][0].shape[0], h, w, dtype=samples[0][0].dtype)
    boxes, labels = [], []
    quadrants = [(0, 0, cy, cx), (0, cx, cy, w), (cy, 0, h, cx), (cy, cx, h, w)]  # y0, x0, y1, x1
    for (image, target, _), (y0, x0, y1, x1) in zip(samples, quadrants):
        rh, rw = y1 - y0, x1 - x0
        if rh <= 0 or rw <= 0:
            continue
        img, tgt = _as_tv(image, target)
        img, bb = TF.resize(img, [h, w], antialias=True), TF.resize(tgt["boxes"], [h, w])
        top, left = (h - rh if y0 == 0 else 0), (w - rw if x0 == 0 else 0)  # the side touching the centre
        img, bb = TF.crop(img, top, left, rh, rw), TF.crop(bb, top, left, rh, rw)
        canvas[:, y0:y1, x0:x1] = img.as_subclass(Tensor)
        boxes.append(bb.as_subclass(Tensor).reshape(-1, 4) + torch.tensor([x0, y0, x0, y0], dtype=torch.float32))
        labels.append(tgt["labels"])
    all_boxes = tv_tensors.BoundingBoxes(torch.cat(boxes), format="XYXY", canvas_size=(h, w))
    clean = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)])
    image, target = clean(tv_tensors.Image(canvas), {"boxes": all_boxes, "labels": torch.cat(labels)})
    return _plain(image, target)


class AugmentedDetection(Dataset):
    """A detection dataset's training samples with mosaic and the per-sample pipeline applied."""

    def __init__(self, base: Dataset, pipeline: v2.Compose | None, mosaic_prob: float) -> None:
        self.base, self.pipeline, self.mosaic_prob = base, pipeline, float(mosaic_prob)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # class_names, index ... of the wrapped dataset
        if name in ("base", "pipeline", "mosaic_prob"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        n = len(self)
        if self.mosaic_prob > 0 and n > 1 and float(torch.rand(())) < self.mosaic_prob:
            others = torch.randint(0, n, (3,)).tolist()
            samples = [self.base[i], *(self.base[j] for j in others)]
            image, target = mosaic(samples)
            meta = {k: v for k, v in samples[0][2].items() if not k.startswith("gt_")}  # training needs no COCO gt
            meta["source"] = "mosaic of " + ", ".join(str(s[2].get("source", "?")) for s in samples)
        else:
            image, target, meta = self.base[i]
        if self.pipeline is not None:
            image, target = _plain(*self.pipeline(*_as_tv(image, target)))
        return image, target, meta


def augment_detection(dataset: Dataset, opts: dict[str, Any], *, train: bool) -> Dataset:
    """``dataset`` with the options' training augmentation (unchanged for evaluation or when all are off)."""
    pipeline = detection_pipeline(opts) if train else None
    mosaic_prob = float(opts.get("mosaic") or 0) if train else 0.0
    if pipeline is None and mosaic_prob == 0:
        return dataset
    return AugmentedDetection(dataset, pipeline, mosaic_prob)
