"""YOLO txt labels (Ultralytics layout, Roboflow's, data.yaml names as a list or a dict) read into the same
records as COCO; bad label lines are errors naming the file and line (issue 13).

Before: a YOLO folder was "no COCO annotation file" for detection, and read as two classes, ``images``
and ``labels``, by classification.
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from formats_helpers import (QUIET, coco_split, jittered_predictions, map_of, shapes_det, small_det,  # noqa: F401
                             write_yolo)
import zoo_core as zoo
from zoo_core.data.shapes import SHAPES
from zoo_core.errors import DataError
from zoo_tasks.formats.yolo import read_yolo


@pytest.fixture(scope="module")
def yolo_root(shapes_det, tmp_path_factory):
    return write_yolo(shapes_det, tmp_path_factory.mktemp("yolo") / "ds")


def _records(index):
    return [(rec.path.name, rec.width, rec.height, rec.labels, rec.boxes) for rec in index.records]


@pytest.mark.parametrize("as_dict", [False, True])
def test_yolo_boxes_equal_the_coco_boxes_and_score_the_same(shapes_det, tmp_path, small_det, as_dict):
    root = write_yolo(shapes_det, tmp_path / "y", names_as_dict=as_dict)
    task = small_det.task_impl
    assert task.source_class_names(root, split="train") == list(SHAPES)
    ds = task.read_dataset(root, split="val", train=False, model=small_det)
    plain = task.read_dataset(shapes_det, split="val", train=False, model=small_det)
    assert [r[:4] for r in _records(ds.index)] == [r[:4] for r in _records(plain.index)]
    for mine, coco in zip(ds.index.records, plain.index.records):
        assert sum(mine.boxes, []) == pytest.approx(sum(coco.boxes, []), rel=1e-9, abs=1e-9)
    preds = jittered_predictions(coco_split(shapes_det, "val"))
    assert map_of(ds, preds)["map"] == pytest.approx(map_of(plain, preds)["map"], abs=1e-9)


def test_fit_validates_on_the_yolo_val_split_and_evaluates_as_coco(yolo_root, shapes_det, tmp_path, small_det):
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(small_det, yolo_root)
    assert fit.steps == 3 and "map" in fit.metrics and math.isfinite(fit.metrics["map"])  # images/val, no val= given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yolo = zoo.evaluate(small_det, yolo_root, plots=False, num_workers=0)
        coco = zoo.evaluate(small_det, shapes_det, plots=False, num_workers=0)
    assert yolo.num_images == coco.num_images == 4
    assert yolo.scalars() == pytest.approx(coco.scalars(), abs=1e-6)


def test_roboflow_layout_with_its_parent_relative_yaml(yolo_root, tmp_path, small_det):
    root = tmp_path / "rf"
    for split, name in (("train", "train"), ("val", "valid")):
        shutil.copytree(yolo_root / "images" / split, root / name / "images")
        shutil.copytree(yolo_root / "labels" / split, root / name / "labels")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "val": "../valid/images", "nc": 3,
                                                    "names": list(SHAPES)}))
    val = read_yolo(root, "val", train=False)
    want = read_yolo(yolo_root, "val", train=False)
    assert _records(val) == _records(want)


def _one_image(tmp_path: Path, label: str, names=("a", "b", "c")) -> Path:
    from PIL import Image

    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "x.png")
    (tmp_path / "labels" / "x.txt").write_text(label)
    if names is not None:
        (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": list(names)}))
    return tmp_path


@pytest.mark.parametrize("label, message", [
    ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", r"x.txt:2: 4 value\(s\) \('1 0.5 0.5 0.2'\); a YOLO label line is 'class cx "
                                          r"cy w h'"),
    ("0 0.5 0.5 0.2 0.2\n\n3 0.5 0.5 0.2 0.2\n", r"x.txt:3: class id 3 is out of range: .*data.yaml names 3 "
                                                r"class\(es\), ids 0..2"),
    ("1.5 0.5 0.5 0.2 0.2\n", r"x.txt:1: class id '1.5' is not a whole number"),
    ("0 0.5 zero 0.2 0.2\n", r"x.txt:1: .* holds a value that is not a number"),
    ("0 20 10 8 8\n", r"x.txt:1: values \[20.0, 10.0, 8.0, 8.0\] are not fractions .* look like pixels"),
])
def test_a_bad_label_line_names_file_and_line(tmp_path, label, message):
    root = _one_image(tmp_path, label)
    with pytest.raises(DataError, match=message) as info:
        read_yolo(root, "train")
    assert str(root / "labels" / "x.txt") in str(info.value)


def test_boxes_outside_the_image_are_clamped_or_dropped_naming_the_line(tmp_path):
    root = _one_image(tmp_path, "0 0.5 0.5 0.5 0.5\n1 0.95 0.5 0.2 0.5\n2 1.4 0.5 0.2 0.2\n")
    with pytest.warns(UserWarning) as caught:
        index = read_yolo(root, "train")
    text = " ".join(str(w.message) for w in caught)
    assert "clamped 1 box(es) partly outside their image to the image (lines x.txt:2)" in text
    assert "dropped 1 box(es) wholly outside their image (lines x.txt:3)" in text
    (rec,) = index.records
    assert rec.labels == [0, 1] and rec.boxes[1] == pytest.approx([34.0, 5.0, 40.0, 15.0])


def test_labels_without_names_ask_for_them_and_the_model_names_do(tmp_path):
    root = _one_image(tmp_path, "1 0.5 0.5 0.5 0.5\n", names=None)
    with pytest.raises(DataError, match=r"YOLO labels hold class ids only and no data.yaml .* class_names="):
        read_yolo(root, "train")
    index = read_yolo(root, "train", class_names=["p", "q"])
    assert index.class_names == ["p", "q"] and index.records[0].labels == [1]
    (root / "classes.txt").write_text("cat\ndog\n")  # Label Studio's YOLO export names them so
    assert read_yolo(root, "train").class_names == ["cat", "dog"]
