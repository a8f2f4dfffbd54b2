"""Binary segmentation: ``num_classes=1`` is one sigmoid channel (BCE + Dice, focal), scored on the positive class.

Losses are checked against their formulas, the IoU/Dice against a hand count of TP/FP/FN, and a U-Net
trained on tiny binary shapes reports the IoU that its own thresholded outputs give by hand.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import zoo_core as zoo
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import DataError
from zoo_core.model import Preprocess, ZooModel
from zoo_core.task import Batch
from zoo_tasks.losses import build_loss
from zoo_tasks.seg_metrics import BinarySegmentationMetrics


@pytest.fixture(scope="module")
def binary_shapes(tmp_path_factory):
    """Shapes images with masks 1 on any shape, 0 elsewhere, 255 on the ignore ring."""
    src = make_shapes(tmp_path_factory.mktemp("src") / "shapes", layout="masks", n_train=12, n_val=6, image_size=32,
                      ignore_border=1)
    root = tmp_path_factory.mktemp("bin") / "bin"
    for split in ("train", "val"):
        shutil.copytree(src / split / "images", root / split / "images")
        (root / split / "masks").mkdir()
        for mask in (src / split / "masks").iterdir():
            a = np.array(Image.open(mask))
            binary = np.where(a == 255, 255, a > 0).astype(np.uint8)
            Image.fromarray(binary, mode="L").save(root / split / "masks" / mask.name)
    return root


def hand_iou(pred: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    valid = mask != 255
    tp = int(((pred == 1) & (mask == 1) & valid).sum())
    fp = int(((pred == 1) & (mask == 0) & valid).sum())
    fn = int(((pred == 0) & (mask == 1) & valid).sum())
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def test_binary_losses_follow_their_formulas():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 6, 6, generator=g)
    y = (torch.rand(2, 6, 6, generator=g) < 0.4).long()
    y[0, 0, :3] = 255
    valid = y != 255
    t, p = (y == 1).float(), z[:, 0].sigmoid()
    bce = F.binary_cross_entropy_with_logits(z[:, 0][valid], t[valid])
    assert float(build_loss("ce", binary=True)(z, y)) == pytest.approx(float(bce), rel=1e-5)
    assert float(build_loss("bce", binary=True)(z, y)) == pytest.approx(float(bce), rel=1e-5)
    p_t = torch.where(t == 1, p, 1 - p)
    focal = (-((1 - p_t) ** 2) * p_t.log())[valid].mean()
    assert float(build_loss("focal", binary=True)(z, y)) == pytest.approx(float(focal), rel=1e-4)
    dice = 1 - 2 * (p * t)[valid].sum() / (p[valid].sum() + t[valid].sum())
    assert float(build_loss("dice", binary=True)(z, y)) == pytest.approx(float(dice), rel=1e-4)
    assert float(build_loss("dice_ce", binary=True)(z, y)) == pytest.approx(float(dice + bce), rel=1e-4)


class Fixed(nn.Module):
    """Returns the logits it was given, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, x):
        return self.logits[: x.shape[0]]


def binary_model(net: nn.Module) -> ZooModel:
    return ZooModel(net, task="segmentation", class_names=["lesion"], preprocess=Preprocess(input_size=(8, 8)),
                    config={})


def test_iou_and_dice_of_the_positive_class_match_a_hand_count():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 8, 8, generator=g)
    masks = (torch.rand(3, 8, 8, generator=g) < 0.5).long()
    masks[1, :2] = 255
    model = binary_model(Fixed(logits))
    task = model.task_impl
    metrics = task.metrics_for(model, model.class_names)
    assert isinstance(metrics, BinarySegmentationMetrics)
    batch = Batch(torch.zeros(3, 3, 8, 8), masks)
    pred = task.forward_eval(model, batch)
    assert torch.equal(pred, (logits[:, 0] > 0).long())  # sigmoid > 0.5
    metrics.update(pred, batch)
    out = metrics.compute()
    iou, dice = hand_iou(pred.numpy(), masks.numpy())
    assert out["iou"] == pytest.approx(iou) and out["dice"] == pytest.approx(dice)
    assert out["iou_per_class"]["lesion"] == pytest.approx(iou) and "background" in out["iou_per_class"]
    assert out["miou"] == pytest.approx((out["iou_per_class"]["background"] + iou) / 2)
    assert {"iou", "dice", "precision", "recall"} <= set(metrics.names())


