"""Instance-segmentation models: Mask R-CNN by name (torchvision's weights described, its state dicts loading
unchanged), the mask_rcnn head on zoo backbones (a ViT through the simple feature pyramid), the conformance
suite, ONNX export checked by ONNX Runtime, and the catalog in the CLI."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo_core as zoo
from zoo_core.cli import main
from zoo_core.errors import OptionError, WeightsError
from zoo_core.testing import check_spec

TINY = {"min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32, "max_levels": 3,
        "mask_channels": 16, "mask_layers": 1, "box_detections_per_img": 10}


def test_catalog_lists_mask_rcnn_with_its_weights_enum_and_the_cli_shows_it(capsys):
    from torchvision.models import get_model_weights

    from zoo_torchvision.detection import describe

    assert zoo.list_models(task="inst") == ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]
    for name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
        tags = zoo.info(name).weights[f"torchvision:{name}"]
        assert set(tags) == {w.name for w in get_model_weights(name)} == {"COCO_V1"}
    w = describe("maskrcnn_resnet50_fpn", "COCO_V1")
    assert w.url.endswith("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth") and w.hash_prefix == "bf2d0c1e"
    assert len(w.class_names) == 90 and w.class_names[0] == "person" and w.metrics["COCO-val2017"]["mask_map"] == 34.6
    assert main(["list", "--task", "inst"]) == 0
    out = capsys.readouterr().out
    assert "maskrcnn_resnet50_fpn" in out and "maskrcnn_resnet50_fpn_v2" in out
    assert main(["info", "maskrcnn_resnet50_fpn_v2"]) == 0
    out = capsys.readouterr().out
    assert "tasks:     instance" in out and "COCO_V1" in out
    assert main(["info", "mask_rcnn"]) == 0
    assert "task:          instance" in capsys.readouterr().out
    assert main(["compat", "timm:test_vit", "--task", "inst"]) == 0
    assert "torchvision:mask_rcnn  fits through a simple feature pyramid" in capsys.readouterr().out
    assert zoo.compat("timm:test_resnet", task="inst") == {"torchvision:mask_rcnn": None}


def test_pretrained_tags_are_never_downloaded_offline():
    with pytest.raises(WeightsError, match="ZOO_OFFLINE=1"):
        zoo.load("maskrcnn_resnet50_fpn", task="inst", weights="COCO_V1")


def test_torchvisions_own_state_dict_loads_and_gives_identical_outputs(tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=64, max_size=64).eval()
    path = tmp_path / "maskrcnn.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(path))
    model = zoo.load("maskrcnn_resnet50_fpn", task="inst", weights=path, num_classes=3, min_size=64,
                     max_size=64).eval()
    report = model.weights_report
    assert not report.reinitialized and not report.missing and model.num_classes == 3
    x = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        (ours,), (theirs,) = model(x), tv(x)
    assert len(theirs["boxes"]) > 0 and theirs["masks"].shape[-2:] == (64, 80)
    for key in ("boxes", "scores", "masks"):
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(ours["labels"] + 1, theirs["labels"])  # zoo labels 0..K-1, torchvision's 1..K

    two = zoo.load("maskrcnn_resnet50_fpn", task="inst", weights=path, num_classes=2, min_size=64, max_size=64)
    assert sorted(two.weights_report.reinitialized) == [  # the class-dependent layers only, box and mask
        "detector.roi_heads.box_predictor.bbox_pred.bias", "detector.roi_heads.box_predictor.bbox_pred.weight",
        "detector.roi_heads.box_predictor.cls_score.bias", "detector.roi_heads.box_predictor.cls_score.weight",
        "detector.roi_heads.mask_predictor.mask_fcn_logits.bias",
        "detector.roi_heads.mask_predictor.mask_fcn_logits.weight"]
    with pytest.raises(OptionError, match="mask_treshold"):  # a misspelt option is named, not dropped
        zoo.load("maskrcnn_resnet50_fpn", task="inst", mask_treshold=0.3)


@pytest.mark.slow
def test_vit_with_mask_rcnn_trains_a_step_and_exports_to_onnx_checked_against_eager(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("inst", backbone="timm:test_vit", head="mask_rcnn", num_classes=3,
                      backbone_options={"img_size": 64}, adapter_channels=16, **TINY)
    assert type(model.net.detector.backbone.body).__name__ == "SimpleFeaturePyramid"
    assert model.config["head"] == "torchvision:mask_rcnn" and model.export_formats == ("onnx",)
    task = model.task_impl
    batch = task.collate(task.example_samples(model, n=2, seed=0))
    model.train()
    before = {n: p.detach().clone() for n, p in model.net.named_parameters()}
    losses = task.loss(model, batch)
    assert "loss_mask" in losses and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    changed = {n for n, p in model.net.named_parameters() if not torch.equal(p, before[n])}
    assert any("mask_head" in n for n in changed) and any(".trunk." in n for n in changed)  # mask branch and ViT
    sample = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        (eager,) = model.net(sample)
    assert len(eager["scores"]) > 0 and eager["masks"].shape[1:] == (1, 64, 64)  # something to compare
    res = model.export("onnx", tmp_path / "inst.onnx", sample=sample)
    assert res.exporter == "torchscript" and res.max_abs_diff <= res.tolerance  # ONNX Runtime vs eager, every output
    assert set(res.per_output) == {"[0]['boxes']", "[0]['labels']", "[0]['scores']", "[0]['masks']"}


@pytest.mark.slow
def test_the_mask_rcnn_head_and_maskrcnn_resnet50_fpn_pass_the_conformance_suite(monkeypatch):
    """The head through every check (build, contract, train step, freeze, save/load, num_classes, ONNX export) on
    a built-in backbone, at a CPU-test size: the head builders' own defaults are made small (the same code runs
    at 800 px, just slower). The model by name: build and task contract at its real size, as the Faster R-CNN
    sample of tests/test_conformance_builtin.py."""
    from zoo_torchvision import detection, instance

    for key, value in (("min_size", 64), ("max_size", 64), ("fpn_channels", 16), ("representation_size", 32)):
        monkeypatch.setitem(detection.build_faster_rcnn_head.__kwdefaults__, key, value)
    monkeypatch.setitem(instance.build_mask_rcnn_head.__kwdefaults__, "mask_channels", 16)
    report = check_spec("head:torchvision:mask_rcnn", backbone="torchvision:resnet18")
    assert report.ok, str(report)
    passed = {r.check for r in report.results if r.status == "pass"}
    assert {"build", "contract", "train_step", "freeze", "save_load", "num_classes", "export"} <= passed, str(report)
    assert "predict -> Instances" in report.result("contract").detail

    report = check_spec("model:torchvision:maskrcnn_resnet50_fpn", checks=["contract"])
    assert report.ok and report.result("contract").status == "pass", str(report)
    assert "predict -> Instances" in report.result("contract").detail


def test_coco_v1_layout_matches_torchvisions_overwrite_eps_and_survives_save_and_load(tmp_path):
    """torchvision runs maskrcnn_resnet50_fpn COCO_V1 with FrozenBatchNorm eps 0 (overwrite_eps): with
    non-default running stats the zoo's network gives torchvision's numbers, and so does the saved model."""
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    from zoo_core.api import build_model
    from zoo_core.registry import get_registry

    spec = get_registry().resolve("model", "maskrcnn_resnet50_fpn", task="instance")
    torch.manual_seed(0)
    model = build_model(spec, "instance", num_classes=None, class_names=None, tag=None, weights_path=None,
                        options={"as_trained_from": "COCO_V1", "min_size": 64, "max_size": 64})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)  # not the default 1: the stats are really used
    assert model.config["options"]["as_trained_from"] == "COCO_V1"
    assert all(m.eps == 0.0 for m in model.modules() if isinstance(m, FrozenBatchNorm2d))
    tv = MaskRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), num_classes=91, min_size=64,
                  max_size=64)
    overwrite_eps(tv, 0.0)
    tv.load_state_dict({k.removeprefix("detector."): v for k, v in model.net.state_dict().items()})
    x = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    model.eval(), tv.eval()
    with torch.no_grad():
        ours, theirs = model.net.detector(x)[0], tv(x)[0]
        assert torch.equal(ours["boxes"], theirs["boxes"]) and torch.equal(ours["masks"], theirs["masks"])
        feats = model.net.detector.backbone(x[0][None])["0"]
        assert feats.isfinite().all()
        assert torch.equal(feats, tv.backbone(x[0][None])["0"])  # the FPN maps every output comes from
        again = zoo.load(model.save(tmp_path / "m")).eval()
        assert all(m.eps == 0.0 for m in again.modules() if isinstance(m, FrozenBatchNorm2d))
        assert torch.equal(again.net.detector.backbone(x[0][None])["0"], feats)
        overwrite_eps(tv, 1e-5)  # the default eps: the numbers move, so the comparisons above could fail
        assert not torch.equal(tv.backbone(x[0][None])["0"], feats)
