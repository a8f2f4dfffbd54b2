"""One seed covers everything random, the model's initialisation included.

Before: ``--seed``/``Trainer(seed=)`` seeded only the training; the new head of ``zoo train --model
resnet18`` drew from an unseeded generator, so two identical seeded runs gave weights ~1.5 apart.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.data.digits import make_digits


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_with_a_seed_initialises_the_same_weights_and_leaves_the_callers_streams_alone():
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    a = zoo.load("resnet18", task="cls", num_classes=3, seed=7)
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and (before[2] == after[2]).all()
    torch.rand(10)  # the global stream moved: the seeded build must not care
    b = zoo.load("resnet18", task="cls", num_classes=3, seed=7)
    c = zoo.load("resnet18", task="cls", num_classes=3, seed=8)
    assert _same(_state(a), _state(b))
    assert not torch.equal(a.net.fc.weight, c.net.fc.weight)


def test_seed_everything_is_public_and_makes_an_unseeded_load_repeatable():
    zoo.seed_everything(3)
    a = zoo.load("resnet18", task="cls", num_classes=2)
    zoo.seed_everything(3)
    b = zoo.load("resnet18", task="cls", num_classes=2)
    assert _same(_state(a), _state(b))
    with pytest.raises(ValueError, match="seed"):
        zoo.seed_everything(-1)
    with pytest.raises(ValueError, match="seed"):
        zoo.load("resnet18", task="cls", num_classes=2, seed=1.5)


def test_a_composed_model_is_seeded_head_and_adapter_included():
    kw = dict(backbone="torchvision:resnet18", head="deeplabv3", num_classes=2)
    a, b = zoo.build("seg", seed=4, **kw), zoo.build("seg", seed=4, **kw)
    assert _same(_state(a), _state(b))


@pytest.mark.slow
def test_two_identical_seeded_zoo_train_runs_give_bit_identical_weights(tmp_path):
    data = make_digits(tmp_path / "digits", image_size=32, limit=40)
    finals = []
    for run in ("a", "b"):
        torch.rand(7)  # whatever the process drew before must not matter
        out = tmp_path / run
        code = main(["train", "--model", "resnet18", "--data", str(data), "--seed", "7", "--deterministic",
                     "--epochs", "1", "--batch-size", "8", "--limit-train-batches", "2", "--image-size", "32",
                     "--num-workers", "0", "--out-dir", str(out), "--no-tensorboard", "--no-verbose",
                     "--no-plots"])
        assert code == 0
        finals.append(load_file(out / "model" / "model.safetensors"))
    assert _same(*finals)


def test_demo_recipes_build_the_same_model_on_every_run():
    from zoo_core.demo import demo_recipes

    recipe = demo_recipes(["cls"])["cls"]
    torch.rand(3)
    a = recipe.make_model("cls")
    torch.rand(5)
    b = recipe.make_model("cls")
    assert _same(_state(a), _state(b))
