"""The backbone contract and zoo.build: FeatureInfo checked, pairings refused with a reason, adapters.

Kernel-level tests use a toy in-process plugin (tiny conv backbones, a toy head); the tests at the
end build real timm / torchvision backbones under the real faster_rcnn head.
"""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

import zoo_core as zoo
from zoo_core import hookimpl
from zoo_core.backbone import (Backbone, FeatureInfo, HeadRequirements, SimpleFeaturePyramid,
                               check_feature_info, why_incompatible)
from zoo_core.errors import IncompatibleError, PluginError
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.registry import Registry, reset_registry


# ---- a toy plugin: backbones with declared (and sometimes wrong) feature info, and two heads ------
class ConvPyramid(Backbone):
    """Stride-2 convs; outputs the maps at the strides in ``outs``."""

    def __init__(self, outs=(4, 8, 16), width=4, lie=False):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.outs, ch, stride, chans = outs, 3, 1, []
        while stride < max(outs):
            self.blocks.append(nn.Conv2d(ch, width * stride, 3, stride=2, padding=1))
            ch, stride = width * stride, stride * 2
            if stride in outs:
                chans.append(ch)
        self.feature_info = FeatureInfo.of([c + 1 if lie else c for c in chans], list(outs))

    def forward(self, x):
        out, stride = [], 1
        for block in self.blocks:
            x, stride = block(x), stride * 2
            if stride in self.outs:
                out.append(x)
        return out


class Patchify(Backbone):
    """A ViT-like single map at stride ``patch``."""

    fixed_input_size = (32, 32)

    def __init__(self, patch=16, dim=8):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.feature_info = FeatureInfo(((dim, patch),))

    def forward(self, x):
        return [self.proj(x)]


def build_pyramid(spec, *, pretrained=None, **options):
    return ConvPyramid(**{**spec.kwargs, **options})


def build_patch(spec, *, pretrained=None, **options):
    return Patchify(**{**spec.kwargs, **options})


class PoolHead(nn.Module):
    def __init__(self, backbone, num_classes):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(sum(backbone.feature_info.channels()), num_classes)

    def forward(self, x):
        return self.fc(torch.cat([f.mean((2, 3)) for f in self.backbone(x)], 1))


def build_head(spec, *, backbone, num_classes, **options):
    return BuiltModel(net=PoolHead(backbone, num_classes), preprocess=Preprocess(input_size=(32, 32)),
                      num_classes=num_classes, head=("fc",), extra={"options": options})


@hookimpl
def register_backbones(register):
    register("pyr", f"{__name__}:build_pyramid", kwargs={"outs": (4, 8, 16)})
    register("pyr_deep", f"{__name__}:build_pyramid", kwargs={"outs": (8, 16, 32)})
    register("liar", f"{__name__}:build_pyramid", kwargs={"outs": (4, 8), "lie": True})
    register("vit16", f"{__name__}:build_patch", kwargs={"patch": 16})
    register("vit8", f"{__name__}:build_patch", kwargs={"patch": 8}, saved_options=("dim",))
    register("vit14", f"{__name__}:build_patch", kwargs={"patch": 14})


@hookimpl
def register_heads(register):
    register("pyramid_head", f"{__name__}:build_head", task="toy",
             requires={"min_levels": 3, "single_level_ok": False})
    register("needs32", f"{__name__}:build_head", task="toy", requires={"strides": (8, 16, 32)})
    register("any_head", f"{__name__}:build_head", task="toy")


@pytest.fixture
def toy():
    import zoo_toy_plugin

    reg = Registry()
    reg.add_plugin(zoo_toy_plugin, "toy")
    reg.add_plugin(types.ModuleType("empty"), "empty")
    import sys

    reg.add_plugin(sys.modules[__name__], "bb")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


# ---- FeatureInfo and requirements ---------------------------------------------------------------
def test_feature_info_reads_like_timm():
    info = FeatureInfo.of([64, 128], [4, 8])
    assert info.channels() == [64, 128] and info.reduction() == [4, 8]
    assert info.channels(1) == 128 and info.reduction(-1) == 8 and len(info) == 2
    with pytest.raises(ValueError):
        FeatureInfo.of([64], [4, 8])
    with pytest.raises(ValueError):
        FeatureInfo(())


def test_why_incompatible_names_what_is_missing():
    pyramid = FeatureInfo.of([8, 16, 32], [8, 16, 32])
    single = FeatureInfo(((384, 16),))
    assert why_incompatible(pyramid, HeadRequirements(min_levels=3)) is None
    assert "at least 4" in why_incompatible(pyramid, HeadRequirements(min_levels=4))
    assert "pyramid" in why_incompatible(single, HeadRequirements(single_level_ok=False))
    reason = why_incompatible(pyramid, HeadRequirements(strides=(4, 8)))
    assert "lacks [4]" in reason
    assert why_incompatible(pyramid, HeadRequirements(min_levels=2, min_stride=16)) is None
    assert why_incompatible(pyramid, HeadRequirements(min_levels=3, min_stride=16)) is not None
    with pytest.raises(PluginError, match="unknown head requirement"):
        HeadRequirements.from_dict({"min_level": 2})


