"""Pruning: structured (torch-pruning's dependency graph) on a resnet18, a ViT and a detector's backbone,
unstructured on a timm convnet; the report; the pruned model saves, loads, fine-tunes and exports."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

import zoo_core as zoo
from zoo_core.cli import main as cli
from zoo_core.commands.train import open_model
from zoo_core.data.digits import CLASS_NAMES, make_digits
from zoo_core.errors import IncompatibleError, WeightsError, ZooError

FAST = dict(batch_size=32, num_workers=0, verbose=False, tensorboard=False, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits") / "digits", image_size=32, limit=1000)


def _timm_resnet():
    """timm's smallest ResNet (a few thousand weights), at 32 px."""
    model = zoo.load("timm:test_resnet", task="cls", class_names=CLASS_NAMES)
    model.set_image_size(32)
    return model


def _x(size: int = 32, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(5))


def _equal(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.slow
def test_prune_a_trained_resnet18_report_the_drop_finetune_save_load_export(digits, tmp_path):
    zoo.seed_everything(0)
    model = zoo.load("torchvision:resnet18", task="cls", class_names=CLASS_NAMES, image_size=32,
                     task_options={"hflip": 0})
    base = zoo.Trainer(max_epochs=4, out_dir=tmp_path / "base", **FAST).fit(model, digits)
    res = model.prune(0.3, calibration_data=digits, eval_data=digits, timing_iters=2)
    print(res)
    before, pruned = res.metrics_before["accuracy"], res.metrics_after["accuracy"]
    assert before == pytest.approx(base.metrics["accuracy"]) and before > 0.4  # it learned something to lose
    assert pruned < before  # the drop, reported
    assert res.params_after < 0.6 * res.params_before and res.macs_after < 0.6 * res.macs_before
    assert res.size_after < 0.6 * res.size_before and res.latency_after_ms > 0
    assert res.model.net.fc.out_features == 10 and res.model.net.fc.in_features < 512  # classes kept
    assert model.net.fc.in_features == 512 and model.net.layer1[0].conv1.out_channels == 64  # original untouched
    assert "parameters" in str(res) and "MACs per image" in str(res) and "accuracy:" in str(res)

    # saves and loads: zoo.load rebuilds the pruned architecture from config.json (data, no code)
    out = res.model.save(tmp_path / "pruned")
    config = json.loads((out / "config.json").read_text())
    assert config["pruned"]["structure"]["attributes"]["conv1"]["out_channels"] == [64, 44]
    assert config["pruned"]["history"][0]["metrics_after"]["accuracy"] == pytest.approx(pruned)
    card = (out / "README.md").read_text()
    assert "## Compression" in card and f"- accuracy: {before:.4f} -> {pruned:.4f}" in card
    again = zoo.load(out)
    assert _equal(res.model, again, _x())

    # fine-tunes with the Trainer: one short epoch recovers some of the loss
    tuned = zoo.Trainer(max_epochs=1, out_dir=tmp_path / "ft", **FAST).fit(res.model, digits)
    print(f"accuracy: trained {before:.3f}, pruned 30% {pruned:.3f}, after 1 epoch of fine-tuning "
          f"{tuned.metrics['accuracy']:.3f}")
    assert tuned.metrics["accuracy"] > pruned + 0.1
    assert _equal(res.model, zoo.load(tmp_path / "ft" / "model"), _x())  # the run's model/ is the pruned net
    assert _equal(res.model, open_model(str(tmp_path / "ft" / "last.pt")), _x())  # and so is its checkpoint

    # exports, verified against eager
    onnx = res.model.export("onnx", tmp_path / "pruned.onnx")
    assert onnx.max_abs_diff <= onnx.tolerance


def test_unstructured_on_a_timm_convnet_is_permanent_and_keeps_the_architecture(tmp_path):
    zoo.seed_everything(0)
    model = _timm_resnet()
    res = model.prune(0.5, "unstructured", timing_iters=1)
    print(res)
    net = res.model.net
    weights = [m.weight for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               and not name.startswith(model.head_prefixes)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.5, abs=0.01) and res.nonzero_after < 0.6 * res.nonzero_before
    assert res.params_after == res.params_before  # same shapes, zeros in them
    assert not any(k.endswith(("_orig", "_mask")) for k in net.state_dict())  # prune.remove: no mask left
    assert not any(m._forward_pre_hooks for m in net.modules())
    head = dict(model.net.named_parameters())
    assert all(torch.equal(p, head[n]) for n, p in net.named_parameters() if n.startswith(model.head_prefixes))
    assert res.model.config["pruned"]["structure"] == {"shapes": {}, "attributes": {}}
    assert _equal(res.model, zoo.load(res.model.save(tmp_path / "u")), _x())


def test_a_vit_loses_whole_heads_and_mlp_channels_and_reloads(tmp_path):
    zoo.seed_everything(0)
    model = zoo.load("timm:vit_tiny_patch16_224", task="cls", num_classes=10, img_size=32, patch_size=8, depth=2)
    res = model.prune(0.3, timing_iters=1)
    print(res)
    attn, mlp = res.model.net.blocks[0].attn, res.model.net.blocks[0].mlp
    assert attn.num_heads == 2 and attn.qkv.out_features == 3 * 2 * 64  # 3 heads -> 2, head width kept
    assert mlp.fc1.out_features < 768 and res.model.net.pos_embed.shape[-1] < 192
    assert res.model.net.head.out_features == 10 and res.params_after < 0.6 * res.params_before
    with torch.no_grad():
        assert res.model(_x()).shape == (2, 10)
    again = zoo.load(res.model.save(tmp_path / "vit"))
    assert again.net.blocks[1].attn.num_heads == 2 and _equal(res.model, again, _x())
    onnx = res.model.export("onnx", tmp_path / "vit.onnx")
    assert onnx.max_abs_diff <= onnx.tolerance


def test_a_detector_prunes_its_backbone_only_and_reloads(tmp_path):
    zoo.seed_everything(0)
    det = zoo.build("det", num_classes=3, backbone="torchvision:resnet18", head="faster_rcnn", min_size=64,
                    max_size=64, fpn_channels=16, representation_size=32, max_levels=3)
    res = det.prune(0.3, timing_iters=1)
    shapes = res.model.config["pruned"]["structure"]["shapes"]
    assert shapes and all(k.startswith("detector.backbone.body.") or k.startswith("detector.backbone.fpn.inner")
                          for k in shapes)  # the body's channels, and the FPN inputs that read them
    again = zoo.load(res.model.save(tmp_path / "det")).eval()
    x = _x(64, 1)
    with torch.no_grad():
        a, b = res.model(x), again(x)
    assert all(torch.equal(u[k], v[k]) for u, v in zip(a, b) for k in u)


def test_bad_requests_and_a_missing_torch_pruning_are_named(monkeypatch):
    model = _timm_resnet()
    for amount in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match="must be a fraction in"):
            model.prune(amount)
    with pytest.raises(ValueError, match="unknown; use one of l1-structured, unstructured"):
        model.prune(0.3, "random")
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # as if the extra were not installed
    with pytest.raises(ZooError, match=r'zoo\[prune\].*method=.unstructured'):
        model.prune(0.3)
    assert model.prune(0.3, "unstructured", timing_iters=1).nonzero_after < model.prune(
        0.1, "unstructured", timing_iters=1).nonzero_after  # the fallback still works
    q = model.quantize("int8", method="dynamic", timing_iters=1).model
    with pytest.raises(IncompatibleError, match="is int8: prune the float model"):
        q.prune(0.3, "unstructured")


