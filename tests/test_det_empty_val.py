"""Detection: an evaluation set without boxes is refused by name, and COCOeval's -1 is never a score.

Before: a validation file without annotations trained and reported -1 for every metric; a size
bucket without ground truth (no medium objects) reported ``map_medium == -1`` as if it were a score,
into metrics.csv, the monitor and the model card.
"""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch

from det_helpers import det_data, edited_copy  # noqa: F401  (det_data is a fixture)
import zoo_core as zoo
from zoo_core.errors import DataError
from zoo_core.task import Batch
from zoo_tasks.coco_eval import synthetic_coco
from zoo_tasks.det_metrics import STAT_NAMES, DetectionMetrics, coco_metrics

NAMES = ["circle", "square", "triangle"]
QUIET = {"num_workers": 0, "verbose": False, "tensorboard": False, "progress_bar": False}


@pytest.fixture(scope="module")
def small_det():
    torch.manual_seed(0)
    return zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=NAMES, min_size=64,
                     max_size=64, fpn_channels=16, representation_size=32, max_levels=3,
                     rpn_batch_size_per_image=32, box_batch_size_per_image=32)


def no_boxes(coco: dict) -> None:
    coco["annotations"] = []


def only_crowd(coco: dict) -> None:
    for ann in coco["annotations"]:
        ann["iscrowd"] = 1


@pytest.mark.parametrize("edit", [no_boxes, only_crowd])
def test_an_evaluation_set_without_boxes_is_refused_by_evaluate(det_data, tmp_path, small_det, edit):
    val = edited_copy(det_data, tmp_path, edit, split="val")
    with pytest.raises(DataError, match=rf"{val / 'annotations.json'}: no boxes in this evaluation split \(6 "
                                        r"image\(s\).*mAP is undefined.*choose another validation split"):
        zoo.evaluate(small_det, val, plots=False, num_workers=0)


def test_the_trainer_refuses_it_before_the_first_step(det_data, tmp_path, small_det):
    val = edited_copy(det_data, tmp_path, no_boxes, split="val")
    before = {k: v.clone() for k, v in small_det.state_dict().items()}
    with pytest.raises(DataError, match="no boxes in this evaluation split"):
        zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(small_det, det_data, val)
    assert not (tmp_path / "run" / "last.pt").exists()
    assert all(torch.equal(before[k], v) for k, v in small_det.state_dict().items())  # not one step taken


def test_metrics_fed_images_without_ground_truth_refuse_to_compute():
    metrics = DetectionMetrics(NAMES)
    meta = [{"image_id": i, "orig_size": (64, 64), "gt_boxes": torch.zeros(0, 4), "gt_labels": torch.zeros(0).long(),
             "gt_areas": torch.zeros(0).double(), "gt_crowd": torch.zeros(0).bool()} for i in (1, 2)]
    out = [{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}] * 2
    metrics.update(out, Batch([torch.zeros(3, 64, 64)] * 2, None, meta))
    with pytest.raises(DataError, match=r"no ground-truth boxes in the 2 evaluated image\(s\).*mAP is undefined"):
        metrics.compute()


def only_small(gt: dict) -> dict:
    gt = copy.deepcopy(gt)
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] < 32 ** 2]
    return gt


def test_undefined_size_buckets_are_left_out_and_named_never_minus_one():
    gt, dets = synthetic_coco(num_images=12, num_classes=3, seed=2)
    gt = only_small(gt)
    assert gt["annotations"] and all(a["area"] < 32 ** 2 for a in gt["annotations"])
    for detections in (dets, []):  # scored by COCOeval, and the no-detections shortcut
        with pytest.warns(UserWarning, match=r"map_medium, map_large, mar_medium, mar_large left out.*no medium "
                                             r"\(32²-96² px\) or large \(> 96² px\) ground-truth box"):
            out = coco_metrics(copy.deepcopy(gt), copy.deepcopy(detections), ["a", "b", "c"], backend="pycocotools")
        assert set(STAT_NAMES) - set(out) == {"map_medium", "map_large", "mar_medium", "mar_large"}
        assert set(out["undefined_metrics"]) == {"map_medium", "map_large", "mar_medium", "mar_large"}
        assert all(out[k] >= 0 for k in STAT_NAMES if k in out) and "map_small" in out
    gt["categories"].append({"id": 4, "name": "never"})  # a class without ground truth: AP None, no curve
    out = coco_metrics(copy.deepcopy(gt), copy.deepcopy(dets), ["a", "b", "c", "never"], backend="pycocotools")
    assert out["per_class_ap"]["never"] is None and "never" not in out["pr_curve"]["precision"]


def test_a_run_whose_validation_lacks_a_size_logs_and_saves_no_minus_one(det_data, tmp_path, small_det):
    coco = json.loads((det_data / "val" / "annotations.json").read_text())
    assert all(a["area"] < 32 ** 2 for a in coco["annotations"])  # the shapes are all small at 96 px
    result = zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=1, out_dir=tmp_path, plots=False,
                         monitor="map_small", **QUIET).fit(small_det, det_data)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert "map_small" in rows[0] and "map_medium" not in rows[0] and "map_large" not in result.metrics
    assert all(float(v) >= 0 for r in rows for k, v in r.items() if k.startswith(("map", "mar")))
    saved = json.loads((result.model_dir / "config.json").read_text())["metrics"]
    assert "map_small" in saved and not any(v == -1 for v in saved.values())
    card = (result.model_dir / "README.md").read_text()
    assert "map_small" in card and "map_medium" not in card and "-1.0" not in card


def test_watching_a_size_bucket_the_validation_leaves_undefined_says_why(det_data, tmp_path, small_det):
    with pytest.raises(DataError, match=r"map_medium, which the best checkpoint watches, is undefined in this "
                                        r"validation: .*medium.*Watch a metric that every validation defines"):
        zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=1, out_dir=tmp_path, plots=False,
                    monitor="map_medium", **QUIET).fit(small_det, det_data)
