"""COCO box evaluation backends: pycocotools' ``COCOeval`` or faster-coco-eval's C++ ``COCOeval_faster``.

Both take the same ground-truth dict and result list and return an evaluator with the same
``stats`` (the 12 COCO numbers), ``eval["precision"]`` array ``[IoU, recall, class, area, maxDets]``
and ``params``; :func:`run_cocoeval` hides which one ran. faster-coco-eval reimplements the
per-image matching and the accumulation in C++ (the part that takes pycocotools a minute on 5,000
images with 100 detections each); ``tests/test_coco_backend.py`` checks that the 12 stats are
equal to pycocotools' on crowd regions, images without ground truth, classes without predictions,
more than 100 detections per image and every area range, and ``benchmarks/bench_coco_eval.py``
measures the speed-up. ``auto`` (the default) picks faster-coco-eval when it is importable, else
pycocotools, which is always installed.

:func:`synthetic_coco` makes a reproducible COCO-like ground truth and result list (jittered hits,
confusions, false positives, crowd regions) for the parity tests and the benchmark.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any

import numpy as np

from zoo_core.errors import UnknownNameError, ZooError

COCO_BACKENDS = ("auto", "faster", "pycocotools")


@functools.lru_cache(maxsize=None)
def _faster_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_coco_backend(backend: str = "auto") -> str:
    """``"faster"`` or ``"pycocotools"`` for a backend setting (``auto``: faster when importable)."""
    name = str(backend).lower()
    if name not in COCO_BACKENDS:
        raise UnknownNameError("COCO evaluation backend", str(backend), COCO_BACKENDS,
                               hint=f"choose one of {', '.join(COCO_BACKENDS)}")
    if name == "auto":
        return "faster" if _faster_available() else "pycocotools"
    if name == "faster" and not _faster_available():
        raise ZooError("coco_backend='faster' needs the faster-coco-eval package: `pip install "
                       "faster-coco-eval`, or use coco_backend='pycocotools' (same numbers, slower)")
    return name


def _classes(backend: str) -> tuple[Any, Any]:
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def run_cocoeval(gt: dict[str, Any], dets: list[dict[str, Any]], *, backend: str = "pycocotools",
                 iou_type: str = "bbox", kpt_oks_sigmas: Any = None) -> Any:
    """COCOeval on a ground-truth dict and a result list, evaluated, accumulated, summarised.

    ``backend``: ``"pycocotools"`` (the reference), ``"faster"`` (faster-coco-eval) or ``"auto"``.
    ``iou_type``: ``"bbox"`` (default) or another COCOeval ``iouType`` (``"keypoints"``, with the
    per-keypoint ``kpt_oks_sigmas`` when they are not COCO's 17). The result list's dicts get
    ``id``/``area`` fields added, as both libraries' ``loadRes`` do.
    """
    coco_cls, eval_cls = _classes(resolve_coco_backend(backend))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_cls()
        coco_gt.dataset = {k: list(v) for k, v in gt.items()}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = eval_cls(coco_gt, coco_dt, iouType=iou_type)
        if kpt_oks_sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def synthetic_coco(num_images: int = 100, *, num_classes: int = 80, gt_per_image: float = 7.0,
                   dets_per_image: int = 100, crowd_fraction: float = 0.02, empty_fraction: float = 0.05,
                   size: tuple[int, int] = (480, 640), seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground-truth dict and a detector-like result list, reproducible from ``seed``.

    Per image: Poisson(``gt_per_image``) boxes of every size (COCO small/medium/large), a fraction
    of them crowd regions, ``empty_fraction`` of the images without any; ``dets_per_image``
    detections of which ~30% are jittered copies of a ground-truth box (a fifth of those with a
    wrong class) and the rest random false positives, scores uniform in [0, 1). Detection boxes and
    scores are float32 values (xyxy, then width = x2 - x1 in float32), so feeding them through
    :class:`~.det_metrics.DetectionMetrics` as xyxy float32 tensors reproduces the list exactly.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for iid in range(1, num_images + 1):
        images.append({"id": iid, "width": w, "height": h})
        n_gt = 0 if rng.random() < empty_fraction else int(rng.poisson(gt_per_image))
        wh = np.exp(rng.uniform(np.log(4), np.log(min(h, w) * 0.9), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (np.array([w, h]) - wh)
        gt_boxes = np.concatenate([xy, wh], 1)
        gt_cats = rng.integers(1, num_classes + 1, n_gt)
        for box, cat in zip(gt_boxes.tolist(), gt_cats.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cat, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": int(rng.random() < crowd_fraction)})
        hits = (rng.random(dets_per_image) < 0.3) & (n_gt > 0)
        pick = rng.integers(0, max(n_gt, 1), dets_per_image)
        rand_wh = np.exp(rng.uniform(np.log(4), np.log(min(h, w) * 0.9), (dets_per_image, 2)))
        boxes = np.concatenate([rng.uniform(0, 1, (dets_per_image, 2)) * (np.array([w, h]) - rand_wh), rand_wh], 1)
        cats = rng.integers(1, num_classes + 1, dets_per_image)
        if n_gt:
            jitter = rng.normal(0, 1, (dets_per_image, 4)) * np.tile(np.maximum(gt_boxes[pick][:, 2:], 8), (1, 2)) * 0.08
            jittered = gt_boxes[pick] + jitter
            jittered[:, 2:] = np.maximum(jittered[:, 2:], 1.0)
            boxes[hits] = jittered[hits]
            keep_cls = hits & (rng.random(dets_per_image) >= 0.2)
            cats[keep_cls] = gt_cats[pick][keep_cls]
        # as a float32 detector reports them: xyxy and score in float32, width/height derived in float32
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1).astype(np.float32)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        scores = rng.random(dets_per_image).astype(np.float32)
        for box, cat, score in zip(xywh.tolist(), cats.tolist(), scores.tolist()):
            dets.append({"image_id": iid, "category_id": cat, "bbox": box, "score": score})
    cats_list = [{"id": i, "name": f"class_{i - 1}"} for i in range(1, num_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats_list}, dets