def test_a_tampered_structure_is_refused_by_name(tmp_path):
    model = _timm_resnet()
    out = model.prune(0.3, timing_iters=1).model.save(tmp_path / "p")
    config = json.loads((out / "config.json").read_text())
    key = next(iter(config["pruned"]["structure"]["shapes"]))
    module = next(iter(config["pruned"]["structure"]["attributes"]))
    for edit, message in [
        (lambda c: c["pruned"]["structure"]["shapes"][key].__setitem__(1, [10 ** 6] * len(c["pruned"]["structure"]
                                                                                       ["shapes"][key][0])),
         "would grow .*pruning only removes"),
        (lambda c: c["pruned"]["structure"]["attributes"].__setitem__(module, {"_parameters": [1, 2]}),
         "no integer attribute '_parameters'"),
        (lambda c: c["pruned"]["structure"]["attributes"].__setitem__("nope", {"x": [1, 2]}),
         "names module 'nope'"),
        (lambda c: c["pruned"]["structure"]["shapes"].__setitem__(key, "os.system"), r"must be \[before, after\]"),
    ]:
        changed = json.loads(json.dumps(config))
        edit(changed)
        (out / "config.json").write_text(json.dumps(changed))
        with pytest.raises(WeightsError, match=message):
            zoo.load(out)


def test_zoo_prune_command_prints_the_report_and_saves(digits, tmp_path, capsys):
    saved = _timm_resnet().save(tmp_path / "m")
    assert cli(["prune", str(saved), str(tmp_path / "p"), "--amount", "0.25", "--data", str(digits),
                "--eval-batches", "1"]) == 0
    printed = capsys.readouterr().out
    assert "pruned (l1-structured, amount 0.25)" in printed and "accuracy:" in printed
    loaded = zoo.load(tmp_path / "p")
    assert loaded.config["pruned"]["history"][0]["amount"] == 0.25 and loaded.num_classes == 10
    assert cli(["quantize", str(tmp_path / "p"), str(tmp_path / "q"), "--method", "dynamic"]) == 0
    assert zoo.load(tmp_path / "q").config["quantized"]["method"] == "dynamic"


def test_the_users_task_object_goes_with_the_pruned_and_the_int8_model():
    """``model.task_impl = MyTask()`` (a subclass in the user's script): fine-tuning the pruned or int8
    model must use it, not silently fall back to the registry's task."""
    zoo.seed_everything(0)
    model = _timm_resnet()

    class MyTask(type(model.task_impl)):
        pass

    mine = MyTask()
    model.task_impl = mine
    assert model.prune(0.5, "unstructured", timing_iters=1).model.task_impl is mine
    assert model.quantize("int8", method="dynamic", timing_iters=1).model.task_impl is mine


def test_the_layers_kept_as_outputs_are_the_ones_that_produce_them():
    """Regression: output layers were found by id() alone, and a freed intermediate's id is reused by later
    tensors, so a random inner layer (a stem conv's group on CI) was kept whole instead of the output."""
    from zoo_core.prune import _output_layers

    chain = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(6)]).eval()
    found = {_output_layers(chain, torch.randn(1, 4), None) for _ in range(50)}
    assert found == {("5.1",)}
    inplace = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True)).eval()
    assert _output_layers(inplace, _x(), None) == ("1",)  # the in-place ReLU returns the conv's tensor
