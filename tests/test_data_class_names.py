"""``Task.source_class_names`` for detection and segmentation, and ``zoo train`` sizing their heads from it;
classification refusing detection/segmentation folders with an error that names the task to use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.commands.train import data_class_names
from zoo_core.data.folders import folder_class_names, scan_image_folder
from zoo_core.data.shapes import SEG_CLASS_NAMES, SHAPES, make_shapes
from zoo_core.errors import DataError

DET_MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
FAST = ["--max-epochs", "1", "--batch-size", "2", "--image-size", "64", "--num-workers", "0", "--no-progress-bar",
        "--val", "none"]


@pytest.fixture(scope="module")
def det_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("det") / "shapes", layout="coco", n_train=4, n_val=2, image_size=64,
                       seed=0)


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("seg") / "shapes", layout="masks", n_train=4, n_val=2, image_size=64,
                       seed=0)


def _coco(folder: Path, categories: list[dict]) -> Path:
    """A one-image COCO folder with one box per category (ids as given, in the given file order)."""
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "images" / "a.png")
    anns = [{"id": i + 1, "image_id": 1, "category_id": c["id"], "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}
            for i, c in enumerate(categories)]
    raw = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}], "annotations": anns,
           "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(raw))
    return folder


# ---- detection ----------------------------------------------------------------------------------
def test_detection_names_are_the_coco_categories_in_label_order(det_root: Path, tmp_path: Path) -> None:
    task = zoo.get_task("det")
    assert task.source_class_names(det_root, split="train") == list(SHAPES)  # a root with train/ and val/
    assert task.source_class_names(det_root / "val", split="val") == list(SHAPES)  # a split folder itself
    # ascending category id (the reader's label order), neither file order nor alphabetical
    odd = _coco(tmp_path / "odd", [{"id": 7, "name": "ant"}, {"id": 2, "name": "zebra"}, {"id": 5, "name": "cow"}])
    assert task.source_class_names(odd, split="train") == ["zebra", "cow", "ant"]
    model = zoo.load(DET_MODEL, task="det", class_names=["zebra", "cow", "ant"])
    ds = task.read_dataset(odd, split="train", train=False, model=model)
    assert ds.class_names == ["zebra", "cow", "ant"]
    assert sorted(ds[0][1]["labels"].tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match="no COCO annotation file"):  # not detection data: fails before a build
        task.source_class_names(tmp_path / "odd" / "images", split="train")


def test_zoo_train_sizes_a_detector_head_to_the_coco_categories(det_root: Path, tmp_path: Path, capsys) -> None:
    assert data_class_names(DET_MODEL, "det", det_root) == list(SHAPES)
    capsys.readouterr()
    assert main(["train", "--model", DET_MODEL, "--task", "det", "--data", str(det_root), *FAST,
                 "--out-dir", str(tmp_path / "run")]) == 0
    assert f"{DET_MODEL}: a 3-class head for the classes of" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["num_classes"] == 3 and config["class_names"] == list(SHAPES)
    model = zoo.load(tmp_path / "run" / "model")
    assert model.net.detector.roi_heads.box_predictor.cls_score.out_features == 3 + 1  # + torchvision's background
    preds = model.predict([str(next((det_root / "val" / "images").iterdir()))])
    assert set(preds[0].names) <= set(SHAPES)


# ---- segmentation -------------------------------------------------------------------------------
def test_segmentation_names_come_from_classes_txt(seg_root: Path, tmp_path: Path) -> None:
    task = zoo.get_task("seg")
    assert task.source_class_names(seg_root, split="train") == list(SEG_CLASS_NAMES)
    assert task.source_class_names(seg_root / "val", split="val") == list(SEG_CLASS_NAMES)  # root's classes.txt
    bare = tmp_path / "bare"
    shutil.copytree(seg_root / "train", bare / "train")
    assert task.source_class_names(bare, split="train") is None  # masks alone name nothing: the caller falls back
    (bare / "train" / "classes.txt").write_text("sky\n\nsea\n")  # the split folder's file, blank lines skipped
    assert task.source_class_names(bare, split="train") == ["sky", "sea"]
    with pytest.raises(DataError, match="no images/ folder"):
        task.source_class_names(tmp_path / "nothing", split="train")


def test_zoo_train_sizes_a_unet_head_to_classes_txt(seg_root: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--model", "unet", "--task", "seg", "--option", "backbone=resnet18", "--option",
            "encoder_depth=3", "--option", "decoder_channels=[32,16,8]", "--data", str(seg_root), *FAST,
            "--out-dir", str(tmp_path / "run")]
    assert main(argv) == 0, capsys.readouterr().err
    assert "unet: a 4-class head for the classes of" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["num_classes"] == 4 and config["class_names"] == list(SEG_CLASS_NAMES)


# ---- classification on another task's data -------------------------------------------------------
@pytest.mark.parametrize("layout, alias", [("det", "det"), ("seg", "seg")])
def test_classification_refuses_detection_and_segmentation_folders(layout: str, alias: str, det_root: Path,
                                                                   seg_root: Path, tmp_path: Path, capsys) -> None:
    root = det_root if layout == "det" else seg_root
    task = zoo.get_task("cls")
    for source, split in ((root, "train"), (root / "val", "val")):
        for read in (lambda: folder_class_names(source, split), lambda: scan_image_folder(source, split),
                     lambda: task.source_class_names(source, split=split)):
            with pytest.raises(DataError, match=f"--task {alias}") as info:
                read()
            assert str(source) in str(info.value)
    only_train = tmp_path / "only_train"  # no val/: the root is one split, its train/ is not a class
    shutil.copytree(root / "train", only_train / "train")
    with pytest.raises(DataError, match=f"looks like {'detection' if alias == 'det' else 'segmentation'} data"):
        folder_class_names(only_train)
    assert main(["train", "--model", "resnet18", "--data", str(root), *FAST, "--out-dir", str(tmp_path / "run")]) == 1
    out, err = capsys.readouterr()
    assert f"--task {alias}" in err and str(root / "train") in err and "class head" not in out
    assert not (tmp_path / "run").exists()


def test_class_folders_named_like_another_tasks_files_are_still_classes(tmp_path: Path) -> None:
    for cls in ("masks", "images_of_cats"):  # one of the two segmentation folders alone is not segmentation data
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / cls / "0.png")
    assert scan_image_folder(tmp_path).class_names == ["images_of_cats", "masks"]


def test_zoo_train_sizes_the_head_with_the_runs_data_options_format_and_label_map(det_root, seg_root, tmp_path):
    """``--task-option format=``/``label_map=`` reach the head sizing as they reach the training data."""
    from formats_helpers import write_yolo
    from test_formats_masks import cityscapes
    from zoo_core.data.shapes import SHAPES

    yolo = write_yolo(det_root, tmp_path / "yolo")
    shutil.copy(det_root / "train" / "annotations.json", yolo / "result.json")  # a COCO export beside it
    with pytest.raises(DataError, match="dataset formats"):
        data_class_names(DET_MODEL, "det", yolo)  # ambiguous without the option...
    assert data_class_names(DET_MODEL, "det", yolo, {"format": "yolo"}) == list(SHAPES)  # ...the option settles it

    cs = cityscapes(seg_root, tmp_path / "cs", names=False)
    assert len(data_class_names("deeplabv3_mobilenet_v3_large", "seg", cs)) == 19  # Cityscapes' own classes
    # two label ids kept as classes 0 and 1, the rest ignored: a 2-class head, not 19 named road, sidewalk...
    label_map = {7: 0, 8: 1, **{i: 255 for i in (0, 11, 12)}}
    assert data_class_names("deeplabv3_mobilenet_v3_large", "seg", cs, {"label_map": label_map}) == \
        ["class_0", "class_1"]
