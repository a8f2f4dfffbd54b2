"""Mixup and CutMix (timm's Mixup) as task options: soft targets, the right pixels, seeded, a real step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo_core as zoo
from zoo_core.data.digits import make_digits
from zoo_tasks.mixup import mix_batch, mixer

OPTS = {"mixup": 0.0, "cutmix": 0.0, "mixup_prob": 1.0, "mixup_switch_prob": 0.5, "label_smoothing": 0.0}


def batch(n=4, k=5, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % k


def test_mixup_blends_images_and_targets_with_one_lambda():
    x, y = batch()
    torch.manual_seed(0)
    mixed, soft = mix_batch(mixer({**OPTS, "mixup": 0.4}, 5), x, y)
    flipped = x.flip(0)
    lam = float(((mixed[0] - flipped[0]) / (x[0] - flipped[0])).flatten()[0])
    assert 0.0 <= lam <= 1.0 and torch.allclose(mixed, lam * x + (1 - lam) * flipped, atol=1e-5)
    expected = lam * torch.eye(5)[y] + (1 - lam) * torch.eye(5)[y.flip(0)]
    assert torch.allclose(soft, expected, atol=1e-5) and torch.allclose(soft.sum(1), torch.ones(4))
    assert not torch.equal(mixed, x) and torch.equal(x, batch()[0])  # the caller's batch is left as it was


def test_cutmix_pastes_one_box_and_weights_targets_by_its_area():
    x, y = batch(size=16)
    torch.manual_seed(1)
    mixed, soft = mix_batch(mixer({**OPTS, "cutmix": 1.0}, 5), x, y)
    pasted = ~torch.isclose(mixed[0], x[0]).all(0)
    assert torch.equal(mixed[0][:, pasted], x.flip(0)[0][:, pasted])  # every changed pixel is the partner's
    rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
    assert pasted.sum() == len(rows) * len(cols)  # one rectangle
    area = float(pasted.float().mean())
    assert soft[0, y[0]] == pytest.approx(1 - area, abs=1e-5) and soft[0, y.flip(0)[0]] == pytest.approx(area, abs=1e-5)


def test_label_smoothing_is_folded_in_and_an_odd_batch_keeps_its_last_sample():
    x, y = batch(n=5)
    torch.manual_seed(0)
    mixed, soft = mix_batch(mixer({**OPTS, "mixup": 0.4, "label_smoothing": 0.1}, 5), x, y)
    assert torch.equal(mixed[4], x[4])  # timm mixes pairs: the fifth is left alone
    assert soft[4, y[4]] == pytest.approx(0.9 + 0.1 / 5) and soft[4].sum() == pytest.approx(1.0)
    assert torch.allclose(soft.sum(1), torch.ones(5))


def test_mixing_is_seeded_by_torch_and_leaves_numpy_alone():
    x, y = batch()
    mix = mixer({**OPTS, "mixup": 0.4, "cutmix": 1.0}, 5)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(mix_batch(mix, x, y))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert np.array_equal(np.random.get_state()[1], before)
    torch.manual_seed(8)
    assert not torch.equal(mix_batch(mix, x, y)[0], runs[0][0])
    assert mixer(OPTS, 5) is None  # both alphas 0: off


def test_multi_label_targets_mix_as_multi_hot():
    x = torch.rand(4, 3, 8, 8)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    torch.manual_seed(0)
    mixed, soft = mix_batch(mixer({**OPTS, "mixup": 0.4}, 3, multi_label=True), x, y)
    lam = float(((mixed[0] - x[3]) / (x[0] - x[3])).flatten()[0])
    assert torch.allclose(soft, lam * y + (1 - lam) * y.flip(0), atol=1e-5)


def test_a_training_step_with_mixup_and_cutmix_uses_soft_targets(tmp_path):
    root = make_digits(tmp_path / "digits", image_size=32, limit=40, seed=0)
    seen = []

    def spy(logits, targets):
        seen.append(targets.detach().clone())
        return torch.sum(-targets * logits.log_softmax(-1), -1).mean()

    model = zoo.load("timm:test_resnet", task="cls", num_classes=10, seed=0,
                     task_options={"mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1})
    task = model.task_impl
    ds = task.read_dataset(root, split="train", train=True, model=model, image_size=32)
    b = task.collate([ds[i] for i in range(6)])
    torch.manual_seed(0)
    loss = task.loss(model, b)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in model.parameters())
    zoo.api.set_task_options(model, {"loss": spy})
    with pytest.warns(UserWarning, match="not saved"):
        zoo.Trainer(max_epochs=1, batch_size=6, image_size=32, out_dir=tmp_path / "run", num_workers=0, seed=0,
                    limit_train_batches=2, plots=False, verbose=False).fit(model, root)
    assert len(seen) == 2 and all(t.shape == (6, 10) and t.dtype == torch.float32 for t in seen)
    assert all(torch.allclose(t.sum(1), torch.ones(6)) for t in seen)
    assert any(bool(((t > 0.05) & (t < 0.9)).sum(1).ge(2).any()) for t in seen)  # two classes share some rows
