"""COCO ``bbox`` and ``segm`` metrics of instance segmentation, computed by the real COCOeval.

:class:`InstanceMetrics` is :class:`~.det_metrics.DetectionMetrics` (the same ground truth from
``batch.meta``, the same boxes, scores and labels) plus one mask per ground-truth annotation
(``meta["gt_rles"]``, crowd regions included) and per detection (the network's ``masks`` ``(N, 1, H, W)``
probabilities at the image's size, binarised at :data:`MASK_THRESHOLD` as torchvision's references do,
run-length encoded per batch so no full-size mask is kept). ``compute`` runs COCOeval twice, with
``iouType="bbox"`` and ``"segm"``, on the same ground truth and detections, and reports COCOeval's numbers
under pycocotools' names prefixed by the IoU type: ``segm_map``, ``segm_map_50``, ``segm_map_75``,
``segm_map_small/medium/large``, ``segm_mar_1/10/100``, ``segm_mar_small/medium/large``, the same with
``bbox_``, and ``segm_per_class_ap`` / ``bbox_per_class_ap``; ``pr_curve`` is segm's (IoU .50).

Undefined numbers (a size bucket without ground truth: COCOeval's -1) are left out and named under
``undefined_metrics`` with a warning, exactly as detection does (:func:`.det_metrics.coco_metrics`).
``backend``: ``"pycocotools"``, ``"faster"`` or ``"auto"`` (:mod:`.coco_eval`); faster-coco-eval's ``segm``
equals pycocotools' on the cases ``tests/test_instance_task.py`` checks.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch

from zoo_core.errors import warn
from zoo_core.task import Batch

from .det_metrics import STAT_NAMES, DetectionMetrics, coco_metrics
from .inst_data import encode_masks

#: a pixel belongs to a predicted instance when its mask probability is above this
MASK_THRESHOLD = 0.5
IOU_TYPES = ("segm", "bbox")
METRIC_NAMES = tuple(f"{t}_{n}" for t in IOU_TYPES for n in STAT_NAMES)


def binary_masks(masks: torch.Tensor, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """``(N, H, W)`` bool masks from a network's ``(N, 1, H, W)`` (or ``(N, H, W)``) probabilities."""
    m = masks.detach()
    if m.dim() == 4:
        m = m[:, 0]
    return m > threshold if m.dtype != torch.bool else m


class InstanceMetrics(DetectionMetrics):
    """Accumulates boxes and masks per image; ``compute`` runs COCOeval ``bbox`` and ``segm``."""

    def update(self, outputs: list[dict[str, torch.Tensor]], batch: Batch) -> None:
        fresh = [(out, meta) for out, meta in zip(outputs, batch.meta) if int(meta["image_id"]) not in self.images]
        super().update(outputs, batch)
        for out, meta in fresh:
            item = self.images[int(meta["image_id"])]
            masks = out.get("masks")
            if masks is None:
                raise TypeError("an instance-segmentation network must return 'masks' (N, 1, H, W) per image in "
                                f"eval mode; got keys {sorted(out)}")
            item["rles"] = (list(meta["gt_rles"]), encode_masks(binary_masks(masks)))

    def names(self) -> list[str]:
        return list(METRIC_NAMES)

    def compute(self) -> dict[str, Any]:
        box_gt, box_dets = self.coco_inputs()
        ids = sorted(self.images)
        gt_rles = [r for i in ids for r in self.images[i]["rles"][0]]
        det_rles = [r for i in ids for r in self.images[i]["rles"][1]]
        seg_gt = {**box_gt, "annotations": [{**a, "segmentation": r} for a, r in zip(box_gt["annotations"], gt_rles)]}
        # no 'bbox' on segm results: loadRes would take the box path and replace each mask by its box
        seg_dets = [{k: v for k, v in d.items() if k != "bbox"} | {"segmentation": r}
                    for d, r in zip(box_dets, det_rles)]
        out: dict[str, Any] = {}
        undefined: dict[str, str] = {}
        with warnings.catch_warnings(record=True) as caught:  # said once below, with the prefixed names
            warnings.simplefilter("always")
            for iou_type, gt, dets in (("segm", seg_gt, seg_dets), ("bbox", box_gt, box_dets)):
                stats = coco_metrics(gt, dets, self.class_names, backend=self.backend, iou_type=iou_type)
                undefined.update({f"{iou_type}_{k}": v for k, v in stats.pop("undefined_metrics", {}).items()})
                curve = stats.pop("pr_curve", None)
                if iou_type == "segm" and curve is not None:
                    out["pr_curve"] = curve
                out.update({f"{iou_type}_{k}": v for k, v in stats.items()})
        for text in dict.fromkeys(str(w.message) for w in caught):
            if "left out of the detection metrics" not in text:  # e.g. "no detections at all", once
                warn(text)
        if undefined:
            out["undefined_metrics"] = undefined
            reasons = "; ".join(dict.fromkeys(undefined.values()))
            warn(f"{', '.join(undefined)} left out of the instance-segmentation metrics: undefined, COCOeval "
                 f"reports -1 ({reasons})")
        return out


def instance_metrics(class_names: Sequence[str], *, backend: str = "auto") -> InstanceMetrics:
    """A fresh :class:`InstanceMetrics` (``backend`` checked now, before any evaluation loop)."""
    return InstanceMetrics(class_names, backend=backend)
