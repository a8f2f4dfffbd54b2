"""``freeze_backbone`` / ``backbone_lr_mult`` / ``freeze_blocks`` act on the backbone each model declares.

Before (issue 12): "backbone" meant every parameter outside the head prefixes (the tensors a new
``num_classes`` re-initialises), so on U-Net the random decoder was frozen with the encoder, and on
a composed Faster R-CNN the new FPN and RPN with the trunk. Now every built and composed model says
which parameters are its pretrained backbone (``BuiltModel.backbone`` -> ``ZooModel.backbone_prefixes``),
a model without a declaration falls back to the old rule with a warning, the conformance suite checks
the declaration, and a checkpoint whose optimizer groups were split by the old rule is refused by name.

This module is also a tiny plugin (``bbtest``) for the conformance, composition and resume tests.
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import trainer_toy
import zoo_core as zoo
from zoo_core import hookimpl
from zoo_core.backbone import Backbone, FeatureInfo
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import IncompatibleError, PluginError
from zoo_core.model import BuiltModel, Preprocess, ZooModel
from zoo_core.registry import Registry, reset_registry
from zoo_core.train.config import TrainConfig
from zoo_core.train.optim import apply_freezing, backbone_blocks, param_groups

QUIET = dict(num_workers=0, verbose=False, tensorboard=False, plots=False, device="cpu")
RESNET_TRUNK = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


def weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before: dict[str, torch.Tensor], net: nn.Module) -> set[str]:
    after = net.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def param_names(model: ZooModel, prefix: str = "") -> set[str]:
    return {n for n, _ in model.net.named_parameters() if n.startswith(prefix)}


def unet() -> ZooModel:
    """smp's U-Net on its resnet18 encoder, 3 stages deep, narrow decoder, 32 px."""
    torch.manual_seed(0)
    return zoo.load("unet", task="seg", num_classes=4, backbone="resnet18", encoder_depth=3,
                    decoder_channels=(16, 8, 8), image_size=32)


def faster_rcnn() -> ZooModel:
    """torchvision's resnet18 trunk under the faster_rcnn head (zoo.build), 64 px."""
    torch.manual_seed(0)
    return zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", num_classes=3, fpn_channels=32,
                     representation_size=32, min_size=64, max_size=64)


def resnet18_cls() -> ZooModel:
    torch.manual_seed(0)
    return zoo.load("torchvision:resnet18", task="cls", num_classes=3)


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("seg") / "shapes", layout="masks", n_train=4, n_val=1, image_size=32)


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("det") / "shapes", layout="coco", n_train=4, n_val=1, image_size=64)


# ---- U-Net: the encoder is the backbone, the decoder trains ---------------------------------------
def test_unet_freeze_backbone_trains_the_decoder_and_head_and_leaves_the_encoder_bit_identical(seg_data, tmp_path):
    model = unet()
    assert model.backbone_prefixes == ("encoder",)
    frozen = apply_freezing(model, TrainConfig(freeze_backbone=True))
    assert set(frozen) == param_names(model, "encoder.")
    new = param_names(model, "decoder.") | param_names(model, "segmentation_head.")
    assert new and all(p.requires_grad for n, p in model.net.named_parameters() if n in new)

    model = unet()
    before = weights(model.net)
    zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=2, lr=0.01, freeze_backbone=True,
                out_dir=tmp_path, **QUIET).fit(model, seg_data, val=False)
    moved = changed(before, model.net)
    assert not {k for k in moved if k.startswith("encoder.")}  # weights and BatchNorm statistics
    assert param_names(model, "decoder.") <= moved  # every decoder parameter trained
    assert {"segmentation_head.0.weight", "segmentation_head.0.bias"} <= moved


def test_unet_freeze_blocks_counts_encoder_blocks_only():
    blocks = backbone_blocks(unet())
    assert blocks[:3] == ["encoder.conv1", "encoder.bn1", "encoder.layer1.0"]
    assert all(b.startswith("encoder.") for b in blocks)  # the decoder is no backbone block


