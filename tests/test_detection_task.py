"""The detection task: COCO sources, bad annotations, collate/loss/predict, and a Faster R-CNN that learns."""

from __future__ import annotations

import json
import math

import pytest
import torch

import zoo_core as zoo
from det_helpers import det_data, edited_copy, fit_steps  # noqa: F401  (det_data is a fixture)
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


def _retype_image_ids(coco, new_id):
    """Every image id (and each annotation's image_id) replaced by ``new_id(old id)``."""
    for img in coco["images"]:
        img["id"] = new_id(img["id"])
    for ann in coco["annotations"]:
        ann["image_id"] = new_id(ann["image_id"])


def _drop_key(entry, key):
    entry.pop(key)


@pytest.mark.parametrize("damage, message", [
    # non-finite or boolean box values (NaN passed isinstance(v, float) and then trained to a NaN loss)
    (lambda c: c["annotations"][1].update(id=901, bbox=[math.nan, 2, 3, 4]),
     r"annotation 901 has bbox \[nan, 2, 3, 4\]; expected .* 4 finite numbers .*no NaN/Infinity"),
    (lambda c: c["annotations"][1].update(id=902, bbox=[1, 2, math.inf, 4]),
     r"annotation 902 has bbox \[1, 2, inf, 4\]"),
    (lambda c: c["annotations"][1].update(id=903, bbox=[1, 2, 3, -math.inf]), r"annotation 903 has bbox .*-inf\]"),
    (lambda c: c["annotations"][1].update(id=904, bbox=[True, 2, 3, 4]),
     r"annotation 904 has bbox \[True, 2, 3, 4\]"),
    (lambda c: c["annotations"][1].update(id=905, area=math.nan), r"annotation 905 has area nan; expected a finite"),
    # duplicate ids and names (COCO tools keep the last image; a category would be renamed or a KeyError)
    (lambda c: c["images"][1].update(id=c["images"][0]["id"]),
     r"duplicate image id \d+ \('00000.png' and '00001.png'\); every image needs a unique id"),
    (lambda c: c["categories"][1].update(id=1), r"duplicate category id 1 \('circle' and 'square'\); every category"),
    # sections and entries of the wrong type
    (lambda c: c.update(annotations=None), r"'annotations' is null, not a list; .*use \[\] for none"),
    (lambda c: c.update(annotations={"1": c["annotations"][0]}), r"'annotations' is dict \{'1': .*, not a list"),
    (lambda c: c.update(images={str(i["id"]): i for i in c["images"]}), r"'images' is dict .*, not a list"),
    (lambda c: c.update(categories="circle"), r"'categories' is str 'circle', not a list"),
    (lambda c: c["categories"].append(4), r"'categories'\[3\] is int 4, not an object"),
    (lambda c: c["images"].insert(0, None), r"'images'\[0\] is null, not an object"),
    # ids that are not integers (were a TypeError in sorting or a ValueError in int())
    (lambda c: _retype_image_ids(c, str), r"'images'\[0\] has id '\d+' \(str\); COCO ids are integers"),
    (lambda c: c["images"][2].update(id="img-3"), r"'images'\[2\] has id 'img-3' \(str\); COCO ids are integers"),
    (lambda c: c["images"][1].update(id=1.5), r"'images'\[1\] has id 1\.5 \(float\)"),
    (lambda c: c["categories"][1].update(id="2"), r"'categories'\[1\] has id '2' \(str\); COCO ids are integers"),
    (lambda c: c["categories"][0].update(id=True), r"'categories'\[0\] has id True \(bool\)"),
    (lambda c: c["annotations"][3].update(image_id=[1]), r"annotation \d+ refers to image_id \[1\], which is not in"),
    # missing required fields
    (lambda c: _drop_key(c["annotations"][2], "id"),
     r"'annotations'\[2\] has no 'id'; give every entry of 'annotations' a unique integer id"),
    (lambda c: _drop_key(c["images"][0], "file_name"),
     r"image \d+ has no 'file_name'; give every image the path of its file"),
    (lambda c: c["images"][0].update(file_name=""), r"image \d+ has file_name ''; give every image the path"),
    (lambda c: c["images"][0].update(width="wide"),
     r"image \d+ \(00000.png\) has width 'wide'; expected a positive number of pixels"),
])
def test_malformed_ids_types_and_numbers_raise_a_named_error(det_data, tmp_path, damage, message):
    src = edited_copy(det_data, tmp_path, damage)
    with pytest.raises(DataError, match=message) as err:
        read_coco(src / "annotations.json", src / "images")
    assert str(err.value).startswith(str(src / "annotations.json") + ": ")


