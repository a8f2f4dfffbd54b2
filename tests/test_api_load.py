"""zoo.load / save / from_pretrained / info through a tiny in-process plugin."""

from __future__ import annotations

import json

import pytest
import torch

import zoo_core as zoo
import zoo_toy_plugin
from zoo_core.errors import UnknownNameError, WeightsError, ZooError
from zoo_core.registry import Registry, reset_registry


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    reg = Registry()
    reg.add_plugin(zoo_toy_plugin, "toy", distribution="zoo-toy", version="0.0.1")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


def test_load_wraps_the_network_with_task_classes_and_preprocessing(toy):
    model = zoo.load("tiny", task="t", class_names=["a", "b", "c"])
    assert model.task == "toy" and model.class_names == ["a", "b", "c"] and model.num_classes == 3
    assert model.preprocess.input_size == (8, 8)
    assert model.config == {"model": "toy:tiny", "task": "toy", "num_classes": 3, "options": {}}
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 3)
    preds = model.predict([torch.rand(3, 16, 16), torch.rand(3, 8, 8)])
    assert [p.source for p in preds] == ["<tensor 0>", "<tensor 1>"]
    assert all(p.name in {"a", "b", "c"} and 0 <= p.score <= 1 for p in preds)


def test_save_and_load_round_trip_is_exact(toy, tmp_path):
    model = zoo.load("tiny_wide", task="toy", num_classes=3)
    with torch.no_grad():
        model.net.fc.weight.normal_()
    model.set_image_size(16)
    out_dir = model.save(tmp_path / "m")
    config = json.loads((out_dir / "config.json").read_text())
    assert config["model"] == "toy:tiny_wide" and config["format_version"] == 1
    assert config["versions"]["zoo-toy"] == "0.0.1"
    assert (out_dir / "README.md").read_text().startswith("# toy:tiny_wide (toy)")
    again = zoo.load(out_dir)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(model(x), again(x))
    assert again.preprocess.input_size == (16, 16) and again.class_names == model.class_names


def test_num_classes_on_saved_weights_reinitialises_only_the_head(toy, tmp_path):
    src = zoo.load("tiny", task="toy", num_classes=4)
    src.save(tmp_path / "m")
    with pytest.warns(UserWarning, match="re-initialised 2"):
        tuned = zoo.load(tmp_path / "m", num_classes=2)
    report = tuned.weights_report
    assert sorted(report.reinitialized) == ["fc.bias", "fc.weight"]
    assert "features.0.weight" in report.loaded
    assert torch.equal(tuned.net.features[0].weight, src.net.features[0].weight)
    assert tuned.class_names == ["class_0", "class_1"]


def test_weights_file_from_another_architecture_names_the_keys(toy, tmp_path):
    other = torch.nn.Sequential(torch.nn.Linear(3, 3))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(WeightsError, match=r"missing key\(s\): features.0.weight"):
        zoo.load("tiny", task="toy", weights=tmp_path / "other.pt")


def test_ddp_and_compile_prefixes_are_stripped(toy, tmp_path):
    src = zoo.load("tiny", task="toy")
    prefixed = {f"module._orig_mod.{k}": v for k, v in src.net.state_dict().items()}
    torch.save(prefixed, tmp_path / "w.pth")
    model = zoo.load("tiny", task="toy", weights=str(tmp_path / "w.pth"))
    assert len(model.weights_report.loaded) == 4 and not model.weights_report.reinitialized


def test_errors_name_the_problem(toy):
    with pytest.raises(UnknownNameError, match="did you mean 'tiny'"):
        zoo.load("tinyy", task="toy")
    with pytest.raises(ZooError, match="not zoo_core.model.BuiltModel"):
        zoo.load("wrong", task="toy")
    with pytest.raises(ValueError, match="num_classes=3 but 2 class_names"):
        zoo.load("tiny", task="toy", num_classes=3, class_names=["a", "b"])
    with pytest.raises(UnknownNameError, match="unknown task 'segmentation'"):
        zoo.load("tiny", task="segmentation")


