"""The keypoints task: COCO keypoints read with the detection reader, bad points named, the flip swapping
left/right, OKS AP equal to pycocotools run by hand, predictions as Keypoints (filtered in step, drawn, JSON)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from det_helpers import edited_copy, fit_steps
import zoo_core as zoo
from zoo_core.errors import DataError, OptionError
from zoo_core.task import Batch, Keypoints
from zoo_tasks.kp_data import COCO_KEYPOINT_NAMES, COCO_OKS_SIGMAS, hflip_sample, read_keypoints
from zoo_tasks.kp_metrics import DEFAULT_SIGMA, KeypointMetrics, oks_sigmas
from zoo_tasks.kp_synth import KEYPOINT_NAMES, SKELETON, make_keypoint_shapes

SMALL = {"min_size": 96, "max_size": 96, "fpn_channels": 32, "representation_size": 64, "max_levels": 3,
         "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64, "keypoint_channels": 32, "keypoint_layers": 2,
         "box_detections_per_img": 20}


@pytest.fixture(scope="module")
def kp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{train,val}/annotations.json`` + images: 96 px houses with 5 named corners."""
    return make_keypoint_shapes(tmp_path_factory.mktemp("kp") / "houses", n_train=6, n_val=4, image_size=96)


@pytest.fixture(scope="module")
def small_kp():
    torch.manual_seed(0)
    return zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"],
                     keypoint_names=list(KEYPOINT_NAMES), skeleton=[list(p) for p in SKELETON], **SMALL)


edited = edited_copy  # an edited copy of a split's annotations.json beside a link to its images


# ---- reading and bad input ----------------------------------------------------------------------------------
def test_keypoints_stay_in_step_with_the_cleaned_boxes(kp_data, tmp_path):
    def drop_first_box(coco):
        first = coco["annotations"][0]
        first["bbox"][2] = 0  # zero width: the detection reader drops this box (and so its keypoints)
        first["keypoints"][0] = 500.0  # outside the image: no error for a box that is dropped with a warning

    src = edited(kp_data, tmp_path, drop_first_box)
    raw = json.loads((src / "annotations.json").read_text())
    with pytest.warns(UserWarning, match=r"dropped 1 box\(es\) with zero or negative width/height \(annotation ids 1"):
        data = read_keypoints(src, "train")
    assert data.layout.names == KEYPOINT_NAMES and data.layout.skeleton == SKELETON
    assert data.layout.flip_pairs == [(1, 2), (3, 4)]
    by_id = {a["id"]: np.asarray(a["keypoints"], dtype=np.float32).reshape(5, 3) for a in raw["annotations"]}
    for rec, points in zip(data.index.records, data.keypoints):
        assert 1 not in rec.ann_ids and points.shape == (len(rec.boxes), 5, 3)
        for k, ann_id in enumerate(rec.ann_ids):
            assert np.array_equal(points[k], by_id[ann_id])


@pytest.mark.parametrize("damage, message", [
    (lambda a, c: a.__setitem__("keypoints", a["keypoints"][:-3]), r"has 12 keypoint values; expected 15"),
    (lambda a, c: a["keypoints"].__setitem__(5, 3), r"keypoint 1 \(left_eave\) has visibility v=3; v must be 0"),
    (lambda a, c: a["keypoints"].__setitem__(0, 500.0), r"keypoint 0 \(apex\) at \(500, .*\) lies outside the 96x96"),
    (lambda a, c: a["keypoints"].__setitem__(1, float("nan")), r"has a keypoint value nan; every x, y and v must be"),
])
def test_bad_keypoints_raise_an_error_naming_file_image_and_annotation(kp_data, tmp_path, damage, message):
    def edit(coco):
        damage(coco["annotations"][2], coco)

    src = edited(kp_data, tmp_path, edit)
    ann = json.loads((src / "annotations.json").read_text())["annotations"][2]
    with pytest.raises(DataError, match=message) as info:
        read_keypoints(src, "train")
    assert str(src / "annotations.json") in str(info.value)
    assert f"annotation {ann['id']} (image {ann['image_id']})" in str(info.value)


