"""int8 for detectors: dynamic quantisation compares matched boxes (counts may differ), static is refused
saying why, and an int8 detector saves and loads with identical outputs and its metric change recorded."""

from __future__ import annotations

import json

import pytest
import torch

import zoo_core as zoo
from zoo_core.compression import compare_outputs
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import IncompatibleError, WeightsError
from zoo_core.task import Detections

SMALL_DET = dict(backbone="torchvision:resnet18", head="faster_rcnn", min_size=64, max_size=64, fpn_channels=16,
                 representation_size=32, max_levels=3)


@pytest.fixture(scope="module")
def detector():
    zoo.seed_everything(0)
    return zoo.build("det", class_names=["circle", "square", "triangle"], **SMALL_DET).eval()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes") / "det", layout="coco", n_train=4, n_val=4, image_size=64)


def _same_outputs(a, b) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


@pytest.mark.filterwarnings("ignore:map_medium")  # 64 px shapes have no medium boxes
def test_dynamic_int8_detector_quantizes_predicts_saves_and_loads_exactly(detector, shapes, tmp_path):
    # before: quantize() flattened the float and int8 detections and subtracted them, which crashed as soon
    # as int8 kept another number of boxes (240 vs 234 values), and model.save() refused any int8 model
    res = detector.quantize("int8", eval_data=shapes, timing_iters=1)  # auto: a set-valued output -> dynamic
    print(res)
    assert res.method == "dynamic" and res.model.config["quantized"]["method"] == "dynamic"
    assert {"ref_count", "new_count", "matched", "mean_iou", "label_agreement"} <= res.sets.keys()
    assert res.sets["matched"] <= min(res.sets["ref_count"], res.sets["new_count"])
    assert res.sets["matched"] > 0 and res.sets["mean_iou"] > 0.9  # the box head's int8 Linears move boxes little
    quantized = [m for m in res.model.net.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert len(quantized) >= 3  # fc6, fc7 and the predictor's Linears
    assert all(isinstance(p, Detections) for p in res.model.predict(torch.rand(2, 3, 64, 64)))
    assert set(res.metrics_before) >= {"map", "map_50"} and set(res.metric_change) >= {"map"}

    out = res.model.save(tmp_path / "int8")
    config = json.loads((out / "config.json").read_text())
    assert config["quantized"]["method"] == "dynamic" and config["quantized"]["metrics_before"] == res.metrics_before
    assert config["quantized"]["metrics_after"] == res.metrics_after
    assert config["metrics"]["map"] == res.metrics_after["map"]
    card = (out / "README.md").read_text()
    assert "## Compression" in card and "int8 (dynamic quantisation" in card
    assert f"- map: {res.metrics_before['map']:.4f} -> {res.metrics_after['map']:.4f}" in card
    assert (out / "model.safetensors").read_bytes()[:1] != b"\x80"  # safetensors, not a pickle

    again = zoo.load(out).eval()
    assert again.config["quantized"]["method"] == "dynamic" and again.class_names == detector.class_names
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _same_outputs(res.model(x), again(x))  # exactly the saved int8 model, not a re-quantized cousin


def test_static_int8_on_a_detector_is_refused_naming_why(detector):
    # before: it ran into torch.fx's tracing error (or a shape error) instead of the reason
    with pytest.raises(IncompatibleError, match=r"per-image sets of boxes.*torch\.fx.*method='dynamic'"):
        detector.quantize("int8", method="static", calibration_data=torch.rand(2, 3, 64, 64))


def test_matched_comparison_reports_a_count_difference_instead_of_failing():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    ref = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.tensor([1, 2, 1])}]
    new = [{"boxes": boxes[:2] + 0.5, "scores": torch.tensor([0.88, 0.81]), "labels": torch.tensor([1, 1])}]
    diff = compare_outputs(ref, new)
    assert diff.sets["ref_count"] == 3 and diff.sets["new_count"] == 2 and diff.sets["matched"] == 2
    assert diff.sets["label_agreement"] == 0.5 and diff.sets["max_score_diff"] == pytest.approx(0.02, abs=1e-6)
    assert diff.max_abs_diff == pytest.approx(0.5)


def test_a_damaged_int8_layout_is_refused_by_name(detector, tmp_path):
    from safetensors.torch import load_file, save_file

    out = detector.quantize("int8", method="dynamic", timing_iters=1).model.save(tmp_path / "q")
    weights = out / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        layout = json.loads(f.metadata()["zoo.int8_layout"])
    key = next(k for k, v in layout.items() if v["kind"] == "dtype")
    layout[key]["name"] = "object"  # not an allowed dtype
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt", "zoo.int8_layout": json.dumps(layout)})
    config = json.loads((out / "config.json").read_text())
    import hashlib

    config["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="int8 layout of .*not a valid entry"):
        zoo.load(out)
    with pytest.raises(WeightsError, match="cannot take a new head"):
        zoo.load(detector.quantize("int8", method="dynamic", timing_iters=1).model.save(tmp_path / "q2"),
                 num_classes=5)


def test_calibration_images_of_different_sizes_become_one_batch_at_the_models_size(detector):
    """A detection batch is a list of images of their own sizes: they are resized, not torch.stack'ed (an error)."""
    from zoo_core.compression import input_batches
    from zoo_core.task import Batch

    images = [torch.rand(3, 48, 80), torch.rand(3, 64, 64), torch.rand(3, 70, 50)]
    (batch,) = input_batches([Batch(inputs=images, targets=[{}] * 3, meta=[{}] * 3)], detector, limit=4)
    assert batch.shape == (3, 3, *detector.preprocess.input_size)
