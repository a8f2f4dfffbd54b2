"""Named errors from builders and weight files (issue 12): a missing builder module in one line, a
builder's own exceptions naming it, unknown options refused with the accepted ones listed for every
built-in builder, and a torch file named .safetensors said to be one."""

from __future__ import annotations

import types

import pytest
import torch
from safetensors.torch import save_file

import zoo_core as zoo
import zoo_toy_plugin
from zoo_core import hookimpl
from zoo_core.cli import main
from zoo_core.errors import (BuilderTypeError, BuilderValueError, OptionError, PluginError, PluginImportError,
                             WeightsError, ZooError)
from zoo_core.registry import Registry, reset_registry
from zoo_core.weights import read_state_dict

TIMM = "timm:test_resnet"


# ---- builders of a third-party plugin -------------------------------------------------------------
def build_raising(spec, *, task, num_classes=None, pretrained=None, **options):
    raise options["error"]


def build_fixed(spec, *, task, num_classes=None, pretrained=None, width=4):
    return zoo_toy_plugin.build_tiny(spec, task=task, num_classes=num_classes)


def build_contract_breaker(spec, *, num_classes=None, pretrained=None):
    raise AssertionError("never called")


@hookimpl
def register_models(register):
    register("ghost", "zoo_no_such_builder_module_xyz:build", tasks=("toy",))
    register("quitter", "zoo_exiting_builder_module:build", tasks=("toy",))
    register("raising", f"{__name__}:build_raising", tasks=("toy",))
    register("fixed", f"{__name__}:build_fixed", tasks=("toy",))
    register("breaker", f"{__name__}:build_contract_breaker", tasks=("toy",))


@pytest.fixture
def plugin(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    (tmp_path / "zoo_exiting_builder_module.py").write_text("import sys\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    reg.add_plugin(zoo_toy_plugin, "toy", distribution="zoo-toy", version="0.0.1")
    reg.add_plugin(types.SimpleNamespace(register_models=register_models, __name__=__name__), "acme",
                   distribution="zoo-acme", version="1.0")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


def test_a_missing_builder_module_is_one_line_naming_plugin_distribution_spec_and_module(plugin, tmp_path, capsys):
    with pytest.raises(PluginImportError) as err:
        zoo.load("ghost", task="toy")
    message = str(err.value)
    assert message.startswith("model 'acme:ghost' (plugin 'acme', distribution 'zoo-acme'): builder "
                              "'zoo_no_such_builder_module_xyz:build': cannot import module "
                              "'zoo_no_such_builder_module_xyz' (ModuleNotFoundError: ")
    assert "\n" not in message and isinstance(err.value, ImportError) and isinstance(err.value, PluginError)
    assert main(["eval", "ghost", "--data", str(tmp_path)]) == 1  # the command prints it, no traceback
    err_text = capsys.readouterr().err
    assert err_text.startswith("zoo eval: error: model 'acme:ghost' (plugin 'acme'") and "Traceback" not in err_text
    with pytest.raises(PluginImportError, match=r"cannot import module 'zoo_exiting_builder_module' \(SystemExit: 4\)"):
        zoo.load("quitter", task="toy")  # a builder module calling sys.exit at import: named, not the end


@pytest.mark.parametrize("error, kind", [(ValueError("depth must be even"), BuilderValueError),
                                         (TypeError("widths must be a list"), BuilderTypeError)])
def test_a_builders_value_and_type_errors_keep_their_message_and_name_the_builder(plugin, error, kind):
    with pytest.raises(kind) as err:
        zoo.load("raising", task="toy", error=error)
    assert str(err.value) == (f"{error} (raised by the builder 'test_builder_errors:build_raising' of model "
                              "'acme:raising' (plugin 'acme', distribution 'zoo-acme'))")
    assert err.value.__cause__ is error and isinstance(err.value, (type(error), ZooError))
    named = ValueError("acme:raising needs an even depth")  # already names the spec: kept as it is
    with pytest.raises(BuilderValueError, match=r"^acme:raising needs an even depth$"):
        zoo.load("raising", task="toy", error=named)
    own = OptionError("the zoo's own error")  # the zoo's errors pass unchanged (zoo.load relies on it)
    with pytest.raises(OptionError) as err:
        zoo.load("raising", task="toy", error=own)
    assert err.value is own
    with pytest.raises(PluginError, match=r"build_raising' of model 'acme:raising' .* failed: SystemExit: 2"):
        zoo.load("raising", task="toy", error=SystemExit(2))


def test_a_keyword_a_builder_cannot_take_is_an_option_error_listing_what_it_takes(plugin):
    with pytest.raises(OptionError, match=r"acme:fixed \(builder 'test_builder_errors:build_fixed'\) does not "
                                          r"accept option\(s\) \['widht'\]; it takes \['width'\]"):
        zoo.load("fixed", task="toy", widht=8)
    assert zoo.load("fixed", task="toy", width=8).num_classes == 4
    with pytest.raises(PluginError, match=r"does not take \['task'\], which the zoo passes to every model builder"):
        zoo.load("breaker", task="toy")


# ---- --option foo=bar on every built-in builder ---------------------------------------------------
@pytest.mark.parametrize("load, listed", [
    (lambda: zoo.load(TIMM, task="cls", num_classes=2, drop_rat=0.1), r"timm:test_resnet does not accept option\(s\) "
     r"\['drop_rat'\]; it takes \[.*'drop_rate'"),
    (lambda: zoo.load(TIMM, task="cls", num_classes=2, img_size=64), r"\['img_size'\]; it takes \[.*'in_chans'"),
    (lambda: zoo.build("seg", backbone=TIMM, head="deeplabv3", num_classes=2, backbone_options={"drop_rat": 0.1}),
     r"backbone timm:test_resnet does not accept option\(s\) \['drop_rat'\]; it takes \[.*'drop_path_rate'"),
    (lambda: zoo.load("torchvision:resnet18", num_classes=2, dropuot=0.1),
     r"torchvision:resnet18 does not accept option\(s\) \['dropuot'\]; it takes \[.*'zero_init_residual'"),
    (lambda: zoo.load("torchvision:mobilenet_v3_small", num_classes=2, widthmult=0.5),  # MobileNetV3 drops it
     r"torchvision:mobilenet_v3_small does not accept option\(s\) \['widthmult'\]; it takes \[.*'dropout'"),
    (lambda: zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=2, box_score_tresh=0.9),
     r"\['box_score_tresh'\]; it takes \[.*'box_score_thresh'.*'trainable_backbone_layers'"),  # the transform drops it
    (lambda: zoo.build("det", backbone=TIMM, head="faster_rcnn", num_classes=2, box_scor=0.9),
     r"head torchvision:faster_rcnn does not accept option\(s\) \['box_scor'\]; it takes \[.*'box_score_thresh'"
     r".*'fpn_channels'"),
    (lambda: zoo.build("seg", backbone="torchvision:resnet18", head="deeplabv3", num_classes=2,
                       backbone_options={"zero_init_residul": True}),
     r"backbone torchvision:resnet18 does not accept option\(s\) \['zero_init_residul'\]"),
], ids=["timm-cls", "timm-cls-vit-option", "timm-backbone", "tv-cls", "tv-cls-swallowing", "tv-det", "tv-det-head",
        "tv-backbone"])
def test_an_unknown_option_is_named_with_the_accepted_ones_for_every_builtin_builder(load, listed):
    with pytest.raises(OptionError, match=listed):
        load()


def test_where_a_library_swallows_unknown_options_its_real_ones_pass_and_a_typo_does_not():
    """MobileNetV3 and the detectors' transform take **kwargs and drop what they do not know."""
    mobilenet = "torchvision:mobilenet_v3_small"
    assert zoo.load(mobilenet, num_classes=2, width_mult=0.5).net.features[0][0].out_channels == 8  # a helper's
    det = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=2, box_score_thresh=0.9,
                   size_divisible=16)
    assert det.net.detector.roi_heads.score_thresh == 0.9 and det.net.detector.transform.size_divisible == 16
    assert zoo.load(TIMM, task="cls", num_classes=2, drop_rate=0.25).net.drop_rate == 0.25
    with pytest.raises(OptionError, match=r"\['width_mul'\]"):
        zoo.load(mobilenet, num_classes=2, width_mul=0.5)
    with pytest.raises(OptionError, match=r"\['size_divisable'\]"):
        zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=2, size_divisable=16)