def test_a_file_without_keypoint_names_or_with_two_layouts_is_refused(kp_data, tmp_path):
    def no_names(coco):
        del coco["categories"][0]["keypoints"]

    with pytest.raises(DataError, match="no category lists 'keypoints'.*person_keypoints"):
        read_keypoints(edited(kp_data, tmp_path, no_names), "train")

    def two(coco):
        coco["categories"].append({"id": 2, "name": "barn", "keypoints": ["a", "b"]})

    (tmp_path / "two").mkdir()
    with pytest.raises(DataError, match="categories 1 and 2 list different keypoints"):
        read_keypoints(edited(kp_data, tmp_path / "two", two), "train")


def test_a_wrong_num_keypoints_is_warned_about_and_recounted(kp_data, tmp_path):
    def wrong(coco):
        coco["annotations"][0]["num_keypoints"] = 2
        coco["annotations"][1]["keypoints"][2] = 0  # one point not labelled: 4 labelled, the file says 5

    with pytest.warns(UserWarning, match=r"num_keypoints disagrees .* of 2 annotation\(s\) \(ids 1, 2\)"):
        data = read_keypoints(edited(kp_data, tmp_path, wrong), "train")
    assert int((data.keypoints[0][0, :, 2] > 0).sum()) == 5


def test_coco_layout_of_a_root_finds_person_keypoints_json(kp_data, tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").symlink_to(kp_data / "val" / "images")
    (root / "annotations" / "instances_val2017.json").write_text("{}")  # boxes only: must not be picked
    text = (kp_data / "val" / "annotations.json").read_text()
    (root / "annotations" / "person_keypoints_val2017.json").write_text(text)
    data = read_keypoints(root, "val", train=False)
    assert data.json_path.name == "person_keypoints_val2017.json" and len(data.index.records) == 4


# ---- the flip -------------------------------------------------------------------------------------------------
def test_flip_mirrors_boxes_and_points_and_swaps_left_and_right(kp_data, small_kp):
    task = small_kp.task_impl
    plain = task.read_dataset(kp_data, split="train", train=False, model=small_kp)
    small_kp.config["task_options"] = {"hflip": 1.0}
    try:
        flipped = task.read_dataset(kp_data, split="train", train=True, model=small_kp)
    finally:
        small_kp.config.pop("task_options")
    (img, tgt, _), (fimg, ftgt, fmeta) = plain[0], flipped[0]
    width = img.shape[-1]
    assert torch.equal(fimg, img.flip(-1))
    assert torch.allclose(ftgt["boxes"][:, [0, 2]], width - tgt["boxes"][:, [2, 0]])
    names = list(KEYPOINT_NAMES)
    for side in ("eave", "base"):  # the mirrored left corner is the new right corner, and the other way round
        left, right = names.index(f"left_{side}"), names.index(f"right_{side}")
        assert torch.allclose(ftgt["keypoints"][:, right, 0], width - tgt["keypoints"][:, left, 0])
        assert torch.allclose(ftgt["keypoints"][:, left, 1], tgt["keypoints"][:, right, 1])
    apex = names.index("apex")
    assert torch.allclose(ftgt["keypoints"][:, apex, 0], width - tgt["keypoints"][:, apex, 0])
    # after the flip the left eave is again on the left of the right eave, as in the data
    xs = ftgt["keypoints"][..., 0]
    assert (xs[:, names.index("left_eave")] < xs[:, names.index("right_eave")]).all()
    assert torch.equal(fmeta["gt_keypoints"], torch.from_numpy(flipped.kp_index.keypoints[0]))  # metrics: unflipped


def test_flip_without_known_pairs_is_refused_with_the_reason(kp_data, tmp_path):
    names = ["a", "b", "c", "d", "e"]

    def rename(coco):
        coco["categories"][0]["keypoints"] = names

    src = edited(kp_data, tmp_path, rename)
    model = zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"],
                      keypoint_names=names, **SMALL)
    task = model.task_impl
    with pytest.raises(OptionError, match=r"hflip=0.5: no left/right pair among the keypoints .*flip_pairs=\[\]"):
        task.read_dataset(src, split="train", train=True, model=model)
    model.config["task_options"] = {"flip_pairs": [[1, 2]]}
    assert task.read_dataset(src, split="train", train=True, model=model).perm == [0, 2, 1, 3, 4]
    model.config["task_options"] = {"hflip": 0.0}
    assert task.read_dataset(src, split="train", train=True, model=model).hflip == 0.0
    model.config["task_options"] = {"flip_pairs": [[1, 7]]}
    with pytest.raises(OptionError, match=r"flip_pairs=\[\[1, 7\]\]: must be pairs \[i, j\] of distinct keypoint"):
        task.read_dataset(src, split="train", train=True, model=model)


