"""COCO box metrics computed by the real COCOeval (pycocotools' or faster-coco-eval's C++ port).

:class:`DetectionMetrics` collects, per evaluated image, the ground truth the dataset put in
``batch.meta`` (boxes in original pixels, labels, areas, crowd flags) and the model's detections,
then builds a COCO ground-truth object and a result set and runs ``COCOeval`` — so the numbers are
the ones COCOeval prints for the same data: ``map`` (IoU .50:.95), ``map_50``, ``map_75``,
``map_small/medium/large``, ``mar_1/10/100``, ``mar_small/medium/large``, plus ``per_class_ap``
(None for a class without ground truth) and the IoU=.50 precision/recall curve per class with
ground truth.

Undefined numbers are never reported as scores. COCOeval's -1 means "undefined": a size bucket
without ground truth (no small objects: ``map_small``/``mar_small`` are -1). Those keys are left out
of the result, named under ``"undefined_metrics"`` (``{name: why}``) and in a warning, so a CSV,
TensorBoard, a monitor or a model card never sees -1 as if it were a score. Evaluated images
without any (non-crowd) ground-truth box make every number undefined: that is a
:class:`~zoo_core.errors.DataError` (the dataset reader refuses such a validation file before
training starts, :func:`.det_data.read_coco`). No detections at all gives 0 for every defined number
and a warning, not an exception.

``backend`` picks the evaluator (:mod:`.coco_eval`): ``auto`` (default: faster-coco-eval when
installed, else pycocotools), ``faster`` or ``pycocotools``; both give the same stats. Detections
are copied to the host once per batch (not three transfers per image) and the COCO dicts are built
once, in ``compute``, from arrays.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from zoo_core.errors import DataError, warn
from zoo_core.task import Batch, Metrics

from .coco_eval import resolve_coco_backend, run_cocoeval

__all__ = ["STAT_NAMES", "DetectionMetrics", "coco_metrics", "run_cocoeval"]

STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
#: COCO's size buckets (box area in pixels, bounds inclusive as COCOeval's areaRng) and their metrics
SIZE_BUCKETS = {"small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
BUCKET_TEXT = {"small": "small (area < 32² px)", "medium": "medium (32²-96² px)", "large": "large (> 96² px)"}


class DetectionMetrics(Metrics):
    """Accumulates ground truth and detections per image; ``compute`` runs COCOeval.

    ``backend``: ``"auto"`` (default), ``"faster"`` or ``"pycocotools"``, checked here so that a
    typo fails before the evaluation loop rather than after it.
    """

    def __init__(self, class_names: Sequence[str], *, backend: str = "auto") -> None:
        self.class_names = list(class_names)
        self.backend = backend
        resolve_coco_backend(backend)
        self.images: dict[int, dict[str, Any]] = {}

    def update(self, outputs: list[dict[str, torch.Tensor]], batch: Batch) -> None:
        fresh = [(out, meta) for out, meta in zip(outputs, batch.meta)
                 if int(meta["image_id"]) not in self.images]  # a padded sampler repeats images: once each
        if not fresh:
            return
        # one device->host copy per batch: xyxy boxes, score, label side by side (float32, as before)
        rows = torch.cat([torch.cat([out["boxes"].detach().reshape(-1, 4).float(),
                                     out["scores"].detach().reshape(-1, 1).float(),
                                     out["labels"].detach().reshape(-1, 1).float()], 1)
                          for out, _ in fresh]).cpu().numpy()
        start = 0
        for out, meta in fresh:
            n = int(out["boxes"].reshape(-1, 4).shape[0])
            part, start = rows[start:start + n], start + n
            self.images.setdefault(int(meta["image_id"]), {
                "size": tuple(int(v) for v in meta["orig_size"]),
                "gt": (meta["gt_boxes"].cpu().numpy(), meta["gt_labels"].cpu().numpy(),
                       meta["gt_areas"].cpu().numpy(), meta["gt_crowd"].cpu().numpy()),
                "det": (np.concatenate([part[:, :2], part[:, 2:4] - part[:, :2]], 1), part[:, 4],
                        part[:, 5].astype(np.int64)),
            })

    def merge(self, other: "Metrics") -> None:
        assert isinstance(other, DetectionMetrics)
        for iid, item in other.images.items():
            self.images.setdefault(iid, item)

    def coco_inputs(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The COCO ground-truth dict and the result list (category id = label + 1)."""
        ids = sorted(self.images)
        items = [self.images[i] for i in ids]
        images = [{"id": iid, "width": it["size"][1], "height": it["size"][0]} for iid, it in zip(ids, items)]
        anns = [{"id": k, "image_id": iid, "category_id": int(label) + 1, "bbox": box, "area": area,
                 "iscrowd": int(crowd)}
                for k, (iid, box, label, area, crowd) in enumerate(_rows(ids, items, "gt"), start=1)]
        dets = [{"image_id": iid, "category_id": int(label) + 1, "bbox": box, "score": score}
                for iid, box, score, label in _rows(ids, items, "det")]
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}, dets

    def names(self) -> list[str]:
        return list(STAT_NAMES)

    def compute(self) -> dict[str, Any]:
        gt, dets = self.coco_inputs()
        return coco_metrics(gt, dets, self.class_names, backend=self.backend)