def test_files_other_tools_accept_are_read(det_data, tmp_path):
    """Integral float ids (pandas), numeric-string sizes, and Roboflow's placeholder category named like a class."""
    def tolerated(coco):
        _retype_image_ids(coco, float)
        for ann in coco["annotations"]:
            ann["category_id"] = float(ann["category_id"])
        coco["images"][0]["width"] = str(coco["images"][0]["width"])
        coco["categories"].insert(0, {"id": 0, "name": coco["categories"][0]["name"], "supercategory": "none"})

    src = edited_copy(det_data, tmp_path, tolerated)
    with pytest.warns(UserWarning, match=r"categories 0 and 1 are both named 'circle'; they stay separate"):
        index = read_coco(src / "annotations.json", src / "images")
    plain = read_coco(det_data / "train" / "annotations.json", det_data / "train" / "images")
    assert index.class_names == ["circle", *plain.class_names]
    assert [r.image_id for r in index.records] == [r.image_id for r in plain.records]
    assert all(isinstance(r.image_id, int) for r in index.records)
    assert sum(len(r.boxes) for r in index.records) == sum(len(r.boxes) for r in plain.records)
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"categories named \['circle'\] appear more "
                                                                   r"than once, so they cannot be matched"):
        read_coco(src / "annotations.json", src / "images", class_names=plain.class_names)


def test_a_file_that_is_not_a_coco_object_is_refused(tmp_path):
    (tmp_path / "annotations.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(DataError, match=r"annotations.json: the top level is a list, not a COCO object"):
        read_coco(tmp_path / "annotations.json", tmp_path)


def _exif_dataset(root, orientation, size=None):
    """One 64x48 (stored) JPEG with EXIF ``orientation`` and a box near its displayed bottom-left."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (64, 48), (200, 40, 40)).save(root / "images" / "turned.jpg", exif=exif)
    image = {"id": 7, "file_name": "turned.jpg", **(size or {})}
    coco = {"images": [image], "categories": [{"id": 1, "name": "circle"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2.0, 40.0, 20.0, 20.0]}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json", root / "images"


@pytest.mark.parametrize("orientation, shown", [(1, (64, 48)), (3, (64, 48)), (5, (48, 64)), (6, (48, 64)),
                                                (8, (48, 64))])
def test_an_exif_rotated_jpeg_without_width_height_gets_its_displayed_size(tmp_path, orientation, shown):
    import warnings

    from zoo_tasks.det_data import CocoDetection, eval_transform

    json_path, images = _exif_dataset(tmp_path, orientation)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = read_coco(json_path, images)
    (rec,) = index.records
    assert (rec.width, rec.height) == shown and rec.size_from_header
    clamped = [str(w.message) for w in caught if "clamped" in str(w.message)]
    assert bool(clamped) == (shown[1] < 60), clamped  # y + h = 60 fits only the turned (48x64) image
    image, _, meta = CocoDetection(index, eval_transform(), train=False)[0]
    assert tuple(image.shape[1:]) == (shown[1], shown[0]) and meta["orig_size"] == (shown[1], shown[0])


def test_a_size_mismatch_says_where_the_expected_size_came_from(tmp_path):
    from PIL import Image

    from zoo_tasks.det_data import CocoDetection, eval_transform

    json_path, images = _exif_dataset(tmp_path / "json", 6, {"width": 64, "height": 48})  # the raw, unturned size
    with pytest.warns(UserWarning, match="clamped 1 box"):  # its box (y + h = 60) is clamped to the stated 48
        ds = CocoDetection(read_coco(json_path, images), eval_transform(), train=False)
    with pytest.raises(DataError, match=r"turned.jpg: expected 64x48 \(from width/height in .*json/annotations.json\) "
                                        r"but the image \(after its EXIF orientation\) is 48x64; fix width/height"):
        ds[0]
    json_path, images = _exif_dataset(tmp_path / "header", 6)
    ds = CocoDetection(read_coco(json_path, images), eval_transform(), train=False)
    Image.new("RGB", (30, 20)).save(images / "turned.jpg")  # replaced after the json was read
    with pytest.raises(DataError, match=r"expected 48x64 \(from its file header \(EXIF orientation applied\), read "
                                        r"with .*header/annotations.json, which has no width/height\) but the image "
                                        r"\(after its EXIF orientation\) is 30x20; the file changed since"):
        ds[0]


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
    none = small_det.predict(wide, score_threshold=1.0)[0]
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
    none = red_pixels(score_threshold=1.0)   # random weights: nothing clears an impossible threshold
    few = red_pixels(score_threshold=0.0, max_boxes=1)
    many = red_pixels(score_threshold=0.0, max_boxes=20)
    assert none < few < many, (none, few, many)
    assert titles[0].endswith(": 0 prediction(s) >= 1")
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
    fit_steps(model, batch, 40)
    metrics = task.new_metrics(model.class_names)
    with torch.no_grad():
        metrics.update(task.forward_eval(model, batch), batch)
    result = metrics.compute()
    print(f"Faster R-CNN after 40 steps on 4 images: map {result['map']:.3f}, map_50 {result['map_50']:.3f}")
    assert result["map_50"] > 0.8, result
