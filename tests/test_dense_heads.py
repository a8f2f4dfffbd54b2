"""One-stage detection heads (``retinanet``, ``fcos``) and pyramid segmentation heads (``fpn``, ``upernet``)
on any zoo backbone (issue 15).

Before: ``zoo.build("det", backbone="convnext_tiny", head="fcos")`` was an unknown head, and the only
segmentation heads were ``deeplabv3`` and ``unet``. Each head here is built on narrow timm test
backbones (a ViT through the simple feature pyramid too), trained a few steps on the synthetic shapes,
evaluated, and exported to ONNX checked against eager by ONNX Runtime; its pyramid levels, its
``freeze_backbone`` split, ``zoo compat``/``zoo info`` and the conformance suite are checked.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo_core as zoo
from zoo_core.backbone import SimpleFeaturePyramid
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import IncompatibleError, OptionError
from zoo_core.model import ZooModel
from zoo_core.spec_info import HeadInfo, ModelInfo
from zoo_core.testing import check_spec
from zoo_core.train.config import TrainConfig
from zoo_core.train.optim import apply_freezing

QUIET = dict(num_workers=0, verbose=False, tensorboard=False, plots=False, device="cpu")
VIT = "timm:test_vit"
#: narrow widths; FCOS's GroupNorm(32) needs 2+ values per group on the 1x1 P7 of a 64 px input
WIDTHS = {"retinanet": dict(fpn_channels=16), "fcos": dict(fpn_channels=64),
          "fpn": dict(fpn_channels=16, head_channels=8), "upernet": dict(channels=16)}
DET_HEADS, SEG_HEADS = ("retinanet", "fcos"), ("fpn", "upernet")
CLS_LOGITS = "detector.head.classification_head.cls_logits"


def build(head: str, backbone: str, **extra) -> ZooModel:
    """``head`` on ``backbone`` at 64 px, narrow (a ViT: 64 px patch grid, 16-channel adapter)."""
    det = head in DET_HEADS
    options = {**WIDTHS[head], **(dict(min_size=64, max_size=64) if det else {}), **extra}
    if backbone == VIT:
        options.update(backbone_options={"img_size": 64}, adapter_channels=16)
    torch.manual_seed(0)
    return zoo.build("det" if det else "seg", backbone=backbone, head=head, num_classes=3 if det else 4, **options)


def trunk_params(model: ZooModel) -> set[str]:
    return {n for n, _ in model.net.named_parameters() if any(n.startswith(p + ".") for p in model.backbone_prefixes)}


def spread_scores(model: ZooModel) -> None:
    """Give a fresh one-stage head varied class scores, as training does: its prior-initialised logits are all
    equal, so a random net detects nothing (or ties everywhere) and an export comparison would be vacuous."""
    cls = model.net.detector.head.classification_head
    for m in cls.conv.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    nn.init.normal_(cls.cls_logits.weight, std=0.1)
    nn.init.constant_(cls.cls_logits.bias, -2.0)


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("det") / "shapes", layout="coco", n_train=4, n_val=2, image_size=64)


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("seg") / "shapes", layout="masks", n_train=4, n_val=2, image_size=64)


# ---- structure: levels, outputs, prefixes --------------------------------------------------------------
@pytest.mark.parametrize("head", DET_HEADS)
@pytest.mark.parametrize("backbone", ["timm:test_resnet", VIT])
def test_one_stage_heads_read_p3_to_p5_and_add_p6_p7_as_torchvision_does(head, backbone):
    from torchvision.models.detection import retinanet as tv_retinanet
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    model = build(head, backbone)
    body = model.net.detector.backbone
    levels = body.body.feature_info.reduction()
    assert [levels[i] for i in body.levels] == [8, 16, 32]  # P3-P5 (a ViT: the pyramid's stride-8..32 maps)
    assert isinstance(body.fpn.extra_blocks, LastLevelP6P7) and body.fpn.extra_blocks.use_P5
    sizes = model.net.detector.anchor_generator.sizes
    if head == "retinanet":  # exactly torchvision's anchors on a stride 8..128 pyramid
        assert sizes == tv_retinanet._default_anchorgen().sizes
    else:
        assert sizes == ((8,), (16,), (32,), (64,), (128,))
    assert model.head_prefixes == (CLS_LOGITS,) and model.net.detector.head.classification_head.num_classes == 3
    assert model.config["head"] == f"torchvision:{head}"
    assert isinstance(body.body, SimpleFeaturePyramid) == (backbone == VIT)
    with torch.no_grad():
        maps = body(torch.rand(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps.values()] == [8, 4, 2, 1, 1]  # P3..P7 at 64 px


@pytest.mark.parametrize("head", SEG_HEADS)
@pytest.mark.parametrize("backbone", ["timm:test_resnet", VIT])
def test_pyramid_seg_heads_give_logits_at_the_input_size(head, backbone):
    model = build(head, backbone)
    assert model.net.strides == [4, 8, 16, 32] and model.head_prefixes == ("classifier",)
    assert isinstance(model.net.backbone, SimpleFeaturePyramid) == (backbone == VIT)
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64, 64)
        if backbone != VIT:  # any size, not only multiples of 32
            assert model(torch.rand(1, 3, 70, 50)).shape == (1, 4, 70, 50)


@pytest.mark.parametrize("head", DET_HEADS + SEG_HEADS)
@pytest.mark.parametrize("backbone", ["timm:test_convnext", VIT])
def test_freeze_backbone_freezes_the_trunk_only_and_the_fpn_and_head_train(head, backbone):
    model = build(head, backbone)
    trunk = trunk_params(model)
    expected = ("detector.backbone.body" if head in DET_HEADS else "backbone") + (".trunk" if backbone == VIT else "")
    assert model.backbone_prefixes == (expected,)
    assert set(apply_freezing(model, TrainConfig(freeze_backbone=True))) == trunk and trunk
    trainable = {n for n, p in model.net.named_parameters() if p.requires_grad}
    new = ["detector.backbone.fpn.", "detector.head."] if head in DET_HEADS else ["lateral.", "classifier."]
    if backbone == VIT:  # the simple feature pyramid is new too
        new.append(expected.removesuffix("trunk") + "stages.")
    for part in new:
        assert any(n.startswith(part) for n in trainable), f"{part} does not train"
    assert not trainable & trunk


# ---- train a few steps, evaluate, export -------------------------------------------------------------
CASES = [("retinanet", "timm:test_convnext"), ("fcos", "timm:test_resnet"), ("fcos", VIT),
         ("fpn", "timm:test_convnext"), ("fpn", VIT), ("upernet", "timm:test_resnet")]


@pytest.mark.slow
@pytest.mark.parametrize("head, backbone", CASES, ids=[f"{h}-{b.partition(':')[2]}" for h, b in CASES])
def test_head_trains_evaluates_and_exports_verified_by_onnxruntime(head, backbone, det_data, seg_data, tmp_path):
    det = head in DET_HEADS
    model = build(head, backbone)
    if det:
        spread_scores(model)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=2, lr=1e-3, out_dir=tmp_path / "run",
                **QUIET).fit(model, det_data if det else seg_data, val=False)
    moved = {k for k, v in model.net.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith(CLS_LOGITS if det else "classifier.") for k in moved)
    assert any(k.startswith(model.backbone_prefixes[0] + ".") for k in moved)  # the loss reaches the trunk
    report = zoo.evaluate(model, det_data if det else seg_data, plots=False, progress=False, num_workers=0)
    metric = report[model.task_impl.default_metric]
    assert math.isfinite(metric) and 0.0 <= metric <= 1.0
    sample = torch.rand(1 if det else 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sample[:, :, 12:44, 16:52] = 1.0
    model.eval()
    if det:
        with torch.no_grad():
            assert len(model([sample[0]])[0]["boxes"]) > 0  # the comparison below is of real detections
    # upernet's pyramid pooling (adaptive pooling to 2, 3, 6 cells) needs the default (dynamo) ONNX exporter
    exporter = None if head == "upernet" else "torchscript"
    res = model.export("onnx", tmp_path / "m.onnx", sample=sample, exporter=exporter)
    assert res.max_abs_diff <= res.tolerance and (tmp_path / "m.onnx").is_file()
    if det:
        assert set(res.per_output) == {"[0]['boxes']", "[0]['labels']", "[0]['scores']"}
    else:
        assert res.dynamic_batch and res.batch_sizes == (2, 1, 3)


def test_convnext_tiny_fcos_builds_at_full_size():
    """The issue's example, full width and torchvision's defaults (800 px resize, 256-channel FPN)."""
    model = zoo.build("det", backbone="convnext_tiny", head="fcos", num_classes=3)
    assert model.config["backbone"] == "torchvision:convnext_tiny" and model.config["head"] == "torchvision:fcos"
    body = model.net.detector.backbone
    assert body.levels == [1, 2, 3] and body.out_channels == 256  # convnext's stride 8/16/32 maps
    assert model.net.detector.transform.min_size == (800,)
    assert model.backbone_prefixes == ("detector.backbone.body",)


@pytest.mark.slow
def test_convnext_tiny_fcos_trains_and_exports(det_data, tmp_path):
    """The issue's "done when": full-size torchvision convnext_tiny + fcos, one step at 64 px, batch 2, then ONNX."""
    torch.manual_seed(0)
    model = zoo.build("det", backbone="torchvision:convnext_tiny", head="fcos", num_classes=3, min_size=64,
                      max_size=64, fpn_channels=64)
    spread_scores(model)
    before = model.net.detector.head.classification_head.cls_logits.weight.clone()
    zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=1, lr=1e-3, out_dir=tmp_path / "run",
                **QUIET).fit(model, det_data, val=False)
    assert not torch.equal(before, model.net.detector.head.classification_head.cls_logits.weight)
    model.eval()
    res = model.export("onnx", tmp_path / "cnx.onnx", sample=torch.rand(1, 3, 64, 64))
    assert res.max_abs_diff <= res.tolerance and res.exporter == "torchscript"