def test_zoo_train_option_unknown_to_the_builder_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--model", TIMM, "--task", "cls", "--num-classes", "2", "--data", str(tmp_path),
                 "--option", "drop_rat=0.1", "--out-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("zoo train: error: timm:test_resnet does not accept option(s) ['drop_rat']")


# ---- weight files whose name lies ------------------------------------------------------------------
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_torch_file_named_safetensors_is_named_for_what_it_is(tmp_path, zip_format):
    state = zoo.load("torchvision:resnet18", num_classes=2).net.state_dict()
    path = tmp_path / "model.safetensors"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsError, match=r"model\.safetensors is named \.safetensors but is really a PyTorch "
                                           r"checkpoint \(a pickle.*rename it to \.pt"):
        zoo.load("torchvision:resnet18", num_classes=2, weights=path)
    renamed = path.rename(tmp_path / "model.pt")
    assert torch.equal(read_state_dict(renamed)["fc.weight"], state["fc.weight"])
    reverse = tmp_path / "reverse.pt"  # safetensors content under a torch name: read by content, safely
    save_file({k: v.contiguous() for k, v in state.items()}, str(reverse))
    assert torch.equal(read_state_dict(reverse)["fc.weight"], state["fc.weight"])


def test_options_given_with_a_saved_model_are_refused_not_ignored(tmp_path):
    from zoo_core.errors import OptionError

    model = zoo.load("resnet18", task="cls", num_classes=2, seed=0)
    model.save(tmp_path / "m")
    with pytest.raises(OptionError, match=r"loads a saved model.*\['drop_rate'\] cannot apply"):
        zoo.load(tmp_path / "m", drop_rate=0.5)
    with pytest.raises(OptionError, match=r"\['weights'\] cannot apply"):
        zoo.load(str(tmp_path / "m"), weights="default")
    assert zoo.load(tmp_path / "m", num_classes=3).num_classes == 3  # re-heading still works


def build_broken_task():
    raise KeyError("labels")


@hookimpl
def register_tasks(register):
    register("brokentask", f"{__name__}:build_broken_task", aliases=("bt",))


def test_a_task_builder_that_raises_is_a_plugin_error_naming_the_task(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    reg = Registry()
    reg.add_plugin(types.SimpleNamespace(register_tasks=register_tasks, __name__=__name__), "acme",
                   distribution="zoo-acme", version="1.0")
    reset_registry(reg.finalize())
    try:
        with pytest.raises(PluginError, match=r"builder .*build_broken_task' of task 'acme:brokentask' \(plugin "
                                              r"'acme', distribution 'zoo-acme'\) failed: KeyError: 'labels'") as info:
            zoo.get_task("bt")
        assert isinstance(info.value.__cause__, KeyError)
    finally:
        reset_registry()
