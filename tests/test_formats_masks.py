"""Segmentation layouts beyond images/ + masks/: Cityscapes label ids (mapped to train ids), VOC
SegmentationClass palette PNGs (255 border = ignore), CVAT's labelmap.txt colours, a label_map option;
a mask value that is no class names the file and the pixel (issue 13).

Before: these folders were "no images/ folder", and a Cityscapes label id (7 = road) was refused as
"not a class" instead of being mapped to its train id (0).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from formats_helpers import QUIET, VOC_PALETTE, write_voc_seg
import zoo_core as zoo
from zoo_core.data.shapes import SEG_CLASS_NAMES, make_shapes
from zoo_core.errors import DataError
from zoo_tasks.formats.masks import CITYSCAPES_CLASSES, VOC_SEG_CLASSES

#: shapes' classes 0..3 as Cityscapes label ids whose train ids are 0..3 (road, sidewalk, building, wall);
#: the ignore ring (255) as label id 0 ("unlabeled", ignored)
TO_LABEL_ID = {0: 7, 1: 8, 2: 11, 3: 12, 255: 0}


@pytest.fixture(scope="module")
def shapes_seg(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("seg") / "shapes", layout="masks", n_train=4, n_val=2, image_size=32,
                       ignore_border=1)


def cityscapes(shapes: Path, root: Path, names: bool = True) -> Path:
    for split in ("train", "val"):
        for image in sorted((shapes / split / "images").iterdir()):
            city = root / "leftImg8bit" / split / "zoo"
            gt = root / "gtFine" / split / "zoo"
            city.mkdir(parents=True, exist_ok=True)
            gt.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, city / f"zoo_{image.stem}_leftImg8bit.png")
            mask = np.asarray(Image.open(shapes / split / "masks" / image.name))
            ids = np.vectorize(TO_LABEL_ID.get)(mask).astype(np.uint8)
            Image.fromarray(ids).save(gt / f"zoo_{image.stem}_gtFine_labelIds.png")
            Image.fromarray(ids).save(gt / f"zoo_{image.stem}_gtFine_color.png")  # beside it, never read
    if names:
        (root / "classes.txt").write_text("\n".join(SEG_CLASS_NAMES) + "\n")
    return root


def unet(k: int = 4):
    torch.manual_seed(0)
    return zoo.load("unet", task="seg", num_classes=k, backbone="resnet18", encoder_depth=3,
                    decoder_channels=(16, 8, 8), image_size=32, class_names=list(SEG_CLASS_NAMES)[:k] if k == 4
                    else None)


def masks_of(ds) -> list[list[list[int]]]:
    return [ds[i][1].tolist() for i in range(len(ds))]


def test_cityscapes_label_ids_become_train_ids_and_train_and_score_as_the_mask_folders(shapes_seg, tmp_path):
    root = cityscapes(shapes_seg, tmp_path / "cs")
    model = unet()
    task = model.task_impl
    ds = task.read_dataset(root, split="val", train=False, model=model)
    plain = task.read_dataset(shapes_seg, split="val", train=False, model=model)
    assert len(ds) == 2 and masks_of(ds) == masks_of(plain)  # 7 -> 0 ... 12 -> 3, 0 -> 255
    assert 255 in ds[0][1] and task.source_class_names(root, split="train") == list(SEG_CLASS_NAMES)
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(model, root)
    assert fit.steps == 2 and math.isfinite(fit.metrics["miou"])  # validated on leftImg8bit/val
    by_cs = zoo.evaluate(model, root, plots=False, num_workers=0)
    by_masks = zoo.evaluate(model, shapes_seg, plots=False, num_workers=0)
    assert by_cs.scalars() == pytest.approx(by_masks.scalars(), abs=1e-9)
    (root / "classes.txt").unlink()
    assert task.source_class_names(root, split="train") == list(CITYSCAPES_CLASSES)


def test_label_ids_in_a_mask_folder_are_mapped_and_label_map_replaces_the_mapping(shapes_seg, tmp_path):
    root = tmp_path / "flat"
    shutil.copytree(shapes_seg / "val" / "images", root / "images")
    (root / "masks").mkdir()
    for mask in sorted((shapes_seg / "val" / "masks").iterdir()):
        ids = np.vectorize(TO_LABEL_ID.get)(np.asarray(Image.open(mask))).astype(np.uint8)
        Image.fromarray(ids).save(root / "masks" / f"{mask.stem}_labelIds.png")
    model = unet()
    task = model.task_impl
    ds = task.read_dataset(root, split="val", train=False, model=model, class_names=list(SEG_CLASS_NAMES))
    assert masks_of(ds) == masks_of(task.read_dataset(shapes_seg, split="val", train=False, model=model))
    model.config["task_options"] = {"label_map": {7: 0, 8: 1, 11: 2, 0: 255}}  # no 12: wall is not mapped
    with pytest.raises(DataError, match=r"_labelIds.png: mask value\(s\) \[12\] are not in the label map .*the first "
                                        r"at row \d+, column \d+.*task option label_map"):
        for i in range(len(ds)):
            task.read_dataset(root, split="val", train=False, model=model)[i]


def test_voc_palette_masks_with_a_void_border_and_the_default_voc_names(shapes_seg, tmp_path):
    root = write_voc_seg(shapes_seg, tmp_path / "VOC2012")
    task = zoo.get_task("seg")
    assert task.source_class_names(root, split="train") == list(VOC_SEG_CLASSES)  # VOC's 21, without a names file
    model = unet(21)
    ds = task.read_dataset(root, split="val", train=False, model=model)
    plain = task.read_dataset(shapes_seg, split="val", train=False, model=model)
    assert masks_of(ds) == masks_of(plain) and ds.class_names == list(VOC_SEG_CLASSES)
    mask = np.asarray(Image.open(root / "SegmentationClass" / "val_00000.png")).copy()
    mask[3, 5] = 21  # one pixel of a class the 21-class model does not have
    bad = Image.fromarray(mask, mode="P")
    bad.putpalette(VOC_PALETTE)
    bad.save(root / "SegmentationClass" / "val_00000.png")
    with pytest.raises(DataError, match=r"val_00000.png: mask value\(s\) \[21\] are not classes of a 21-class model "
                                        r"\(valid: 0..20, and 255 = ignore; the first at row 3, column 5\)"):
        task.read_dataset(root, split="val", train=False, model=model)[0]


def test_cvat_labelmap_colours_read_rgb_masks(tmp_path):
    root = tmp_path / "cvat"
    for sub in ("JPEGImages", "SegmentationClass"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (6, 4)).save(root / "JPEGImages" / "a.jpg")
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, 3:] = (250, 50, 83)
    Image.fromarray(rgb).save(root / "SegmentationClass" / "a.png")
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\n")
    model = unet(4)
    ds = model.task_impl.read_dataset(root, split="train", train=False, model=model, image_size=(4, 6))
    assert ds.class_names[:2] == ["background", "car"]
    assert ds[0][1].tolist() == [[0, 0, 0, 1, 1, 1]] * 4
