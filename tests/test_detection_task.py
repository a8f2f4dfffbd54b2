"""The detection task: COCO sources, bad annotations, collate/loss/predict, and a Faster R-CNN that learns."""

from __future__ import annotations

import json
import math

import pytest
import torch

import zoo_core as zoo
from det_helpers import det_data, edited_copy  # noqa: F401  (det_data is a fixture)
from zoo_core.errors import DataError
from zoo_core.task import Detections
from zoo_tasks.det_data import read_coco, resolve_source

NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def small_det():
    """A small composed Faster R-CNN (torchvision resnet18 trunk) at 96 px."""
    torch.manual_seed(0)
    return zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=NAMES,
                     min_size=96, max_size=96, fpn_channels=32, representation_size=64, max_levels=3,
                     rpn_batch_size_per_image=64, box_batch_size_per_image=64)


# ---- finding and reading data -------------------------------------------------------------------
def test_every_source_form_finds_the_same_files(det_data):
    split_dir = det_data / "train"
    expected = (split_dir / "annotations.json", split_dir / "images")
    assert resolve_source(det_data, "train") == expected  # a root with train/ and val/
    assert resolve_source(split_dir, "val") == expected  # a folder holding annotations.json
    assert resolve_source(split_dir / "annotations.json", "train") == expected
    assert resolve_source((split_dir / "images", split_dir / "annotations.json"), "train") == expected
    with pytest.raises(DataError, match="no COCO annotation file"):
        resolve_source(split_dir / "images", "train")


def test_labels_are_contiguous_in_category_id_order(det_data, tmp_path):
    def renumber(coco):  # category ids 7, 3, 11 -> labels by ascending id
        ids = {1: 7, 2: 3, 3: 11}
        for c in coco["categories"]:
            c["id"] = ids[c["id"]]
        for a in coco["annotations"]:
            a["category_id"] = ids[a["category_id"]]

    src = edited_copy(det_data, tmp_path, renumber)
    index = read_coco(src / "annotations.json", src / "images")
    assert index.class_names == ["square", "circle", "triangle"] and index.category_ids == [3, 7, 11]
    ordered = read_coco(src / "annotations.json", src / "images", class_names=["triangle", "circle", "square", "x"])
    assert ordered.category_ids[:3] == [11, 7, 3]


# ---- bad annotations ----------------------------------------------------------------------------
def test_bad_boxes_are_dropped_or_clamped_with_warnings_naming_the_ids(det_data, tmp_path):
    def damage(coco):
        a = coco["annotations"]
        a[0]["bbox"][2] = 0                      # zero width -> dropped
        a[1]["bbox"] = [-10.0, -10.0, 30.0, 30.0]  # partly outside -> clamped
        a[2]["bbox"] = [500.0, 500.0, 10.0, 10.0]  # wholly outside -> dropped

    src = edited_copy(det_data, tmp_path, damage)
    ids = [a["id"] for a in json.loads((src / "annotations.json").read_text())["annotations"][:3]]
    with pytest.warns(UserWarning) as record:
        index = read_coco(src / "annotations.json", src / "images")
    text = " | ".join(str(w.message) for w in record)
    assert f"zero or negative width/height (annotation ids {ids[0]})" in text
    assert f"partly outside their image to the image (annotation ids {ids[1]})" in text
    assert f"wholly outside their image (annotation ids {ids[2]})" in text
    boxes = [b for r in index.records for b in r.boxes]
    assert [0.0, 0.0, 20.0, 20.0] in boxes
    total = len(json.loads((src / "annotations.json").read_text())["annotations"])
    assert len(boxes) == total - 2


def test_a_degenerate_polygon_is_warned_about_by_annotation_id(det_data, tmp_path):
    def damage(coco):
        coco["annotations"][3]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # two points: no polygon

    src = edited_copy(det_data, tmp_path, damage)
    aid = json.loads((src / "annotations.json").read_text())["annotations"][3]["id"]
    with pytest.warns(UserWarning, match=rf"fewer than 3 \(x, y\) points.*\(ids {aid}\)"):
        index = read_coco(src / "annotations.json", src / "images")
    total = len(json.loads((src / "annotations.json").read_text())["annotations"])
    assert sum(len(r.boxes) for r in index.records) == total  # its box still trains


@pytest.mark.parametrize("damage, message", [
    (lambda c: c["annotations"][4].update(category_id=99), r"annotation \d+ has category_id 99"),
    (lambda c: c["annotations"][5].update(id=c["annotations"][4]["id"]), r"duplicate annotation id \d+"),
    (lambda c: c["annotations"][1].update(bbox=[1, 2, 3]), r"annotation \d+ has bbox \[1, 2, 3\]"),
    (lambda c: c["annotations"][1].update(image_id=12345), r"refers to image_id 12345"),
    (lambda c: c.update(images=[], annotations=[]), "empty annotation file"),
    (lambda c: c.update(annotations=[]), "no image has a usable"),
])
def test_broken_files_raise_a_named_error(det_data, tmp_path, damage, message):
    src = edited_copy(det_data, tmp_path, damage)
    with pytest.raises(DataError, match=message) as err:
        read_coco(src / "annotations.json", src / "images")
    assert "annotations.json" in str(err.value)