def test_saved_model_refuses_another_task_and_a_newer_format(toy, tmp_path):
    path = zoo.load("tiny", task="toy").save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["format_version"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="newer zoo"):
        zoo.load(path)


def test_corrupt_saved_weights_are_detected(toy, tmp_path):
    path = zoo.load("tiny", task="toy").save(tmp_path / "m")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        zoo.load(path)


def test_info_lists_providers_and_catalog_functions(toy):
    info = zoo.info("tiny")
    assert info.default == "toy:tiny" and info.providers == ["toy:tiny"] and info.tasks == ["toy"]
    assert "toy:tiny" in str(info)
    assert zoo.list_tasks() == ["toy"]
    assert zoo.list_models(task="t") == ["tiny", "tiny_wide", "wrong"]
    assert [p.name for p in zoo.list_plugins()] == ["toy"]
    with pytest.raises(UnknownNameError, match="unknown task 'nope'"):
        toy.resolve("model", "tiny", task="nope")


def test_task_options_are_validated_saved_and_never_silently_swallowed(tmp_path):
    model = zoo.load("unet", task="seg", backbone="resnet18", num_classes=3, task_options={"loss": "focal"})
    assert model.task_impl.options(model)["loss"] == "focal"
    again = zoo.load(model.save(tmp_path / "m"))
    assert again.task_impl.options(again)["loss"] == "focal"           # kept across save/load
    with pytest.raises(TypeError, match=r"task_options=\{'loss': 'dice'\}"):
        zoo.load("unet", task="seg", backbone="resnet18", loss="dice")  # a builder kwarg would be ignored
    with pytest.raises(TypeError, match=r"not options of the classification task; known: .*'label_smoothing'"):
        zoo.load("resnet18", task="cls", task_options={"labelsmoothing": 0.1})


@pytest.mark.parametrize("bad, message", [
    ({"interpolation": "box"}, r"unknown resize filter; use one of nearest, nearest-exact, bilinear, bicubic, lanczos"),
    ({"interpolation": "bicubc"}, r"interpolation='bicubc'"),
    ({"input_size": (224,)}, r"must be \(height, width\)"),
    ({"mean": (0.5, 0.5), "std": (0.5, 0.5, 0.5)}, r"one mean and one positive std per channel"),
    ({"crop_pct": 0.0}, r"crop_pct=0\.0\): must be in \(0, 2\]"),
])
def test_preprocess_refuses_values_the_image_paths_cannot_apply(bad, message):
    from zoo_core.model import Preprocess

    with pytest.raises(ValueError, match=message):
        Preprocess(**bad)


@pytest.mark.parametrize("interpolation", ["nearest", "nearest-exact", "bilinear", "bicubic", "lanczos"])
def test_every_accepted_resize_filter_runs_in_predict(interpolation):
    """Each filter Preprocess accepts has a tensor kernel: predict resizes a (C, H, W) tensor with it."""
    from dataclasses import replace

    model = zoo.load("resnet18", task="cls", num_classes=3)
    model.preprocess = replace(model.preprocess, input_size=(32, 32), interpolation=interpolation, crop_pct=0.9)
    (pred,) = model.predict([torch.rand(3, 40, 50)])
    assert pred.label in (0, 1, 2) and 0.0 < pred.score <= 1.0


def test_a_saved_model_whose_plugin_is_missing_names_the_file_and_the_distribution(toy, tmp_path):
    saved = zoo.load("tiny", task="toy", num_classes=3).save(tmp_path / "m")
    config = json.loads((saved / "config.json").read_text())
    assert config["providers"] == {"toy": "zoo-toy 0.0.1"}
    reset_registry(Registry().finalize())  # the plugin that built it is not installed here
    with pytest.raises(ZooError, match=r"m/config\.json names toy:tiny, built by plugin\(s\) toy \(zoo-toy 0\.0\.1\), "
                                       r"which is not installed here: install that distribution"):
        zoo.load(saved)