def _rows(ids: list[int], items: list[dict[str, Any]], key: str) -> Iterator[tuple[Any, ...]]:
    """``(image_id, *fields)`` per row of every image's ``key`` arrays, as Python numbers: one
    ``tolist`` per column over all images instead of a ``float()`` per number."""
    if not items:
        return iter(())
    columns = list(zip(*(item[key] for item in items)))
    counts = [len(a) for a in columns[0]]
    image_ids = np.repeat(np.asarray(ids, dtype=np.int64), counts).tolist()
    return zip(image_ids, *(np.concatenate(col).tolist() for col in columns))


def coco_metrics(gt: dict[str, Any], dets: list[dict[str, Any]], class_names: Sequence[str], *,
                 backend: str = "auto", iou_type: str = "bbox") -> dict[str, Any]:
    """The zoo's metric dict from COCOeval run by ``backend`` (see the module docstring); ``iou_type``:
    COCOeval's ``iouType`` (``"segm"``: ``gt`` annotations and ``dets`` carry ``segmentation``).

    Raises :class:`DataError` when ``gt`` holds no non-crowd box (every COCO number is undefined).
    """
    boxes = [a for a in gt["annotations"] if not a.get("iscrowd")]
    if not boxes:
        raise DataError(f"no ground-truth boxes in the {len(gt['images'])} evaluated image(s) (crowd regions do not "
                        "count): mAP is undefined (COCOeval would report -1 for every number). Add annotations, "
                        "or evaluate on another split")
    has_gt = {a["category_id"] for a in boxes}
    if not dets:
        warn(f"no detections at all over {len(gt['images'])} evaluation image(s): mAP is 0. The "
             "model may be untrained, or its score threshold too high")
        filled = [0.0 if _bucket_of(name) in _present_buckets(boxes) else -1.0 for name in STAT_NAMES]
        out = _defined(dict(zip(STAT_NAMES, filled)))
        out["per_class_ap"] = {n: (0.0 if i + 1 in has_gt else None) for i, n in enumerate(class_names)}
        return out
    ev = run_cocoeval(gt, dets, backend=backend, iou_type=iou_type)
    out = _defined({name: float(v) for name, v in zip(STAT_NAMES, ev.stats)})
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class: dict[str, float | None] = {}
    curves: dict[str, list[float]] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        name = class_names[int(cat_id) - 1]
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        if per_class[name] is not None:  # a class without ground truth has no curve (COCOeval's -1 everywhere)
            curves[name] = [float(v) for v in np.clip(precision[0, :, k, 0, -1], 0, None)]
    out["per_class_ap"] = per_class
    out["pr_curve"] = {"iou": 0.5, "recall": [float(r) for r in ev.params.recThrs], "precision": curves}
    return out


def _bucket_of(stat: str) -> str | None:
    """``"small"`` for ``map_small``/``mar_small``...; None for the all-sizes numbers."""
    suffix = stat.rsplit("_", 1)[-1]
    return suffix if suffix in SIZE_BUCKETS else None


def _present_buckets(boxes: list[dict[str, Any]]) -> set[str | None]:
    """The size buckets holding at least one of ``boxes`` (by ``area``, as COCOeval reads it), and None."""
    areas = [float(a.get("area") or a["bbox"][2] * a["bbox"][3]) for a in boxes]
    return {None} | {b for b, (lo, hi) in SIZE_BUCKETS.items() if any(lo <= v <= hi for v in areas)}


def _defined(stats: dict[str, float], what: str = "detection") -> dict[str, Any]:
    """``stats`` without COCOeval's -1 (undefined) entries, which are named under ``undefined_metrics``
    and in a warning (about the ``what`` metrics): a missing size bucket is not a score of -1."""
    undefined = {k: v for k, v in stats.items() if v < 0}
    out: dict[str, Any] = {k: v for k, v in stats.items() if v >= 0}
    if undefined:
        buckets = sorted({b for b in map(_bucket_of, undefined) if b}, key=list(SIZE_BUCKETS).index)
        why = {k: f"no {BUCKET_TEXT[b]} ground-truth box in the evaluated images" if (b := _bucket_of(k))
               else "no ground truth COCOeval could match" for k in undefined}
        out["undefined_metrics"] = why
        warn(f"{', '.join(undefined)} left out of the {what} metrics: undefined, since the evaluated images have "
             f"no {' or '.join(BUCKET_TEXT[b] for b in buckets) or 'usable'} ground-truth box (COCOeval reports -1)")
    return out