def test_crowd_boxes_stay_out_of_training_targets_but_reach_the_metrics(det_data, tmp_path, small_det):
    def crowd(coco):
        first = coco["images"][0]["id"]
        for a in coco["annotations"]:
            if a["image_id"] == first:
                a["iscrowd"] = 1

    src = edited_copy(det_data, tmp_path, crowd)
    ds = small_det.task_impl.read_dataset(src, split="train", train=True, model=small_det)
    image, target, meta = ds[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert meta["gt_crowd"].all() and len(meta["gt_boxes"]) > 0


def test_empty_images_train_as_negatives_and_can_be_filtered(det_data, tmp_path, small_det):
    def empty_two(coco):
        gone = {coco["images"][0]["id"], coco["images"][1]["id"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in gone]

    src = edited_copy(det_data, tmp_path, empty_two)
    task = small_det.task_impl
    ds = task.read_dataset(src, split="train", train=True, model=small_det)
    assert len(ds) == 6
    batch = task.collate([ds[0], ds[1]])  # both without boxes
    assert all(t["boxes"].shape == (0, 4) for t in batch.targets)
    small_det.train()
    losses = task.loss(small_det, batch)
    assert math.isfinite(float(losses["loss"].detach())) and "loss_objectness" in losses
    small_det.config["task_options"] = {"filter_empty": True}
    try:
        assert len(task.read_dataset(src, split="train", train=True, model=small_det)) == 4
    finally:
        small_det.config.pop("task_options")


def test_more_categories_than_the_model_predicts_is_refused(det_data):
    model = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", num_classes=2, min_size=64,
                      max_size=64, fpn_channels=16, representation_size=16)
    with pytest.raises(DataError, match="num_classes=3"):
        model.task_impl.read_dataset(det_data, split="val", train=False, model=model)


# ---- predict ------------------------------------------------------------------------------------
def test_predict_returns_boxes_in_input_image_pixels(small_det):
    small_det.eval()
    wide = torch.rand(3, 60, 150)
    (pred,) = small_det.predict(wide)
    assert isinstance(pred, Detections) and pred.source == "<tensor 0>"
    assert len(pred) == len(pred.names) == len(pred.scores) > 0
    assert pred.boxes[:, 2].max() <= 150 + 1e-3 and pred.boxes[:, 3].max() <= 60 + 1e-3
    assert pred.boxes[:, [2, 3]].max() > 96  # mapped back from the model's 96 px resize, not clipped to it
    assert set(pred.names) <= set(NAMES)
    none = small_det.predict(wide, score_threshold=1.01)[0]
    assert len(none) == 0


def test_prediction_plot_draws_only_confident_boxes(small_det, det_data, tmp_path, monkeypatch):
    import matplotlib.axes
    import numpy as np
    from PIL import Image

    from zoo_tasks.det_plots import predictions_png

    ds = small_det.task_impl.read_dataset(det_data, split="val", train=False, model=small_det)

    def red_pixels(**kw):
        path = predictions_png(small_det, ds, tmp_path / f"p{len(kw)}{kw.get('max_boxes', 0)}.png", n=2, **kw)
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum())

    titles = []
    real_set_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda ax, text, *a, **kw: titles.append(text) or real_set_title(ax, text, *a, **kw))
    none = red_pixels(score_threshold=1.01)   # random weights: nothing clears an impossible threshold
    few = red_pixels(score_threshold=0.0, max_boxes=1)
    many = red_pixels(score_threshold=0.0, max_boxes=20)
    assert none < few < many, (none, few, many)
    assert titles[0].endswith(": 0 prediction(s) >= 1.01")
    total = int(titles[2].split(": ")[1].split()[0])  # the title counts every prediction, not only those drawn
    assert total > 1 and titles[2].endswith(f"{total} prediction(s) >= 0, best 1 drawn"), titles


# ---- learning -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_small_faster_rcnn_overfits_a_few_synthetic_images(det_data, tmp_path):
    """Trained from scratch on 4 images until COCO mAP@0.5 on them is high (fails if learning is broken)."""
    def four(coco):
        keep = {i["id"] for i in coco["images"][:4]}
        coco["images"] = [i for i in coco["images"] if i["id"] in keep]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]

    src = edited_copy(det_data, tmp_path, four)
    torch.manual_seed(0)
    model = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=NAMES,
                      min_size=96, max_size=96, fpn_channels=64, representation_size=128,
                      rpn_batch_size_per_image=64, box_batch_size_per_image=64)
    task = model.task_impl
    ds = task.read_dataset(src, split="train", train=False, model=model)
    batch = task.collate([ds[i] for i in range(len(ds))])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy shared CPU, 2 spinning OpenMP threads run ~10x slower than 1
    try:
        for _ in range(40):
            loss = task.loss(model, batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    metrics = task.new_metrics(model.class_names)
    with torch.no_grad():
        metrics.update(task.forward_eval(model, batch), batch)
    result = metrics.compute()
    print(f"Faster R-CNN after 40 steps on 4 images: map {result['map']:.3f}, map_50 {result['map_50']:.3f}")
    assert result["map_50"] > 0.8, result
