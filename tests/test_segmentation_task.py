"""The segmentation task: mask folders with every bad-input case, nearest-only augmentation, outputs, predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import zoo_core as zoo
from zoo_core.data.shapes import SEG_CLASS_NAMES, make_shapes
from zoo_core.errors import DataError
from zoo_core.model import Preprocess, ZooModel
from zoo_core.task import SegmentationMask
from zoo_tasks.losses import DiceCE
from zoo_tasks.segmentation import SegmentationTask


class TinySeg(nn.Module):
    """Logits at 1/``stride`` of the input; optionally torchvision's ``{"out", "aux"}`` dict."""

    def __init__(self, k: int = 4, stride: int = 1, as_dict: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, k, 3, padding=1, stride=stride)
        self.aux = nn.Conv2d(3, k, 1) if as_dict else None

    def forward(self, x):
        out = self.conv(x)
        return {"out": out, "aux": self.aux(x)} if self.aux is not None else out


def tiny_model(k: int = 4, size: int = 32, **kw) -> ZooModel:
    return ZooModel(TinySeg(k, **kw), task="segmentation", class_names=[f"c{i}" for i in range(k)],
                    preprocess=Preprocess(input_size=(size, size)), config={"model": "test:tiny"})


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("seg") / "shapes", layout="masks", n_train=6, n_val=2, image_size=48,
                       ignore_border=1)


@pytest.fixture
def task() -> SegmentationTask:
    return zoo.get_task("seg")


def _write_pair(root, stem, mask, image_size=None, mode="L"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = image_size or mask.shape[:2]
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "images" / f"{stem}.jpg")
    Image.fromarray(mask.astype(np.uint8), mode=mode).save(root / "masks" / f"{stem}.png")


def test_task_is_registered_with_miou(task):
    assert isinstance(task, SegmentationTask) and task.default_metric == "miou" and task.default_metric_mode == "max"
    with pytest.raises(ValueError, match="num_classes >= 1"):  # 1 is binary segmentation (test_binary_seg.py)
        task.validate_num_classes(0)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['lossy'\]; known: .*'loss'"):
        SegmentationTask(lossy="ce")
    assert SegmentationTask(loss="focal").options(tiny_model())["loss"] == "focal"


def test_reads_shapes_with_classes_txt_and_collates(shapes, task):
    model = tiny_model()
    ds = task.read_dataset(shapes, split="train", train=False, model=model, image_size=32)
    assert len(ds) == 6 and ds.class_names == list(SEG_CLASS_NAMES)
    image, mask, source = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and mask.shape == (32, 32)
    assert mask.dtype == torch.long and source.endswith("00000.png")
    assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}
    batch = task.collate([ds[0], ds[1]])
    assert batch.inputs.shape == (2, 3, 32, 32) and batch.targets.shape == (2, 32, 32)
    assert [m["source"] for m in batch.meta] == [ds[0][2], ds[1][2]]
    with pytest.raises(DataError, match="predicts 3"):
        task.read_dataset(shapes, split="val", train=False, model=tiny_model(3))


def test_augmentation_never_invents_mask_values(shapes, task):
    model = tiny_model()
    ds = task.read_dataset(shapes, split="train", train=True, model=model, image_size=40)
    originals = [set(np.unique(np.asarray(Image.open(p))).tolist()) for _, p in ds.pairs]
    torch.manual_seed(0)
    for _ in range(3):
        for i in range(len(ds)):
            _, mask, _ = ds[i]
            assert set(mask.unique().tolist()) <= originals[i]  # nearest only: no blended values
    assert any(255 in o for o in originals)


def test_mask_value_out_of_range_is_named_before_the_model_runs(tmp_path, task):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 7
    mask[0] = 255  # ignore is always fine
    _write_pair(tmp_path, "bad", mask)
    ds = task.read_dataset(tmp_path, split="train", train=True, model=tiny_model(4))
    with pytest.raises(DataError, match=r"bad\.png.*\[7\].*num_classes"):
        ds[0]


def test_mask_of_another_size_is_named(tmp_path, task):
    _write_pair(tmp_path, "small", np.zeros((8, 8), np.uint8), image_size=(10, 8))
    ds = task.read_dataset(tmp_path, split="val", train=False, model=tiny_model())
    with pytest.raises(DataError, match=r"small\.png: mask is 8x8 but its image .*small\.jpg is 8x10"):
        ds[0]


