"""Semantic-segmentation metrics from one confusion matrix, ignoring 255, mergeable across ranks.

Every metric derives from a ``K x K`` pixel confusion matrix (rows: true class, columns:
predicted), accumulated over the whole evaluation set (not averaged per image), as VOC and
Cityscapes report. Pixels whose mask value is 255 are left out entirely. Reported by
:meth:`SegmentationMetrics.compute`:

- ``miou``: mean over classes of ``IoU = TP / (TP + FP + FN)``, background included, over the
  classes that occur (in the masks or the predictions); a class that never occurs is left out
  rather than counted as 0 or 1;
- ``iou_per_class``: ``{class name: IoU or None}`` (None: the class never occurs);
- ``dice``: mean over the same classes of ``2 TP / (2 TP + FP + FN)`` (F1 per class);
- ``dice_per_class``, ``pixel_accuracy`` (correct / all non-ignored pixels), ``confusion_matrix``,
  ``num_pixels`` and ``num_images``.

A binary model (one sigmoid channel) is scored by :class:`BinarySegmentationMetrics`: ``iou`` and
``dice`` of the positive class at threshold 0.5.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from zoo_core.errors import DataError
from zoo_core.task import Batch, Metrics

IGNORE_INDEX = 255


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``K x K`` int64 counts of (true, predicted) over pixels whose target is not ``ignore_index``."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def scores_from_confusion(cm: Tensor) -> dict[str, Any]:
    """Per-class IoU and Dice (None where a class never occurs), their means, and pixel accuracy."""
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    present = (tp + fp + fn) > 0
    iou = tp / (tp + fp + fn).clamp_min(1)
    dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    total = cm.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "dice": float(dice[present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "iou": [float(v) if p else None for v, p in zip(iou.tolist(), present.tolist())],
        "dice_list": [float(v) if p else None for v, p in zip(dice.tolist(), present.tolist())],
    }


class SegmentationMetrics(Metrics):
    """Accumulates the confusion matrix batch by batch; ``merge`` adds another rank's."""

    def __init__(self, class_names: Sequence[str], ignore_index: int = IGNORE_INDEX) -> None:
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise ValueError("SegmentationMetrics needs at least one class name")
        self.ignore_index = ignore_index
        k = len(self.class_names)
        self.confusion = torch.zeros(k, k, dtype=torch.long)
        self.num_images = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def update(self, outputs: Any, batch: Batch) -> None:
        """``outputs``: predicted class indices ``(B, H, W)``; ``batch.targets``: masks ``(B, H, W)``."""
        pred = torch.as_tensor(outputs).detach().cpu()
        target = torch.as_tensor(batch.targets).detach().cpu().long()
        if pred.shape != target.shape:
            raise ValueError(f"segmentation metrics: predictions {tuple(pred.shape)} and masks "
                             f"{tuple(target.shape)} differ in shape; upsample predictions to the mask size")
        k = self.num_classes
        bad = (target != self.ignore_index) & ((target < 0) | (target >= k))
        if bool(bad.any()):
            per_image = bad.flatten(1).any(1).tolist()
            sources = [m.get("source", "?") for m, b in zip(batch.meta, per_image) if b] or ["?"]
            raise DataError(f"mask value(s) {sorted(set(target[bad].tolist()))[:5]} outside 0..{k - 1} (and not "
                            f"{self.ignore_index} = ignore) in {', '.join(map(str, sources[:3]))}; the model "
                            f"predicts {k} classes", sources[0])
        self.confusion += confusion_matrix(pred.clamp(0, k - 1), target, k, self.ignore_index)
        self.num_images += int(target.shape[0]) if target.dim() == 3 else 1

    def merge(self, other: Metrics) -> None:
        """Add another accumulator's counts (same classes) into this one."""
        if not isinstance(other, SegmentationMetrics) or other.class_names != self.class_names:
            raise ValueError("can only merge SegmentationMetrics over the same class names")
        self.confusion += other.confusion
        self.num_images += other.num_images

    def names(self) -> list[str]:
        return ["miou", "dice", "pixel_accuracy", "num_pixels", "num_images"]

    def compute(self) -> dict[str, Any]:
        total = int(self.confusion.sum())
        if self.num_images == 0:
            raise DataError("no images were evaluated: the evaluation set is empty")
        if total == 0:
            raise DataError(f"every pixel of the {self.num_images} evaluated mask(s) is {self.ignore_index} "
                            "(ignore): nothing to score")
        s = scores_from_confusion(self.confusion)
        return {
            "miou": s["miou"], "dice": s["dice"], "pixel_accuracy": s["pixel_accuracy"],
            "iou_per_class": dict(zip(self.class_names, s["iou"])),
            "dice_per_class": dict(zip(self.class_names, s["dice_list"])),
            "confusion_matrix": self.confusion.tolist(),
            "num_pixels": total, "num_images": self.num_images,
        }


class BinarySegmentationMetrics(SegmentationMetrics):
    """Metrics of a binary model (one sigmoid channel): predictions are ``sigmoid > 0.5``, i.e. logit > 0.

    The same 2 x 2 confusion matrix (background, the positive class) as any segmentation, and what a
    binary problem is judged by: ``iou`` and ``dice`` are the positive class's (``TP / (TP + FP + FN)``
    and ``2 TP / (2 TP + FP + FN)``), ``miou`` stays the mean over both classes
    (the task's default monitor), plus ``precision`` and ``recall`` of the positive class.
    A positive class absent from both masks and predictions scores 0.0 here (None in ``iou_per_class``).
    ``class_names``: the positive class's name (a binary model's one name) or (background, positive).
    """

    threshold = 0.5

    def __init__(self, class_names: Sequence[str], ignore_index: int = IGNORE_INDEX) -> None:
        names = [str(c) for c in class_names]
        if len(names) not in (1, 2):
            raise ValueError(f"binary segmentation metrics take the positive class's name (or background and it); "
                             f"got {len(names)} names {names[:4]}")
        super().__init__(names if len(names) == 2 else ["background", names[0]], ignore_index=ignore_index)

    def names(self) -> list[str]:
        return ["iou", "dice", "miou", "precision", "recall", "pixel_accuracy", "num_pixels", "num_images"]

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        cm = self.confusion.double()
        tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
        out["iou"] = float(tp / (tp + fp + fn)) if tp + fp + fn > 0 else 0.0
        out["dice"] = float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else 0.0
        out["precision"] = float(tp / (tp + fp)) if tp + fp > 0 else 0.0
        out["recall"] = float(tp / (tp + fn)) if tp + fn > 0 else 0.0
        return out
