"""This plugin's own tests. `pytest` also runs the zoo conformance suite (see pyproject.toml)."""

import torch

import zoo_core as zoo


def test_models_are_listed():
    assert zoo.list_models(plugin="template") == ["tinycnn", "tinycnn_wide"]


def test_tinycnn_predicts_one_label_per_image():
    model = zoo.load("template:tinycnn", task="cls", class_names=["cat", "dog", "bird"])
    preds = model.predict(torch.rand(4, 3, 32, 32))
    assert len(preds) == 4
    assert all(p.name in {"cat", "dog", "bird"} and 0.0 <= p.score <= 1.0 for p in preds)


def test_liteseg_gives_logits_at_the_input_size_on_any_backbone():
    model = zoo.build("segmentation", backbone="timm:test_resnet", head="template:liteseg", num_classes=3)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert model.backbone_prefixes == ("backbone",)  # zoo.build found the backbone module it gave the builder
