"""torchvision dataset objects and plain ``(image, target)`` datasets train and evaluate (issue 13).

Built on tiny folders in the datasets' own on-disk layouts (nothing is downloaded): VOCDetection and
VOCSegmentation on ``VOCdevkit/VOC2012``, CocoDetection on a COCO folder, and a minimal dataset of
``(PIL image, int)`` as CIFAR10 yields. Each is evaluated against an independent reading of the same
files. Before: collate failed with "not enough values to unpack" for every one of them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from formats_helpers import QUIET, shapes_det, small_det, write_voc, write_voc_seg  # noqa: F401
import zoo_core as zoo
from zoo_core.data.shapes import SEG_CLASS_NAMES, make_shapes
from zoo_core.errors import DataError


def _eval(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zoo.evaluate(model, data, plots=False, num_workers=0)


@pytest.fixture(scope="module")
def voc_det(shapes_det, tmp_path_factory):
    root = tmp_path_factory.mktemp("tv")
    write_voc(shapes_det, root / "VOCdevkit" / "VOC2012", ext=".jpg")
    return root


def test_voc_detection_objects_train_and_score_as_the_voc_folder(voc_det, tmp_path, small_det):
    train = torchvision.datasets.VOCDetection(str(voc_det), year="2012", image_set="train")
    val = torchvision.datasets.VOCDetection(str(voc_det), year="2012", image_set="val")
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(small_det, train, val)
    assert fit.steps == 3 and math.isfinite(fit.metrics["map"])
    by_object, by_folder = _eval(small_det, val), _eval(small_det, voc_det)  # the folder: read_voc, split val
    assert by_object.num_images == by_folder.num_images == 4
    assert by_object.scalars() == pytest.approx(by_folder.scalars(), abs=1e-9)
    unnamed = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", num_classes=3, min_size=64,
                        max_size=64, fpn_channels=16, representation_size=32, max_levels=3)
    with pytest.raises(DataError, match=r"VOCDetection\[0\]: object '\w+' is not one of the classes \['class_0', "
                                        r".*class_names="):
        zoo.evaluate(unnamed, val, plots=False, num_workers=0)


def test_coco_detection_objects_score_as_the_coco_folder(shapes_det, small_det):
    val = torchvision.datasets.CocoDetection(str(shapes_det / "val" / "images"),
                                             str(shapes_det / "val" / "annotations.json"))
    assert _eval(small_det, val).scalars() == pytest.approx(_eval(small_det, shapes_det).scalars(), abs=1e-9)


def test_voc_segmentation_objects_train_and_score_as_the_voc_folder(tmp_path):
    shapes = make_shapes(tmp_path / "shapes", layout="masks", n_train=4, n_val=2, image_size=32, ignore_border=1)
    voc = write_voc_seg(shapes, tmp_path / "VOCdevkit" / "VOC2012")
    (voc / "classes.txt").write_text("\n".join(SEG_CLASS_NAMES))
    torch.manual_seed(0)
    model = zoo.load("unet", task="seg", num_classes=4, backbone="resnet18", encoder_depth=3,
                     decoder_channels=(16, 8, 8), image_size=32, class_names=list(SEG_CLASS_NAMES))
    train = torchvision.datasets.VOCSegmentation(str(tmp_path), year="2012", image_set="train")
    val = torchvision.datasets.VOCSegmentation(str(tmp_path), year="2012", image_set="val")
    fit = zoo.Trainer(max_epochs=1, batch_size=2, out_dir=tmp_path / "run", **QUIET).fit(model, train, val)
    assert fit.steps == 2 and math.isfinite(fit.metrics["miou"])
    by_object, by_folder = _eval(model, val), _eval(model, voc)
    assert by_object.num_images == 2 and by_object.scalars() == pytest.approx(by_folder.scalars(), abs=1e-9)


class Colours(torch.utils.data.Dataset):
    """``(PIL image, int)`` as CIFAR10 yields them: a red, green or blue 32 px square on noise."""

    classes = ["red", "green", "blue"]

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            arr = rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)
            arr[8:24, 8:24, i % 3] = 230
            self.items.append((Image.fromarray(arr), i % 3))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_a_pil_int_dataset_trains_and_its_accuracy_is_what_predict_says(tmp_path):
    model = zoo.load("resnet18", task="cls", num_classes=3, seed=0)
    train, val = Colours(24, 0), Colours(12, 1)
    fit = zoo.Trainer(max_epochs=1, batch_size=8, lr=1e-3, image_size=32, out_dir=tmp_path / "run", seed=0,
                      **QUIET).fit(model, train, val)
    assert fit.steps == 3 and model.class_names == ["red", "green", "blue"]  # named by the dataset's classes
    report = _eval(model, val)
    preds = model.predict([image for image, _ in val.items])
    by_hand = np.mean([p.label == label for p, (_, label) in zip(preds, val.items)])
    assert report["accuracy"] == pytest.approx(by_hand) and report.num_images == 12


def test_a_sample_in_no_known_form_is_named():
    model = zoo.load("resnet18", task="cls", num_classes=3)

    class Triples(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return Image.new("RGB", (8, 8)), "red", 0.5, i

    with pytest.raises(DataError, match=r"Triples\[0\] is a tuple of 4 \(Image, str, float, int\); expected \(image, "
                                        r"class index\)"):
        zoo.evaluate(model, Triples(), plots=False, num_workers=0)
    with pytest.raises(DataError, match=r"Colours has 3 classes but the model predicts 2; load it with num_classes=3"):
        zoo.evaluate(zoo.load("resnet18", task="cls", num_classes=2), Colours(2, 0), plots=False, num_workers=0)
