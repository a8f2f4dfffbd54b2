"""COCO box metrics computed by the real pycocotools ``COCOeval``.

:class:`DetectionMetrics` collects, per evaluated image, the ground truth the dataset put in
``batch.meta`` (boxes in original pixels, labels, areas, crowd flags) and the model's detections,
then builds a COCO ground-truth object and a result set and runs ``COCOeval`` — so the numbers are
the ones COCOeval prints for the same data: ``map`` (IoU .50:.95), ``map_50``, ``map_75``,
``map_small/medium/large``, ``mar_1/10/100``, ``mar_small/medium/large``, plus ``per_class_ap``
(None for a class without ground truth) and the IoU=.50 precision/recall curve per class.
COCOeval's -1 ("undefined": no ground truth of that size) is kept as is. No detections at all
gives 0 everywhere and a warning, not an exception.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from zoo_core.task import Batch, Metrics

STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


class DetectionMetrics(Metrics):
    """Accumulates ground truth and detections per image; ``compute`` runs COCOeval."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.images: dict[int, dict[str, Any]] = {}

    def update(self, outputs: list[dict[str, torch.Tensor]], batch: Batch) -> None:
        for out, meta in zip(outputs, batch.meta):
            iid = int(meta["image_id"])
            if iid in self.images:  # a distributed sampler pads with repeats: count each image once
                continue
            boxes = out["boxes"].detach().float().cpu().reshape(-1, 4)
            self.images[iid] = {
                "size": tuple(int(v) for v in meta["orig_size"]),
                "gt": (meta["gt_boxes"].cpu().numpy(), meta["gt_labels"].cpu().numpy(),
                       meta["gt_areas"].cpu().numpy(), meta["gt_crowd"].cpu().numpy()),
                "det": (torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).numpy(),
                        out["scores"].detach().float().cpu().numpy(), out["labels"].detach().cpu().numpy()),
            }

    def merge(self, other: "Metrics") -> None:
        assert isinstance(other, DetectionMetrics)
        for iid, item in other.images.items():
            self.images.setdefault(iid, item)

    def coco_inputs(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The COCO ground-truth dict and the result list (category id = label + 1)."""
        images, anns, dets = [], [], []
        for iid in sorted(self.images):
            item = self.images[iid]
            h, w = item["size"]
            images.append({"id": iid, "width": w, "height": h})
            for box, label, area, crowd in zip(*item["gt"]):
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": int(label) + 1,
                             "bbox": [float(v) for v in box], "area": float(area), "iscrowd": int(crowd)})
            for box, score, label in zip(*item["det"]):
                dets.append({"image_id": iid, "category_id": int(label) + 1, "bbox": [float(v) for v in box],
                             "score": float(score)})
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}, dets

    def compute(self) -> dict[str, Any]:
        gt, dets = self.coco_inputs()
        return coco_metrics(gt, dets, self.class_names)


def run_cocoeval(gt: dict[str, Any], dets: list[dict[str, Any]]) -> Any:
    """COCOeval (bbox) on a ground-truth dict and a result list, evaluated and accumulated."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {k: list(v) for k, v in gt.items()}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_metrics(gt: dict[str, Any], dets: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """The zoo's metric dict from COCOeval (see the module docstring)."""
    has_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd")}
    if not dets:
        warnings.warn(f"no detections at all over {len(gt['images'])} evaluation image(s): mAP is 0. The "
                      "model may be untrained, or its score threshold too high", stacklevel=2)
        out: dict[str, Any] = {k: 0.0 for k in STAT_NAMES}
        out["per_class_ap"] = {n: (0.0 if i + 1 in has_gt else None) for i, n in enumerate(class_names)}
        return out
    ev = run_cocoeval(gt, dets)
    out = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class: dict[str, float | None] = {}
    curves: dict[str, list[float]] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        name = class_names[cat_id - 1]
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        curves[name] = [float(v) for v in np.clip(precision[0, :, k, 0, -1], 0, None)]
    out["per_class_ap"] = per_class
    out["pr_curve"] = {"iou": 0.5, "recall": [float(r) for r in ev.params.recThrs], "precision": curves}
    return out