def test_rgb_colour_mask_is_refused_unless_grey_or_a_palette_is_given(tmp_path, task):
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[:3] = (128, 0, 0)  # VOC's colour of class 1
    _write_pair(tmp_path / "c", "voc", colour, mode="RGB")
    model = tiny_model()
    with pytest.raises(DataError, match=r"voc\.png: an RGB colour mask.*palette"):
        task.read_dataset(tmp_path / "c", split="val", train=False, model=model)[0]
    model.config["task_options"] = {"palette": [[0, 0, 0], [128, 0, 0]]}
    _, mask, _ = task.read_dataset(tmp_path / "c", split="val", train=False, model=model, image_size=6)[0]
    assert mask[:3].eq(1).all() and mask[3:].eq(0).all()
    grey = np.repeat(np.array([[0, 2], [2, 1]], np.uint8)[..., None], 3, axis=2)
    _write_pair(tmp_path / "g", "grey", grey, mode="RGB")
    _, mask, _ = task.read_dataset(tmp_path / "g", split="val", train=False, model=tiny_model(), image_size=2)[0]
    assert mask.tolist() == [[0, 2], [2, 1]]


def test_image_without_mask_is_named(tmp_path, task):
    _write_pair(tmp_path, "ok", np.zeros((4, 4), np.uint8))
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(DataError, match=r"no mask: .*lonely\.png"):
        task.read_dataset(tmp_path, split="train", train=True, model=tiny_model())
    with pytest.raises(DataError, match="no images/ folder"):
        task.read_dataset(tmp_path / "nothing", split="train", train=True, model=tiny_model())


def test_mask_without_image_is_warned_about_and_ignored(tmp_path, task):
    _write_pair(tmp_path, "ok", np.zeros((4, 4), np.uint8))
    Image.new("L", (4, 4)).save(tmp_path / "masks" / "orphan.png")
    with pytest.warns(UserWarning, match=r"1 mask\(s\) match no image .*orphan\.png"):
        ds = task.read_dataset(tmp_path, split="train", train=True, model=tiny_model())
    assert len(ds) == 1


def test_loss_handles_tensor_low_resolution_and_aux_dict_outputs(task):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    target[:, 0] = 255
    batch = zoo.task.Batch(x, target, [{"source": "a"}, {"source": "b"}])
    low = tiny_model(stride=4)  # logits at 4x4 are upsampled to the 16x16 masks
    losses = task.loss(low, batch)
    up = F.interpolate(low(x), size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(losses["loss"], F.cross_entropy(up, target, ignore_index=255))
    assert task.forward_eval(low, batch).shape == (2, 16, 16)
    tv = tiny_model(as_dict=True)
    losses = task.loss(tv, batch)
    assert set(losses) == {"seg", "aux", "loss"}
    out = tv(x)
    expected_aux = 0.4 * F.cross_entropy(out["aux"], target, ignore_index=255)
    assert torch.allclose(losses["aux"], expected_aux) and torch.allclose(losses["loss"], losses["seg"] + losses["aux"])
    tv.config["task_options"] = {"loss": "dice_ce", "aux_weight": 0.0}
    losses = task.loss(tv, batch)
    assert "aux" not in losses and isinstance(task.loss_fn(tv), DiceCE)
    with pytest.raises(TypeError, match="segmentation network must return"):
        task.loss(ZooModel(nn.Flatten(), task="segmentation", class_names=["a", "b"], preprocess=Preprocess(),
                           config={}), batch)


def test_predict_returns_masks_at_each_input_size(task):
    model = tiny_model(size=32)
    preds = model.predict([torch.rand(3, 50, 70), Image.new("RGB", (20, 30), (200, 10, 10))])
    assert [type(p) for p in preds] == [SegmentationMask, SegmentationMask]
    assert preds[0].mask.shape == (50, 70) and preds[1].mask.shape == (30, 20)
    assert preds[0].scores.shape == (50, 70) and float(preds[0].scores.min()) >= 0.25  # max of 4 softmax probs
    assert set(preds[0].names) == {model.class_names[i] for i in preds[0].mask.unique().tolist()}
    assert preds[0].source == "<tensor 0>"


def test_metrics_and_plot_from_a_dataset(shapes, task, tmp_path):
    model = tiny_model()
    ds = task.read_dataset(shapes, split="val", train=False, model=model, image_size=32)
    batch = task.collate([ds[0], ds[1]])
    metrics = task.new_metrics(ds.class_names)
    metrics.update(task.forward_eval(model, batch), batch)
    report = metrics.compute()
    assert 0.0 <= report["miou"] <= 1.0 and set(report["iou_per_class"]) == set(SEG_CLASS_NAMES)
    (path,) = task.plots(model, ds, report, tmp_path)
    assert path.name == "predictions.png" and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_example_samples_fit_the_model(task):
    model = tiny_model(k=3, size=24)
    samples = task.example_samples(model, n=2, seed=1)
    batch = task.collate(samples)
    assert batch.inputs.shape == (2, 3, 24, 24)
    assert set(batch.targets.unique().tolist()) <= {0, 1, 2, 255}
    assert torch.equal(batch.targets, task.collate(task.example_samples(model, n=2, seed=1)).targets)