def test_hflip_sample_leaves_unlabelled_points_at_zero():
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
              "keypoints": torch.tensor([[[12.0, 6.0, 2.0], [0.0, 0.0, 0.0]]])}
    _, out = hflip_sample(torch.zeros(3, 40, 50), target, [1, 0])
    assert out["keypoints"].tolist() == [[[0.0, 0.0, 0.0], [38.0, 6.0, 2.0]]]
    assert out["boxes"].tolist() == [[20.0, 5.0, 40.0, 25.0]]


def test_data_with_other_keypoints_than_the_model_is_refused_naming_the_fix(kp_data):
    coco17 = zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"], **SMALL)
    with pytest.raises(DataError, match=r"5 keypoints but the model predicts 17 .*keypoint_names=\['apex', 'left_"):
        coco17.task_impl.read_dataset(kp_data, split="val", train=False, model=coco17)


# ---- metrics ----------------------------------------------------------------------------------------------------
def test_sigmas_are_coco_for_coco_names_else_the_option_or_the_default():
    from pycocotools.cocoeval import Params

    assert oks_sigmas(None, COCO_KEYPOINT_NAMES, 17).tolist() == list(COCO_OKS_SIGMAS)
    assert list(COCO_OKS_SIGMAS) == Params(iouType="keypoints").kpt_oks_sigmas.tolist()  # pycocotools' own
    assert oks_sigmas(None, KEYPOINT_NAMES, 5).tolist() == [DEFAULT_SIGMA] * 5
    assert oks_sigmas(0.1, KEYPOINT_NAMES, 5).tolist() == [0.1] * 5
    with pytest.raises(OptionError, match="oks_sigmas has 2 values but the model predicts 5 keypoints"):
        KeypointMetrics(["house"], keypoint_names=KEYPOINT_NAMES, sigmas=[0.1, 0.2])
    with pytest.raises(OptionError, match="must be a number > 0"):
        zoo.get_task("kp").check_options({"oks_sigmas": [0.1, -1]})


def _gt_batch(kp_data: Path, small_kp) -> Batch:
    ds = small_kp.task_impl.read_dataset(kp_data, split="val", train=False, model=small_kp)
    return small_kp.task_impl.collate([ds[i] for i in range(len(ds))])


