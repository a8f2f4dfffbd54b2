"""model.save writes a README.md model card: task, classes, metrics, training config, provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo_core as zoo
import zoo_remote_plugin as remote
from zoo_core.registry import reset_registry


@pytest.fixture
def reg(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(remote, "SOURCE", dict(remote.SOURCE))
    reset_registry(remote.make_registry())
    yield
    reset_registry()


def test_card_has_task_classes_metrics_training_and_provenance(reg, tmp_path):
    path, sha, _ = remote.publish(tmp_path)
    model = zoo.load("remote_tiny", task="toy", weights=path, class_names=["cat", "dog", "owl", "fox"])
    model.last_metrics = {"accuracy": np.float64(0.8125), "loss": torch.tensor(0.25), "per_class": {"cat": 0.5},
                          "confusion": object()}
    model.config["training"] = {"epochs": 3, "lr": 0.01, "optimizer": "adamw"}
    out = model.save(tmp_path / "m")
    card = (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert card.startswith("# remote:remote_tiny (toy)")
    assert "- classes (4): cat, dog, owl, fox" in card
    assert "| accuracy | 0.8125 |" in card and "| loss | 0.2500 |" in card and "per_class" in card
    assert '"optimizer": "adamw"' in card and '"epochs": 3' in card
    assert f"- weights: {path}" in card and f"- source file sha256: {sha}" in card
    assert f"- model.safetensors sha256: {config['sha256']}" in card
    assert "zoo-remote 0.1" in card and "- export formats (each export is run and compared with eager when written): onnx, torchscript, torch_export" in card
    assert config["metrics"] == {"accuracy": 0.8125, "loss": 0.25, "per_class": {"cat": 0.5}}


def test_reload_keeps_metrics_training_and_the_provenance_chain(reg, tmp_path):
    path, sha, _ = remote.publish(tmp_path)
    model = zoo.load("remote_tiny", task="toy", weights=path)
    model.last_metrics = {"accuracy": 0.5}
    model.config["training"] = {"epochs": 1}
    first = model.save(tmp_path / "m1")
    again = zoo.load(first)
    assert again.last_metrics == {"accuracy": 0.5} and again.config["training"] == {"epochs": 1}
    assert again.provenance["derived_from"] == str(path) and again.provenance["derived_from_sha256"] == sha
    card = (again.save(tmp_path / "m2") / "README.md").read_text()
    assert f"- fine-tuned from: {path} (sha256 {sha})" in card and f"- weights: {first}" in card


def test_unevaluated_untrained_model_says_so(reg, tmp_path):
    card = (zoo.load("tiny", task="toy").save(tmp_path / "m") / "README.md").read_text()
    assert "Not evaluated yet" in card and "No training run recorded" in card
    assert "- weights: random initialisation" in card


def test_a_new_head_keeps_the_saved_preprocessing_and_drops_old_metrics(reg, tmp_path):
    model = zoo.load("tiny", task="toy")
    model.set_image_size(16)
    model.last_metrics = {"accuracy": 0.9}
    out = model.save(tmp_path / "m")
    with pytest.warns(UserWarning, match="re-initialised"):
        tuned = zoo.load(out, num_classes=2)
    assert tuned.preprocess.input_size == (16, 16) and tuned.last_metrics == {}
