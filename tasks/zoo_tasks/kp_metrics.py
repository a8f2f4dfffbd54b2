"""COCO keypoint metrics: object keypoint similarity (OKS) AP, computed by pycocotools' COCOeval.

:class:`KeypointMetrics` collects, per evaluated image, the ground truth the dataset put in
``batch.meta`` (boxes, labels, areas, crowd flags and ``gt_keypoints`` ``(N, K, 3)``, in original
pixels) and the network's detections (boxes, scores, labels, ``keypoints`` ``(N, K, 3)``), then runs
``COCOeval(iouType="keypoints")`` — pycocotools' own, so the numbers are the ones it prints for the same
data (``tests/test_keypoints_task.py`` runs it by hand on the zoo's predictions and compares):

- ``map`` (OKS .50:.95), ``map_50``, ``map_75``, ``map_medium``, ``map_large``, ``mar``, ``mar_50``,
  ``mar_75``, ``mar_medium``, ``mar_large``: pycocotools' 10 keypoint stats (20 detections per image;
  COCO has no "small" bucket for keypoints);
- ``bbox_map``, ``bbox_map_50``: the same detections' box AP (:mod:`.det_metrics`' COCOeval, on the
  task's ``coco_backend``).

OKS sigmas (how far, relative to the object's scale, a point may be and still count): COCO's 17 when
the keypoint names are COCO's person keypoints; else the task option ``oks_sigmas`` (one number for every
point, or one per point); else :data:`DEFAULT_SIGMA` for every point. A ground truth with no labelled
point (``num_keypoints`` 0, recounted from ``v``) is ignored by COCOeval, as COCO does.

Undefined numbers are never reported as scores: a bucket without ground truth (COCOeval's -1, e.g.
``map_large`` when no object is over 96² px) is left out, named under ``undefined_metrics`` and in a
warning (:func:`.det_metrics._defined`). No labelled keypoint in any evaluated image is a
:class:`~zoo_core.errors.DataError`; no detection at all gives 0 for every defined number and a warning.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
import torch

from zoo_core.errors import DataError, OptionError, warn
from zoo_core.task import Batch, Metrics

from .coco_eval import resolve_coco_backend, run_cocoeval
from .det_metrics import _bucket_of, _defined, _present_buckets
from .kp_data import COCO_KEYPOINT_NAMES, COCO_OKS_SIGMAS

KP_STAT_NAMES = ("map", "map_50", "map_75", "map_medium", "map_large",
                 "mar", "mar_50", "mar_75", "mar_medium", "mar_large")
BOX_STAT_NAMES = ("bbox_map", "bbox_map_50")
#: the OKS sigma of every point when the names are not COCO's and no ``oks_sigmas`` is given: between COCO's
#: face points (.025) and its hips (.107), about its wrists and elbows
DEFAULT_SIGMA = 0.07


def check_sigmas(key: str, value: Any) -> None:
    """Task-option check of ``oks_sigmas``: None, a number > 0, or a list of numbers > 0 (one per keypoint)."""
    if value is None:
        return
    items = [value] if isinstance(value, numbers.Real) else value
    ok = isinstance(items, (list, tuple)) and items and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in items)
    if not ok:
        raise OptionError(f"task option {key}={value!r}: must be a number > 0 (every keypoint) or a list of numbers "
                          f"> 0, one per keypoint (COCO's are {list(COCO_OKS_SIGMAS)[:3]}...); default None: COCO's "
                          f"for COCO's 17 person keypoints, else {DEFAULT_SIGMA}")


def oks_sigmas(option: Any, names: Sequence[str] | None, k: int) -> np.ndarray:
    """The ``k`` OKS sigmas for keypoints ``names`` under option ``oks_sigmas`` (see the module docstring)."""
    if option is not None:
        values = [float(option)] * k if isinstance(option, numbers.Real) else [float(v) for v in option]
        if len(values) != k:
            raise OptionError(f"task option oks_sigmas has {len(values)} values but the model predicts {k} keypoints "
                              f"{list(names or [])[:6]}; give one per keypoint, or one number for all")
        return np.asarray(values, dtype=np.float64)
    if names is not None and tuple(names) == COCO_KEYPOINT_NAMES:
        return np.asarray(COCO_OKS_SIGMAS, dtype=np.float64)
    return np.full(k, DEFAULT_SIGMA, dtype=np.float64)


class KeypointMetrics(Metrics):
    """Accumulates ground truth and detections per image; ``compute`` runs COCOeval (keypoints, then bbox)."""

    def __init__(self, class_names: Sequence[str], *, keypoint_names: Sequence[str] | None = None,
                 skeleton: Sequence[Sequence[int]] = (), sigmas: Any = None, backend: str = "auto") -> None:
        self.class_names = list(class_names)
        self.keypoint_names = None if keypoint_names is None else [str(n) for n in keypoint_names]
        self.skeleton = [list(p) for p in skeleton]
        check_sigmas("oks_sigmas", sigmas)
        self.sigmas = sigmas
        self.backend = backend
        resolve_coco_backend(backend)
        if self.keypoint_names is not None:
            oks_sigmas(sigmas, self.keypoint_names, len(self.keypoint_names))  # a count mismatch fails here
        self.images: dict[int, dict[str, Any]] = {}

    def update(self, outputs: list[dict[str, torch.Tensor]], batch: Batch) -> None:
        for out, meta in zip(outputs, batch.meta):
            iid = int(meta["image_id"])
            if iid in self.images:  # a padded sampler repeats images: once each
                continue
            boxes = out["boxes"].detach().reshape(-1, 4).float().cpu().numpy()
            k = int(meta["gt_keypoints"].shape[1])
            self.images[iid] = {
                "size": tuple(int(v) for v in meta["orig_size"]),
                "gt": (meta["gt_boxes"].cpu().numpy(), meta["gt_labels"].cpu().numpy(),
                       meta["gt_areas"].cpu().numpy(), meta["gt_crowd"].cpu().numpy(),
                       meta["gt_keypoints"].cpu().numpy().reshape(-1, k, 3)),
                "det": (np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1),
                        out["scores"].detach().float().cpu().numpy().reshape(-1),
                        out["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64),
                        out["keypoints"].detach().float().cpu().numpy().reshape(len(boxes), k, 3)),
            }

    def merge(self, other: "Metrics") -> None:
        assert isinstance(other, KeypointMetrics)
        for iid, item in other.images.items():
            self.images.setdefault(iid, item)

    def num_keypoints(self) -> int:
        shapes = {item["gt"][4].shape[1] for item in self.images.values()}
        if len(shapes) > 1:
            raise DataError(f"the evaluated images hold {sorted(shapes)} keypoints per object; one set is expected")
        return shapes.pop() if shapes else len(self.keypoint_names or ())

    def coco_inputs(self) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The COCO ground-truth dict (with keypoints), the keypoint result list and the box result list
        (category id = label + 1; keypoint results without ``bbox``, as COCO's own results files)."""
        k = self.num_keypoints()
        names = self.keypoint_names or [f"kp_{i}" for i in range(k)]
        images, anns, kp_dets, box_dets = [], [], [], []
        for iid in sorted(self.images):
            item = self.images[iid]
            images.append({"id": iid, "width": item["size"][1], "height": item["size"][0]})
            for box, label, area, crowd, points in zip(*(a.tolist() for a in item["gt"])):
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": int(label) + 1, "bbox": box,
                             "area": area, "iscrowd": int(crowd), "keypoints": [v for p in points for v in p],
                             "num_keypoints": sum(1 for p in points if p[2] > 0)})
            for box, score, label, points in zip(*(a.tolist() for a in item["det"])):
                kp_dets.append({"image_id": iid, "category_id": int(label) + 1, "score": score,
                                "keypoints": [v for p in points for v in (p[0], p[1], 1.0)]})
                box_dets.append({"image_id": iid, "category_id": int(label) + 1, "bbox": box, "score": score})
        cats = [{"id": i + 1, "name": n, "keypoints": names, "skeleton": [[a + 1, b + 1] for a, b in self.skeleton]}
                for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}, kp_dets, box_dets

    def sigma_values(self) -> np.ndarray:
        """The OKS sigmas this evaluation uses (one per keypoint)."""
        return oks_sigmas(self.sigmas, self.keypoint_names, self.num_keypoints())

    def names(self) -> list[str]:
        return list(KP_STAT_NAMES + BOX_STAT_NAMES)

    def compute(self) -> dict[str, Any]:
        gt, kp_dets, box_dets = self.coco_inputs()
        labelled = [a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
        if not labelled:
            raise DataError(f"no labelled keypoint (v > 0) on any non-crowd object of the {len(gt['images'])} "
                            "evaluated image(s): OKS AP is undefined (COCOeval would report -1 for every number). Add "
                            "keypoints, or evaluate on another split")
        if not kp_dets:
            warn(f"no detections at all over {len(gt['images'])} evaluation image(s): keypoint AP is 0. The model "
                 "may be untrained, or its score threshold too high")
            present = _present_buckets(labelled)
            filled = [0.0 if _bucket_of(name) in present else -1.0 for name in KP_STAT_NAMES]
            return {**_defined(dict(zip(KP_STAT_NAMES, filled)), "keypoint"), "bbox_map": 0.0, "bbox_map_50": 0.0}
        ev = run_cocoeval(gt, kp_dets, backend="pycocotools", iou_type="keypoints", kpt_oks_sigmas=self.sigma_values())
        out = _defined({name: float(v) for name, v in zip(KP_STAT_NAMES, ev.stats)}, "keypoint")
        boxes = run_cocoeval(gt, box_dets, backend=self.backend).stats
        out.update({name: float(v) for name, v in zip(BOX_STAT_NAMES, boxes[:2]) if v >= 0})
        return out
