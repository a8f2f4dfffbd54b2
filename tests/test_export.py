"""Export with proof: ONNX (run by ONNX Runtime), TorchScript and torch.export, compared with eager."""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from torch import nn

import zoo_core as zoo
from zoo_core.errors import IncompatibleError, UnknownNameError
from zoo_core.export import ExportError, best_opset, export
from zoo_core.model import Preprocess, ZooModel


def _calibrate_bn(net: nn.Module, size: int, steps: int = 2, seed: int = 0) -> None:
    """Give BatchNorm realistic running statistics so outputs are not degenerate (like trained nets)."""
    gen = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(torch.rand(4, 3, size, size, generator=gen))
    net.eval()


def _wrap(net: nn.Module, task: str, size: int, formats=()) -> ZooModel:
    return ZooModel(net, task=task, class_names=["a", "b", "c"], preprocess=Preprocess(input_size=(size, size)),
                    config={"model": f"test:{type(net).__name__}"}, export_formats=formats)


@pytest.fixture(scope="module")
def classifier() -> ZooModel:
    model = zoo.load("resnet18", task="cls", num_classes=3)
    model.set_image_size(64)
    _calibrate_bn(model.net, 64)
    return model


@pytest.fixture(scope="module")
def segmenter() -> ZooModel:
    """LR-ASPP (torchvision's segmentation head) on MobileNetV3-Small: the family, kept small."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.lraspp import LRASPP

    torch.manual_seed(0)
    features = torchvision.models.mobilenet_v3_small().features
    backbone = IntermediateLayerGetter(features, {"3": "low", "12": "high"})
    net = LRASPP(backbone, low_channels=24, high_channels=576, num_classes=3, inter_channels=32)
    _calibrate_bn(net, 64)
    return _wrap(net, "segmentation", 64)


@pytest.fixture(scope="module")
def classifier_onnx(classifier, tmp_path_factory):
    return classifier.export("onnx", tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_classifier_onnx_is_verified_by_onnxruntime(classifier, classifier_onnx):
    res = classifier_onnx
    print(f"classification resnet18 {res}")
    assert res.exporter == "dynamo" and res.batch_sizes == (2, 1, 3)
    assert res.max_abs_diff <= res.tolerance and res.tolerance == pytest.approx(1e-4 * max(1.0, _scale(classifier)))
    # no temp or external-data files; the manifest lists the export as the zoo's (a re-export may replace it)
    assert sorted(p.name for p in res.path.parent.iterdir()) == [".zoo-manifest.json", "m.onnx"]


@pytest.mark.parametrize("fmt,suffix", [("torchscript", "pt"), ("torch_export", "pt2")])
def test_classifier_exports_verified(classifier, tmp_path, fmt, suffix):
    res = classifier.export(fmt, tmp_path / f"m.{suffix}")
    print(f"classification resnet18 {res}")
    assert res.path.is_file() and res.batch_sizes == (2, 1, 3) and res.max_abs_diff <= res.tolerance
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zoo-manifest.json", f"m.{suffix}"]  # no temp files


def _scale(model: ZooModel) -> float:
    with torch.no_grad():
        from zoo_core.export import default_sample
        return max(float(model(default_sample(model, b)).abs().max()) for b in (2,))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch_export"])
def test_segmentation_exports_verified(segmenter, tmp_path, fmt):
    res = export(segmenter, fmt, tmp_path / "seg.out")
    print(f"segmentation lraspp_mobilenet_v3_small {res}")
    assert set(res.per_output) == {"['out']"} and res.max_abs_diff <= res.tolerance


def test_onnx_dynamic_batch_runs_at_batch_1_and_3_in_onnxruntime(classifier, classifier_onnx):
    res = classifier_onnx
    proto = onnx.load(str(res.path))
    assert proto.opset_import[0].version == res.opset == best_opset("dynamo")
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input"
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 64)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            ref = classifier(x).numpy()
        assert got.shape == (batch, 3)
        assert np.abs(got - ref).max() < 1e-3


def test_faster_rcnn_exports_to_onnx_at_a_fixed_size(tmp_path):
    torch.manual_seed(1)
    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, box_detections_per_img=20)
    _calibrate_bn(net.backbone, 320, seed=1)
    for m in net.roi_heads.modules():  # spread the scores as training does: ties would reorder boxes
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.05)
    nn.init.normal_(net.roi_heads.box_predictor.cls_score.weight, std=1.0)
    model = _wrap(net, "detection", 128, formats=("onnx",))
    model.export_options = {"dynamic_batch": False, "onnx_exporter": "torchscript",
                            "reasons": {"torchscript": "its post-processing is data-dependent"}}
    sample = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    sample[:, :, 20:60, 30:90] = 1.0
    res = model.export("onnx", tmp_path / "det.onnx", sample=sample)
    print(f"detection fasterrcnn_mobilenet_v3_large_320_fpn {res} per output {res.per_output}")
    assert set(res.per_output) == {"[0]['boxes']", "[0]['labels']", "[0]['scores']"}
    assert res.per_output["[0]['labels']"] == 0 and res.max_abs_diff <= res.tolerance
    assert not res.dynamic_batch and res.batch_sizes == (1,)
    with pytest.raises(IncompatibleError, match=r"cannot be exported to torchscript: its post-processing is "
                                                r"data-dependent\. Formats it supports: onnx"):
        model.export("torchscript", tmp_path / "det.pt")


def test_unsupported_and_unknown_formats_are_refused(classifier, tmp_path):
    model = _wrap(nn.Sequential(nn.Conv2d(3, 3, 1)), "segmentation", 16, formats=("onnx", "torchscript"))
    with pytest.raises(IncompatibleError, match=r"torch_export.*Formats it supports: onnx, torchscript"):
        model.export("pt2", tmp_path / "m.pt2")
    with pytest.raises(UnknownNameError, match="unknown export format 'onx'; did you mean 'onnx'"):
        model.export("onx", tmp_path / "m.onnx")
    with pytest.raises(UnknownNameError, match=r"unknown export format 'tflite'.*formats: onnx, torchscript, "
                                               r"torch_export"):  # nothing close: the list itself
        model.export("tflite", tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


class _Drifting(nn.Module):
    """A module whose Python state changes every call: a trace freezes it, so the export differs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x).mean((2, 3)) + self.calls