def test_check_feature_info_catches_a_lying_backbone():
    good = ConvPyramid((4, 8, 16))
    assert check_feature_info(good) == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 32, 4, 4)]
    with pytest.raises(PluginError, match=r"myplugin:liar.*map 0 has 8 channels, declared 9"):
        check_feature_info(ConvPyramid((4, 8), lie=True), name="myplugin:liar")
    wrong_stride = ConvPyramid((4, 8))
    object.__setattr__(wrong_stride, "feature_info", FeatureInfo.of([8, 16], [4, 16]))
    with pytest.raises(PluginError, match="declared stride 16"):
        check_feature_info(wrong_stride)


def test_simple_feature_pyramid_turns_one_map_into_four():
    sfp = SimpleFeaturePyramid(Patchify(16, dim=8), out_channels=6)
    assert sfp.feature_info.reduction() == [4, 8, 16, 32] and sfp.feature_info.channels() == [6] * 4
    shapes = check_feature_info(sfp, (3, 64, 64))
    assert [s[2] for s in shapes] == [16, 8, 4, 2]
    assert "divisible by 4" in SimpleFeaturePyramid.why_not(FeatureInfo(((8, 14),)))
    with pytest.raises(ValueError):
        SimpleFeaturePyramid(Patchify(14, dim=8))


# ---- zoo.build ----------------------------------------------------------------------------------
def test_build_composes_and_records_how_to_rebuild(toy):
    model = zoo.build("toy", backbone="pyr", head="pyramid_head", num_classes=3, class_names=None)
    assert model.config == {"backbone": "bb:pyr", "head": "bb:pyramid_head", "task": "toy",
                            "num_classes": 3, "options": {}}
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert model.class_names == ["class_0", "class_1", "class_2"]


def test_build_inserts_the_pyramid_adapter_for_a_single_stride16_map(toy):
    model = zoo.build("toy", backbone="vit16", head="pyramid_head", num_classes=2, adapter_channels=5)
    assert isinstance(model.net.backbone, SimpleFeaturePyramid)
    assert model.net.backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    # a head that takes a single map gets the bare trunk
    plain = zoo.build("toy", backbone="vit16", head="any_head", num_classes=2)
    assert isinstance(plain.net.backbone, Patchify)


def test_impossible_pairings_are_refused_with_the_reason(toy):
    with pytest.raises(IncompatibleError, match=r"bb:vit14.*pyramid.*stride 14"):
        zoo.build("toy", backbone="vit14", head="pyramid_head", num_classes=2)
    with pytest.raises(IncompatibleError, match=r"lacks \[32\]"):
        zoo.build("toy", backbone="pyr", head="needs32", num_classes=2)
    with pytest.raises(PluginError, match="bb:liar.*does not match"):
        zoo.build("toy", backbone="liar", head="any_head", num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build("toy", backbone="pyr", head="any_head")


def test_compat_lists_every_head_with_the_reason(toy):
    table = zoo.compat("vit14")
    assert set(table) == {"bb:pyramid_head", "bb:needs32", "bb:any_head"}
    assert table["bb:any_head"] is None and "stride 14" in table["bb:pyramid_head"]
    assert zoo.compat("vit16")["bb:pyramid_head"] is None  # via the adapter
    assert zoo.compat("pyr_deep") == {"bb:pyramid_head": None, "bb:needs32": None, "bb:any_head": None}


def test_saved_composed_model_round_trips_exactly(toy, tmp_path):
    model = zoo.build("toy", backbone="vit8", head="pyramid_head", class_names=["a", "b"],
                      backbone_options={"dim": 12})
    assert model.config["options"] == {"backbone_options": {"dim": 12}}
    model.save(tmp_path / "m")
    again = zoo.load(tmp_path / "m")
    x = torch.rand(2, 3, 32, 32)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x)) and again.class_names == ["a", "b"]
    assert again.weights_report is not None and not again.weights_report.reinitialized
    assert model.label == again.label == "bb:vit8 + bb:pyramid_head"  # what tables and messages call it
    assert (tmp_path / "m" / "README.md").read_text().startswith("# bb:vit8 + bb:pyramid_head (toy)")
    rehead = zoo.load(tmp_path / "m", num_classes=4)
    assert rehead.num_classes == 4 and sorted(rehead.weights_report.reinitialized) == ["fc.bias", "fc.weight"]
