"""Shared by tests/test_formats_*.py: the shapes dataset written by hand in other tools' formats.

Each writer here is independent of the zoo's readers and converters (written from the COCO json
make_shapes produces, with plain json/xml/PIL), so a reader that gets a box wrong disagrees with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import zoo_core as zoo
from zoo_core.data.shapes import SHAPES, make_shapes
from zoo_core.task import Batch

QUIET = {"num_workers": 0, "verbose": False, "tensorboard": False, "progress_bar": False}


def coco_split(root: Path, split: str) -> dict[str, Any]:
    return json.loads((root / split / "annotations.json").read_text())


def write_yolo(coco_root: Path, out: Path, names_as_dict: bool = False) -> Path:
    """``out/images/{train,val}`` + ``out/labels/{train,val}`` + ``data.yaml`` (names a list or a dict)."""
    for split in ("train", "val"):
        coco = coco_split(coco_root, split)
        cats = sorted(c["id"] for c in coco["categories"])
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for img in coco["images"]:
            shutil.copy(coco_root / split / "images" / img["file_name"], out / "images" / split / img["file_name"])
            lines = []
            for a in coco["annotations"]:
                if a["image_id"] == img["id"]:
                    x, y, w, h = a["bbox"]
                    lines.append(f"{cats.index(a['category_id'])} {(x + w / 2) / img['width']!r} "
                                 f"{(y + h / 2) / img['height']!r} {w / img['width']!r} {h / img['height']!r}")
            (out / "labels" / split / f"{Path(img['file_name']).stem}.txt").write_text("\n".join(lines) + "\n")
    names = dict(enumerate(SHAPES)) if names_as_dict else list(SHAPES)
    import yaml

    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                   "names": names}))
    return out


def voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, list[float], int]]) -> str:
    body = "".join(f"""
  <object>
    <name>{name}</name>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{x0!r}</xmin><ymin>{y0!r}</ymin><xmax>{x1!r}</xmax><ymax>{y1!r}</ymax></bndbox>
  </object>""" for name, (x0, y0, x1, y1), difficult in objects)
    return (f"<annotation>\n  <filename>{filename}</filename>\n  <size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{body}\n</annotation>\n")


def write_voc(coco_root: Path, voc: Path, difficult_ids: tuple[int, ...] = (), ext: str = ".png") -> Path:
    """A VOC folder (``Annotations``, ``JPEGImages``, ``ImageSets/Main/{train,val}.txt``) of both splits;
    the annotations listed in ``difficult_ids`` (val split) are marked difficult. Ids are ``<split>_<stem>``;
    images are saved as ``ext`` (``.jpg`` for torchvision's VOCDetection, which reads only those)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        coco = coco_split(coco_root, split)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        ids = []
        for img in coco["images"]:
            stem = f"{split}_{Path(img['file_name']).stem}"
            ids.append(stem)
            Image.open(coco_root / split / "images" / img["file_name"]).convert("RGB").save(
                voc / "JPEGImages" / f"{stem}{ext}", quality=95)
            objects = [(names[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                  a["bbox"][1] + a["bbox"][3]],
                        int(split == "val" and a["id"] in difficult_ids))
                       for a in coco["annotations"] if a["image_id"] == img["id"]]
            (voc / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}{ext}", img["width"], img["height"],
                                                                      objects))
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


@pytest.fixture(scope="session")
def shapes_det(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{train,val}/annotations.json`` + images: 64 px shapes, 6 + 4 images."""
    return make_shapes(tmp_path_factory.mktemp("fmt") / "det", layout="coco", n_train=6, n_val=4, image_size=64)


@pytest.fixture(scope="module")
def small_det():
    torch.manual_seed(0)
    return zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=list(SHAPES),
                     min_size=64, max_size=64, fpn_channels=16, representation_size=32, max_levels=3,
                     rpn_batch_size_per_image=32, box_batch_size_per_image=32)


def jittered_predictions(coco: dict[str, Any], seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Detections for every COCO image by file stem: each true box moved a few pixels, a random score, one
    in three relabelled (so the mAP is neither 0 nor 1), plus one false box per image."""
    rng = np.random.default_rng(seed)
    cats = sorted(c["id"] for c in coco["categories"])
    out: dict[str, list[dict[str, Any]]] = {}
    for img in coco["images"]:
        dets = []
        for a in coco["annotations"]:
            if a["image_id"] != img["id"]:
                continue
            x, y, w, h = a["bbox"]
            dx, dy = rng.uniform(-3, 3, 2)
            label = cats.index(a["category_id"])
            if rng.random() < 1 / 3:
                label = (label + 1) % len(cats)
            dets.append(([x + dx, y + dy, x + w + dx, y + h + dy], float(rng.uniform(0.3, 1.0)), label))
        dets.append(([1.0, 1.0, 20.0, 20.0], float(rng.uniform(0, 0.5)), int(rng.integers(len(cats)))))
        out[Path(img["file_name"]).stem] = dets
    return out


def map_of(dataset: Any, predictions: dict[str, list], stem_of=lambda source: Path(source).stem) -> dict[str, float]:
    """The detection task's metrics for ``predictions`` (by image stem) against ``dataset``'s ground truth."""
    task = zoo.get_task("det")
    metrics = task.new_metrics(list(dataset.class_names))
    samples = [dataset[i] for i in range(len(dataset))]
    batch = task.collate(samples)
    outputs = []
    for meta in batch.meta:
        dets = predictions[stem_of(meta["source"])]
        outputs.append({"boxes": torch.tensor([d[0] for d in dets]), "scores": torch.tensor([d[1] for d in dets]),
                        "labels": torch.tensor([d[2] for d in dets])})
    metrics.update(outputs, Batch(batch.inputs, batch.targets, batch.meta))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metrics.compute()


#: VOC's palette for classes 0..3, and 255 (the "void" border) in its colour
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 251) + [224, 224, 192]


def write_voc_seg(shapes: Path, root: Path) -> Path:
    """VOC segmentation from a shapes mask dataset: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette
    PNGs, 255 border kept) and ``ImageSets/Segmentation/{train,val}.txt``; ids ``<split>_<stem>``."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for split in ("train", "val"):
        ids = []
        for image in sorted((shapes / split / "images").iterdir()):
            stem = f"{split}_{image.stem}"
            ids.append(stem)
            Image.open(image).convert("RGB").save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
            mask = Image.open(shapes / split / "masks" / image.name).convert("L").convert("P")
            mask.putpalette(VOC_PALETTE)
            mask.save(root / "SegmentationClass" / f"{stem}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
