"""``zoo train`` / ``zoo eval`` / ``zoo predict`` / ``zoo demo``: flags generated from the one schema."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.cli import main, make_parser
from zoo_core.errors import SettingError, UnknownNameError
from zoo_core.train.config import TrainConfig
from zoo_core.train.sources import add_arguments, from_sources


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = make_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_every_trainer_setting_is_a_flag_of_zoo_train():
    flags = {s for a in _subparser("train")._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in flags, f.name
    assert {"--epochs", "--no-channels-last", "--config", "--resume", "--model", "--data"} <= flags


def test_yaml_then_flags_override_defaults(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "7", "--channels-last", "--ema", "none", "--image-size", "64"])
    config = from_sources({"max_epochs": 3, "lr": 0.5, "ema": 0.99, "model": "x"}, args, other_keys=("model",))
    assert (config.max_epochs, config.lr, config.ema, config.channels_last, config.image_size) == \
        (7, 0.5, None, True, 64)
    assert config.batch_size == TrainConfig().batch_size
    with pytest.raises(UnknownNameError, match="'lrr'.*did you mean 'lr'"):
        from_sources({"lrr": 0.1}, parser.parse_args([]))
    with pytest.raises(SettingError, match="precision='fp8' \\(from --precision\\)"):
        from_sources({}, parser.parse_args(["--precision", "fp8"]))


def test_train_eval_and_predict_from_the_command_line(toy, tmp_path, capsys):
    run = tmp_path / "run"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"model": "toynet", "task": "toytrain", "max_epochs": 3,
                                                       "batch_size": 8, "num_workers": 0, "lr": 0.01}))
    code = main(["train", "--config", str(tmp_path / "run.yaml"), "--train", "toy:n=16", "--val", "toy:n=8",
                 "--epochs", "1", "--out-dir", str(run), "--no-tensorboard", "--no-verbose"])
    assert code == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    assert (saved["max_epochs"], saved["batch_size"], saved["lr"]) == (1, 8, 0.01)  # flag beat YAML
    capsys.readouterr()

    for target in (run, run / "model", run / "last.pt"):  # a run, a saved model, a checkpoint
        assert main(["eval", str(target), "--data", "toy:n=8", "--json", "--no-plots", "--num-workers", "0"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["metrics"]["num_samples"] == 8 and out["images_per_s"] > 0

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (200 * i, 10, 10)).save(images / f"{i}.png")
    assert main(["predict", str(run), str(images), "--json"]) == 0
    preds = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["source"] for p in preds] == [str(images / "0.png"), str(images / "1.png")]
    assert all(p["name"] in T.CLASSES and 0 <= p["score"] <= 1 for p in preds)


def test_train_errors_are_one_line_messages(toy, tmp_path, capsys):
    assert main(["train", "--model", "toynet", "--task", "toytrain", "--out-dir", str(tmp_path)]) == 1
    assert "needs --data" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("max_epoch: 3\n")
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--model", "toynet", "--data", "toy:"]) == 1
    assert "did you mean 'max_epochs'" in capsys.readouterr().err


def test_bad_options_devices_and_sizes_are_one_line_errors(tmp_path, capsys):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            Image.new("RGB", (16, 16)).save(tmp_path / "data" / split / cls / "0.png")
    base = ["train", "--model", "resnet18", "--data", str(tmp_path / "data"), "--val", "none", "--out-dir", str(tmp_path / "r")]
    for extra, message in ((["--option", "bogus=1"], "torchvision:resnet18 does not accept option(s) ['bogus']"),
                           (["--task-option", "bogus=1"], "task_options ['bogus'] are not options of the"),
                           (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "cuda:99"],
                            "device 'cuda:"),
                           (["--device", "gpu"], "device='gpu' (from --device): expected a device name"),
                           (["--image-size", "0"], "image_size='0' (from --image-size): expected a whole number >= 1")):
        assert main(base + extra) == 1, extra  # an error line, not a traceback
        err = capsys.readouterr().err
        assert err.startswith("zoo train: error: ") and message in err and "Traceback" not in err, err


def test_the_cli_modules_do_not_import_torch():
    code = "import sys, zoo_core.cli as c; c.make_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_demo_recipes_come_from_the_tasks_and_name_registered_models():
    import zoo_core as zoo
    from zoo_core.demo import demo_recipes
    from zoo_core.specs import import_object

    recipes = demo_recipes()
    assert list(recipes) == ["cls", "det", "seg"]  # every built-in task brings one, keyed by its short alias
    for task, recipe in recipes.items():
        if recipe.head:
            assert recipe.head in zoo.list_heads(task) and zoo.list_backbones(recipe.model)
        else:
            assert zoo.get_task(task).name in zoo.info(recipe.model, task=task).tasks
        assert callable(import_object(recipe.make, "demo dataset"))
        TrainConfig(**recipe.trainer_settings()), TrainConfig(**recipe.trainer_settings(quick=True))
    with pytest.raises(zoo.UnknownNameError, match="unknown task"):
        demo_recipes(["nope"])


@pytest.mark.slow
def test_the_detection_demo_recipe_learns_in_a_few_epochs(tmp_path):
    """The README promises the main job shows learning for every task; this is the slow one to get right."""
    from zoo_core.demo import demo_recipes

    recipe = demo_recipes(["det"])["det"]
    data = recipe.write_data(tmp_path / "data", n_train=48, n_val=6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        settings = recipe.trainer_settings(epochs=3) | {"progress_bar": False}
        result = zoo.Trainer(out_dir=tmp_path / "run", seed=0, device="cpu", **settings).fit(
            recipe.make_model("det"), data, data)
    finally:
        torch.set_num_threads(threads)
    assert result.metrics["map_50"] > 0.05, result.metrics  # random weights score ~0.000


@pytest.mark.slow
def test_zoo_demo_quick_trains_evaluates_and_reports(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["demo", "--quick", "--tasks", "cls", "--dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "zoo demo (quick)" in out and "cls: resnet18" in out and "accuracy" in out
    assert (tmp_path / "runs" / "cls" / "best.pt").is_file()
    assert (tmp_path / "runs" / "cls" / "plots" / "confusion_matrix.png").is_file()
    assert (tmp_path / "data" / "cls" / "train").is_dir()
    torch.set_num_threads(1)
    try:  # run again in the same --dir: the demo reuses its data and replaces its own runs
        assert main(["demo", "--quick", "--tasks", "cls", "--epochs", "1", "--dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "cls: resnet18" in capsys.readouterr().out


def test_train_by_name_sizes_the_head_to_the_data_and_builds_the_model_once(tmp_path, monkeypatch, capsys):
    import zoo_core.api as api

    for split in ("train", "val"):
        for k, cls in enumerate(("cat", "dog", "owl")):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (16, 16), (80 * k, 40 * i, 0)).save(tmp_path / "data" / split / cls / f"{i}.png")
    built = []
    real = api.build_model
    monkeypatch.setattr(api, "build_model", lambda *a, **kw: built.append(kw["num_classes"]) or real(*a, **kw))
    assert main(["train", "--model", "resnet18", "--data", str(tmp_path / "data"), "--max-epochs", "1",
                 "--batch-size", "3", "--image-size", "16", "--out-dir", str(tmp_path / "run"),
                 "--num-workers", "0", "--no-progress-bar", "--val", "none"]) == 0
    assert "resnet18: a 3-class head for the classes of" in capsys.readouterr().out
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train_loss" in header and "accuracy" not in header  # --val none: no validation, even on a root
    from zoo_core.commands.train import data_class_names

    assert data_class_names("resnet18.tv_in1k", None, tmp_path / "data") == ["cat", "dog", "owl"]  # a weights tag
    assert built == [3]  # one build, already with the data's head (not 1000 classes, then rebuilt)
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["num_classes"] == 3 and config["class_names"] == ["cat", "dog", "owl"]
    argv = ["train", "--model", "resnet18", "--data", str(tmp_path / "data"), "--batch-size", "3", "--image-size",
            "16", "--out-dir", str(tmp_path / "run"), "--num-workers", "0", "--no-progress-bar", "--val", "none"]
    monkeypatch.setattr("zoo_core.commands.train.data_class_names", lambda *a: pytest.fail("resume reads the data"))
    assert main([*argv, "--max-epochs", "2", "--resume", "last"]) == 0  # the same command resumes: the run's head
    assert built == [3, 3]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
