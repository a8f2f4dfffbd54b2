"""faster-coco-eval as the COCOeval backend: the same 12 stats, per-class AP and PR curves as pycocotools.

Measured (see benchmarks/RESULTS.md): the stats agree to within ~3e-17 and are often bit-equal; the
C++ accumulation rounds some precision entries one ulp (2.2e-16) differently, so the tests allow
1e-12 and check the recall array exactly.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo_core.errors import OptionError, UnknownNameError
from zoo_core.task import Batch
from zoo_tasks.coco_eval import resolve_coco_backend, run_cocoeval, synthetic_coco
from zoo_tasks.det_metrics import STAT_NAMES, DetectionMetrics, coco_metrics
from zoo_tasks.detection import DetectionTask

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-12

CASES = {  # name: synthetic_coco arguments
    "crowd_and_empty_images": dict(num_images=40, num_classes=6, crowd_fraction=0.3, empty_fraction=0.3, seed=1),
    "many_detections_past_maxdets": dict(num_images=20, num_classes=4, gt_per_image=12, dets_per_image=300, seed=2),
    "few_detections_many_classes": dict(num_images=30, num_classes=40, gt_per_image=2, dets_per_image=3, seed=3),
    "coco_like": dict(num_images=40, num_classes=20, seed=4),
}


def both(gt: dict, dets: list[dict]) -> tuple:
    ref = run_cocoeval(copy.deepcopy(gt), copy.deepcopy(dets), backend="pycocotools")
    fast = run_cocoeval(copy.deepcopy(gt), copy.deepcopy(dets), backend="faster")
    return ref, fast


def drop_class_predictions(dets: list[dict], category_id: int) -> list[dict]:
    return [d for d in dets if d["category_id"] != category_id]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_12_stats_and_arrays_equal_pycocotools(case):
    gt, dets = synthetic_coco(**CASES[case])
    dets = drop_class_predictions(dets, 1)  # a class with ground truth but no predictions
    gt["categories"].append({"id": len(gt["categories"]) + 1, "name": "never_seen"})  # no GT, no predictions
    ref, fast = both(gt, dets)
    a, b = np.asarray(ref.stats, dtype=float), np.asarray(fast.stats[:12], dtype=float)
    assert a.shape == (12,)
    assert np.abs(a - b).max() <= TOL, (case, a - b)
    assert a[0] > 0.0  # a non-trivial case
    assert np.abs(ref.eval["precision"] - fast.eval["precision"]).max() <= TOL
    assert np.array_equal(ref.eval["recall"], fast.eval["recall"])
    assert list(ref.params.catIds) == [int(c) for c in fast.params.catIds]


def test_the_cases_cover_what_they_claim():
    gt, dets = synthetic_coco(**CASES["crowd_and_empty_images"])
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert len({a["image_id"] for a in gt["annotations"]}) < len(gt["images"])  # images without GT
    gt, dets = synthetic_coco(**CASES["many_detections_past_maxdets"])
    per_image = np.bincount([d["image_id"] for d in dets])
    assert per_image.max() > 100
    ref = run_cocoeval(gt, dets, backend="pycocotools")
    assert min(ref.stats[3:6]) > -1  # small, medium and large ground truth all present


@pytest.mark.parametrize("case", ["crowd_and_empty_images", "few_detections_many_classes"])
def test_reported_per_class_ap_and_pr_curves_match(case):
    gt, dets = synthetic_coco(**CASES[case])
    dets = drop_class_predictions(dets, 2)
    names = [c["name"] for c in gt["categories"]]
    ref = coco_metrics(copy.deepcopy(gt), copy.deepcopy(dets), names, backend="pycocotools")
    fast = coco_metrics(copy.deepcopy(gt), copy.deepcopy(dets), names, backend="faster")
    assert ref["per_class_ap"].keys() == fast["per_class_ap"].keys()
    assert ref["per_class_ap"][names[1]] == 0.0
    for name, value in ref["per_class_ap"].items():
        assert (value is None) == (fast["per_class_ap"][name] is None), name
        if value is not None:
            assert abs(value - fast["per_class_ap"][name]) <= TOL, name
    assert ref["pr_curve"]["recall"] == fast["pr_curve"]["recall"]
    for name, curve in ref["pr_curve"]["precision"].items():
        assert np.abs(np.array(curve) - np.array(fast["pr_curve"]["precision"][name])).max() <= TOL, name


def test_detection_metrics_fed_per_batch_equal_pycocotools_on_the_list():
    gt, dets = synthetic_coco(num_images=24, num_classes=5, seed=7)
    names = [c["name"] for c in gt["categories"]]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_coco_eval import zoo_batches
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    expected = run_cocoeval(copy.deepcopy(gt), copy.deepcopy(dets), backend="pycocotools").stats
    for backend in ("faster", "pycocotools"):
        metrics = DetectionMetrics(names, backend=backend)
        for outputs, batch in zoo_batches(gt, dets, batch_size=5):
            metrics.update(outputs, batch)
        metrics.update(*zoo_batches(gt, dets, batch_size=5)[0])  # repeated images count once
        got = metrics.compute()
        assert np.abs(np.array([got[k] for k in STAT_NAMES]) - expected).max() <= TOL, backend
        _, rebuilt = metrics.coco_inputs()
        assert rebuilt == [{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in
                           sorted(dets, key=lambda d: d["image_id"])]  # float32 boxes come back exactly


def test_backend_setting_reaches_the_metrics_and_is_checked():
    assert resolve_coco_backend("auto") == "faster"  # installed in this environment
    assert DetectionTask().new_metrics(["a"]).backend == "auto"
    assert DetectionTask(coco_backend="pycocotools").new_metrics(["a"]).backend == "pycocotools"
    with pytest.raises(OptionError, match="coco_backend='pycocotool'.*'pycocotools'"):  # refused where it enters
        DetectionTask(coco_backend="pycocotool")
    with pytest.raises(UnknownNameError, match="pycocotools"):
        resolve_coco_backend("pycocotool")
    metrics = DetectionTask(coco_backend="pycocotools").new_metrics(["a"])
    out = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([0])}
    meta = {"image_id": 1, "orig_size": (20, 20), "gt_boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
            "gt_labels": torch.tensor([0]), "gt_areas": torch.tensor([100.0]), "gt_crowd": torch.tensor([False])}
    metrics.update([out], Batch(inputs=[], meta=[meta]))
    assert metrics.compute()["map"] == pytest.approx(1.0)


def test_benchmark_script_tiny_prints_parseable_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_coco_eval.py"), "--tiny"],
                          capture_output=True, text=True, timeout=120, check=True)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("pycocotools "))
    m = re.match(r"pycocotools ([\d.]+) s, faster-coco-eval ([\d.]+) s, ratio ([\d.]+), stats identical: "
                 r"(True|False) \(max \|diff\| ([\d.e+-]+)", line)
    assert m, line
    assert m.group(4) == "True" and float(m.group(5)) <= TOL
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0
    zoo = next(l for l in proc.stdout.splitlines() if l.startswith("zoo DetectionMetrics"))
    assert "stats identical: True" in zoo