# ---- catalog: compat, info, options --------------------------------------------------------------------
def test_compat_and_info_agree_on_the_new_heads():
    from zoo_core.compose import compat_fits

    cnn = compat_fits("timm:test_convnext")
    vit = compat_fits(VIT)
    for head in DET_HEADS + SEG_HEADS:
        name = f"torchvision:{head}"
        assert cnn[name].ok and not cnn[name].adapter
        assert vit[name].ok and vit[name].adapter  # one stride-16 map: through the simple feature pyramid
        info = zoo.info(head, kind="head")
        assert isinstance(info, HeadInfo) and info.qualified_name == name and info.requires["single_level_ok"] is False
        assert info.fits["a ViT/16 (one map at stride 16)"] == str(vit[name])
    assert zoo.info("fcos").requires["min_stride"] == 8 and zoo.info("upernet", kind="head").requires["min_stride"] == 4
    assert set(zoo.compat("convnext_tiny", task="det")) >= {"torchvision:retinanet", "torchvision:fcos"}
    reason = zoo.compat("timm:vit_small_patch14_dinov2", task="det")["torchvision:fcos"]
    assert "stride 14" in reason
    with pytest.raises(IncompatibleError, match="stride 14"):
        zoo.build("det", backbone="timm:vit_small_patch14_dinov2", head="retinanet", num_classes=2)


