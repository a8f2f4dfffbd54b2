"""The instance-segmentation task: COCO masks (polygons, RLE, crowd), bad masks named, masks in step with the
boxes under augmentation and predict filters, COCO segm/bbox AP equal to pycocotools run by hand, typed
results drawn and written as RLE, and a small Mask R-CNN that learns."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

import zoo_core as zoo
from det_helpers import edited_copy, fit_steps
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import DataError, OptionError
from zoo_core.task import Instances

NAMES = ["circle", "square", "triangle"]
STATS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


@pytest.fixture(scope="module")
def inst_data(tmp_path_factory):
    """``root/{train,val}/annotations.json`` (polygon segmentations) + 64 px shape images."""
    return make_shapes(tmp_path_factory.mktemp("inst") / "shapes", layout="coco", n_train=4, n_val=4, image_size=64)


@pytest.fixture(scope="module")
def small_inst():
    """A narrow composed Mask R-CNN (torchvision resnet18 trunk) at 64 px."""
    torch.manual_seed(0)
    return zoo.build("inst", backbone="torchvision:resnet18", head="mask_rcnn", class_names=NAMES, min_size=64,
                     max_size=64, fpn_channels=32, representation_size=64, max_levels=3, mask_channels=32,
                     mask_layers=2, rpn_batch_size_per_image=64, box_batch_size_per_image=64)


def _polygon_mask(poly, h, w):
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects([poly], h, w))).astype(bool)


# ---- data ---------------------------------------------------------------------------------------
def test_masks_are_read_from_polygons_rle_and_crowd_rle_in_step_with_the_boxes(inst_data, tmp_path, small_inst):
    coco = json.loads((inst_data / "train" / "annotations.json").read_text())
    first = coco["images"][0]["id"]
    anns = [a for a in coco["annotations"] if a["image_id"] == first]
    assert len(anns) >= 2
    polys = {a["id"]: a["segmentation"][0] for a in anns}

    def mixed(c):
        for a in c["annotations"]:
            if a["id"] == anns[0]["id"]:  # compressed RLE
                rle = mask_util.encode(np.asfortranarray(_polygon_mask(polys[a["id"]], 64, 64).astype(np.uint8)))
                a["segmentation"] = {"size": [64, 64], "counts": rle["counts"].decode()}
            elif a["id"] == anns[1]["id"]:  # uncompressed RLE of a crowd region, as COCO writes them
                flat = _polygon_mask(polys[a["id"]], 64, 64).flatten(order="F").astype(np.uint8)
                change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
                a["segmentation"] = {"size": [64, 64], "counts": np.diff(np.concatenate([[0], change])).tolist()}
                a["iscrowd"] = 1

    ds = small_inst.task_impl.read_dataset(edited_copy(inst_data, tmp_path, mixed), split="train", train=False,
                                           model=small_inst)
    image, target, meta = ds[0]
    kept = [a for a in anns if a["id"] != anns[1]["id"]]  # the crowd region is out of the training targets
    assert target["masks"].shape == (len(kept), 64, 64) and target["masks"].dtype == torch.uint8
    for k, a in enumerate(kept):
        assert np.array_equal(target["masks"][k].numpy().astype(bool), _polygon_mask(polys[a["id"]], 64, 64))
        x0, y0, x1, y1 = target["boxes"][k].tolist()
        ys, xs = np.nonzero(target["masks"][k].numpy())
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1
    assert len(meta["gt_rles"]) == len(anns) == len(meta["gt_crowd"]) and int(meta["gt_crowd"].sum()) == 1
    crowd_rle = meta["gt_rles"][int(torch.nonzero(meta["gt_crowd"])[0])]
    assert np.array_equal(mask_util.decode(crowd_rle).astype(bool), _polygon_mask(polys[anns[1]["id"]], 64, 64))


def _first_ann(c):
    return c["annotations"][0]


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.update(segmentation=[[1, 1, 20, 1]]), r"polygon 0 has 4 value\(s\); a polygon needs at least 3"),
    (lambda a: a.update(segmentation={"size": [32, 64], "counts": [2048]}),
     r"RLE size \[32, 64\] is not the image's \[height, width\] = \[64, 64\]"),
    (lambda a: a.update(segmentation={"size": [64, 64], "counts": [10, 5]}), "adding up to height x width = 4096"),
    (lambda a: a.update(segmentation=[[200, 200, 230, 200, 230, 230]]), "covers no pixel of the 64x64 image"),
    (lambda a: a.pop("segmentation"), "no usable 'segmentation'"),
])
def test_bad_masks_are_named_by_file_image_and_annotation(inst_data, tmp_path, small_inst, damage, message):
    def edit(c):
        damage(_first_ann(c))

    src = edited_copy(inst_data, tmp_path, edit)
    a = _first_ann(json.loads((src / "annotations.json").read_text()))
    where = rf"annotations\.json: image {a['image_id']}, annotation {a['id']}: "
    with pytest.raises(DataError, match=where + ".*" + message):
        small_inst.task_impl.read_dataset(src, split="train", train=True, model=small_inst)
    report = small_inst.task_impl.check_data(src, split="train")  # `zoo data check` names it before training
    assert report.task == "instance"
    assert any(re.search(where + ".*" + message, p) for part in report.splits for p in part.problems), report


def test_yolo_data_and_mosaic_are_refused_by_name(inst_data, tmp_path, small_inst):
    (tmp_path / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DataError, match="YOLO annotations hold boxes only; instance segmentation reads COCO json"):
        small_inst.task_impl.read_dataset(tmp_path / "data.yaml", split="train", train=True, model=small_inst)
    with pytest.raises(OptionError, match="mosaic=0.5: instance segmentation cannot use mosaic"):
        zoo.get_task("inst").__class__(mosaic=0.5)


def test_flip_and_scale_jitter_move_the_masks_with_the_boxes(inst_data, small_inst):
    task = zoo.get_task("inst").__class__(hflip=1.0, scale_jitter=(1.5, 1.5))
    ds = task.read_dataset(inst_data, split="train", train=True, model=small_inst)
    plain = zoo.get_task("inst").__class__(hflip=0.0).read_dataset(inst_data, split="train", train=True,
                                                                    model=small_inst)
    torch.manual_seed(0)
    image, target, _ = ds[1]
    _, original, _ = plain[1]
    assert target["masks"].shape[0] == target["boxes"].shape[0] == target["labels"].shape[0] >= 1
    assert not torch.equal(target["masks"], original["masks"][:len(target["masks"])])  # they moved
    for mask, box in zip(target["masks"], target["boxes"].tolist()):  # ... with their box
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert len(xs) and box[0] - 1.5 <= xs.min() and xs.max() <= box[2] + 1.5
        assert box[1] - 1.5 <= ys.min() and ys.max() <= box[3] + 1.5
    assert torch.equal(torch.unique(target["masks"]), torch.tensor([0, 1], dtype=torch.uint8))  # nearest: still 0/1


# ---- metrics ------------------------------------------------------------------------------------
def _hand_cocoeval(json_path, outputs, metas, cat_ids, iou_type):
    """pycocotools' COCOeval on the json file itself and the network's outputs, masks encoded here."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(json_path))
    results = []
    for out, meta in zip(outputs, metas):
        masks = (out["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
        for k in range(len(out["scores"])):
            x0, y0, x1, y1 = out["boxes"][k].tolist()
            entry = {"image_id": int(meta["image_id"]), "category_id": cat_ids[int(out["labels"][k])],
                     "score": float(out["scores"][k])}
            if iou_type == "segm":
                entry["segmentation"] = mask_util.encode(np.asfortranarray(masks[k]))
            else:
                entry["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            results.append(entry)
    ev = COCOeval(gt, gt.loadRes(results), iouType=iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return dict(zip(STATS, ev.stats))


@pytest.mark.slow
def test_a_small_mask_rcnn_learns_and_its_segm_ap_equals_pycocotools_by_hand(inst_data, small_inst, capsys):
    model = copy.deepcopy(small_inst)
    task = model.task_impl
    ds = task.read_dataset(inst_data, split="train", train=False, model=model)
    batch = task.collate([ds[i] for i in range(len(ds))])
    losses = fit_steps(model, batch, 25, lr=2e-3, watch="loss_mask")
    with torch.no_grad():
        outputs = task.forward_eval(model, batch)
    assert losses[-1] < 0.6 * losses[0], losses  # the mask branch learns
    metrics = task.__class__(coco_backend="pycocotools").new_metrics(model.class_names)
    metrics.update(outputs, batch)
    ours = metrics.compute()
    cat_ids = ds.index.category_ids
    with capsys.disabled():
        print(f"\nMask R-CNN after 25 steps on 4 images: segm_map {ours['segm_map']:.3f}, "
              f"bbox_map {ours['bbox_map']:.3f}")
    assert ours["segm_map_50"] > 0.05 and ours["segm_mar_100"] > 0.1, ours  # it learned something
    for iou_type in ("segm", "bbox"):
        hand = _hand_cocoeval(ds.index.json_path, outputs, batch.meta, cat_ids, iou_type)
        for key, value in hand.items():  # pycocotools-exact; undefined (-1) left out, never reported
            name = f"{iou_type}_{key}"
            if value < 0:
                assert name not in ours and name in ours["undefined_metrics"]
            else:
                assert ours[name] == pytest.approx(value, abs=1e-12), name
    fast = task.__class__(coco_backend="faster").new_metrics(model.class_names)
    fast.update(outputs, batch)
    fast_out = fast.compute()
    assert all(fast_out[k] == pytest.approx(ours[k], abs=1e-12) for k in ours if k.startswith(("segm_m", "bbox_m")))


def test_metrics_names_default_and_undefined_buckets(small_inst):
    task = zoo.get_task("inst")
    assert task.default_metric == "segm_map"
    metrics = task.new_metrics(NAMES)
    assert set(metrics.names()) == {f"{t}_{s}" for t in ("segm", "bbox") for s in STATS}
    samples = task.example_samples(small_inst, n=2, seed=0)
    batch = task.collate(samples)
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"],
                "masks": t["masks"][:, None].float()} for t in batch.targets]
    metrics.update(perfect, batch)
    with pytest.warns(UserWarning, match="segm_map_small, segm_map_large.*left out of the instance-segmentation"):
        out = metrics.compute()
    assert out["segm_map"] == pytest.approx(1.0) and out["bbox_map"] == pytest.approx(1.0)
    assert "segm_map_large" not in out and "segm_map_large" in out["undefined_metrics"] and "segm_map_medium" in out
    assert all(np.isfinite(v) for v in out.values() if isinstance(v, float))


# ---- predict, drawing and JSON ------------------------------------------------------------------
def _fixed_outputs(image):
    """Three objects in a 48x40 image: two overlapping 'circle's and a 'square', masks as probabilities."""
    masks = torch.zeros(3, 1, 40, 48)
    masks[0, 0, 5:20, 5:20] = 0.9
    masks[1, 0, 6:21, 6:21] = 0.8
    masks[2, 0, 25:35, 30:45] = 0.7
    masks[2, 0, 36, 30] = 0.4  # under the 0.5 threshold
    return [{"boxes": torch.tensor([[5.0, 5, 20, 20], [6, 6, 21, 21], [30, 25, 45, 35]]),
             "scores": torch.tensor([0.9, 0.8, 0.6]), "labels": torch.tensor([0, 0, 1]), "masks": masks}]


def test_predict_gives_instances_at_the_input_size_and_filters_keep_masks_in_step(small_inst, monkeypatch):
    model = copy.deepcopy(small_inst)
    image = torch.rand(3, 40, 48)
    monkeypatch.setattr(model, "forward", lambda images, targets=None: _fixed_outputs(images[0]))
    pred = model.predict(image)[0]
    assert isinstance(pred, Instances) and pred.masks.shape == (3, 40, 48) and pred.masks.dtype == torch.bool
    assert int(pred.masks[2].sum()) == 10 * 15  # 0.7 kept, 0.4 not
    kept = model.predict(image, iou=0.5, classes=["circle", "square"], conf=0.5)[0]
    assert kept.scores.tolist() == pytest.approx([0.9, 0.6]) and kept.names == ["circle", "square"]
    assert torch.equal(kept.masks[1], pred.masks[2]) and torch.equal(kept.masks[0], pred.masks[0])
    top = model.predict(image, max_det=1, classes=["square"])[0]
    assert torch.equal(top.masks, pred.masks[2:3])
    strict = model.predict(image, mask_threshold=0.75)[0]
    assert int(strict.masks[2].sum()) == 0 and int(strict.masks[1].sum()) == 15 * 15

    # real network: masks are pasted at each input image's own size
    outs = small_inst.predict([torch.rand(3, 50, 70), torch.rand(3, 64, 40)], score_threshold=0.0)
    assert [tuple(p.masks.shape[1:]) for p in outs] == [(50, 70), (64, 40)]


def test_json_rle_decodes_back_to_each_mask_and_drawing_tints_them(small_inst, monkeypatch):
    from zoo_core.predict_outputs import annotate
    from zoo_core.serve.results import to_json

    model = copy.deepcopy(small_inst)
    monkeypatch.setattr(model, "forward", lambda images, targets=None: _fixed_outputs(images[0]))
    image = torch.full((3, 40, 48), 0.5)
    pred = model.predict(image)[0]
    out = json.loads(json.dumps(to_json(pred, NAMES)))
    assert out["type"] == "Instances" and out["size"] == [40, 48] and out["names"] == ["circle", "circle", "square"]
    assert len(out["masks"]) == len(out["boxes"]) == 3
    for rle, mask in zip(out["masks"], pred.masks):
        back = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(back.astype(bool), mask.numpy())
    drawn = np.asarray(annotate(image, pred, NAMES)).astype(int)
    grey = np.asarray(annotate(image, Instances(source="x"), NAMES)).astype(int)
    assert (drawn[30, 40] != grey[30, 40]).any() and (drawn[12, 12] != grey[12, 12]).any()  # inside masks: tinted
    assert (drawn[38, 2] == grey[38, 2]).all()  # outside every mask and box: untouched
    assert not np.array_equal(drawn[30, 40], drawn[12, 12])  # a colour per class


def test_predictions_plot_and_conformance_of_the_task(inst_data, small_inst, tmp_path):
    from zoo_core.testing import check_spec

    task = small_inst.task_impl
    ds = task.read_dataset(inst_data, split="val", train=False, model=small_inst)
    paths = task.plots(small_inst, ds, {}, tmp_path)
    assert [p.name for p in paths] == ["predictions.png"] and paths[0].stat().st_size > 0
    report = check_spec("task:tasks:instance")
    assert report.ok and report.result("task").status == "pass", str(report)