# ---- composed Faster R-CNN: the trunk is the backbone; FPN, RPN and box head train --------------
def test_composed_faster_rcnn_trains_fpn_rpn_and_box_head_with_the_trunk_frozen(det_data, tmp_path):
    model = faster_rcnn()
    assert model.backbone_prefixes == ("detector.backbone.body",)
    trunk = param_names(model, "detector.backbone.body.")
    assert set(apply_freezing(model, TrainConfig(freeze_backbone=True))) == trunk
    assert all(p.requires_grad for n, p in model.net.named_parameters() if n not in trunk)

    model = faster_rcnn()
    before = weights(model.net)
    zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=2, lr=0.01, freeze_backbone=True,
                out_dir=tmp_path, **QUIET).fit(model, det_data, val=False)
    moved = changed(before, model.net)
    assert not {k for k in moved if k.startswith("detector.backbone.body.")}
    for part in ("detector.backbone.fpn.", "detector.rpn.", "detector.roi_heads.box_head.",
                 "detector.roi_heads.box_predictor."):
        assert any(k.startswith(part) for k in moved), f"{part} did not train"


def test_a_feature_pyramid_adapter_trains_with_the_head_and_only_the_trunk_is_backbone():
    model = zoo.build("det", backbone="timm:test_vit", head="faster_rcnn", num_classes=2, fpn_channels=16,
                      representation_size=16, adapter_channels=16, backbone_options={"img_size": 64})
    assert model.backbone_prefixes == ("detector.backbone.body.trunk",)  # inside the SimpleFeaturePyramid
    frozen = set(apply_freezing(model, TrainConfig(freeze_backbone=True)))
    assert frozen == param_names(model, "detector.backbone.body.trunk.")
    adapter = param_names(model, "detector.backbone.body.stages.")
    assert adapter and not adapter & frozen