def test_an_export_that_differs_from_eager_fails_loudly_and_writes_nothing(tmp_path):
    model = _wrap(_Drifting(), "classification", 16)
    with pytest.raises(ExportError, match=r"differs from eager by max \|diff\| = 3, above the tolerance 0\.000\d+"):
        model.export("torchscript", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_torchvision_detector_loaded_by_name_exports_with_its_plugin_hints(tmp_path):
    torch.manual_seed(0)
    model = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=3)
    assert model.export_formats == ("onnx",)                      # declared by the plugin, shown by zoo info
    res = model.export("onnx", tmp_path / "det.onnx", sample=torch.rand(1, 3, 128, 128))
    assert not res.dynamic_batch and res.max_abs_diff <= res.tolerance   # default call, no hand-set options
    with pytest.raises(IncompatibleError, match="cannot be exported to torch_export: its post-processing"):
        model.export("torch_export", tmp_path / "det.pt2")


def test_a_composed_detector_carries_the_same_export_hints(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", num_classes=2, min_size=64,
                      max_size=64, fpn_channels=16, representation_size=16)
    assert model.export_formats == ("onnx",) and model.export_options["dynamic_batch"] is False
    res = model.export("onnx", tmp_path / "det.onnx", sample=torch.rand(1, 3, 64, 64))
    assert res.max_abs_diff <= res.tolerance and res.exporter == "torchscript"
    with pytest.raises(IncompatibleError, match="cannot be exported to torchscript: its post-processing"):
        model.export("torchscript", tmp_path / "det.pt")
    again = zoo.load(model.save(tmp_path / "saved"))
    assert again.export_formats == ("onnx",) and again.export_options == model.export_options


@pytest.mark.parametrize("name", ["resnet18", "timm:resnet18", "unet", "deeplabv3_mobilenet_v3_large"])
def test_builtin_classifiers_and_segmenters_declare_every_verified_format(name, capsys):
    from zoo_core.cli import main

    assert main(["info", name]) == 0
    assert "export onnx, torchscript, torch_export" in capsys.readouterr().out


class _BakedBatch(nn.Module):
    """Eager is fine at any batch; a trace bakes ``int(x.shape[0])`` in, so the export fails at batch 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        n, c, h, w = (int(v) for v in y.shape)
        return y.reshape(n, c, h * w).mean(-1)


def test_an_export_that_fails_to_run_is_an_export_error_and_writes_nothing(tmp_path):
    model = _wrap(_BakedBatch(), "classification", 16)
    with pytest.raises(ExportError, match=r"m\.pt: the exported torchscript \(trace\) at "
                       r"batch 1 was written but fails to run \(RuntimeError"):
        model.export("torchscript", tmp_path / "m.pt", exporter="trace")
    assert list(tmp_path.iterdir()) == []


class _Switching(nn.Module):
    """A network with an export-friendly mode: its output records which mode computed it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.exporting = False
        self.entered = 0

    @contextlib.contextmanager
    def export_mode(self):
        self.exporting, self.entered = True, self.entered + 1
        try:
            yield
        finally:
            self.exporting = False

    def forward(self, x):
        return self.conv(x).mean((2, 3)) + (0.0 if self.exporting else 1.0)


def test_a_networks_export_mode_covers_the_trace_and_the_reference_and_is_left_after(tmp_path):
    """Eager reference and traced graph both run in the network's export mode (else they would differ by 1)."""
    net = _Switching()
    result = _wrap(net, "classification", 16).export("torchscript", tmp_path / "m.pt")
    assert result.max_abs_diff <= result.tolerance and net.entered == 1 and not net.exporting
