"""The conformance suite honours a plugin's whole contract (issue 14): every task a model declares, the
task's own class-count rule, heads checked on a built-in backbone (never skipped unseen), and an
exception from a builder shown with its type, message, builder, plugin and line.

The plugin is this module, registered in-process next to the built-in tasks and timm (whose tiny
``test_resnet`` is the built-in backbone a head of a backbone-less plugin is checked on).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo_core import hookimpl
from zoo_core.backbone import Backbone
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.registry import Registry, reset_registry
from zoo_core.task import Batch, Metrics, Prediction, Task
from zoo_core.testing import ConformanceError, check_spec


# ---- a regression task that needs num_classes == 1 ------------------------------------------------
class MeanMetrics(Metrics):
    def __init__(self) -> None:
        self.err, self.n = 0.0, 0

    def update(self, outputs: Any, batch: Batch) -> None:
        self.err += (outputs.float() - batch.targets).abs().sum().item()
        self.n += len(batch)

    def merge(self, other: Any) -> None:
        self.err, self.n = self.err + other.err, self.n + other.n

    def compute(self) -> dict[str, float]:
        return {"mae": self.err / max(self.n, 1)}


class Brightness(Task):
    """Regress each image's mean value: one output, smooth L1, MAE."""

    name = "brightness"
    default_metric = "mae"
    default_metric_mode = "min"

    def validate_num_classes(self, num_classes: int) -> None:
        if num_classes != 1:
            raise ValueError(f"brightness predicts one number: num_classes must be 1, got {num_classes}")

    def read_dataset(self, source, *, split, train, model, image_size=None, class_names=None):
        raise NotImplementedError

    def collate(self, samples: list[Any]) -> Batch:
        images, targets = zip(*samples)
        return Batch(torch.stack(images), torch.stack(targets))

    def loss(self, model: Any, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": F.smooth_l1_loss(model(batch.inputs).squeeze(1), batch.targets)}

    def forward_eval(self, model: Any, batch: Batch) -> torch.Tensor:
        return model(batch.inputs).squeeze(1)

    def new_metrics(self, class_names: Any) -> Metrics:
        return MeanMetrics()

    def predict(self, model: Any, images: list[Any], sources: list[str], **options: Any) -> list[Prediction]:
        return [Prediction(source=s) for s in sources]

    def example_samples(self, model: Any, *, n: int = 2, seed: int = 0) -> list[Any]:
        g = torch.Generator().manual_seed(seed)
        images = [torch.rand(3, 16, 16, generator=g) for _ in range(n)]
        return [(x, x.mean()) for x in images]


# ---- models, heads ----------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def build_net(spec, *, task, num_classes=None, pretrained=None):
    if task == spec.kwargs.get("break_for"):
        rows, cols = (1, 2, 3)  # the case: a plain ValueError deep in a builder  # noqa: F841
    n = spec.kwargs.get("outputs") or (1 if task == "brightness" else (num_classes or 3))
    return BuiltModel(net=Net(n), num_classes=n, head=("head",), backbone=("features",),
                      preprocess=Preprocess(input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3))


class DriftNet(Net):
    """Python state that changes every call: a trace freezes it, so no export of it matches eager."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) + self.calls


def build_drifting(spec, *, task, num_classes=None, pretrained=None):
    n = num_classes or 3
    return BuiltModel(net=DriftNet(n), num_classes=n, head=("head",), backbone=("features",),
                      preprocess=Preprocess(input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3),
                      export_formats=("torchscript",))


class SegNet(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Conv2d(backbone.feature_info.channels(-1), num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.classifier(self.backbone(x)[-1]), size=x.shape[-2:], mode="bilinear")


def build_seghead(spec, *, backbone, num_classes):
    return BuiltModel(net=SegNet(backbone, num_classes), num_classes=num_classes, head=("classifier",),
                      preprocess=backbone.preprocess.with_size(64))


def build_not_a_model(spec, *, backbone, num_classes):
    return nn.Linear(2, 2)


@hookimpl
def register_tasks(register):
    register("brightness", f"{__name__}:Brightness")


@hookimpl
def register_models(register):
    register("twotask", f"{__name__}:build_net", tasks=("brightness", "classification"))
    register("breaks_second", f"{__name__}:build_net", tasks=("brightness", "classification"),
             kwargs={"break_for": "classification"})
    register("wrong_count", f"{__name__}:build_net", tasks=("brightness",), kwargs={"outputs": 4})
    register("drifts", f"{__name__}:build_drifting", tasks=("classification",))


@hookimpl
def register_heads(register):
    register("seghead", f"{__name__}:build_seghead", task="segmentation", requires={"min_levels": 1})
    register("nowhere", f"{__name__}:build_seghead", task="segmentation", requires={"strides": (3,)})
    register("liar", f"{__name__}:build_not_a_model", task="segmentation")


def _builtin_timm() -> Any:
    import zoo_timm.plugin

    return zoo_timm.plugin


@pytest.fixture(scope="module")
def acme():
    import zoo_tasks.plugin

    reg = Registry()
    reg.add_plugin(zoo_tasks.plugin, "tasks", distribution="zoo")
    reg.add_plugin(_builtin_timm(), "timm", distribution="zoo")
    reg.add_plugin(sys.modules[__name__], "acme", distribution="zoo-acme")
    reset_registry(reg.finalize())
    yield reg
    reset_registry()


def test_a_model_is_checked_for_every_task_it_declares_with_the_tasks_own_class_counts(acme):
    report = check_spec("acme:twotask")
    assert report.ok, str(report)
    assert report.tasks == ["brightness", "classification"]
    for task in report.tasks:  # the whole suite ran for each task
        assert {r.check for r in report.results if r.task == task and r.status == "pass"} >= {
            "build", "contract", "train_step", "freeze", "save_load"}, str(report)
    # a regression task that needs num_classes=1 passes: its num_classes check is skipped, not failed
    skipped = report.result("num_classes", "brightness")
    assert skipped.status == "skip" and "accepts no class count but 1" in skipped.detail and not skipped.fix
    assert report.result("num_classes", "classification").status == "pass"
    assert "[pass] build, task 'classification'" in str(report)


def test_a_builder_raising_for_its_second_task_fails_the_spec_naming_the_task_and_the_line(acme):
    report = check_spec("acme:breaks_second")
    assert not report.ok
    assert report.result("build", "brightness").status == "pass"  # the first task is fine
    (failure,) = report.failures
    assert failure.task == "classification" and failure.check == "build"
    assert failure.detail.startswith("ValueError: too many values to unpack (expected 2) (raised by the builder "
                                     f"'{__name__}:build_net' of model 'acme:breaks_second' (plugin 'acme', "
                                     "distribution 'zoo-acme'))")
    assert f"(at {__file__}:" in failure.detail and "in build_net)" in failure.detail  # the plugin's own line
    assert "pretrained=None" in failure.fix and "task='classification'" in failure.fix
    with pytest.raises(ConformanceError, match=r"model 'acme:breaks_second' does not conform:\n  build, task "
                                               r"'classification': ValueError: too many values"):
        report.raise_for_failures()


def test_a_default_class_count_the_task_refuses_fails_the_build(acme):
    build = check_spec("acme:wrong_count", checks=["build"]).result("build")
    assert build.status == "fail" and "the model has 4 classes, which task 'brightness' refuses" in build.detail
    assert "num_classes must be 1" in build.detail


def test_an_export_that_differs_on_any_weights_fails_though_the_check_retries_on_jittered_ones(acme):
    """The export check re-verifies a mismatch on a jittered copy (untrained weights may tie): a wrong graph
    must still fail, not pass and not be skipped as "unverifiable"."""
    export = check_spec("acme:drifts", checks=["export"]).result("export")
    assert export.status == "fail" and "ExportMismatchError" in export.detail and "differs from eager" in export.detail


def test_a_head_of_a_plugin_without_backbones_is_checked_on_a_builtin_one(acme):
    report = check_spec("acme:seghead")
    assert report.ok, str(report)
    assert "on backbone timm:test_resnet" in report.result("build").detail
    assert report.result("freeze").status == "pass" and report.result("export") is not None


def test_a_head_no_backbone_can_feed_fails_instead_of_being_skipped(acme):
    report = check_spec("acme:nowhere")
    (failure,) = report.results
    assert failure.status == "fail" and failure.check == "build" and failure.task == "segmentation"
    assert "no backbone to check this head on" in failure.detail
    assert "timm:test_resnet: the head needs maps at strides [3]" in failure.detail
    assert "--zoo-backbone=NAME" in failure.fix


def test_a_broken_head_builder_gets_the_head_builders_fix_not_the_models(acme):
    build = check_spec("acme:liar", checks=["build"]).result("build")
    assert build.status == "fail" and "returned Linear, not zoo_core.model.BuiltModel" in build.detail
    assert "backbone=<a zoo_core.backbone.Backbone>, num_classes=N" in build.fix
    assert "pretrained" not in build.fix


def test_the_cli_shows_a_builders_value_error_naming_builder_plugin_and_distribution(acme, tmp_path, capsys):
    from zoo_core.cli import main

    assert main(["export", "acme:breaks_second", "--task", "cls", str(tmp_path / "net.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo export: error: ValueError: too many values to unpack (expected 2) (raised by the builder "
                          f"'{__name__}:build_net' of model 'acme:breaks_second' (plugin 'acme', distribution "
                          "'zoo-acme'))"), err


@pytest.mark.slow  # two pytest subprocesses
def test_pytest_checks_a_plugin_named_twice_once_and_skips_no_model_by_size_unless_asked(tmp_path):
    """``addopts = "--zoo-plugin=X"`` plus ``pytest --zoo-plugin=X`` (what the guide's template and its text
    together give) must not run every check twice; ``--zoo-max-params`` has no default limit."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                           "--zoo-plugin=tasks", "--zoo-plugin=tasks"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("conformance[task:tasks:classification]") == 1, done.stdout
    helped = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120).stdout
    assert "default: no limit" in " ".join(helped.split()) and "--zoo-backbone=NAME" in helped
