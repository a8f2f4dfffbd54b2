"""int8 quantisation: static (FX) for convnets, dynamic for linear-heavy ViTs; close to float, smaller."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn

import zoo_core as zoo

from zoo_core.data.digits import CLASS_NAMES, make_digits
from zoo_core.errors import IncompatibleError
from zoo_core.model import Preprocess, ZooModel
from zoo_core.quantize import choose_method


def _wrap(net: nn.Module, size: int = 32) -> ZooModel:
    return ZooModel(net.eval(), task="classification", class_names=CLASS_NAMES,
                    preprocess=Preprocess(input_size=(size, size)), config={"model": "test:net"})


def _convnet() -> nn.Module:
    torch.manual_seed(0)

    def block(i, o, s):
        return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    net = nn.Sequential(*block(3, 16, 1), *block(16, 32, 2), *block(32, 64, 2), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(64, 10))
    net.train()
    with torch.no_grad():  # realistic BatchNorm statistics, as after training
        net(torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return net.eval()


def _agreement(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x).argmax(1) == b(x).argmax(1)).float().mean())


def test_static_int8_convnet_stays_close_to_float_and_shrinks():
    model = _wrap(_convnet())
    gen = torch.Generator().manual_seed(0)
    calibration = torch.randn(32, 3, 32, 32, generator=gen)
    res = model.quantize("int8", calibration_data=calibration, timing_iters=2)
    print(res)
    assert res.method == "static" and res.model.config["quantized"]["method"] == "static"
    assert res.size_after < 0.5 * res.size_before
    assert res.output_rel_error < 0.05
    assert _agreement(model, res.model, torch.randn(128, 3, 32, 32, generator=gen)) > 0.75
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in res.model.net.modules())
    assert res.latency_before_ms > 0 and res.latency_after_ms > 0  # measured, not judged
    assert all(isinstance(m, nn.Conv2d) for m in model.net.modules() if "Conv" in type(m).__name__)  # untouched


def test_dynamic_int8_for_a_vit_quantises_its_linear_layers():
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, num_classes=10)
    model = _wrap(vit)
    assert choose_method(vit) == "dynamic"
    gen = torch.Generator().manual_seed(0)
    res = model.quantize("int8", timing_iters=2)
    print(res)
    assert res.method == "dynamic" and res.size_after < 0.4 * res.size_before
    assert res.output_rel_error < 0.1
    assert _agreement(model, res.model, torch.randn(64, 3, 32, 32, generator=gen)) > 0.75
    assert sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__ for m in res.model.net.modules()) >= 16


def test_metric_change_on_a_dataset_and_calibration_from_a_path(tmp_path):
    root = make_digits(tmp_path / "digits", image_size=32, limit=60)
    model = _wrap(_convnet())
    res = model.quantize("int8", calibration_data=root, eval_data=root, calibration_batches=2, timing_iters=1)
    print(res)
    assert set(res.metric_change) >= {"accuracy"} and abs(res.metric_change["accuracy"]) <= 0.2
    assert 0.0 <= res.metrics_after["accuracy"] <= 1.0 and res.model.last_metrics == res.metrics_after


def test_bad_requests_are_refused_with_the_fix():
    model = _wrap(_convnet())
    with pytest.raises(ValueError, match="needs calibration_data="):
        model.quantize("int8", method="static")
    with pytest.raises(ValueError, match="mode 'int4' is not supported"):
        model.quantize("int4")
    with pytest.raises(ValueError, match=r"batches of shape \(4, 1, 32, 32\), but the model takes 3-channel"):
        model.quantize("int8", calibration_data=torch.rand(4, 1, 32, 32))  # was torch's conv error

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else -self.conv(x)  # data-dependent: FX cannot trace

    with pytest.raises(IncompatibleError, match="method='dynamic'"):
        _wrap(Branchy()).quantize("int8", calibration_data=torch.rand(2, 3, 32, 32), timing_iters=1)


def test_int8_models_save_and_load_with_identical_outputs_and_the_metric_change(tmp_path):
    # before: model.save() of any int8 model raised WeightsError ("export it with torchscript")
    root = make_digits(tmp_path / "digits", image_size=32, limit=40)
    torch.manual_seed(0)
    float_model = zoo.load("torchvision:resnet18", task="cls", class_names=CLASS_NAMES, image_size=32).eval()
    static = float_model.quantize("int8", method="static", calibration_data=root, eval_data=root,
                                  calibration_batches=2, timing_iters=1)
    out = static.model.save(tmp_path / "static")
    config = json.loads((out / "config.json").read_text())
    assert config["quantized"]["method"] == "static" and config["quantized"]["backend"] == static.backend
    assert config["quantized"]["metrics_before"]["accuracy"] == static.metrics_before["accuracy"]
    assert config["quantized"]["metrics_after"]["accuracy"] == static.metrics_after["accuracy"]
    card = (out / "README.md").read_text()
    assert (f"- accuracy: {static.metrics_before['accuracy']:.4f} -> {static.metrics_after['accuracy']:.4f}"
            in card)
    assert (out / "model.safetensors").stat().st_size < 0.4 * static.size_before  # int8 on disk, not float
    again = zoo.load(out)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(static.model(x), again(x))
    assert again.config["quantized"]["method"] == "static" and again.last_metrics == static.metrics_after

    vit = zoo.load("timm:vit_tiny_patch16_224", task="cls", num_classes=10, img_size=32, patch_size=8, depth=2)
    dynamic = vit.quantize("int8", timing_iters=1).model
    reloaded = zoo.load(dynamic.save(tmp_path / "dynamic"))
    with torch.no_grad():
        assert torch.equal(dynamic(x), reloaded(x))
    out = reloaded.export("torchscript", tmp_path / "q.pt")  # and it still ships as TorchScript
    assert out.max_abs_diff <= out.tolerance
