"""Augmentations as task options: each changes the image as documented and leaves targets valid.

Classification: RandAugment/TrivialAugment/AutoAugment/AugMix and colour jitter; segmentation: colour
jitter (the mask untouched); detection: colour jitter, scale jitter, random IoU crop and mosaic, with
boxes clamped, degenerate ones dropped with their labels, and every box still on its (white) object.
Mixup/CutMix: test_augment_mixup.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import zoo_core as zoo
from test_hooks_transforms import PLAIN, assert_boxes_on_white, det_model, seg_data, seg_model, white_boxes_coco
from zoo_core.model import Preprocess
from zoo_tasks.augment import classification_transform


@pytest.fixture(scope="module")
def boxes_data(tmp_path_factory):
    return white_boxes_coco(tmp_path_factory.mktemp("aug") / "data",
                            [[(8, 12, 28, 40)], [(30, 6, 58, 22), (6, 40, 22, 60)], [(20, 20, 44, 44)],
                             [(40, 40, 60, 62)]])


def photo(size=32):
    """A smooth colour image with structure, so photometric and geometric ops both show."""
    y, x = np.mgrid[0:size, 0:size]
    arr = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1).astype(np.uint8)
    return Image.fromarray(arr)


BASE = {"scale": (1.0, 1.0), "hflip": 0.0, "label_smoothing": 0.0, "auto_augment": None, "augment_magnitude": 9,
        "augment_ops": 2, "color_jitter": 0.0, "train_transform": None, "eval_transform": None}
PRE = Preprocess(input_size=(32, 32), **PLAIN)


def run(opts, seed, img):
    torch.manual_seed(seed)
    return classification_transform(PRE, None, {**BASE, **opts}, train=True)(img)


@pytest.mark.parametrize("name, kind", [("randaugment", v2.RandAugment), ("trivialaugment", v2.TrivialAugmentWide),
                                        ("autoaugment", v2.AutoAugment), ("augmix", v2.AugMix)])
def test_auto_augment_changes_the_crop_seeded(name, kind):
    img = photo()
    pipeline = classification_transform(PRE, None, {**BASE, "auto_augment": name, "augment_ops": 3,
                                                    "augment_magnitude": 12}, train=True)
    found = [t for t in pipeline.transforms if isinstance(t, kind)]
    assert len(found) == 1  # the documented transform, after the crop and flip, before normalising
    if kind is v2.RandAugment:
        assert (found[0].num_ops, found[0].magnitude) == (3, 12)
    plain = run({}, 0, img)
    changed = [not torch.allclose(run({"auto_augment": name}, s, img), plain) for s in range(6)]
    assert sum(changed) >= 3
    assert torch.equal(run({"auto_augment": name}, 4, img), run({"auto_augment": name}, 4, img))
    assert run({"auto_augment": name}, 1, img).shape == (3, 32, 32)


def test_color_jitter_scales_brightness_within_its_range():
    img = photo()
    plain = run({}, 0, img)
    for seed in range(5):
        out = run({"color_jitter": (0.5, 0.0, 0.0, 0.0)}, seed, img)
        keep = (plain > 0.05) & (plain < 0.6)  # away from 0 and from clipping at 1
        ratio = out[keep] / plain[keep]
        assert float(ratio.std()) < 0.02 and 0.5 - 0.02 <= float(ratio.mean()) <= 1.5 + 0.02
    assert not torch.allclose(run({"color_jitter": 0.4}, 0, img), plain)


def test_segmentation_color_jitter_leaves_the_mask_alone(tmp_path):
    root = seg_data(tmp_path / "seg", size=40, value=128)  # mid-grey: brightness and contrast show
    jit, plain = seg_model(color_jitter=0.6, scale=(1.0, 1.0), hflip=0.0), seg_model(scale=(1.0, 1.0), hflip=0.0)
    ds_j = jit.task_impl.read_dataset(root, split="train", train=True, model=jit)
    ds_p = plain.task_impl.read_dataset(root, split="train", train=True, model=plain)
    for seed in range(3):
        torch.manual_seed(seed)
        image_j, mask_j, _ = ds_j[1]
        image_p, mask_p, _ = ds_p[1]
        assert torch.equal(mask_j, mask_p) and not torch.allclose(image_j, image_p)


def det_samples(boxes_data, seeds=range(8), **opts):
    model = det_model(hflip=0.0, **opts)
    ds = model.task_impl.read_dataset(boxes_data, split="train", train=True, model=model)
    out = []
    for i in range(len(ds)):
        for seed in seeds:
            torch.manual_seed(seed)
            out.append((i, *ds[i]))
    return out


def test_detection_color_jitter_keeps_boxes(boxes_data):
    plain = {i: t for i, _, t, _ in det_samples(boxes_data, seeds=[0])}
    for i, image, target, _ in det_samples(boxes_data, color_jitter=(0.4, 0.0, 0.0, 0.0)):
        assert torch.equal(target["boxes"], plain[i]["boxes"]) and torch.equal(target["labels"], plain[i]["labels"])
        assert_boxes_on_white(image, target["boxes"], inside=0.55)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_scale_jitter_resizes_objects_within_the_same_canvas(boxes_data, factor):
    plain = {i: t["boxes"] for i, _, t, _ in det_samples(boxes_data, seeds=[0])}
    seen = 0
    for i, image, target, _ in det_samples(boxes_data, scale_jitter=(factor, factor)):
        assert image.shape[-2:] == (64, 64)  # zoomed, then cropped or padded back to the image's size
        assert target["labels"].shape[0] == target["boxes"].shape[0]
        if target["boxes"].shape[0] == 0:
            continue
        assert_boxes_on_white(image, target["boxes"], inside=0.8)
        sides = target["boxes"][:, 2:] - target["boxes"][:, :2]
        before = plain[i][:, 2:] - plain[i][:, :2]
        if factor < 1:  # zoomed out: every object whole, exactly half as large
            assert torch.allclose(sides, before * factor, atol=1.0)
            seen += 1
        elif bool((sides.max(0).values > before.max(0).values * 1.5).any()):
            seen += 1  # zoomed in: objects grow (a crop may cut one)
    assert seen >= 10


def test_iou_crop_crops_and_keeps_boxes_on_their_objects(boxes_data):
    cropped = 0
    for _, image, target, _ in det_samples(boxes_data, iou_crop=1.0):
        assert target["labels"].shape[0] == target["boxes"].shape[0] >= 1  # a patch is kept only with a box in it
        assert_boxes_on_white(image, target["boxes"], inside=0.8)
        cropped += image.shape[-2:] != (64, 64)
    assert cropped >= 10


def test_mosaic_joins_four_images_with_every_box_on_its_object(boxes_data):
    counts = []
    for i, image, target, meta in det_samples(boxes_data, mosaic=1.0):
        assert image.shape[-2:] == (64, 64) and meta["source"].startswith("mosaic of ")
        assert "gt_boxes" not in meta and target["labels"].shape[0] == target["boxes"].shape[0]
        if target["boxes"].shape[0]:
            assert_boxes_on_white(image, target["boxes"], inside=0.8)
        counts.append(target["boxes"].shape[0])
    assert max(counts) >= 3  # boxes from several images in one sample


def test_the_tasks_own_augmented_dataset_handed_back_is_not_augmented_twice(boxes_data):
    """``fit(model, task.read_dataset(...))``, as the README shows: mosaic once, not a mosaic of mosaics."""
    from zoo_core.train.data import read_data

    model = det_model(hflip=0.0, mosaic=1.0)
    ds = model.task_impl.read_dataset(boxes_data, split="train", train=True, model=model)
    again = read_data(ds, model.task_impl, model, split="train", train=True)
    assert again is ds
    torch.manual_seed(0)
    assert ds[0][2]["source"].count("mosaic of") == 1


def test_augmentation_options_are_task_options_with_checks():
    for task, key in (("cls", "auto_augment"), ("seg", "color_jitter"), ("det", "mosaic"), ("det", "iou_crop"),
                      ("det", "scale_jitter"), ("mlcls", "cutmix")):
        assert key in zoo.get_task(task).option_defaults
    from zoo_core.errors import OptionError

    for bad, message in (({"scale_jitter": (2.0, 1.0)}, "low <= high"), ({"mosaic": 1.5}, r"in \[0, 1\]"),
                         ({"iou_crop": "yes"}, r"iou_crop='yes'"),
                         ({"train_transform": lambda img, t: (img, t)}, "only v2 transforms move the boxes")):
        with pytest.raises(OptionError, match=message):
            det_model(**bad)
    assert "auto_augment" not in zoo.get_task("seg").option_defaults  # it would move the image without its mask