def test_binary_model_loads_reads_0_1_masks_and_refuses_other_values(tmp_path, binary_shapes):
    model = zoo.load("unet", task="seg", backbone="resnet18", num_classes=1, class_names=["shape"], seed=0)
    assert model.num_classes == 1 and model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert model.task_impl.options(model)["loss"] == "dice_ce"  # U-Net's default: BCE + Dice, binary here
    ds = model.task_impl.read_dataset(binary_shapes, split="val", train=False, model=model)
    assert set(torch.cat([ds[i][1].flatten() for i in range(len(ds))]).unique().tolist()) == {0, 1, 255}
    (binary_shapes / "val" / "classes.txt").write_text("background\nshape\n")  # naming both is fine
    try:
        assert model.task_impl.read_dataset(binary_shapes, split="val", train=False, model=model).class_names == \
            ["background", "shape"]
        (binary_shapes / "val" / "classes.txt").write_text("background\nshape\nother\n")
        with pytest.raises(DataError, match="names 3 classes but the model predicts 1"):
            model.task_impl.read_dataset(binary_shapes, split="val", train=False, model=model)
    finally:
        (binary_shapes / "val" / "classes.txt").unlink()
    bad = tmp_path / "bad"
    for sub in ("images", "masks"):
        (bad / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "images" / "a.png")
    Image.fromarray(np.full((8, 8), 2, np.uint8), mode="L").save(bad / "masks" / "a.png")
    with pytest.raises(DataError, match=r"a.png: mask value\(s\) \[2\]"):
        model.task_impl.read_dataset(bad, split="val", train=False, model=model)[0]


def test_binary_unet_trains_and_reports_the_iou_its_outputs_give(binary_shapes, tmp_path):
    model = zoo.load("unet", task="seg", backbone="resnet18", num_classes=1, class_names=["shape"], seed=0)
    fit = zoo.Trainer(max_epochs=2, batch_size=4, lr=3e-3, image_size=32, out_dir=tmp_path / "run", num_workers=0,
                      seed=0, plots=False, verbose=False).fit(model, binary_shapes)
    report = zoo.evaluate(model, binary_shapes, plots=False, progress=False)
    assert fit.metrics["iou"] == pytest.approx(report["iou"], abs=1e-6)
    val = model.task_impl.read_dataset(binary_shapes, split="val", train=False, model=model)
    model.eval()
    with torch.no_grad():
        x = torch.stack([val[i][0] for i in range(len(val))])
        pred = (model(x)[:, 0] > 0).long().numpy()
    masks = torch.stack([val[i][1] for i in range(len(val))]).numpy()
    iou, dice = hand_iou(pred, masks)
    assert report["iou"] == pytest.approx(iou, abs=1e-6) and report["dice"] == pytest.approx(dice, abs=1e-6)
    assert 0.0 < report["iou"] < 1.0 and report["num_images"] == len(val)
    image = val.pairs[0][0]
    out = model.predict(str(image))[0]
    assert set(out.mask.unique().tolist()) <= {0, 1} and set(out.names) <= {"background", "shape"}
    assert float(out.scores.min()) >= 0.5 - 1e-6 and out.mask.shape == (32, 32)


def test_binary_focal_and_a_custom_loss_train_a_step():
    model = binary_model(nn.Conv2d(3, 1, 1))
    zoo.api.set_task_options(model, {"loss": "focal"})
    batch = Batch(torch.rand(2, 3, 8, 8), torch.randint(0, 2, (2, 8, 8)))
    loss = model.task_impl.loss(model, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.net.weight.grad is not None
    zoo.api.set_task_options(model, {"loss": lambda logits, masks: F.binary_cross_entropy_with_logits(
        logits[:, 0], masks.float())})
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(batch.inputs)[:, 0], batch.targets.float())
        assert float(model.task_impl.loss(model, batch)["loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_a_binary_models_mask_values_are_named_background_and_its_class():
    import zoo_core as zoo
    from zoo_core.serve.results import to_json

    model = zoo.load("unet", task="seg", backbone="resnet18", class_names=["crack"], encoder_depth=3,
                     decoder_channels=(16, 8, 8), seed=0)
    names = model.task_impl.output_names(model)
    assert names[1] == "crack" and len(names) == 2
    pred = model.predict(torch.rand(3, 64, 64))[0]
    pred.mask = pred.mask.clone()
    pred.mask[:8, :8] = 1  # some positive pixels, whatever the random weights say
    segments = to_json(pred, names)["segments"]
    assert {s["name"] for s in segments} <= set(names) and "crack" in {s["name"] for s in segments}
