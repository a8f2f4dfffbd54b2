"""Segmentation masks: lossy files are refused by name, 16-bit masks keep their values down to the metrics.

Before: a JPEG mask was read and its labels silently changed around every edge; a 16-bit mask of a
model with more than 255 classes wrapped (300 became 44) on its way to uint8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo_core as zoo
from zoo_core.errors import DataError
from zoo_core.model import Preprocess, ZooModel
from zoo_tasks.losses import build_loss
from zoo_tasks.seg_data import read_mask
from zoo_tasks.seg_metrics import SegmentationMetrics

K = 400  # more classes than a byte holds


def blocks(values: list[int], size: int = 32) -> np.ndarray:
    """A mask of vertical stripes, one per value."""
    mask = np.zeros((size, size), np.int64)
    for i, v in enumerate(values):
        mask[:, i * size // len(values):(i + 1) * size // len(values)] = v
    return mask


def write_pair(root, stem: str, mask: np.ndarray, *, suffix: str = ".png", **save) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = mask.shape
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(root / "images" / f"{stem}.png")
    im = Image.fromarray(mask.astype(np.uint16 if mask.max() > 255 else np.uint8))  # I;16 or L
    assert im.mode == ("I;16" if mask.max() > 255 else "L")
    im.save(root / "masks" / f"{stem}{suffix}", **save)


def seg_model(k: int = K, size: int = 32) -> ZooModel:
    net = nn.Conv2d(3, k, 1)
    return ZooModel(net, task="segmentation", class_names=[f"c{i}" for i in range(k)],
                    preprocess=Preprocess(input_size=(size, size), interpolation="bicubic"), config={"model": "t:x"})


def read(root, *, train: bool, k: int = K, image_size: int | None = None):
    return zoo.get_task("seg").read_dataset(root, split="val", train=train, model=seg_model(k), image_size=image_size)


def test_a_jpeg_mask_is_refused_naming_it_before_anything_is_read(tmp_path):
    write_pair(tmp_path, "a", blocks([0, 1, 2]))
    write_pair(tmp_path, "b", blocks([0, 1, 2]), suffix=".jpg", quality=95)
    with pytest.raises(DataError, match=r"1 mask\(s\) are JPEG files: .*masks/b\.jpg\. JPEG is lossy.*Save the "
                                        r"masks as PNG"):
        read(tmp_path, train=True, k=3)
    (tmp_path / "masks" / "b.jpg").unlink()  # a lossless WebP is fine and keeps its values
    Image.fromarray(blocks([0, 1, 2, 255]).astype(np.uint8), mode="L").save(tmp_path / "masks" / "b.webp",
                                                                         lossless=True)
    assert np.array_equal(read(tmp_path, train=False, k=3)[1][1].numpy(), blocks([0, 1, 2, 255]))


@pytest.mark.parametrize("fmt, save, what", [
    ("JPEG", {"quality": 90}, "JPEG"),  # JPEG content behind a .png name
    ("WEBP", {"lossless": False, "quality": 80}, "lossy WebP"),
    ("TIFF", {"compression": "jpeg"}, "jpeg-compressed TIFF"),
])
def test_lossy_content_is_refused_whatever_the_file_is_called(tmp_path, fmt, save, what):
    path = tmp_path / ("m.png" if fmt == "JPEG" else f"m.{fmt.lower()}")
    Image.fromarray(blocks([0, 1, 2]).astype(np.uint8) * 80, mode="L").convert("RGB" if fmt == "TIFF" else "L").save(
        path, format=fmt, **save)
    with pytest.raises(DataError, match=rf"{path}: the mask is stored as (a )?{what}; lossy compression changes.*PNG"):
        read_mask(path, image_size=None, num_classes=3)


def test_16_bit_masks_keep_every_value_through_augmentation_collate_loss_and_metrics(tmp_path):
    mask = blocks([0, 5, 255, 300, 399])
    write_pair(tmp_path, "a", mask)
    arr = read_mask(tmp_path / "masks" / "a.png", image_size=(32, 32), num_classes=K)
    assert arr.dtype == np.int32 and np.array_equal(arr, mask)  # not 300 -> 44
    for train in (True, False):  # random-resized crop (bicubic images) and resize: nearest for masks
        ds = read(tmp_path, train=train, image_size=24)
        for _ in range(3):
            _, target, _ = ds[0]
            assert target.dtype == torch.int64 and set(target.unique().tolist()) <= {0, 5, 255, 300, 399}
    _, target, _ = read(tmp_path, train=False)[0]
    assert set(target.unique().tolist()) == {0, 5, 255, 300, 399}
    batch = zoo.get_task("seg").collate([read(tmp_path, train=False)[0]])
    logits = torch.full((1, K, 32, 32), -10.0)
    logits[0, 300] = 10.0  # predicts class 300 everywhere
    assert float(build_loss("ce")(logits, batch.targets)) > 1.0  # the 300 stripe is right, the others wrong
    metrics = SegmentationMetrics([f"c{i}" for i in range(K)])
    metrics.update(logits.argmax(1), batch)
    values = metrics.compute()
    scored = int((mask != 255).sum())  # the 255 stripe is ignored, not a class
    assert values["num_pixels"] == scored
    assert values["iou_per_class"]["c300"] == pytest.approx((mask == 300).sum() / scored)
    assert values["iou_per_class"]["c44"] is None  # nothing wrapped to 300 % 256
    with pytest.raises(DataError, match=r"masks/a\.png: mask value\(s\) \[300, 399\] are not classes of a 10-class"):
        read(tmp_path, train=False, k=10)[0]  # and a model with fewer classes names the file
