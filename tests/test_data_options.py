"""Task options that describe a run's data (its format, an id mapping) are not the model's: never saved."""

from __future__ import annotations

import json

import zoo_core as zoo
from zoo_core.cli import make_parser


def test_a_data_format_option_applies_to_its_run_and_is_not_saved_with_the_model(tmp_path):
    model = zoo.load("unet", task="seg", backbone="resnet18", num_classes=3, encoder_depth=3,
                     decoder_channels=(16, 8, 8), seed=0, task_options={"format": "cityscapes", "hflip": 0.0})
    assert model.task_impl.options(model)["format"] == "cityscapes"  # this run reads Cityscapes files
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["task_options"]
    assert "format" not in saved and saved["hflip"] == 0.0  # a model option is kept
    again = zoo.load(tmp_path / "m")
    assert again.task_impl.options(again)["format"] == "auto"  # tomorrow's data is detected again


def test_zoo_eval_and_predict_take_task_options_for_the_data():
    parser = make_parser()
    args = parser.parse_args(["eval", "m", "--data", "d", "--task-option", "format=yolo"])
    assert args.task_option == ["format=yolo"]
    assert parser.parse_args(["predict", "m", "x.png", "--task-option", "format=yolo"]).task_option == ["format=yolo"]


def test_a_pair_given_to_classification_is_a_named_error(tmp_path):
    import pytest

    from zoo_core.errors import DataError

    model = zoo.load("resnet18", task="cls", num_classes=2, seed=0)
    with pytest.raises(DataError, match=r"image-folder data is one folder .* not tuple"):
        zoo.evaluate(model, (tmp_path / "images", tmp_path / "labels.json"), num_workers=0)
