"""A user's own torchvision.transforms.v2 pipeline as a task option: boxes and masks move with the image.

Each check draws a white object on a black image, runs the task's dataset with the user's transform,
and looks at the pixels: inside the transformed box (or under the transformed mask) they are white.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

import zoo_core as zoo
from zoo_core.data.digits import make_digits
from zoo_core.errors import OptionError
from zoo_core.model import Preprocess, ZooModel

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # normalised == [0, 1]: pixels read directly


def white_boxes_coco(root, boxes_per_image, size=64):
    """``root/annotations.json`` + ``images/``: black images with each box filled white (xyxy)."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        arr = np.zeros((size, size, 3), np.uint8)
        for x1, y1, x2, y2 in boxes:
            arr[y1:y2, x1:x2] = 255
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": size, "height": size})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                        "categories": [{"id": 1, "name": "box"}]}))
    return root


def det_model(**task_options):
    model = ZooModel(nn.Identity(), task="detection", class_names=["box"], preprocess=Preprocess(), config={})
    return zoo.api.set_task_options(model, task_options)


def assert_boxes_on_white(image, boxes, inside=0.85):
    assert boxes.shape[0] > 0
    h, w = image.shape[-2:]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= w).all() and \
        (boxes[:, 3] <= h).all() and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    covered = torch.zeros(h, w, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes.round().long().tolist():
        patch = image[:, y1:y2, x1:x2]
        if min(x2 - x1, y2 - y1) >= 4:  # a sliver a crop left is valid, but its few pixels are all edge blur
            assert float(patch.mean()) > inside, (x1, y1, x2, y2, float(patch.mean()))
        covered[y1:y2, x1:x2] = True
    if (~covered).any():
        assert float(image[:, ~covered].mean()) < 0.15  # and the rest stayed background


@pytest.fixture(scope="module")
def boxes_data(tmp_path_factory):
    return white_boxes_coco(tmp_path_factory.mktemp("boxes") / "data",
                            [[(8, 12, 28, 40)], [(30, 6, 58, 22), (6, 40, 22, 60)], [(20, 20, 44, 44)]])


def test_a_v2_pipeline_moves_boxes_with_the_image(boxes_data):
    pipeline = v2.Compose([v2.RandomAffine(degrees=0, translate=(0.15, 0.15), scale=(0.8, 1.2)),
                           v2.RandomHorizontalFlip(1.0), v2.RandomResizedCrop(48, scale=(0.6, 1.0), antialias=True)])
    model = det_model(train_transform=pipeline)
    ds = model.task_impl.read_dataset(boxes_data, split="train", train=True, model=model)
    moved = 0
    for i in range(len(ds)):
        for seed in range(4):
            torch.manual_seed(seed)
            image, target, _ = ds[i]
            assert image.shape[-2:] == (48, 48) and image.dtype == torch.float32
            assert target["labels"].shape[0] == target["boxes"].shape[0]
            if target["boxes"].shape[0]:
                assert_boxes_on_white(image, target["boxes"], inside=0.75)
                moved += 1
    assert moved >= 8
    torch.manual_seed(3)
    first = ds[0]
    torch.manual_seed(3)
    assert torch.equal(first[0], ds[0][0])  # seeded: the same draw again


def test_boxes_cut_away_by_the_transform_are_dropped_with_their_labels(boxes_data):
    crop = v2.Compose([v2.RandomCrop((20, 20))])  # mostly misses the boxes
    model = det_model(train_transform=crop)
    ds = model.task_impl.read_dataset(boxes_data, split="train", train=True, model=model)
    sizes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        image, target, _ = ds[1]
        sizes.add(target["boxes"].shape[0])
        assert target["labels"].shape[0] == target["boxes"].shape[0]
        b = target["boxes"]
        assert ((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all() and (b <= 20).all()
    assert 0 in sizes and max(sizes) >= 1


def seg_data(root, n=3, size=48, value=255):
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        mask = np.zeros((size, size), np.uint8)
        y, x = 6 + 8 * i, 10 + 5 * i
        img[y:y + 18, x:x + 14] = value
        mask[y:y + 18, x:x + 14] = 1
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return root


def seg_model(**task_options):
    model = ZooModel(nn.Conv2d(3, 2, 1), task="segmentation", class_names=["background", "square"],
                     preprocess=Preprocess(input_size=(40, 40), **PLAIN), config={})
    return zoo.api.set_task_options(model, task_options)


def test_a_v2_pipeline_moves_masks_with_the_image_nearest(tmp_path):
    root = seg_data(tmp_path / "seg")
    # exact geometry (nearest rotation, crops, flips): the image's white pixels and the mask must coincide
    pipeline = v2.Compose([v2.RandomRotation(35), v2.RandomCrop(40), v2.RandomVerticalFlip()])
    model = seg_model(train_transform=pipeline)
    ds = model.task_impl.read_dataset(root, split="train", train=True, model=model)
    torch.manual_seed(0)
    small = seg_model(train_transform=v2.RandomCrop(24))
    grown = small.task_impl.read_dataset(root, split="train", train=True, model=small)[0]
    assert grown[0].shape == (3, 40, 40) and grown[1].shape == (40, 40)  # the task resizes to the input size
    assert set(grown[1].unique().tolist()) <= {0, 1}
    for i in range(len(ds)):
        for seed in range(3):
            torch.manual_seed(seed)
            image, mask, _ = ds[i]
            assert image.shape == (3, 40, 40) and mask.shape == (40, 40)
            assert set(mask.unique().tolist()) <= {0, 1}  # nearest: no invented class values
            white, square = image.mean(0) > 0.5, mask == 1
            iou = (white & square).sum() / (white | square).sum().clamp_min(1)
            assert square.any() and iou > 0.99, float(iou)


def test_eval_transform_reaches_validation_and_classification_takes_any_pipeline(tmp_path):
    root = make_digits(tmp_path / "digits", image_size=32, limit=30, seed=0)
    model = zoo.load("timm:test_resnet", task="cls", num_classes=10, seed=0,
                     task_options={"train_transform": v2.Compose([v2.RandomCrop(20), v2.Grayscale(3)]),
                                   "eval_transform": v2.Grayscale(3)})
    task = model.task_impl
    train = task.read_dataset(root, split="train", train=True, model=model, image_size=28)
    val = task.read_dataset(root, split="val", train=False, model=model, image_size=28)
    for ds in (train, val):
        x = ds[0][0]
        assert x.shape == (3, 28, 28) and torch.allclose(x[0] * 1, x[0]) and x.dtype == torch.float32
        mean, std = (torch.tensor(model.preprocess.mean), torch.tensor(model.preprocess.std))
        raw = x * std[:, None, None] + mean[:, None, None]  # normalised by the task after the user's grey
        assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)


def test_transform_options_are_checked_and_conflicts_refused():
    with pytest.raises(OptionError, match="only v2 transforms move the masks with the image"):
        seg_model(train_transform=lambda image, mask: (image, mask))
    with pytest.raises(OptionError, match="leave v2.Normalize out"):
        seg_model(eval_transform=v2.Compose([v2.ToDtype(torch.float32, scale=True),
                                             v2.Normalize([0.5] * 3, [0.5] * 3)]))
    model = seg_model(train_transform=v2.RandomHorizontalFlip(), color_jitter=0.2)
    with pytest.raises(OptionError, match="train_transform and color_jitter were both given"):
        model.task_impl.options(model)
    cls = zoo.load("timm:test_resnet", task="cls", num_classes=3, task_options={"auto_augment": "randaugment",
                                                                                "decode": "device"})
    with pytest.raises(OptionError, match="decode='device' .* cannot apply auto_augment"):
        cls.task_impl.options(cls)
    zoo.api.set_task_options(cls, {"decode": "auto"})
    assert cls.task_impl.options(cls)["decode"] == "pil"  # auto picks PIL when augmentation needs it
