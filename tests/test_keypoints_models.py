"""Keypoint models: Keypoint R-CNN by name (torchvision's weights described, its state dicts loading unchanged),
the keypoint_rcnn head on a zoo backbone, the conformance suite, ONNX export, and the catalog in the CLI."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.errors import OptionError, WeightsError
from zoo_core.testing import check_spec
from zoo_torchvision import kp_specs

TINY = {"min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32, "max_levels": 3,
        "keypoint_channels": 16, "keypoint_layers": 2, "box_detections_per_img": 10}
COCO_17 = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
           "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
           "left_ankle", "right_ankle"]


def test_catalog_lists_keypoint_rcnn_with_its_weights_enum_and_the_cli_shows_it(capsys):
    from torchvision.models import get_model_weights

    from zoo_torchvision.detection import describe

    assert zoo.list_models(task="kp") == ["keypointrcnn_resnet50_fpn"]
    info = zoo.info("keypointrcnn_resnet50_fpn")
    tags = info.weights["torchvision:keypointrcnn_resnet50_fpn"]
    assert set(tags) == {w.name for w in get_model_weights("keypointrcnn_resnet50_fpn")} == {"COCO_V1", "COCO_LEGACY"}
    w = describe("keypointrcnn_resnet50_fpn", "COCO_V1")
    assert w.url.endswith("keypointrcnn_resnet50_fpn_coco-fc266e95.pth") and w.hash_prefix == "fc266e95"
    assert w.class_names == ["person"] and w.metrics["COCO-val2017"]["kp_map"] == 65.0
    assert main(["list", "--task", "kp"]) == 0
    assert "keypointrcnn_resnet50_fpn" in capsys.readouterr().out
    assert main(["info", "keypointrcnn_resnet50_fpn"]) == 0
    out = capsys.readouterr().out
    assert "tasks:     keypoints" in out and "COCO_V1" in out and "17 COCO person keypoints" in out
    assert main(["info", "keypoint_rcnn"]) == 0
    assert "task:          keypoints" in capsys.readouterr().out


def test_pretrained_tags_are_never_downloaded_offline():
    with pytest.raises(WeightsError, match="ZOO_OFFLINE=1"):
        zoo.load("keypointrcnn_resnet50_fpn", task="kp", weights="COCO_V1")


def test_torchvisions_own_state_dict_loads_and_gives_identical_outputs(tmp_path):
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    torch.manual_seed(0)
    tv = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17, min_size=64,
                                   max_size=64).eval()
    path = tmp_path / "keypointrcnn.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(path))
    model = zoo.load("keypointrcnn_resnet50_fpn", task="kp", weights=path, min_size=64, max_size=64).eval()
    report = model.weights_report
    assert not report.reinitialized and not report.missing and model.class_names == ["class_0"]
    assert model.net.keypoint_names == COCO_17
    x = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        (ours,), (theirs,) = model(x), tv(x)
    assert len(theirs["boxes"]) > 0
    for key in ("boxes", "scores", "keypoints", "keypoints_scores"):
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(ours["labels"] + 1, theirs["labels"])  # zoo labels 0..K-1, torchvision's 1..K

    five = zoo.load("keypointrcnn_resnet50_fpn", task="kp", weights=path, min_size=64, max_size=64,
                    keypoint_names=["a", "b", "c", "d", "e"])  # other points: a new keypoint predictor only
    assert sorted(five.weights_report.reinitialized) == [
        "detector.roi_heads.keypoint_predictor.kps_score_lowres.bias",
        "detector.roi_heads.keypoint_predictor.kps_score_lowres.weight"]


@pytest.mark.parametrize("options, message", [
    ({"keypoint_names": ["a", "a"]}, r"keypoint_names=\['a', 'a'\] must be a non-empty list of distinct names"),
    ({"keypoint_names": ["a", "b"], "num_keypoints": 3}, "num_keypoints=3 but 2 keypoint_names were given"),
    ({"num_keypoints": 0}, "num_keypoints=0 must be a whole number >= 1"),
    ({"num_keypoints": 3, "skeleton": [[0, 3]]}, r"skeleton entry \[0, 3\] must be a pair \[i, j\] of 0-based keypoint "
                                                 "indices 0..2"),
    ({"keypoint_layers": 0}, "keypoint_layers=0 must be a whole number >= 1"),
])
def test_bad_keypoint_options_are_refused_by_name(options, message):
    with pytest.raises(OptionError, match=message):
        zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", num_classes=1, **{**TINY, **options})


def test_saved_keypoint_model_round_trips_its_points(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"],
                      keypoint_names=["apex", "left_base", "right_base"], skeleton=[[0, 1], [0, 2]], **TINY).eval()
    again = zoo.load(model.save(tmp_path / "kp")).eval()
    assert again.net.keypoint_names == ["apex", "left_base", "right_base"] and again.net.skeleton == [(0, 1), (0, 2)]
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    a, b = model.predict(x)[0], again.predict(x)[0]
    assert torch.equal(a.keypoints, b.keypoints) and b.skeleton == [(0, 1), (0, 2)]


@pytest.mark.slow
def test_keypoint_rcnn_head_and_the_task_pass_the_conformance_suite(monkeypatch):
    """The head through every check on a built-in backbone, at a CPU-test size: the head builders' own defaults
    are made small (the same code runs at 800 px with 8x512 keypoint convolutions, just slower)."""
    from zoo_torchvision import detection, keypoints

    for key, value in (("min_size", 64), ("max_size", 64), ("fpn_channels", 16), ("representation_size", 32)):
        monkeypatch.setitem(detection.build_faster_rcnn_head.__kwdefaults__, key, value)
    for key, value in (("keypoint_channels", 16), ("keypoint_layers", 2)):
        monkeypatch.setitem(keypoints.build_keypoint_rcnn_head.__kwdefaults__, key, value)
    report = check_spec("head:torchvision:keypoint_rcnn", backbone="timm:test_resnet")
    assert report.ok, str(report)
    ran = {r.check for r in report.results if r.status == "pass"}
    assert {"build", "contract", "train_step", "freeze", "save_load", "num_classes", "export"} <= ran, str(report)
    assert "predict -> Keypoints" in report.result("contract").detail
    task = check_spec("task:tasks:keypoints")
    assert task.ok and task.result("task").status == "pass", str(task)  # example_samples given


@pytest.mark.slow
def test_keypointrcnn_by_name_passes_the_contract_check():
    report = check_spec(f"model:torchvision:{kp_specs.MODELS[0][0]}", checks=["contract"])
    assert report.ok, str(report)
    assert report.result("contract").status == "pass" and "predict -> Keypoints" in report.result("contract").detail


def test_export_to_onnx_is_checked_by_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("kp", backbone="torchvision:resnet18", head="keypoint_rcnn", class_names=["house"],
                      keypoint_names=["a", "b", "c"], **TINY)
    result = model.export("onnx", tmp_path / "kp.onnx")
    assert result.exporter == "torchscript" and not result.dynamic_batch  # torchvision's detectors: a fixed batch
    assert result.max_abs_diff <= result.tolerance
    assert {"[0]['keypoints']", "[0]['keypoints_scores']"} <= set(result.per_output)
    with pytest.raises(zoo.IncompatibleError, match="torchscript: its post-processing is data-dependent"):
        model.export("torchscript", tmp_path / "kp.pt")


def test_zoo_train_builds_the_keypoint_head_the_data_names(tmp_path, capsys):
    """`zoo train --data houses` on COCO's 17-point Keypoint R-CNN: a 5-point head named after the data's
    categories (keypoint names and skeleton), as the classes are; the user's own --option wins."""
    from zoo_core.commands.train import data_model_options
    from zoo_tasks import kp_synth

    data = kp_synth.make_keypoint_shapes(tmp_path / "houses", n_train=2, n_val=1, image_size=64)
    code = main(["train", "--model", "keypointrcnn_resnet50_fpn", "--task", "kp", "--data", str(data), "--val", "none",
                 "--option", "min_size=64", "--option", "max_size=64", "--max-epochs", "1", "--batch-size", "2",
                 "--num-workers", "0", "--out-dir", str(tmp_path / "run"), "--no-tensorboard", "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "keypoint_names=[5 items]" in out or "keypoint_names=['apex'" in out
    model = zoo.load(tmp_path / "run" / "model")
    assert model.net.keypoint_names == list(kp_synth.KEYPOINT_NAMES)
    assert model.net.skeleton == [tuple(p) for p in kp_synth.SKELETON] and model.class_names == [kp_synth.CATEGORY]
    mine = {"keypoint_names": ["a", "b", "c", "d", "e"]}
    assert set(data_model_options("keypointrcnn_resnet50_fpn", "kp", data, mine)) == {"skeleton"}
    assert data_model_options("fasterrcnn_resnet50_fpn", "det", data, {}) == {}  # a detector takes no points
