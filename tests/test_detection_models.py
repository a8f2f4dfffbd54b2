"""Detection models and backbones: every built-in detector builds and runs, weights layouts load,
timm and torchvision trunks feed faster_rcnn (ViT through the simple feature pyramid)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import zoo_core as zoo
from zoo_core.backbone import SimpleFeaturePyramid
from zoo_core.errors import IncompatibleError, WeightsError
from zoo_torchvision import det_specs

FAST = {"fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "ssdlite320_mobilenet_v3_large"}


def test_catalog_lists_every_detector_with_its_weights_enum():
    from torchvision.models import get_model_weights

    assert set(zoo.list_models(task="det", plugin="torchvision")) == {row[0] for row in det_specs.MODELS}
    for name, *_ in det_specs.MODELS:
        assert set(zoo.info(name).weights[f"torchvision:{name}"]) <= {w.name for w in get_model_weights(name)}
    from zoo_torchvision.detection import describe

    w = describe("fasterrcnn_resnet50_fpn", "COCO_V1")
    assert w.url.endswith("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth") and w.hash_prefix == "258fb6c6"
    assert w.num_classes == 90 and w.class_names[0] == "person"  # "__background__" is not a zoo class


@pytest.mark.parametrize("name", [row[0] for row in det_specs.MODELS])
def test_every_detector_builds_and_detects_on_a_tiny_image(name):
    kw = {} if name.startswith("ssd") else {"min_size": 64, "max_size": 96}
    model = zoo.load(name, task="det", num_classes=3, **kw)
    assert model.num_classes == 3 and model.task == "detection"
    head = dict(model.net.named_parameters())
    assert any(k.startswith(model.head_prefixes[0]) for k in head)
    if name.startswith("ssd300"):
        return  # VGG-16 at a fixed 300 px: construction only, to keep the suite fast
    model.eval()
    with torch.no_grad():
        (out,) = model([torch.rand(3, 70, 90)])
    assert out["boxes"].shape[1] == 4 and len(out["scores"]) == len(out["labels"])
    assert out["labels"].numel() == 0 or int(out["labels"].max()) < 3


def test_torchvision_layout_weights_load_and_num_classes_replaces_only_the_box_predictor(tmp_path):
    from torchvision.models import detection

    torch.manual_seed(0)
    coco_like = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "tv.safetensors"
    save_file({k: v.contiguous() for k, v in coco_like.state_dict().items()}, str(path))
    with pytest.warns(UserWarning, match="re-initialised"):
        model = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=3, weights=path)
    report = model.weights_report
    assert sorted(report.reinitialized) == ["detector.roi_heads.box_predictor.bbox_pred.bias",
                                            "detector.roi_heads.box_predictor.bbox_pred.weight",
                                            "detector.roi_heads.box_predictor.cls_score.bias",
                                            "detector.roi_heads.box_predictor.cls_score.weight"]
    own = model.net.state_dict()
    key = "backbone.body.0.0.weight"
    assert torch.equal(own["detector." + key], coco_like.state_dict()[key])
    full = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", weights=path)  # 90 classes: all loaded
    assert not full.weights_report.reinitialized and full.num_classes == 90


def test_pretrained_tags_are_never_downloaded_offline():
    with pytest.raises(WeightsError, match="ZOO_OFFLINE=1"):
        zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", weights="COCO_V1")


def test_saved_detector_round_trips_exactly(tmp_path):
    model = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", class_names=["a", "b"], min_size=64,
                     max_size=96)
    model.save(tmp_path / "det")
    again = zoo.load(tmp_path / "det")
    x = [torch.rand(3, 64, 80)]
    model.eval(), again.eval()
    with torch.no_grad():
        a, b = model(x)[0], again(x)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and again.class_names == ["a", "b"]


# ---- backbones ----------------------------------------------------------------------------------
def test_torchvision_trunks_declare_their_maps_and_take_classifier_weights():
    from torchvision.models import resnet18

    from zoo_core.compose import build_backbone
    from zoo_core.registry import get_registry
    from zoo_core.weights import load_into
    from zoo_torchvision.backbones import classifier_keys

    spec = get_registry().resolve("backbone", "torchvision:resnet18")
    bb, _ = build_backbone(spec)  # checks FeatureInfo against a real forward
    assert bb.feature_info.reduction() == [2, 4, 8, 16, 32] and bb.feature_info.channels() == [64, 64, 128, 256, 512]
    clf = resnet18().eval()
    load_into(bb, clf.state_dict(), source="resnet18", strict=True, map_state_dict=classifier_keys(bb))
    x = torch.rand(1, 3, 64, 64)
    bb.eval()
    with torch.no_grad():
        feats = bb(x)
        ref = clf.layer4(clf.layer3(clf.layer2(clf.layer1(clf.maxpool(clf.relu(clf.bn1(clf.conv1(x))))))))
    assert torch.equal(feats[-1], ref)


def test_timm_features_and_classifier_weights_map_onto_the_backbone():
    import timm

    from zoo_core.compose import build_backbone
    from zoo_core.registry import get_registry
    from zoo_core.weights import load_into
    from zoo_timm.backbones import classifier_keys

    spec = get_registry().resolve("backbone", "timm:convnext_atto")
    bb, _ = build_backbone(spec)
    assert bb.feature_info.reduction() == [4, 8, 16, 32]
    clf = timm.create_model("convnext_atto").eval()
    load_into(bb, clf.state_dict(), source="convnext_atto", strict=True, map_state_dict=classifier_keys(bb))
    x = torch.rand(1, 3, 64, 64)
    bb.eval()
    with torch.no_grad():
        assert torch.allclose(bb(x)[-1], clf.forward_features(x), atol=1e-6)


def test_vit_backbone_is_one_stride16_map_and_gets_a_pyramid_under_faster_rcnn():
    model = zoo.build("det", backbone="timm:vit_small_patch16_224", head="faster_rcnn", num_classes=3,
                      min_size=64, max_size=96, adapter_channels=64, fpn_channels=64, representation_size=64)
    pyramid = model.net.detector.backbone.body
    assert isinstance(pyramid, SimpleFeaturePyramid)
    assert pyramid.trunk.feature_info.reduction() == [16] and pyramid.feature_info.reduction() == [4, 8, 16, 32]
    assert model.config["backbone"] == "timm:vit_small_patch16_224" and model.config["head"] == "torchvision:faster_rcnn"
    model.train()
    losses = model([torch.rand(3, 64, 80)], [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 50.0]]),
                                             "labels": torch.tensor([2])}])
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    assert torch.isfinite(sum(losses.values()))


def test_faster_rcnn_on_a_timm_convnet_and_compat():
    model = zoo.build("det", backbone="timm:resnet18", head="faster_rcnn", num_classes=2, min_size=64, max_size=64,
                      fpn_channels=32, representation_size=32)
    assert not isinstance(model.net.detector.backbone.body, SimpleFeaturePyramid)
    model.eval()
    with torch.no_grad():
        assert model([torch.rand(3, 64, 64)])[0]["boxes"].shape[1] == 4
    assert zoo.compat("vit_small_patch16_224", task="det") == {"torchvision:faster_rcnn": None,
                                                              "torchvision:retinanet": None, "torchvision:fcos": None}
    reason = zoo.compat("timm:vit_small_patch14_dinov2", task="det")["torchvision:faster_rcnn"]
    assert "stride 14" in reason
    with pytest.raises(IncompatibleError, match="stride 14"):
        zoo.build("det", backbone="timm:vit_small_patch14_dinov2", head="faster_rcnn", num_classes=2)
