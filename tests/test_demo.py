"""Demo recipes (zoo_core.demo): what a third-party task's recipe can rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.demo import DemoRecipe, demo_recipes

WRITTEN: list[dict] = []


def sized(out_dir: Path, *, size: int = 8, n_train: int = 2) -> Path:
    """A generator that calls the image side ``size`` (as the multilabel example does)."""
    WRITTEN.append({"size": size, "n_train": n_train})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return Path(out_dir)


def anything(out_dir: Path, **options) -> None:
    """A generator that takes any keyword and returns nothing."""
    WRITTEN.append(dict(options))
    Path(out_dir).mkdir(parents=True, exist_ok=True)


def recipe(make: str) -> DemoRecipe:
    return DemoRecipe(dataset="toy data", make=make, data={"n_train": 4}, model="toynet", load={},
                      train={"max_epochs": 1})


def test_synth_flags_reach_a_generator_under_its_own_keyword_names(tmp_path, monkeypatch, capsys):
    WRITTEN.clear()
    monkeypatch.setattr("zoo_core.demo.demo_recipes", lambda tasks=None: {"toy": recipe("test_demo:sized")})
    assert main(["data", "synth", "--task", "toy", str(tmp_path / "a"), "--size", "16"]) == 0
    assert WRITTEN[-1] == {"size": 16, "n_train": 4}  # --size became size=, the recipe's n_train kept
    assert main(["data", "synth", "--task", "toy", str(tmp_path / "b"), "--ignore-border", "1"]) == 1
    assert "takes no ['ignore_border']; it takes ['n_train', 'size']" in capsys.readouterr().err


def test_a_generator_with_kwargs_takes_every_override_and_may_return_nothing(tmp_path):
    WRITTEN.clear()
    out = recipe("test_demo:anything").write_data(tmp_path / "d", seed=3, image_size=12)
    assert out == tmp_path / "d" and WRITTEN[-1] == {"n_train": 4, "seed": 3, "image_size": 12}


def test_a_task_whose_demo_fails_is_left_out_with_a_warning_naming_it(monkeypatch):
    from zoo_tasks.detection import DetectionTask

    def broken(self):
        raise RuntimeError("no data generator installed")

    monkeypatch.setattr(DetectionTask, "demo", broken)
    with pytest.warns(UserWarning, match=r"task tasks:detection .*its demo\(\) failed \(RuntimeError: no data"):
        recipes = demo_recipes()
    assert "det" not in recipes and {"cls", "seg"} <= set(recipes)
    with pytest.raises(RuntimeError, match="no data generator"):
        demo_recipes(["det"])  # asked for by name: the error itself
    monkeypatch.setattr(DetectionTask, "demo", lambda self: {"model": "fasterrcnn"})  # not a DemoRecipe
    with pytest.warns(UserWarning, match=r"task tasks:detection .*TypeError: task 'det': demo\(\) returned dict, "
                                         r"not a zoo_core\.demo\.DemoRecipe"):
        assert "det" not in demo_recipes()


def test_zoo_demo_says_so_when_no_task_has_a_recipe(monkeypatch, capsys):
    monkeypatch.setattr("zoo_core.demo.demo_recipes", lambda tasks=None: {})
    assert main(["demo", "--quick"]) == 1
    assert "no installed task has a demo recipe" in capsys.readouterr().err
    assert zoo.get_task("cls").demo() is not None


def test_the_long_recipes_run_only_when_named_so_a_plain_demo_stays_short():
    """Mask R-CNN and Keypoint R-CNN take 1.5-2 min each to show learning: `zoo demo` leaves them out,
    `zoo demo --tasks inst,kp` runs them, and the not-a-recipe error still lists them."""
    assert set(demo_recipes()) == {"cls", "det", "seg"}
    assert {"inst", "kp"} <= set(demo_recipes(every=True))
    assert not demo_recipes(["inst"])["inst"].default and demo_recipes(["kp"])["kp"].head == "keypoint_rcnn"
