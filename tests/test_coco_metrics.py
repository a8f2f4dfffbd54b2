"""COCO metric parity: DetectionMetrics gives exactly what pycocotools' COCOeval gives when called directly."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from det_helpers import det_data, edited_copy  # noqa: F401  (det_data is a fixture)
from zoo_core.task import Batch
from zoo_tasks.det_data import CocoDetection, eval_transform, read_coco
from zoo_tasks.det_metrics import STAT_NAMES, DetectionMetrics


def fake_predictions(coco: dict, seed: int = 0) -> list[dict]:
    """Jittered copies of most ground-truth boxes (some with the wrong class) plus random false positives,
    with COCO category ids, as a detector's result list."""
    rng = random.Random(seed)
    cat_ids = [c["id"] for c in coco["categories"]]
    dets = []
    for ann in coco["annotations"]:
        if rng.random() < 0.15:
            continue  # a miss
        x, y, w, h = ann["bbox"]
        j = lambda v, s: v + rng.uniform(-s, s)  # noqa: E731
        cat = ann["category_id"] if rng.random() > 0.1 else rng.choice(cat_ids)
        dets.append({"image_id": ann["image_id"], "category_id": cat,
                     "bbox": [j(x, 3), j(y, 3), max(1.0, j(w, 4)), max(1.0, j(h, 4))], "score": rng.random()})
    for img in coco["images"]:
        for _ in range(rng.randint(0, 3)):
            x, y = rng.uniform(0, img["width"] - 20), rng.uniform(0, img["height"] - 20)
            dets.append({"image_id": img["id"], "category_id": rng.choice(cat_ids),
                         "bbox": [x, y, rng.uniform(5, 40), rng.uniform(5, 40)], "score": rng.random() * 0.5})
    return dets


def defined_stats(ev: COCOeval) -> dict[str, float]:
    """COCOeval's 12 numbers by name without its -1 ("undefined": the zoo leaves those keys out)."""
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats) if v >= 0}


def reported_stats(ours: dict) -> dict[str, float]:
    return {name: ours[name] for name in STAT_NAMES if name in ours}


def direct_cocoeval(json_path: Path, dets: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_path))
        ev = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def zoo_metrics(json_path: Path, dets: list[dict], batch_size: int = 3) -> dict:
    """Feed the same detections through the dataset -> collate -> DetectionMetrics path."""
    index = read_coco(json_path, json_path.parent / "images", train=False)
    ds = CocoDetection(index, eval_transform(), train=False)
    label_of = {cid: i for i, cid in enumerate(index.category_ids)}
    by_image: dict[int, list[dict]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
    metrics = DetectionMetrics(index.class_names)
    for start in range(0, len(ds), batch_size):
        samples = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        images, targets, meta = zip(*samples)
        outputs = []
        for m in meta:
            mine = by_image.get(m["image_id"], [])
            xywh = torch.tensor([d["bbox"] for d in mine], dtype=torch.float64).reshape(-1, 4)
            outputs.append({"boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                            "scores": torch.tensor([d["score"] for d in mine], dtype=torch.float64),
                            "labels": torch.tensor([label_of[d["category_id"]] for d in mine], dtype=torch.long)})
        metrics.update(outputs, Batch(list(images), list(targets), list(meta)))
    return metrics.compute(), metrics


def test_metrics_equal_a_direct_cocoeval_call(det_data):
    json_path = det_data / "val" / "annotations.json"
    coco = json.loads(json_path.read_text())
    dets = fake_predictions(coco)
    ev = direct_cocoeval(json_path, dets)
    ours, _ = zoo_metrics(json_path, dets)
    assert reported_stats(ours) == pytest.approx(defined_stats(ev), abs=1e-6)
    assert set(ours["undefined_metrics"]) == set(STAT_NAMES) - set(defined_stats(ev))  # no -1 reported
    assert 0.2 < ours["map"] < 0.95  # a non-trivial case: misses, confusions, false positives
    precision = ev.eval["precision"]
    for k, cat in enumerate(sorted(coco["categories"], key=lambda c: c["id"])):
        p = precision[:, :, k, 0, -1]
        assert ours["per_class_ap"][cat["name"]] == pytest.approx(float(p[p > -1].mean()), abs=1e-6)
    assert len(ours["pr_curve"]["recall"]) == 101


def test_crowd_regions_are_ignored_like_cocoeval(det_data, tmp_path):
    def crowd(coco):
        coco["annotations"][0]["iscrowd"] = coco["annotations"][3]["iscrowd"] = 1

    json_path = edited_copy(det_data, tmp_path, crowd, split="val") / "annotations.json"
    coco = json.loads(json_path.read_text())
    dets = fake_predictions(coco, seed=3)
    ev = direct_cocoeval(json_path, dets)
    ours, metrics = zoo_metrics(json_path, dets)
    assert reported_stats(ours) == pytest.approx(defined_stats(ev), abs=1e-6)
    gt, _ = metrics.coco_inputs()
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 2


def test_merged_accumulators_equal_one_pass(det_data):
    json_path = det_data / "val" / "annotations.json"
    dets = fake_predictions(json.loads(json_path.read_text()), seed=1)
    whole, full = zoo_metrics(json_path, dets)
    halves = []
    for keep in (0, 1):
        part = DetectionMetrics(full.class_names)
        part.images = {k: v for k, v in full.images.items() if k % 2 == keep}
        halves.append(part)
    halves[0].merge(halves[1])
    halves[0].merge(halves[1])  # a repeated image (padded distributed sampler) counts once
    merged = halves[0].compute()
    assert reported_stats(merged) == reported_stats(whole)


def test_no_predictions_at_all_is_map_zero_with_a_warning(det_data):
    with pytest.warns(UserWarning, match="no detections at all"):
        result, _ = zoo_metrics(det_data / "val" / "annotations.json", [])
    assert result["map"] == 0.0 and result["map_50"] == 0.0
    assert set(result["per_class_ap"].values()) == {0.0}
