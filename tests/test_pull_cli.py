"""`zoo pull` fills a mirror an offline machine uses as ZOO_HOME; `zoo weights`; `zoo export`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

import zoo_core as zoo
import zoo_remote_plugin as remote
from zoo_core.cli import main
from zoo_core.registry import reset_registry
from zoo_core.weights import sha256_file
from trainer_toy import toy  # noqa: F401  (fixture)


@pytest.fixture
def reg(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(remote, "SOURCE", dict(remote.SOURCE))
    reset_registry(remote.make_registry())
    yield
    reset_registry()


def test_pull_fills_a_mirror_that_loads_offline_without_network(reg, tmp_path, monkeypatch, capsys):
    _, sha, net = remote.publish(tmp_path / "")  # served by a file:// URL: no network needed
    mirror = tmp_path / "mirror"
    assert main(["pull", "remote_tiny.v1", "--to", str(mirror)]) == 0
    out = capsys.readouterr().out
    pulled = mirror / "weights" / "remote" / remote.FILENAME
    assert sha256_file(pulled) == sha and f"export ZOO_HOME={mirror}" in out
    assert (pulled.parent / (pulled.name + ".sha256")).read_text().strip() == sha
    assert os.environ["ZOO_OFFLINE"] == "1" and os.environ["ZOO_HOME"] == str(tmp_path / "home")  # restored

    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(OSError))
    monkeypatch.setenv("ZOO_HOME", str(mirror))
    model = zoo.load("remote_tiny.v1", task="toy")
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(model(x), net(x)) and calls == []


def test_pull_of_an_unknown_tag_lists_the_known_ones(reg, tmp_path, capsys):
    assert main(["pull", "remote_tiny.v9", "--to", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "unknown weights tag of remote:remote_tiny 'v9'" in err and "v1" in err


def test_weights_lists_tag_hash_license_and_source(reg, tmp_path, capsys):
    _, sha, _ = remote.publish(tmp_path)
    assert main(["weights", "remote_tiny"]) == 0
    out = capsys.readouterr().out
    assert "remote:remote_tiny.v1" in out and "default" in out and sha in out and "CC0-1.0" in out
    assert "toy/accuracy=0.75" in out and remote.SOURCE["url"] in out
    rows = zoo.list_weights("remote_tiny")
    assert [(r.tag, r.sha256, r.license, r.cached) for r in rows] == [("v1", sha, "CC0-1.0", False)]


def test_export_command_prints_the_max_abs_difference(reg, tmp_path, capsys):
    saved = zoo.load("tiny", task="toy").save(tmp_path / "m")
    out_file = tmp_path / "m.onnx"
    assert main(["export", str(saved), str(out_file), "--format", "onnx", "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert out_file.is_file() and "max abs difference: " in out
    diff = float(out.split("max abs difference: ")[1].split()[0])
    assert diff < 1e-4

    assert main(["export", str(saved), str(tmp_path / "m.pt"), "--image-size", "16"]) == 0  # format from suffix
    assert "torchscript -> " in capsys.readouterr().out and (tmp_path / "m.pt").is_file()
    assert main(["export", str(saved), str(tmp_path / "e.pt"), "--format", "torch_export", "--image-size", "16"]) == 0
    assert "torch_export -> " in capsys.readouterr().out  # .pt is a torch archive either way
    for argv, message in (([str(saved), str(tmp_path / "x.onnx"), "--format", "torchscript"],
                           "x.onnx ends in .onnx (a onnx file) but --format is torchscript: name it"),
                          ([str(saved), str(tmp_path / "x.pt"), "--format", "onnx"],
                           "x.pt ends in .pt (a torchscript file) but --format is onnx: name it"),
                          ([str(saved), str(tmp_path)], "is a folder; OUT is the file to write"),
                          ([str(tmp_path / "m.onnx"), str(tmp_path / "y.onnx")], "is a file but not a saved model"),
                          ([str(tmp_path / "empty"), str(tmp_path / "z.onnx")], "neither a saved model")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert main(["export", *argv]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "unknown model" not in err, err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "z.onnx").exists()


def test_a_run_folder_without_its_final_model_opens_from_its_best_checkpoint(toy, tmp_path):
    """A run stopped before writing model/ (killed, or --epochs not reached) still evaluates and exports."""
    import shutil

    from zoo_core.commands.train import open_model

    model = zoo.load("toynet_plain", task="toytrain")
    zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path / "run", num_workers=0, verbose=False,
                tensorboard=False, plots=False).fit(model, "toy:n=8", "toy:n=4")
    shutil.rmtree(tmp_path / "run" / "model")
    (tmp_path / "run" / "model").mkdir()  # an empty model/ is not a saved model: best.pt is used
    opened = open_model(str(tmp_path / "run"))
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in opened.net.state_dict().items())


def test_cli_commands_import_no_torch():
    code = ("import sys, zoo_core.cli as c; c.make_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_folder_that_shares_a_models_name_does_not_hide_the_model(tmp_path, monkeypatch):
    from zoo_core.commands.train import open_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").mkdir()  # e.g. where the user keeps notes on it
    assert open_model("resnet18", task="cls", num_classes=3).label == "torchvision:resnet18"