# ---- a classifier: everything but the classifier ---------------------------------------------------
def test_classifier_declares_all_but_fc_so_freeze_backbone_trains_only_fc():
    model = resnet18_cls()
    assert model.backbone_prefixes == RESNET_TRUNK
    apply_freezing(model, TrainConfig(freeze_backbone=True))
    assert {n for n, p in model.net.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("make, backbone", [(unet, "encoder."), (faster_rcnn, "detector.backbone.body."),
                                            (resnet18_cls, RESNET_TRUNK)], ids=["unet", "faster_rcnn", "resnet18"])
def test_backbone_lr_mult_slows_exactly_the_declared_backbone(make, backbone):
    model = make()
    groups = param_groups(model, TrainConfig(lr=0.1, weight_decay=0.01, backbone_lr_mult=0.1))
    slow = {n for g in groups if g["lr"] == pytest.approx(0.01) for n in g["param_names"]}
    fast = {n for g in groups if g["lr"] == pytest.approx(0.1) for n in g["param_names"]}
    prefixes = backbone if isinstance(backbone, tuple) else (backbone,)
    expected = {n for n in param_names(model) if n.startswith(tuple(p.rstrip(".") + "." for p in prefixes))}
    assert slow == expected
    assert fast == param_names(model) - expected
    assert {g["name"] for g in groups} == {"backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"}


def test_builtin_builders_declare_a_backbone_that_exists_and_spares_the_head():
    """Every built-in family, built on the meta device (no memory): the declaration is real."""
    from zoo_core.api import build_model
    from zoo_core.registry import get_registry
    from zoo_core.testing.backbone_checks import backbone_prefix_problem

    expected = {"torchvision:vgg11": ("features", "classifier.0", "classifier.3"),
                "torchvision:vit_b_16": ("class_token", "conv_proj", "encoder"),
                "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn": ("detector.backbone.body",),
                "torchvision:retinanet_resnet50_fpn": ("detector.backbone.body",),
                "torchvision:ssdlite320_mobilenet_v3_large": ("detector.backbone.features",),
                "torchvision:deeplabv3_resnet50": ("backbone",),
                "torchvision:lraspp_mobilenet_v3_large": ("backbone",),
                "timm:test_vit": ("cls_token", "pos_embed", "patch_embed", "blocks", "norm"),
                "timm:test_resnet": ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")}
    reg = get_registry()
    for name, prefixes in expected.items():
        spec = reg.resolve("model", name)
        with torch.device("meta"):
            model = build_model(spec, spec.tasks[0], num_classes=None, class_names=None, tag=None,
                                weights_path=None)
        assert model.backbone_prefixes == prefixes, name
        assert backbone_prefix_problem(model) is None, name


# ---- a plugin that declares nothing: the old rule, with one warning --------------------------------
class Tiny(nn.Module):
    def __init__(self, n: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.neck = nn.Conv2d(4, 4, 1)  # new, not pretrained
        self.fc = nn.Linear(4, n)

    def forward(self, x):
        return self.fc(self.neck(self.features(x)).mean((2, 3)))


def undeclared() -> ZooModel:
    return ZooModel(Tiny(), task="classification", class_names=["a", "b"], preprocess=Preprocess((16, 16)),
                    config={"model": "thirdparty:tiny"}, head=("fc",))


def test_a_model_without_a_declared_backbone_falls_back_to_the_old_rule_and_warns_once():
    model = undeclared()
    with pytest.warns(UserWarning, match=r"freeze_backbone: model thirdparty:tiny declares no backbone.*"
                                         r"BuiltModel\(\.\.\., backbone="):
        frozen = apply_freezing(model, TrainConfig(freeze_backbone=True))
    assert set(frozen) == param_names(model) - {"fc.weight", "fc.bias"}  # the old rule: all but the head
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        groups = param_groups(model, TrainConfig(backbone_lr_mult=0.5))
    assert [g["param_names"] for g in groups] == [["fc.weight"], ["fc.bias"]]
    with pytest.warns(UserWarning, match=r"backbone_lr_mult=0.5: model thirdparty:tiny declares no backbone"):
        param_groups(undeclared(), TrainConfig(backbone_lr_mult=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # settings that do not depend on the backbone say nothing
        param_groups(undeclared(), TrainConfig())


def test_declared_prefixes_that_match_nothing_are_refused_not_silently_ignored():
    model = undeclared()
    model.backbone_prefixes = ("trunk",)
    with pytest.raises(ValueError, match=r"declares backbone prefixes \['trunk'\].*match no parameter"):
        apply_freezing(model, TrainConfig(freeze_backbone=True))


# ---- the bbtest plugin: conformance, composition, resume --------------------------------------------
def build_model(spec, *, task, num_classes=None, pretrained=None, **options) -> BuiltModel:
    n = num_classes or 2
    return BuiltModel(net=Tiny(n), preprocess=Preprocess((16, 16)), num_classes=n, head=("fc",),
                      backbone=spec.kwargs["backbone"])


class TinyTrunk(Backbone):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.feature_info = FeatureInfo.of([4], [4])

    def forward(self, x):
        return [self.conv(x)]


def build_trunk(spec, *, pretrained=None, **options) -> TinyTrunk:
    return TinyTrunk()


class PoolHead(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


def build_head(spec, *, backbone, num_classes, **options) -> BuiltModel:
    if spec.kwargs.get("copy"):
        backbone = copy.deepcopy(backbone)  # a plugin bug: the zoo can no longer find the pretrained part
    return BuiltModel(net=PoolHead(backbone, num_classes), preprocess=Preprocess((16, 16)),
                      num_classes=num_classes, head=("fc",))


class NeckNet(nn.Module):
    """A toytrain net: pretrained ``trunk``, a new ``neck``, the classifier ``fc``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 4, 3, padding=1)
        self.neck = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, n)

    def forward(self, x):
        return self.fc(self.neck(torch.relu(self.trunk(x))).mean((2, 3)))


def build_necknet(spec, *, task, num_classes=None, pretrained=None, **options) -> BuiltModel:
    torch.manual_seed(0)
    n = num_classes or 2
    return BuiltModel(net=NeckNet(n), preprocess=Preprocess((8, 8)), num_classes=n, head=("fc",),
                      backbone=spec.kwargs["backbone"])


@hookimpl
def register_models(register):
    for name, backbone in (("declared", ("features",)), ("undeclared", ()), ("nowhere", ("trunk",)),
                           ("overlap", ("features", "fc"))):
        register(name, f"{__name__}:build_model", tasks=("classification",), kwargs={"backbone": backbone})
    # the same network declared three ways: as a plugin does now, as an old plugin did (nothing), and
    # with the neck counted as backbone (a plugin that changed its declaration between runs)
    for name, backbone in (("necknet", ("trunk",)), ("necknet_old", ()), ("necknet_neck", ("trunk", "neck"))):
        register(name, f"{__name__}:build_necknet", tasks=("toytrain",), kwargs={"backbone": backbone})


@hookimpl
def register_backbones(register):
    register("tinytrunk", f"{__name__}:build_trunk")


@hookimpl
def register_heads(register):
    register("pool", f"{__name__}:build_head", task="classification")
    register("copying", f"{__name__}:build_head", task="classification", kwargs={"copy": True})


@pytest.fixture
def bbtest():
    import zoo_tasks.plugin

    reg = Registry()
    reg.add_plugin(zoo_tasks.plugin, "tasks")
    reg.add_plugin(trainer_toy, "toytrain")
    reg.add_plugin(sys.modules[__name__], "bbtest")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


def test_conformance_checks_the_declared_backbone_naming_the_spec(bbtest):
    from zoo_core.testing import check_spec

    ok = check_spec("bbtest:declared", checks=["freeze"])
    assert ok.ok and ok.result("freeze").status == "pass", str(ok)
    assert "backbone ['features']" in ok.result("freeze").detail
    missing = check_spec("bbtest:undeclared", checks=["freeze"])
    freeze = missing.result("freeze")
    assert freeze.status == "fail" and "declares no backbone" in freeze.detail
    assert "BuiltModel(backbone=" in freeze.fix
    assert "bbtest:undeclared" in str(missing)
    nowhere = check_spec("bbtest:nowhere", checks=["build"]).result("build")
    assert nowhere.status == "fail" and "prefixes ['trunk'] match no state-dict key" in nowhere.detail
    overlap = check_spec("bbtest:overlap", checks=["build"]).result("build")
    assert overlap.status == "fail" and "backbone and head prefixes overlap: [('fc', 'fc')]" in overlap.detail
    head = check_spec("bbtest:pool", checks=["freeze"], backbone="bbtest:tinytrunk")
    assert head.result("freeze").status == "pass", str(head)


def test_build_finds_the_backbone_module_in_the_head_net_and_refuses_a_copy(bbtest):
    model = zoo.build("cls", backbone="bbtest:tinytrunk", head="bbtest:pool", num_classes=2)
    assert model.backbone_prefixes == ("backbone",)
    with pytest.raises(PluginError, match=r"head bbtest:copying \(plugin bbtest\).*does not hold the backbone "
                                          r"module it was given.*BuiltModel\(backbone="):
        zoo.build("cls", backbone="bbtest:tinytrunk", head="bbtest:copying", num_classes=2)


def _run(out: Path, model: str = "necknet", *, resume=None, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # necknet_old's "declares no backbone"
        zoo.Trainer(out_dir=out, batch_size=4, lr=0.02, seed=0, **{"max_epochs": 1, **settings}, **QUIET).fit(
            zoo.load(model, task="toytrain"), "toy:n=8", "toy:n=4", resume=resume)


def _as_old_checkpoint(path: Path) -> None:
    """What a zoo before backbone declarations wrote: its groups split by the old rule (necknet_old
    falls back to it) and without ``param_names``."""
    ckpt = torch.load(path, weights_only=True)
    for group in ckpt["optimizer"]["param_groups"]:
        group.pop("param_names")
    torch.save(ckpt, path)


def test_old_checkpoints_resume_when_their_groups_hold_the_same_parameters(bbtest, tmp_path):
    _run(tmp_path, "necknet_old")  # default settings: one decay and one no_decay group, in the same order
    _as_old_checkpoint(tmp_path / "last.pt")
    _run(tmp_path, resume="last", max_epochs=2)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["progress"]["epoch"] == 2


def test_old_checkpoints_split_by_the_old_rule_are_refused_by_name(bbtest, tmp_path):
    _run(tmp_path, "necknet_old", backbone_lr_mult=0.5)  # the neck was in the backbone groups
    _as_old_checkpoint(tmp_path / "last.pt")
    with pytest.raises(IncompatibleError, match=r"optimizer state does not fit.*written before models declared "
                                                r"their backbone"):
        _run(tmp_path, resume="last", max_epochs=2, backbone_lr_mult=0.5)


def test_a_checkpoint_whose_groups_hold_other_parameters_is_refused_by_name(bbtest, tmp_path):
    _run(tmp_path, "necknet_neck", backbone_lr_mult=0.5)
    with pytest.raises(IncompatibleError, match=r"group 'backbone_decay' holds other parameters \(2 in the "
                                                r"checkpoint, 1 in this run; parameter 1 is neck.weight there"):
        _run(tmp_path, resume="last", max_epochs=2, backbone_lr_mult=0.5)