def test_fpn_and_upernet_name_both_the_smp_model_and_the_head(capsys):
    from zoo_core.cli import main

    for name in SEG_HEADS:
        model = zoo.info(name)  # a model name first, as before: smp's whole model
        assert isinstance(model, ModelInfo) and model.default == f"smp:{name}"
        assert model.also == {"head": [f"torchvision:{name}"]}
        assert main(["info", name]) == 0
        assert f"also a head: torchvision:{name} (`zoo info {name} --kind head`" in capsys.readouterr().out
    assert zoo.build("seg", backbone="timm:test_resnet", head="fpn", num_classes=2, fpn_channels=8,
                     head_channels=8).config["head"] == "torchvision:fpn"


@pytest.mark.parametrize("head, bad, match", [
    ("retinanet", {"fpn_chanels": 8}, r"does not accept option\(s\) \['fpn_chanels'\]"),
    ("retinanet", {"anchor_generator": None}, r"\['anchor_generator'\]"),  # built by the head, never an option
    ("fcos", {"fpn_channels": 48}, "multiple of 32"),
    ("upernet", {"pool_scale": (1, 2)}, r"\['pool_scale'\].*pool_scales"),
    ("fpn", {"max_levels": 1}, "max_levels=1"),
])
def test_bad_options_are_refused_by_name(head, bad, match):
    with pytest.raises(OptionError, match=match):
        build(head, "timm:test_resnet", **bad)


# ---- the conformance suite on a built-in backbone --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("head", DET_HEADS + SEG_HEADS)
def test_conformance_suite_passes_on_a_builtin_backbone(head, monkeypatch):
    """Every check (build, contract, train step, freeze, save/load, num_classes; export where declared) on a
    built-in backbone, at a CPU-test size: the detection head builders' own defaults are made small (the
    same code runs at 800 px, just slower)."""
    from zoo_torchvision import det_heads

    for builder in (det_heads.build_retinanet_head, det_heads.build_fcos_head):
        for key, value in (("min_size", 64), ("max_size", 64), ("fpn_channels", 64)):
            monkeypatch.setitem(builder.__kwdefaults__, key, value)
    report = check_spec(f"head:torchvision:{head}", backbone="timm:test_resnet")
    assert report.ok, str(report)
    ran = {r.check for r in report.results if r.status == "pass"}
    assert {"build", "contract", "train_step", "freeze", "save_load", "num_classes"} <= ran, str(report)
    if head in DET_HEADS:
        assert "export" in ran and "predict -> Detections" in report.result("contract").detail, str(report)


def test_a_safetensors_header_length_starting_with_byte_0x80_is_not_taken_for_a_pickle(tmp_path):
    """Found through the conformance save/load of fcos: the sniffer took such files for torch.save pickles."""
    from safetensors.torch import save_file

    from zoo_core.weights import read_state_dict, sniff_format

    path = tmp_path / "w.safetensors"
    for pad in range(0, 2048, 8):  # the header is 8-byte aligned: find a length whose low byte is 0x80
        save_file({"w": torch.ones(2)}, str(path), metadata={"p": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert sniff_format(path) == "safetensors" and torch.equal(read_state_dict(path)["w"], torch.ones(2))
