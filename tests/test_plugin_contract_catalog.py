"""The catalog side of the plugin contract (issue 14): ``zoo.info`` for heads and backbones as the CLI
prints them, one rule for what a head needs (``zoo info`` and ``zoo compat`` agree), sorted tasks, and
a short name two third-party plugins share: reported by the doctor, warned about by ``zoo.load``."""

from __future__ import annotations

import io
import warnings
from types import ModuleType, SimpleNamespace

import pytest
import torch
from torch import nn

import zoo_core as zoo
from zoo_core import hookimpl
from zoo_core.cli import main
from zoo_core.doctor import run_doctor
from zoo_core.features import TYPICAL_BACKBONES, FeatureInfo, HeadRequirements, fit
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.providers import ProviderChoiceWarning, announce_choice
from zoo_core.registry import Registry, discover, get_registry, reset_registry
from zoo_core.spec_info import BackboneInfo, HeadInfo, ModelInfo


def build(spec, *, task, num_classes=None, pretrained=None):
    n = num_classes or 2
    return BuiltModel(net=nn.Sequential(nn.Flatten(), nn.Linear(12, n)), num_classes=n, head=("1",),
                      preprocess=Preprocess(input_size=(2, 2)))


def provider(name: str, register_tasks=None) -> ModuleType:
    mod = ModuleType(f"{name}_plugin")

    @hookimpl
    def register_models(register):
        register("net", f"{__name__}:build", tasks=("cls",))

    mod.register_models = register_models
    if register_tasks is not None:
        mod.register_tasks = hookimpl(register_tasks)
    return mod


def _ep(name, module, dist):
    return SimpleNamespace(name=name, value=module.__name__, dist=SimpleNamespace(name=dist, version="1.0"),
                           load=lambda: module)


# ---- zoo.info / zoo info ----------------------------------------------------------------------------
def test_info_describes_a_head_in_python_as_the_cli_prints_it(capsys):
    info = zoo.info("deeplabv3")
    assert isinstance(info, HeadInfo) and info.kind == "head"
    assert (info.qualified_name, info.plugin, info.distribution, info.task) == (
        "torchvision:deeplabv3", "torchvision", "zoo", "segmentation")
    assert info.requires == {"min_levels": 1, "strides": (), "min_stride": None, "max_stride": None,
                             "single_level_ok": True}  # every key, defaults filled in
    assert "level" in info.saved_options
    assert main(["info", "deeplabv3"]) == 0
    out = capsys.readouterr().out
    assert out == f"{info}\n"
    assert "\n  plugin:        torchvision\n  distribution:  zoo " in out  # the plugin is the plugin
    backbone = zoo.info("resnet18", kind="backbone")
    assert isinstance(backbone, BackboneInfo) and backbone.qualified_name == "torchvision:resnet18"
    assert backbone.providers == ["torchvision:resnet18", "timm:resnet18"]
    assert isinstance(zoo.info("resnet18"), ModelInfo)  # a model name first, as before
    with pytest.raises(zoo.UnknownNameError, match="unknown model 'deeplabv3x'"):
        zoo.info("deeplabv3x")


