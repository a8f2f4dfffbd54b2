"""Format detection (one function, evidence named, two formats an error saying how to pick), ``zoo data
check`` (counts, classes, boxes, sizes, bad files named with their line, exit 1) and ``zoo data convert``
(COCO -> YOLO -> COCO round trip, VOC -> COCO) (issue 13)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from formats_helpers import coco_split, shapes_det, small_det, write_voc, write_yolo  # noqa: F401
from zoo_core.cli import main
from zoo_core.data.folders import scan_image_folder
from zoo_core.data.layouts import detect_format, find_layouts
from zoo_core.data.shapes import SHAPES, make_shapes
from zoo_core.errors import DataError


@pytest.fixture(scope="module")
def layouts(shapes_det, tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    write_yolo(shapes_det, base / "yolo")
    write_voc(shapes_det, base / "voc" / "VOCdevkit" / "VOC2007")
    make_shapes(base / "masks", layout="masks", n_train=2, n_val=1, image_size=32)
    for split in ("train", "val"):
        (base / "cs" / "leftImg8bit" / split).mkdir(parents=True)
        (base / "cs" / "gtFine" / split).mkdir(parents=True)
    for cls in ("cat", "dog"):
        (base / "cls" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(base / "cls" / cls / "0.png")
    return base


@pytest.mark.parametrize("folder, fmt, task, evidence", [
    ("coco", "coco", "detection", "train/annotations.json"),
    ("yolo", "yolo", "detection", "data.yaml + labels/*.txt + images/"),
    ("voc", "voc", "detection", "VOCdevkit/VOC2007/Annotations/*.xml + VOCdevkit/VOC2007/JPEGImages/"),
    ("masks", "masks", "segmentation", "train/images/ + train/masks/"),
    ("cs", "cityscapes", "segmentation", "leftImg8bit/ + gtFine/"),
    ("cls", "imagefolder", "classification", "2 class folder(s) in ./: cat, dog"),
])
def test_each_layout_is_detected_naming_its_evidence(layouts, shapes_det, folder, fmt, task, evidence):
    path = shapes_det if folder == "coco" else layouts / folder
    found = detect_format(path)
    assert (found.format, found.task, found.evidence) == (fmt, task, evidence)


def test_two_formats_in_one_folder_is_an_error_naming_both_and_how_to_pick(shapes_det, tmp_path, small_det):
    both = tmp_path / "both"
    shutil.copytree(shapes_det / "val", both)  # annotations.json + images/
    write_yolo(shapes_det, tmp_path / "y")
    shutil.copytree(tmp_path / "y" / "labels" / "val", both / "labels")
    with pytest.raises(DataError, match=r"both holds 2 dataset formats: coco \(annotations.json\) and yolo "
                                        r"\(labels/\*\.txt \+ images/\); pick one with format= \(task_options="
                                        r"\{'format': 'coco'\}; zoo train --task-option format=coco; zoo data check "
                                        r"--format coco\)"):
        small_det.task_impl.read_dataset(both, split="val", train=False, model=small_det)
    small_det.config["task_options"] = {"format": "yolo"}
    try:
        ds = small_det.task_impl.read_dataset(both, split="val", train=False, model=small_det)
    finally:
        small_det.config.pop("task_options")
    assert ds.index.json_path == both / "images" and len(ds) == 4  # read as YOLO (names from the model)
    with pytest.raises(DataError, match=r"both: format='voc' was asked for, but no Pascal VOC .* was found there; it "
                                        r"holds coco \(annotations.json\), yolo"):
        detect_format(both, format="voc")
    assert main(["data", "check", str(both)]) == 1
    assert main(["data", "check", str(both), "--format", "coco"]) == 0


def test_voc_boxes_and_masks_in_one_folder_need_a_task(layouts, tmp_path, capsys):
    voc = tmp_path / "VOC2012"
    shutil.copytree(layouts / "voc" / "VOCdevkit" / "VOC2007", voc)
    (voc / "SegmentationClass").mkdir()
    assert {(lay.format, lay.task) for lay in find_layouts(voc)} == {("voc", "detection"), ("voc", "segmentation")}
    assert main(["data", "check", str(voc)]) == 1
    assert "data of 2 tasks: pass --task det or --task seg" in capsys.readouterr().err
    assert main(["data", "check", str(voc), "--task", "det"]) == 0


def test_classification_refuses_yolo_and_voc_folders_naming_the_task(layouts):
    for folder in ("yolo", "voc"):
        with pytest.raises(DataError, match=r"looks like detection data .*--task det"):
            scan_image_folder(layouts / folder)


def test_zoo_data_check_prints_counts_and_exits_0_on_good_data(shapes_det, capsys):
    assert main(["data", "check", str(shapes_det)]) == 0
    out = capsys.readouterr().out
    train = coco_split(shapes_det, "train")
    per_image = [sum(a["image_id"] == img["id"] for a in train["annotations"]) for img in train["images"]]
    assert f"min {min(per_image)} / mean {np.mean(per_image):.2f} / max {max(per_image)}" in out
    assert "boxes per class" in out and "most common 64x64 (6)" in out and "ok (2 split(s) checked)" in out
    assert main(["data", "check", str(shapes_det), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["images"] for s in report["splits"]] == [6, 4] and report["splits"][0]["class_names"] == list(SHAPES)


def test_zoo_data_check_names_every_bad_file_and_line_and_exits_1(shapes_det, tmp_path, capsys):
    root = write_yolo(shapes_det, tmp_path / "y")
    labels = root / "labels" / "train"
    (labels / "00000.txt").write_text("0 0.5 0.5 0.2\n")  # 4 numbers
    (labels / "00001.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")  # class 7 of 3
    (labels / "00002.txt").write_text("1 0.99 0.5 0.2 0.2\n")  # partly outside: clamped
    (root / "images" / "train" / "00003.png").write_bytes(b"not a png")
    assert main(["data", "check", str(root), "--split", "train", "--json"]) == 1
    problems = "\n".join(json.loads(capsys.readouterr().out)["splits"][0]["problems"])
    assert f"{labels / '00000.txt'}:1: 4 value(s)" in problems
    assert f"{labels / '00001.txt'}:2: class id 7 is out of range" in problems
    assert "clamped 1 box(es) partly outside their image to the image (lines 00002.txt:1)" in problems
    assert "00003.png: unreadable image" in problems
    assert main(["data", "check", str(root), "--split", "train"]) == 1
    assert "4 problem(s)" in capsys.readouterr().out


def test_zoo_data_check_of_masks_names_the_file_and_pixel(tmp_path, capsys):
    root = make_shapes(tmp_path / "seg", layout="masks", n_train=2, n_val=1, image_size=32)
    mask = np.asarray(Image.open(root / "val" / "masks" / "00000.png")).copy()
    mask[4, 9] = 6
    Image.fromarray(mask).save(root / "val" / "masks" / "00000.png")
    assert main(["data", "check", str(root), "--split", "val", "--json"]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["splits"][0]["problems"]
    assert problem.startswith(str(root / "val" / "masks" / "00000.png")) and "[6]" in problem
    assert "the first at row 4, column 9" in problem


def _boxes(coco: dict) -> list[tuple[str, str, list[float]]]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: Path(img["file_name"]).name for img in coco["images"]}
    return sorted((files[a["image_id"]], names[a["category_id"]], a["bbox"]) for a in coco["annotations"])


def test_coco_to_yolo_to_coco_keeps_boxes_and_names(shapes_det, tmp_path, capsys):
    odd = tmp_path / "odd"
    shutil.copytree(shapes_det, odd)
    for split in ("train", "val"):  # category ids 7, 3, 11: labels follow the ids, names travel with them
        coco = coco_split(odd, split)
        ids = {1: 7, 2: 3, 3: 11}
        for c in coco["categories"]:
            c["id"] = ids[c["id"]]
        for a in coco["annotations"]:
            a["category_id"] = ids[a["category_id"]]
        (odd / split / "annotations.json").write_text(json.dumps(coco))
    assert main(["data", "convert", str(odd), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert "coco -> yolo" in capsys.readouterr().out
    assert main(["data", "convert", str(tmp_path / "yolo"), str(tmp_path / "back"), "--from", "yolo",
                 "--to", "coco"]) == 0
    for split in ("train", "val"):
        before, after = _boxes(coco_split(odd, split)), _boxes(coco_split(tmp_path / "back", split))
        assert [b[:2] for b in before] == [a[:2] for a in after]
        for (_, _, want), (_, _, got) in zip(before, after):
            assert got == pytest.approx(want, rel=1e-6)
        assert [c["name"] for c in coco_split(tmp_path / "back", split)["categories"]] == ["square", "circle",
                                                                                          "triangle"]
    assert main(["data", "convert", str(odd), str(tmp_path / "yolo"), "--to", "yolo"]) == 1  # never writes over
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_voc_to_coco_keeps_boxes_and_difficult_as_crowd(shapes_det, tmp_path):
    voc = write_voc(shapes_det, tmp_path / "VOC2012", difficult_ids=(1,))
    assert main(["data", "convert", str(voc), str(tmp_path / "coco"), "--to", "coco"]) == 0
    got = _boxes(coco_split(tmp_path / "coco", "val"))
    want = _boxes(coco_split(shapes_det, "val"))
    assert [(f"val_{name}", cls) for name, cls, _ in want] == [b[:2] for b in got]  # the VOC ids name the images
    for (_, _, box), (_, _, have) in zip(want, got):
        assert have == pytest.approx(box, rel=1e-9)
    assert sum(a["iscrowd"] for a in coco_split(tmp_path / "coco", "val")["annotations"]) == 1


def test_converted_images_from_outside_the_images_folder_keep_apart_and_a_clash_is_named(tmp_path):
    """COCO file_names resolved against the json's folder (``a/1.jpg``, ``b/1.jpg``) must not collapse
    into one ``1.jpg`` (the second image and its labels replacing the first)."""
    from zoo_tasks.formats.yolo import relative_names

    images = tmp_path / "images"
    paths = [images / "x.jpg", images / "sub" / "y.jpg", tmp_path / "a" / "1.jpg", tmp_path / "b" / "1.jpg"]
    assert [p.as_posix() for p in relative_names(paths, images)] == ["x.jpg", "sub/y.jpg", "a/1.jpg", "b/1.jpg"]
    with pytest.raises(DataError, match=r"a/x\.jpg would both be written as x\.jpg"):
        relative_names([images / "x.jpg", tmp_path / "a" / "x.jpg"], images)  # the one outside lands on x.jpg
