"""COCO mAP: pycocotools' COCOeval vs faster-coco-eval vs the zoo's DetectionMetrics, same data, one process.

The data is :func:`zoo_tasks.coco_eval.synthetic_coco`: ``--images`` images (5,000, COCO val's size),
``--classes`` 80, Poisson(7) ground-truth boxes and 100 detections per image (jittered hits, wrong
classes, false positives, 2% crowd regions, 5% images without ground truth). Timed, each on its own
fresh copy of the inputs (copying is not timed):

- ``pycocotools``: ``COCO()`` index + ``loadRes`` + ``COCOeval`` evaluate/accumulate/summarize;
- ``faster-coco-eval``: the same calls on faster-coco-eval's classes;
- ``zoo``: what the evaluator does: ``DetectionMetrics.update`` per batch of 16 images (xyxy
  float32 tensors, as a detector returns them) + ``compute`` (COCO dicts, COCOeval, per-class AP and
  PR curves) with the task's default backend.

"stats identical" compares the 12 COCO stats with pycocotools' (tolerance 1e-12; faster-coco-eval's
C++ accumulation rounds some precision entries 1 ulp differently, so they are not always bit-equal).
CPU only; ``--tiny`` is the CI smoke size.

    python benchmarks/bench_coco_eval.py [--images 5000] [--tiny]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

from zoo_core.task import Batch
from zoo_tasks.coco_eval import resolve_coco_backend, run_cocoeval, synthetic_coco
from zoo_tasks.det_metrics import STAT_NAMES, DetectionMetrics

TOLERANCE = 1e-12


def timed_backend(backend: str, gt: dict[str, Any], dets: list[dict[str, Any]]) -> tuple[float, np.ndarray]:
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    start = time.perf_counter()
    ev = run_cocoeval(gt, dets, backend=backend)
    return time.perf_counter() - start, np.asarray(ev.stats[:12], dtype=np.float64)


def zoo_batches(gt: dict[str, Any], dets: list[dict[str, Any]], batch_size: int) -> list[tuple[list, Batch]]:
    """The data as the evaluator sees it: per batch, the detector's outputs and the dataset's meta."""
    anns: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    found: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        found.setdefault(d["image_id"], []).append(d)
    batches = []
    for start in range(0, len(gt["images"]), batch_size):
        outputs, meta = [], []
        for img in gt["images"][start:start + batch_size]:
            mine, truth = found.get(img["id"], []), anns.get(img["id"], [])
            xywh = torch.tensor([d["bbox"] for d in mine], dtype=torch.float32).reshape(-1, 4)
            outputs.append({"boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                            "scores": torch.tensor([d["score"] for d in mine], dtype=torch.float32),
                            "labels": torch.tensor([d["category_id"] - 1 for d in mine], dtype=torch.long)})
            meta.append({"image_id": img["id"], "orig_size": (img["height"], img["width"]),
                         "gt_boxes": torch.tensor([a["bbox"] for a in truth], dtype=torch.float64).reshape(-1, 4),
                         "gt_labels": torch.tensor([a["category_id"] - 1 for a in truth], dtype=torch.long),
                         "gt_areas": torch.tensor([a["area"] for a in truth], dtype=torch.float64),
                         "gt_crowd": torch.tensor([bool(a["iscrowd"]) for a in truth], dtype=torch.bool)})
        batches.append((outputs, Batch(inputs=[], targets=None, meta=meta)))
    return batches


def timed_zoo(gt: dict[str, Any], dets: list[dict[str, Any]], batch_size: int = 16) -> tuple[float, np.ndarray, str]:
    batches = zoo_batches(gt, dets, batch_size)
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    metrics = DetectionMetrics(names)
    start = time.perf_counter()
    for outputs, batch in batches:
        metrics.update(outputs, batch)
    values = metrics.compute()
    seconds = time.perf_counter() - start
    return seconds, np.array([values[k] for k in STAT_NAMES], dtype=np.float64), resolve_coco_backend(metrics.backend)


def same(ref: np.ndarray, other: np.ndarray) -> str:
    diff = float(np.abs(ref - other).max())
    return (f"stats identical: {diff <= TOLERANCE} (max |diff| {diff:.1e}, tolerance {TOLERANCE:g}; "
            f"bit-identical: {bool((ref == other).all())})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--gt-per-image", type=float, default=7.0)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="40 images, 10 classes (CI smoke test)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.images, args.classes = 40, 10
    from importlib.metadata import version

    print(f"python {platform.python_version()}, numpy {np.__version__}, pycocotools "
          f"{version('pycocotools')}, faster-coco-eval {version('faster-coco-eval')}, "
          f"CPU {platform.processor() or platform.machine()}")
    gt, dets = synthetic_coco(args.images, num_classes=args.classes, gt_per_image=args.gt_per_image,
                              dets_per_image=args.dets_per_image, seed=args.seed)
    print(f"images {args.images}, classes {args.classes}, {len(gt['annotations'])} ground-truth boxes, "
          f"{len(dets)} detections")
    t_ref, ref = timed_backend("pycocotools", gt, dets)
    t_fast, fast = timed_backend("faster", gt, dets)
    print(f"pycocotools {t_ref:.2f} s, faster-coco-eval {t_fast:.2f} s, ratio {t_ref / t_fast:.2f}, {same(ref, fast)}")
    t_zoo, zoo, backend = timed_zoo(gt, dets)
    print(f"zoo DetectionMetrics (update + compute, backend {backend}) {t_zoo:.2f} s, ratio vs pycocotools "
          f"{t_ref / t_zoo:.2f}, {same(ref, zoo)}")
    print("map " + ", ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES[:3], ref[:3])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
