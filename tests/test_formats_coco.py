"""COCO exports as the tools write them, and the (images_dir, json) pair everywhere a path works (issue 13).

Before: a ``file_name`` carrying its folder (Label Studio's ``images/0001.jpg`` next to ``result.json``)
was looked for at ``images/images/0001.jpg`` and every image was "unreadable"; ``result.json`` and CVAT's
``annotations/instances_default.json`` were not found at all; ``Trainer.fit`` and ``zoo.evaluate``
refused the ``(images_dir, json)`` pair the docstrings promise.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from formats_helpers import QUIET, coco_split, jittered_predictions, map_of, shapes_det, small_det  # noqa: F401
import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.data.shapes import SHAPES
from zoo_core.errors import DataError


def label_studio(shapes_det: Path, out: Path, split: str = "val") -> Path:
    """Label Studio's COCO export: ``result.json`` beside ``images/``, file_name ``images/<name>``."""
    coco = coco_split(shapes_det, split)
    shutil.copytree(shapes_det / split / "images", out / "images")
    for img in coco["images"]:
        img["file_name"] = f"images/{img['file_name']}"
    (out / "result.json").write_text(json.dumps(coco))
    return out


def cvat(shapes_det: Path, out: Path, split: str = "val") -> Path:
    """CVAT's COCO export: ``annotations/instances_default.json`` + ``images/``."""
    shutil.copytree(shapes_det / split / "images", out / "images")
    (out / "annotations").mkdir()
    (out / "annotations" / "instances_default.json").write_text(json.dumps(coco_split(shapes_det, split)))
    return out


@pytest.mark.parametrize("export", [label_studio, cvat])
def test_tool_exports_read_the_same_boxes_as_the_plain_layout(shapes_det, tmp_path, small_det, export):
    src = export(shapes_det, tmp_path / "export")
    task = small_det.task_impl
    ds = task.read_dataset(src, split="val", train=False, model=small_det)
    plain = task.read_dataset(shapes_det / "val", split="val", train=False, model=small_det)
    assert len(ds) == len(plain) == 4 and all(rec.path.is_file() for rec in ds.index.records)
    assert task.source_class_names(src, split="val") == list(SHAPES)
    preds = jittered_predictions(coco_split(shapes_det, "val"))
    got, want = map_of(ds, preds), map_of(plain, preds)
    assert 0.1 < want["map"] < 0.95  # a score that depends on every box
    assert got["map"] == pytest.approx(want["map"], abs=1e-9) and got["map_50"] == pytest.approx(want["map_50"])


def test_an_image_found_nowhere_names_every_place_looked(shapes_det, tmp_path, small_det):
    src = label_studio(shapes_det, tmp_path / "ls")
    coco = json.loads((src / "result.json").read_text())
    coco["images"][0]["file_name"] = "images/gone.png"
    (src / "result.json").write_text(json.dumps(coco))
    with pytest.warns(UserWarning, match=r"1 of 4 image\(s\) not found \(the first, gone.png, was looked for at "
                                         rf".*{src / 'images' / 'images' / 'gone.png'}, {src / 'images' / 'gone.png'}"):
        ds = small_det.task_impl.read_dataset(src, split="val", train=False, model=small_det)
    with pytest.raises(DataError, match=r"gone.png \(image 1 of .*result.json\): image file not found at .*images/"
                                        r"images/gone.png, .*ls/images/gone.png"):
        ds[0]
    for img in coco["images"]:
        img["file_name"] = "elsewhere/" + img["file_name"]
    (src / "result.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"none of its 4 image\(s\) was found; the first was looked for at .*"
                                        r"elsewhere/images/gone.png"):
        small_det.task_impl.read_dataset(src, split="val", train=False, model=small_det)


def test_the_pair_works_for_fit_evaluate_and_class_names(shapes_det, tmp_path, small_det):
    pair = {s: (shapes_det / s / "images", shapes_det / s / "annotations.json") for s in ("train", "val")}
    assert small_det.task_impl.source_class_names(pair["train"], split="train") == list(SHAPES)
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(small_det, pair["train"],
                                                                                       list(pair["val"]))
    assert fit.steps == 3 and math.isfinite(fit.metrics["map"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_pair = zoo.evaluate(small_det, pair["val"], plots=False, num_workers=0)
        by_path = zoo.evaluate(small_det, shapes_det / "val", plots=False, num_workers=0)
    assert by_pair.scalars() == by_path.scalars() and by_pair.num_images == 4
    assert fit.metrics["map"] == pytest.approx(by_path["map"], abs=1e-9)  # the fit validated on the same pair


def test_zoo_train_takes_the_pair_from_its_yaml(shapes_det, tmp_path):
    config = {"model": "fasterrcnn_mobilenet_v3_large_320_fpn", "task": "det",
              "train": [str(shapes_det / "train" / "images"), str(shapes_det / "train" / "annotations.json")],
              "val": "none", "max_epochs": 1, "limit_train_batches": 1, "batch_size": 2, "image_size": 64,
              "num_workers": 0,
              "out_dir": str(tmp_path / "run"), "progress_bar": False}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 0
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["class_names"] == list(SHAPES)  # the head was sized from the pair's categories
