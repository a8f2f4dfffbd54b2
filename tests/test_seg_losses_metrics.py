"""Segmentation losses and metrics: 255 ignored everywhere, a hand-computed example, exact merging."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_core.errors import DataError
from zoo_core.task import Batch
from zoo_tasks.losses import LOSSES, DiceCE, build_loss, cross_entropy, dice_loss, focal
from zoo_tasks.seg_metrics import SegmentationMetrics, confusion_matrix

NAMES = ["bg", "a", "b", "never"]


def _batch(target: torch.Tensor, sources=("x.png",)) -> Batch:
    return Batch(inputs=torch.zeros(target.shape[0], 3, *target.shape[-2:]), targets=target,
                 meta=[{"source": s} for s in sources])


def test_metrics_match_a_hand_computed_example():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 2]]])
    # non-ignored (true, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,2); the 255 pixel is left out
    # class 0: TP 1 FP 1 FN 1 -> IoU 1/3, Dice 1/2; class 1: TP 2 FP 1 FN 1 -> 1/2, 2/3;
    # class 2: TP 1 FP 1 FN 1 -> 1/3, 1/2; class 3 never occurs -> None, left out of the means
    m = SegmentationMetrics(NAMES)
    m.update(pred, _batch(target))
    r = m.compute()
    assert r["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert r["dice"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 7)
    assert r["iou_per_class"] == pytest.approx({"bg": 1 / 3, "a": 1 / 2, "b": 1 / 3, "never": None})
    assert r["dice_per_class"]["a"] == pytest.approx(2 / 3)
    assert r["num_pixels"] == 7 and r["num_images"] == 1
    assert r["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_predictions_on_ignored_pixels_do_not_count():
    target = torch.tensor([[[1, 255], [0, 255]]])
    m1, m2 = SegmentationMetrics(NAMES), SegmentationMetrics(NAMES)
    m1.update(torch.tensor([[[1, 0], [0, 0]]]), _batch(target))
    m2.update(torch.tensor([[[1, 3], [0, 2]]]), _batch(target))
    assert m1.compute() == m2.compute()
    assert m1.compute()["miou"] == 1.0


def test_merge_equals_one_accumulator():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (4, 8, 8), generator=g)
    targets[:, :2] = 255
    preds = torch.randint(0, 4, (4, 8, 8), generator=g)
    whole, a, b = SegmentationMetrics(NAMES), SegmentationMetrics(NAMES), SegmentationMetrics(NAMES)
    whole.update(preds, _batch(targets, ["s"] * 4))
    a.update(preds[:3], _batch(targets[:3], ["s"] * 3))
    b.update(preds[3:], _batch(targets[3:], ["s"]))
    a.merge(b)
    assert a.compute() == whole.compute()
    with pytest.raises(ValueError, match="same class names"):
        a.merge(SegmentationMetrics(["x", "y"]))


def test_metrics_name_the_file_of_an_out_of_range_mask_value():
    m = SegmentationMetrics(NAMES)
    target = torch.tensor([[[0, 9]], [[0, 1]]])
    with pytest.raises(DataError, match=r"\[9\].*bad\.png"):
        m.update(torch.zeros(2, 1, 2, dtype=torch.long), _batch(target, ["bad.png", "good.png"]))


def test_empty_or_all_ignored_evaluation_is_an_error_not_nan():
    with pytest.raises(DataError, match="empty"):
        SegmentationMetrics(NAMES).compute()
    m = SegmentationMetrics(NAMES)
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), _batch(torch.full((1, 2, 2), 255)))
    with pytest.raises(DataError, match="ignore"):
        m.compute()


def test_confusion_matrix_counts_only_kept_pixels():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 255, 1]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]


# ---- losses ---------------------------------------------------------------------------------------
def _logits_and_target(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 6, 6, generator=g)
    target = torch.randint(0, 4, (2, 6, 6), generator=g)
    target[:, :, :2] = 255
    return logits, target


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_neither_loss_nor_gradient(name):
    fn = build_loss(name)
    logits, target = _logits_and_target()
    changed = logits.clone()
    changed[:, :, :, :2] = torch.randn(2, 4, 6, 2) * 10
    assert torch.allclose(fn(logits, target), fn(changed, target))
    x = logits.clone().requires_grad_(True)
    fn(x, target).backward()
    assert x.grad[:, :, :, :2].abs().max() == 0
    assert x.grad[:, :, :, 2:].abs().max() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_batch_gives_a_finite_zero_loss(name):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = build_loss(name)(logits, torch.full((1, 4, 4), 255))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0
    loss.backward()  # still differentiable: an all-ignore crop must not break a training step


def test_loss_definitions():
    logits, target = _logits_and_target(1)
    assert torch.allclose(cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=255))
    assert torch.allclose(focal(logits, target, gamma=0.0), cross_entropy(logits, target))
    assert focal(logits, target, gamma=2.0) < cross_entropy(logits, target)  # easy pixels down-weighted
    assert torch.allclose(DiceCE()(logits, target), dice_loss()(logits, target) + cross_entropy(logits, target))
    perfect = F.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 50
    assert float(build_loss("dice")(perfect, target)) < 1e-3
    assert type(build_loss("dice")).__module__.startswith("segmentation_models_pytorch")
    with pytest.raises(ValueError, match="unknown segmentation loss 'lovasz'.*dice_ce"):
        build_loss("lovasz")
