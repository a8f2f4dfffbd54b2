"""Pascal VOC xml read into the same records as COCO (difficult = crowd, ignored by COCOeval), checked
against pycocotools run by hand on the xml; bad xml files are errors naming the file and line (issue 13).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from formats_helpers import (QUIET, coco_split, jittered_predictions, map_of, shapes_det, small_det,  # noqa: F401
                             voc_xml, write_voc)
import zoo_core as zoo
from zoo_core.data.shapes import SHAPES
from zoo_core.errors import DataError
from zoo_tasks.formats.voc import read_voc

DIFFICULT = (2, 5)  # val annotation ids marked difficult


@pytest.fixture(scope="module")
def voc(shapes_det, tmp_path_factory):
    return write_voc(shapes_det, tmp_path_factory.mktemp("voc") / "VOC2012", difficult_ids=DIFFICULT)


def cocoeval_by_hand(voc: Path, split: str, predictions: dict) -> float:
    """pycocotools' mAP for ``predictions`` with the ground truth read straight from the xml files
    (difficult -> iscrowd, as COCO tools take "ignore" regions)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    names = sorted(SHAPES)
    images, anns, dets = [], [], []
    for image_id, stem in enumerate(ids, 1):
        root = ET.parse(voc / "Annotations" / f"{stem}.xml").getroot()
        images.append({"id": image_id, "width": int(root.findtext("size/width")),
                       "height": int(root.findtext("size/height"))})
        for obj in root.iter("object"):
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": names.index(obj.findtext("name")),
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(obj.findtext("difficult"))})
        for box, score, label in predictions[stem.split("_", 1)[1]]:
            dets.append({"image_id": image_id, "category_id": label, "score": score,
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": i} for i in range(3)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_voc_boxes_and_difficult_flags_score_as_pycocotools_by_hand(voc, shapes_det, small_det):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing clamped or dropped: the boxes are read as written
        ds = small_det.task_impl.read_dataset(voc, split="val", train=False, model=small_det)
    assert ds.class_names == list(SHAPES) and len(ds) == 4
    coco = coco_split(shapes_det, "val")
    crowd = [c for rec in ds.index.records for c in rec.crowd]
    assert sum(crowd) == len(DIFFICULT) and len(crowd) == len(coco["annotations"])
    _, target, meta = ds[0]
    assert len(target["boxes"]) == len(meta["gt_boxes"]) - sum(meta["gt_crowd"].tolist())  # difficult: not trained on
    preds = jittered_predictions(coco)
    ours = map_of(ds, preds, stem_of=lambda source: Path(source).stem.split("_", 1)[1])["map"]
    assert 0.1 < ours < 0.95
    assert ours == pytest.approx(cocoeval_by_hand(voc, "val", preds), abs=1e-6)


def test_fit_on_a_voc_root_validates_on_its_val_list(shapes_det, tmp_path, small_det):
    voc = write_voc(shapes_det, tmp_path / "VOC2007")  # no difficult boxes: the same data as the COCO folders
    assert small_det.task_impl.source_class_names(voc, split="train") == list(SHAPES)
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(small_det, voc)
    assert fit.steps == 3 and math.isfinite(fit.metrics["map"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_voc = zoo.evaluate(small_det, voc, plots=False, num_workers=0)
        by_coco = zoo.evaluate(small_det, shapes_det, plots=False, num_workers=0)
    assert by_voc.scalars() == pytest.approx(by_coco.scalars(), abs=1e-6)


def _one(tmp_path: Path, xml: str, names: str | None = "a\nb\n") -> Path:
    from PIL import Image

    root = tmp_path / "VOC"
    for sub in ("Annotations", "JPEGImages"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "x.jpg")
    (root / "Annotations" / "x.xml").write_text(xml)
    if names:
        (root / "classes.txt").write_text(names)
    return root


def test_an_xml_that_does_not_parse_names_file_and_line(tmp_path):
    root = _one(tmp_path, "<annotation>\n<filename>x.jpg</filename>\n<object><name>a</name>\n</annotation>\n")
    with pytest.raises(DataError, match=r"Annotations/x.xml:4: not a parseable XML file \(mismatched tag"):
        read_voc(root, "train")


@pytest.mark.parametrize("edit, message", [
    (lambda x: x.replace("<name>b</name>", "<name>dog</name>"), r"x.xml:9: object 'dog' is not one of the 2 classes "
                                                                r"\(a, b\) from .*classes.txt"),
    (lambda x: x.replace("<xmax>30.0</xmax>", "<xmax>thirty</xmax>"), r"x.xml:9: object 'b' has <xmax> 'thirty', "
                                                                      r"not a number"),
])
def test_a_bad_object_names_file_and_line(tmp_path, edit, message):
    xml = edit(voc_xml("x.jpg", 40, 30, [("a", [1.0, 1.0, 9.0, 9.0], 0), ("b", [10.0, 5.0, 30.0, 20.0], 0)]))
    with pytest.raises(DataError, match=message):
        read_voc(_one(tmp_path, xml), "train")


def test_boxes_outside_the_image_are_clamped_or_dropped_naming_file_and_line(tmp_path):
    xml = voc_xml("x.jpg", 40, 30, [("a", [30.0, 20.0, 50.0, 40.0], 0), ("b", [45.0, 1.0, 60.0, 9.0], 0),
                                    ("a", [5.0, 5.0, 15.0, 15.0], 1)])
    with pytest.warns(UserWarning) as caught:
        index = read_voc(_one(tmp_path, xml), "train")
    text = " ".join(str(w.message) for w in caught)
    assert "clamped 1 box(es) partly outside their image to the image (lines x.xml:4)" in text
    assert "dropped 1 box(es) wholly outside their image (lines x.xml:9)" in text
    (rec,) = index.records
    assert rec.boxes == [[30.0, 20.0, 40.0, 30.0], [5.0, 5.0, 15.0, 15.0]] and rec.crowd == [False, True]
    assert np.isclose(rec.areas[0], 100.0)  # the clamped box's area


def test_without_a_names_file_the_classes_are_every_xml_names_sorted(tmp_path):
    xml = voc_xml("x.jpg", 40, 30, [("zebra", [1.0, 1.0, 9.0, 9.0], 0), ("ant", [10.0, 5.0, 30.0, 20.0], 0)])
    index = read_voc(_one(tmp_path, xml, names=None), "train")
    assert index.class_names == ["ant", "zebra"] and index.records[0].labels == [1, 0]
