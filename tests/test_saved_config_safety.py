"""Options read from a saved config are data (issue 12, safety).

A saved model's config.json and a checkpoint's model_config are rebuilt through the plugin's builder:
only the options the plugin declares (``saved_options``) pass, never a path, and nothing reaches
``torch.load`` unguarded. Options typed in Python stay the user's choice.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

import zoo_core as zoo
import zoo_toy_plugin
from zoo_core import hookimpl
from zoo_core.errors import OptionError, WeightsError
from zoo_core.registry import Registry, reset_registry
from zoo_core.saved_options import path_like
from zoo_core.train.checkpoint import FORMAT, FORMAT_VERSION, atomic_save, model_from_checkpoint

TIMM = "timm:test_resnet"


@pytest.fixture
def torch_loads(monkeypatch) -> list[str]:
    """Every file torch.load is asked to read (timm reads checkpoint_path with torch.load)."""
    seen: list[str] = []
    real = torch.load

    def spy(f, *args, **kwargs):
        seen.append(str(getattr(f, "name", f)))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return seen


def set_options(folder: Path, options: dict) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["options"] = options
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("option", ["checkpoint_path", "pretrained_cfg_overlay"])
def test_a_saved_config_cannot_make_timm_read_a_file(tmp_path, torch_loads, option):
    model = zoo.load(TIMM, task="cls", num_classes=3, drop_rate=0.1)
    folder = model.save(tmp_path / "m")
    assert zoo.load(folder).config["options"] == {"drop_rate": 0.1}      # a declared option still loads
    secret = tmp_path / "elsewhere.pth"
    torch.save(model.net.state_dict(), secret)
    value = str(secret) if option == "checkpoint_path" else {"file": str(secret)}
    config = set_options(folder, {"drop_rate": 0.1, option: value})
    with pytest.raises(OptionError, match=rf"{config}: option '{option}' = .* is refused: {TIMM} \(plugin 'timm'\) "
                                          r"does not declare it .*loading never runs code or reads files named in a "
                                          r"saved config.*pass it yourself: zoo\.load\('timm:test_resnet'"):
        zoo.load(folder)
    assert str(secret) not in torch_loads
    typed = zoo.load(TIMM, task="cls", num_classes=3, checkpoint_path=str(secret))  # typed in Python: allowed
    assert str(secret) in torch_loads
    assert torch.equal(typed.net.fc.weight, model.net.fc.weight)


@pytest.mark.parametrize("options, where", [
    ({"backbone": "/tmp/elsewhere/encoder"}, r"'backbone' = '/tmp/elsewhere/encoder'"),
    ({"backbone": "hf-hub:someone/encoder"}, r"'backbone' = 'hf-hub:someone/encoder'"),
    ({"backbone": "resnet18", "decoder_channels": [16, 8, "../w.pth"]}, r"'decoder_channels'\[2\] = '\.\./w\.pth'"),
    ({"backbone": "resnet18", "aux_params": {"classes": 2, "x": {"file": "C:\\w.bin"}}},
     r"'aux_params'\['x'\]\['file'\] = 'C:\\\\w\.bin'"),
], ids=["absolute", "hub", "nested-list", "nested-dict"])
def test_a_path_is_refused_even_under_a_declared_option(tmp_path, options, where):
    folder = zoo.load("unet", task="seg", backbone="resnet18", num_classes=2).save(tmp_path / "unet")
    assert zoo.load(folder).config["options"] == {"backbone": "resnet18"}  # a saved U-Net keeps loading
    config = set_options(folder, options)
    with pytest.raises(OptionError, match=rf"{config}: option {where} looks like a file path or URL and is "
                                          r"refused: loading never reads files named in a saved config"):
        zoo.load(folder)


def test_a_composed_models_options_are_checked_against_its_backbone_and_head(tmp_path, torch_loads):
    model = zoo.build("seg", backbone=TIMM, head="deeplabv3", num_classes=2, level=-1,
                      backbone_options={"drop_path_rate": 0.0})
    folder = model.save(tmp_path / "m")
    again = zoo.load(folder)                                                # declared by both: loads
    assert again.config["options"] == {"level": -1, "backbone_options": {"drop_path_rate": 0.0}}
    secret = tmp_path / "elsewhere.pth"
    torch.save({"x": torch.zeros(1)}, secret)
    config = set_options(folder, {"backbone_options": {"checkpoint_path": str(secret)}})
    with pytest.raises(OptionError, match=rf"{config}: option 'backbone_options'\['checkpoint_path'\] = .* is "
                                          rf"refused: {TIMM} \(plugin 'timm'\) does not declare it"):
        zoo.load(folder)
    set_options(folder, {"level": -1, "atrous_rates": [6, 12, 18], "head_path": "x"})
    with pytest.raises(OptionError, match=r"option 'head_path' = 'x' is refused: torchvision:deeplabv3"):
        zoo.load(folder)
    set_options(folder, {"adapter_channels": "/dev/zero"})
    with pytest.raises(OptionError, match=r"option 'adapter_channels' = '/dev/zero' must be a positive integer"):
        zoo.load(folder)
    assert str(secret) not in torch_loads


def _checkpoint(path: Path, model, options: dict) -> Path:
    return atomic_save({"format": FORMAT, "format_version": FORMAT_VERSION, "task": model.task,
                        "model_config": {**model.config, "options": options}, "class_names": model.class_names,
                        "preprocess": model.preprocess.to_dict(), "model": model.net.state_dict()}, path)


def test_a_checkpoints_model_config_is_data_too(tmp_path, torch_loads, monkeypatch):
    model = zoo.load(TIMM, task="cls", num_classes=3)
    clean = _checkpoint(tmp_path / "clean.pt", model, {"drop_rate": 0.2})
    again = model_from_checkpoint(clean)
    assert again.config["options"] == {"drop_rate": 0.2} and torch.equal(again.net.fc.weight, model.net.fc.weight)
    secret = tmp_path / "elsewhere.pth"
    torch.save(model.net.state_dict(), secret)
    evil = _checkpoint(tmp_path / "evil.pt", model, {"checkpoint_path": str(secret)})
    with pytest.raises(OptionError, match=r"checkpoint .*evil\.pt \(model_config\): option 'checkpoint_path' = .* "
                                          r"is refused.*weights='.*evil\.pt'"):
        model_from_checkpoint(evil)
    assert str(secret) not in torch_loads
    monkeypatch.setattr("zoo_core.weights._torch_version", lambda: (2, 5))  # weights_only has bypasses there
    torch_loads.clear()
    outside = tmp_path / "downloaded" / "clean.pt"  # the same file, not written by the zoo where it lies
    outside.parent.mkdir()
    outside.write_bytes(clean.read_bytes())
    with pytest.raises(WeightsError, match=r"refused to load .*clean\.pt: torch .* known bypasses"):
        model_from_checkpoint(outside)
    assert torch_loads == []                                                # never unpickled


# ---- a third-party plugin: undeclared options are refused, declared ones pass -----------------------
@hookimpl
def register_models(register):
    register("declared", "zoo_toy_plugin:build_tiny", tasks=("toy",), kwargs={"width": 4}, saved_options=("depth",))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    reg = Registry()
    reg.add_plugin(zoo_toy_plugin, "toy", distribution="zoo-toy", version="0.0.1")
    reg.add_plugin(types.SimpleNamespace(register_models=register_models, __name__="declaring"), "declaring")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


def test_only_the_options_a_plugin_declares_pass_from_a_saved_config(toy, tmp_path):
    assert toy.resolve("model", "declared").saved_options == ("depth",)
    folder = zoo.load("tiny", task="toy", depth=3).save(tmp_path / "tiny")   # the builder ignores it
    with pytest.raises(OptionError, match=r"option 'depth' = 3 is refused: toy:tiny \(plugin 'toy'\) does not "
                                          r"declare it as an option a saved config may set \(it declares none\)"):
        zoo.load(folder)
    folder = zoo.load("declared", task="toy", depth=3).save(tmp_path / "declared")
    assert zoo.load(folder).config["options"] == {"depth": 3}


def test_saved_options_must_be_option_names(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)

    @hookimpl
    def register_models(register):
        register("x", "pkg.mod:build", tasks=("cls",), saved_options=("depth", "../path"))

    info = Registry().add_plugin(types.SimpleNamespace(register_models=register_models, __name__="bad"), "bad")
    assert "saved_options=('depth', '../path') must be option names" in info.error


@pytest.mark.parametrize("value", ["/abs/w", "rel/w", "C:\\w", "~/w", "..", "./w", "https://h/w", "file:w",
                                   "hf-hub:org/name", "local-dir:w", "tu-local-dir:w", "w.pth", "w.SAFETENSORS", "w.npz"])
def test_path_like_values(value):
    assert path_like(value)


@pytest.mark.parametrize("value", ["resnet34", "tu-convnext_tiny", "timm:convnext_tiny", "efficientnet-b0",
                                   "resnet50.a1_in1k", "mit_b0", "avg", "scse", ""])
def test_names_are_not_path_like(value):
    assert not path_like(value)


def test_on_old_torch_no_checkpoint_is_unpickled_not_even_a_runs_own(tmp_path, monkeypatch, fresh_registry):
    """A run folder travels (zip, hub) with whatever files it holds: nothing in it can vouch for a pickle, so
    torch < 2.6 (which the zoo no longer installs with) unpickles no checkpoint at all."""
    import trainer_toy
    from zoo_core.train.checkpoint import load_checkpoint

    trainer_toy.install()
    run = tmp_path / "run"
    zoo.Trainer(max_epochs=1, batch_size=8, num_workers=0, out_dir=run, verbose=False, tensorboard=False,
                plots=False).fit(zoo.load("toynet", task="toytrain"), "toy:n=16", "toy:n=8")
    assert load_checkpoint(run / "last.pt")["progress"]["epoch"] == 1
    monkeypatch.setattr("zoo_core.weights._torch_version", lambda: (2, 5))
    with pytest.raises(WeightsError, match=r"refused to load .*last\.pt: torch .* known bypasses.*>= 2\.6"):
        load_checkpoint(run / "last.pt")