def test_info_of_a_head_reads_the_catalog_only():
    import subprocess
    import sys

    code = ("import sys, zoo_core as zoo; print(zoo.info('faster_rcnn').needs); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]" and "a pyramid" in out, out


def test_zoo_info_and_zoo_compat_say_the_same_about_every_head(capsys):
    """faster_rcnn needs a pyramid (single_level_ok=False), and a ViT/16 fits it through the simple feature
    pyramid: info, compat and zoo.build's own check read one rule."""
    from zoo_core.compose import compat_fits, pairing

    faster = zoo.info("faster_rcnn")
    assert faster.requires["single_level_ok"] is False and "a pyramid: one map is not enough" in faster.needs
    vit_label = next(k for k in TYPICAL_BACKBONES if "ViT/16" in k)
    assert faster.fits[vit_label].startswith("fits through a simple feature pyramid")
    vit = FeatureInfo.of([64], [16])  # timm:test_vit: one 64-channel map at stride 16
    real = compat_fits("timm:test_vit")
    for spec in get_registry().specs("head"):
        info = zoo.info(spec.qualified_name, kind="head")
        reason, adapter = pairing(vit, spec)  # what zoo.build decides
        assert str(real[spec.qualified_name]) == info.fits[vit_label] == str(fit(vit, HeadRequirements.from_dict(
            spec.requires))), spec.qualified_name
        assert (reason is None) == info.fits[vit_label].startswith("fits") and adapter == ("pyramid" in info.fits[
            vit_label])
    assert main(["compat", "timm:test_vit", "--task", "det"]) == 0
    assert "torchvision:faster_rcnn  fits through a simple feature pyramid" in capsys.readouterr().out


def test_list_tasks_is_sorted_by_name_whatever_the_plugin(fresh_registry):
    def zeta(register):
        register("zeta", f"{__name__}:build")

    def alpha(register):
        register("alpha", f"{__name__}:build")

    reg = Registry()
    reg.add_plugin(SimpleNamespace(register_tasks=hookimpl(zeta), __name__="a_mod"), "a")  # a:zeta sorts first
    reg.add_plugin(SimpleNamespace(register_tasks=hookimpl(alpha), __name__="b_mod"), "b")
    reset_registry(reg.finalize())
    assert zoo.list_tasks() == ["alpha", "zeta"]


# ---- a short name two third-party plugins provide -------------------------------------------------------
@pytest.fixture
def clash(monkeypatch, fresh_registry):
    import zoo_tasks.plugin

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_PROVIDER_PRIORITY", raising=False)
    eps = [_ep("tasks", zoo_tasks.plugin, "zoo"), _ep("alpha", provider("alpha"), "zoo-alpha"),
           _ep("beta", provider("beta"), "zoo-beta")]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    monkeypatch.setattr("zoo_core.doctor.scan_entry_points", lambda: [])
    yield monkeypatch
    reset_registry()


def test_the_doctor_reports_a_short_name_two_third_party_plugins_share(clash):
    out = io.StringIO()
    assert run_doctor(out) == 1
    text = out.getvalue()
    assert ("short name clash: model 'net' is provided by plugin 'alpha' (distribution 'zoo-alpha') and plugin 'beta' "
            "(distribution 'zoo-beta'); the short name picks 'alpha:net' (equal priorities: the plugin name that "
            "sorts first). Name the provider ('beta:net' or 'alpha:net') or set ZOO_PROVIDER_PRIORITY=beta to pick "
            "another") in text
    clash.setenv("ZOO_PROVIDER_PRIORITY", "beta")  # the user settled it: a note, not a problem
    out = io.StringIO()
    assert run_doctor(out) == 0
    assert "note: short name clash, settled by ZOO_PROVIDER_PRIORITY: model 'net' is provided by plugin 'beta'" \
        in out.getvalue()


def test_load_of_a_shared_short_name_warns_which_provider_it_took(clash):
    reset_registry(discover())
    with pytest.warns(ProviderChoiceWarning, match=r"model 'net': took 'alpha:net' of 2 providers\. .*"
                                                   r"ZOO_PROVIDER_PRIORITY=beta"):
        model = zoo.load("net", task="cls")
    assert model.config["model"] == "alpha:net"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user's choice is silent: a qualified name, provider=, the variable
        assert zoo.load("beta:net").config["model"] == "beta:net"
        assert zoo.load("net", provider="beta").config["model"] == "beta:net"
        clash.setenv("ZOO_PROVIDER_PRIORITY", "beta")
        assert zoo.load("net").config["model"] == "beta:net"
    assert model(torch.zeros(1, 3, 2, 2)).shape == (1, 2)


def test_the_zoos_own_overlaps_stay_silent():
    """resnet18 from torchvision and timm is a documented priority, not a clash."""
    reg = get_registry()
    spec = reg.resolve("model", "resnet18")
    assert len(reg.providers("model", "resnet18")) >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        announce_choice(reg, spec)
    from zoo_core.providers import clashes

    assert clashes(reg) == []


def head_provider(name: str) -> ModuleType:
    """A third-party plugin whose only spec is a segmentation head ``aspp`` (torchvision's DeepLabV3 builder)."""
    mod = ModuleType(f"{name}_heads")

    @hookimpl
    def register_heads(register):
        register("aspp", "zoo_torchvision.seg_heads:build_deeplabv3_head", task="segmentation",
                 requires={"min_levels": 1})

    mod.register_heads = register_heads
    return mod


def test_build_with_a_shared_short_head_name_warns_which_provider_it_took(monkeypatch, fresh_registry):
    import zoo_tasks.plugin
    import zoo_timm.plugin

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_PROVIDER_PRIORITY", raising=False)
    eps = [_ep("tasks", zoo_tasks.plugin, "zoo"), _ep("timm", zoo_timm.plugin, "zoo"),
           _ep("alpha", head_provider("alpha"), "zoo-alpha"), _ep("beta", head_provider("beta"), "zoo-beta")]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    reset_registry(discover())
    try:
        with pytest.warns(ProviderChoiceWarning, match=r"head 'aspp': took 'alpha:aspp' of 2 providers\. .*"
                                                       r"ZOO_PROVIDER_PRIORITY=beta"):
            model = zoo.build("seg", backbone="test_resnet", head="aspp", num_classes=2)
        assert model.config["head"] == "alpha:aspp"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a qualified head name is the user's choice: silent
            assert zoo.build("seg", backbone="test_resnet", head="beta:aspp", num_classes=2).config["head"] == \
                "beta:aspp"
    finally:
        reset_registry()
