"""Conformance checks for tasks, backbones and heads (model specs are in :mod:`.checks`).

- a task: its builder imports and returns a :class:`~zoo_core.task.Task` that implements every
  required method, has a ``name`` and a ``default_metric``, and (optionally) ``example_samples``;
- a backbone: it builds a :class:`~zoo_core.backbone.Backbone` whose ``feature_info`` matches the
  real feature maps (:func:`~zoo_core.backbone.check_feature_info`) and gradients reach its weights;
- a head: built on a compatible backbone with :func:`zoo_core.build`, the composed model passes
  the same checks as a model spec.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..registry import get_registry
from ..specs import BackboneSpec, HeadSpec, Spec, TaskSpec
from .backbone_checks import backbone_prefix_problem
from .checks import _Fail, _ModelCheck, _Runner, _Skip, new_report
from .report import CheckResult, SpecReport

TASK_CHECKS: dict[str, tuple[str, ...]] = {"builder": (), "task": ("builder",)}
BACKBONE_CHECKS: dict[str, tuple[str, ...]] = {"builder": (), "build": ("builder",),
                                               "feature_info": ("build",), "gradients": ("feature_info",)}


def check_component(spec: Spec, *, checks: Sequence[str] | None = None,
                    backbone: str | None = None) -> SpecReport:
    """Check a task, backbone or head spec (``backbone``: the backbone a head is built on)."""
    if isinstance(spec, TaskSpec):
        return _check_task(spec, checks)
    if isinstance(spec, BackboneSpec):
        return _check_backbone(spec, checks)
    if isinstance(spec, HeadSpec):
        return _check_head(spec, checks, backbone)
    report = new_report(spec)
    report.results.append(CheckResult("kind", "fail", f"unknown spec type {type(spec).__name__}"))
    return report


def _builder(spec: Spec) -> str:
    spec.load_builder()
    return spec.builder


def _builder_fix(spec: Spec) -> str:
    return (f"make builder {spec.builder!r} name an importable 'module:function'; try "
            f"`python -c \"import {spec.builder.partition(':')[0]}\"`")


# ---- tasks --------------------------------------------------------------------------------------
def _check_task(spec: TaskSpec, checks: Sequence[str] | None) -> SpecReport:
    report = new_report(spec)
    r = _Runner(report, checks, TASK_CHECKS)
    r.run("builder", lambda: _builder(spec), _builder_fix(spec))
    r.run("task", lambda: _task_contract(spec), "subclass zoo_core.task.Task and implement every "
          "abstract method (read_dataset, collate, loss, forward_eval, new_metrics, predict)")
    return report


def _task_contract(spec: TaskSpec) -> str:
    from ..task import Task

    factory = spec.load_builder()
    missing = sorted(getattr(factory, "__abstractmethods__", ()) or ())
    if inspect.isclass(factory) and missing:
        raise _Fail(f"{factory.__name__} does not implement the required method(s) {missing}",
                    f"define {', '.join(m + '()' for m in missing)} in {factory.__name__} "
                    "(see zoo_core.task.Task)")
    task = factory()
    if not isinstance(task, Task):
        raise _Fail(f"the builder returned {type(task).__name__}, not a zoo_core.task.Task",
                    "return an instance of a zoo_core.task.Task subclass")
    if task.name != spec.name:
        raise _Fail(f"{type(task).__name__}.name is {task.name!r} but the task is registered as "
                    f"{spec.name!r}", f"set name = {spec.name!r} on the class")
    if not task.default_metric or task.default_metric_mode not in {"max", "min"}:
        raise _Fail(f"default_metric={task.default_metric!r}, default_metric_mode="
                    f"{task.default_metric_mode!r}", "set default_metric (a key of Metrics.compute()) "
                    "and default_metric_mode ('max' or 'min'): the Trainer's best checkpoint watches it")
    if type(task).example_samples is Task.example_samples:
        raise _Skip(f"{type(task).__name__} has no example_samples(): the models of this task skip "
                    "the forward/loss checks", "implement Task.example_samples()")
    return f"{type(task).__name__}; default metric {task.default_metric!r} ({task.default_metric_mode})"


# ---- backbones ----------------------------------------------------------------------------------
def _check_backbone(spec: BackboneSpec, checks: Sequence[str] | None) -> SpecReport:
    report = new_report(spec)
    r = _Runner(report, checks, BACKBONE_CHECKS)
    state: dict[str, Any] = {}

    def build() -> str:
        import torch

        from ..compose import build_backbone

        torch.manual_seed(0)
        state["bb"], _ = build_backbone(spec, check=False)
        return type(state["bb"]).__name__

    def feature_info() -> str:
        from ..backbone import check_feature_info

        shapes = check_feature_info(state["bb"], name=f"{spec.qualified_name} (plugin {spec.plugin})")
        state["shapes"] = shapes
        return f"declared {state['bb'].feature_info}; real shapes {shapes}"

    def gradients() -> str:
        import torch

        from ..backbone import check_size

        bb = state["bb"]
        hw = check_size(bb.feature_info, bb.fixed_input_size)
        bb.train()
        maps = bb(torch.rand(2, bb.in_chans, *hw, generator=torch.Generator().manual_seed(0)))
        sum(m.float().mean() for m in maps).backward()
        got = [n for n, p in bb.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        if not got:
            raise _Fail("no parameter received a gradient from the feature maps",
                        "do not detach the feature maps or run the trunk under torch.no_grad()")
        return f"{len(got)} parameter tensors receive gradients"

    r.run("builder", lambda: _builder(spec), _builder_fix(spec))
    r.run("build", build, f"make {spec.builder} return a zoo_core.backbone.Backbone for pretrained=None")
    r.run("feature_info", feature_info, "declare feature_info = FeatureInfo.of(channels, strides) "
          "exactly as the forward returns the maps (shallowest first)")
    r.run("gradients", gradients, "the backbone must be trainable")
    return report


# ---- heads --------------------------------------------------------------------------------------
class _HeadCheck(_ModelCheck):
    """A head is checked as the model :func:`zoo_core.build` makes of it on ``backbone``."""

    def __init__(self, spec: HeadSpec, backbone: str, workdir: Path, only: Sequence[str] | None) -> None:
        super().__init__(spec, spec.task, workdir, only)  # type: ignore[arg-type]
        self.backbone = backbone

    def build(self) -> str:
        import torch

        from ..compose import build

        torch.manual_seed(0)
        self.model = build(self.spec.task, backbone=self.backbone, head=self.spec.qualified_name,  # type: ignore[attr-defined]
                           num_classes=2)
        problem = backbone_prefix_problem(self.model)
        if problem:
            raise _Fail(*problem)
        return f"on backbone {self.backbone}: {type(self.model.net).__name__}"


def _check_head(spec: HeadSpec, checks: Sequence[str] | None, backbone: str | None) -> SpecReport:
    if backbone is None:
        backbone = _compatible_backbone(spec)
    if backbone is None:
        report = new_report(spec)
        report.results.append(CheckResult("build", "skip", f"plugin {spec.plugin!r} registers no "
                                          "backbone this head accepts", "name one: check_spec(..., "
                                          "backbone='plugin:name') or pytest --zoo-backbone=NAME"))
        return report
    with tempfile.TemporaryDirectory(prefix="zoo-conformance-") as tmp:
        return _HeadCheck(spec, backbone, Path(tmp), checks).run()


def _compatible_backbone(spec: HeadSpec) -> str | None:
    """The smallest backbone of the head's own plugin whose declared FeatureInfo the head accepts.

    Candidates are built on the meta device (no memory, no weights) to read FeatureInfo and size.
    """
    import torch

    from ..compose import build_backbone, pairing

    best: tuple[int, str] | None = None
    for bspec in get_registry().specs("backbone"):
        if bspec.plugin != spec.plugin:
            continue
        try:
            with torch.device("meta"):
                bb, _ = build_backbone(bspec, check=False)  # type: ignore[arg-type]
            if pairing(bb.feature_info, spec)[0] is None:
                size = sum(p.numel() for p in bb.parameters())
                best = min(best or (size, bspec.qualified_name), (size, bspec.qualified_name))
        except Exception:  # a broken backbone is reported by its own checks
            continue
    return best[1] if best else None


__all__ = ["check_component", "TASK_CHECKS", "BACKBONE_CHECKS"]