def test_metrics_from_jittered_ground_truth_equal_pycocotools_on_the_json(kp_data, small_kp):
    """Detections made from the val json's objects (points jittered, scores varied, one false positive per image):
    the zoo's numbers equal COCOeval run by hand on the file itself, and lie strictly between 0 and 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    batch = _gt_batch(kp_data, small_kp)
    g = torch.Generator().manual_seed(0)
    outputs, results = [], []
    for meta in batch.meta:
        gt = meta["gt_keypoints"].clone()
        n = len(gt)
        points = torch.cat([gt[..., :2] + torch.randn(n, 5, 2, generator=g) * 2.5, torch.ones(n, 5, 1)], -1)
        points = torch.cat([points, points[:1] + torch.tensor([30.0, 0.0, 0.0])])  # a shifted false positive
        xywh = meta["gt_boxes"]
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        boxes = torch.cat([boxes, boxes[:1] + torch.tensor([30.0, 0.0, 30.0, 0.0])])
        scores = torch.rand(n + 1, generator=g)
        outputs.append({"boxes": boxes, "scores": scores, "labels": torch.zeros(n + 1, dtype=torch.long),
                        "keypoints": points})
        for p, s in zip(points.tolist(), scores.tolist()):
            results.append({"image_id": int(meta["image_id"]), "category_id": 1, "score": s,
                            "keypoints": [v for q in p for v in q]})
    metrics = small_kp.task_impl.metrics_for(small_kp, small_kp.class_names)
    metrics.update(outputs, batch)
    with pytest.warns(UserWarning, match="map_large, .*mar_large left out of the keypoint metrics"):
        zoo_numbers = metrics.compute()

    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(kp_data / "val" / "annotations.json"))
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.full(5, DEFAULT_SIGMA)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    names = ["map", "map_50", "map_75", "map_medium", "map_large", "mar", "mar_50", "mar_75", "mar_medium", "mar_large"]
    by_hand = dict(zip(names, ev.stats.tolist()))
    assert by_hand["map_large"] == -1 and "map_large" not in zoo_numbers  # undefined: left out, never -1
    assert zoo_numbers["undefined_metrics"].keys() == {k for k, v in by_hand.items() if v < 0}
    for key, value in by_hand.items():
        if value >= 0:
            assert zoo_numbers[key] == pytest.approx(value, abs=1e-12), key
    assert 0.05 < zoo_numbers["map"] < 0.95 and zoo_numbers["map_50"] > zoo_numbers["map_75"]
    assert 0 < zoo_numbers["bbox_map"] <= 1
    assert all(math.isfinite(v) for v in zoo_numbers.values() if isinstance(v, float))


def test_no_detections_give_zero_with_a_warning_and_no_labelled_point_is_an_error(kp_data, small_kp):
    batch = _gt_batch(kp_data, small_kp)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
              "keypoints": torch.zeros(0, 5, 3)} for _ in batch.meta]
    metrics = small_kp.task_impl.metrics_for(small_kp, small_kp.class_names)
    metrics.update(empty, batch)
    with pytest.warns(UserWarning, match="no detections at all"):
        out = metrics.compute()
    assert out["map"] == 0.0 and out["bbox_map"] == 0.0 and "map_large" not in out
    for meta in batch.meta:
        meta["gt_keypoints"] = meta["gt_keypoints"].clone()
        meta["gt_keypoints"][..., 2] = 0
    unlabelled = small_kp.task_impl.metrics_for(small_kp, small_kp.class_names)
    unlabelled.update(empty, batch)
    with pytest.raises(DataError, match="no labelled keypoint .* OKS AP is undefined"):
        unlabelled.compute()


# ---- predict, drawing, JSON ---------------------------------------------------------------------------------
def test_predict_returns_keypoints_and_filters_keep_them_in_step(small_kp):
    small_kp.eval()
    image = torch.rand(3, 70, 120, generator=torch.Generator().manual_seed(3))
    (full,) = small_kp.predict(image)
    assert isinstance(full, Keypoints) and full.keypoint_names == list(KEYPOINT_NAMES)
    assert full.skeleton == list(SKELETON) and len(full) > 3
    assert full.keypoints.shape == (len(full), 5, 3)
    assert full.keypoints[..., 0].max() <= 120 + 1e-3 and full.keypoints[..., 1].max() <= 70 + 1e-3
    (few,) = small_kp.predict(image, max_det=2, iou=0.3)
    assert few.keypoints.shape == (len(few), 5, 3) and len(few) <= 2
    for box, points in zip(few.boxes, few.keypoints):  # each kept box brings its own points
        k = int((full.boxes - box).abs().sum(1).argmin())
        assert torch.equal(full.keypoints[k], points)
    assert len(small_kp.predict(image, score_threshold=1.0)[0].keypoints) == 0


def test_keypoints_are_drawn_with_their_skeleton_and_written_as_json():
    from zoo_core.predict_outputs import PALETTE, annotate
    from zoo_core.serve.results import to_json

    pred = Keypoints(source="x.png", boxes=torch.tensor([[10.0, 10.0, 90.0, 90.0]]), scores=torch.tensor([0.9]),
                     labels=torch.tensor([1]), names=["house"], keypoint_names=["a", "b"], skeleton=[(0, 1)],
                     keypoints=torch.tensor([[[30.0, 50.0, 4.5], [70.0, 50.0, 3.0]]]))
    drawn = np.asarray(annotate(torch.zeros(3, 100, 100), pred))
    assert tuple(drawn[50, 30]) == PALETTE[0] and tuple(drawn[50, 70]) == PALETTE[1]  # point k in colour k
    assert tuple(drawn[50, 50]) == PALETTE[1]  # the skeleton line between them, in the class colour (label 1)
    assert tuple(drawn[80, 10]) == PALETTE[1]  # the box
    out = to_json(pred, ["bg", "house"])
    assert out["type"] == "Keypoints" and out["boxes"] == [[10.0, 10.0, 90.0, 90.0]]
    assert out["keypoints"] == [[[30.0, 50.0, 4.5], [70.0, 50.0, 3.0]]]
    assert out["keypoint_names"] == ["a", "b"] and out["skeleton"] == [[0, 1]]
    json.dumps(out)


def test_predictions_plot_tiles_the_images_as_predict_draws_them(kp_data, small_kp, tmp_path):
    from PIL import Image

    from zoo_tasks.det_plots import annotated_sheet

    ds = small_kp.task_impl.read_dataset(kp_data, split="val", train=False, model=small_kp)
    (path,) = small_kp.task_impl.plots(small_kp, ds, {}, tmp_path)
    assert path.name == "predictions.png" and Image.open(path).size == (4 * 96 + 3 * 4, 96)  # 4 val images of 96 px, 4 px apart
    sheet = np.asarray(Image.open(annotated_sheet(small_kp, ds, tmp_path / "all.png", n=1, score_threshold=0.0)))
    plain = (ds[0][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert (sheet != plain).any(axis=-1).mean() > 0.01  # boxes, points and skeletons drawn over the image


# ---- learning, and the demo recipe -------------------------------------------------------------------------
@pytest.mark.slow
def test_keypoint_rcnn_learns_and_its_ap_equals_pycocotools_on_its_predictions(kp_data, tmp_path):
    """A small Keypoint R-CNN trained a few steps on 4 images: OKS AP rises above 0, and zoo.evaluate's numbers
    equal COCOeval run by hand on the file and model.predict's points."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    torch.manual_seed(0)
    model = zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"],
                      keypoint_names=list(KEYPOINT_NAMES), **{**SMALL, "keypoint_channels": 64, "keypoint_layers": 4,
                                                             "fpn_channels": 64, "representation_size": 128})
    task = model.task_impl
    ds = task.read_dataset(kp_data, split="val", train=False, model=model)
    batch = task.collate([ds[i] for i in range(len(ds))])
    fit_steps(model, batch, 40)
    with pytest.warns(UserWarning, match="left out of the keypoint metrics"):
        report = zoo.evaluate(model, kp_data, split="val", plots=False, batch_size=4)
    numbers = report.metrics if hasattr(report, "metrics") else report
    print(f"Keypoint R-CNN after 40 steps on 4 images: OKS map {numbers['map']:.3f}, map_50 {numbers['map_50']:.3f}")
    assert numbers["map_50"] > 0.2, numbers

    coco_gt_path = kp_data / "val" / "annotations.json"
    files = {i["id"]: i["file_name"] for i in json.loads(coco_gt_path.read_text())["images"]}
    results = []
    for iid, name in files.items():
        (pred,) = model.predict(kp_data / "val" / "images" / name)
        for points, score, label in zip(pred.keypoints.tolist(), pred.scores.tolist(), pred.labels.tolist()):
            results.append({"image_id": iid, "category_id": label + 1, "score": score,
                            "keypoints": [v for x, y, _ in points for v in (x, y, 1)]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(coco_gt_path))
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.full(5, DEFAULT_SIGMA)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    for key, value in zip(["map", "map_50", "map_75", "map_medium", "map_large", "mar", "mar_50", "mar_75"],
                          ev.stats.tolist()):
        if value >= 0:
            assert numbers[key] == pytest.approx(value, abs=1e-6), key


def test_the_demo_recipe_builds_a_model_for_its_own_data(tmp_path):
    from zoo_core.demo import demo_recipes

    recipe = demo_recipes(["kp"])["kp"]
    root = recipe.write_data(tmp_path / "data", quick=True)
    model = recipe.make_model("kp")
    assert model.net.keypoint_names == list(KEYPOINT_NAMES) and model.net.skeleton == list(SKELETON)
    ds = model.task_impl.read_dataset(root, split="train", train=True, model=model)
    assert ds.perm == [0, 2, 1, 4, 3] and ds[0][1]["keypoints"].shape[1:] == (5, 3)


def test_the_class_names_and_keypoint_layout_zoo_train_reads_parse_the_file_once_per_version(tmp_path, monkeypatch):
    from zoo_tasks import det_data

    data = make_keypoint_shapes(tmp_path / "houses", n_train=2, n_val=1, image_size=64)
    reads = []
    real = det_data.load_coco_json
    monkeypatch.setattr(det_data, "load_coco_json", lambda path: reads.append(path) or real(path))
    task = zoo.get_task("kp")
    assert task.source_class_names(data, split="train") == ["house"]
    options = task.source_model_options(data, split="train")
    assert options == {"keypoint_names": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON]}
    assert len(reads) == 1
    json_path = reads[0]
    raw = json.loads(json_path.read_text())
    raw["categories"][0]["keypoints"] = list(reversed(raw["categories"][0]["keypoints"]))
    json_path.write_text(json.dumps(raw) + " ")  # another version (size): read again, not served stale
    assert task.source_model_options(data, split="train")["keypoint_names"] == list(reversed(KEYPOINT_NAMES))
    assert len(reads) == 2
