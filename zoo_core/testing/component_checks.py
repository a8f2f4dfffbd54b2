"""Conformance checks for tasks, backbones and heads (model specs are in :mod:`.checks`).

- a task: its builder imports and returns a :class:`~zoo_core.task.Task` that implements every
  required method, has a ``name`` and a ``default_metric``, and (optionally) ``example_samples``;
- a backbone: it builds a :class:`~zoo_core.backbone.Backbone` whose ``feature_info`` matches the
  real feature maps (:func:`~zoo_core.backbone.check_feature_info`) and gradients reach its weights;
- a head: built on a compatible backbone with :func:`zoo_core.build`, the composed model passes
  the same checks as a model spec. The backbone: the one asked for (``pytest --zoo-backbone=NAME``),
  else the smallest compatible backbone of the head's own plugin, else the first of
  :data:`BUILTIN_BACKBONES` that fits; a head no backbone can feed fails (it is never skipped unseen).
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..registry import get_registry
from ..specs import BackboneSpec, HeadSpec, Spec, TaskSpec
from .backbone_checks import backbone_prefix_problem
from .checks import _Fail, _ModelCheck, _Runner, _Skip, accepted_class_count, new_report
from .report import CheckResult, SpecReport

TASK_CHECKS: dict[str, tuple[str, ...]] = {"builder": (), "task": ("builder",)}
BACKBONE_CHECKS: dict[str, tuple[str, ...]] = {"builder": (), "build": ("builder",),
                                               "feature_info": ("build",), "gradients": ("feature_info",)}
#: small built-in backbones a plugin's head is checked on when the plugin registers no backbone it accepts
#: (tried in order: tiny timm test models, then torchvision's; only those whose plugin is loaded)
BUILTIN_BACKBONES = ("timm:test_resnet", "timm:test_vit", "torchvision:mobilenet_v3_small", "torchvision:resnet18")


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

    def __init__(self, spec: HeadSpec, backbone: str, workdir: Path, only: Sequence[str] | None,
                 why: str = "") -> None:
        super().__init__(spec, spec.task, workdir, only)  # type: ignore[arg-type]
        self.backbone, self.why = backbone, why

    def build_fix(self) -> str:
        s = self.spec
        return (f"make {s.builder} return zoo_core.model.BuiltModel(net=<a module holding the `backbone` it was "
                "given itself>, num_classes=num_classes, head=('<classifier prefix>',), preprocess=...) when called "
                f"as {s.builder.partition(':')[2]}(spec, backbone=<a zoo_core.backbone.Backbone>, num_classes=N) "
                "(see the README's worked head)")

    def build(self) -> str:
        import torch

        from ..compose import build

        n = accepted_class_count(self.task, prefer=(2, 3, 1, 4, 5))
        if n is None:
            raise _Fail(f"task {self.task_name!r} accepts none of the class counts 1-5", "fix the task's "
                        "validate_num_classes")
        torch.manual_seed(0)
        self.model = build(self.spec.task, backbone=self.backbone, head=self.spec.qualified_name,  # type: ignore[attr-defined]
                           num_classes=n)
        problem = backbone_prefix_problem(self.model)
        if problem:
            raise _Fail(*problem)
        return f"on backbone {self.backbone}{self.why}: {type(self.model.net).__name__}, {n} classes"


def _check_head(spec: HeadSpec, checks: Sequence[str] | None, backbone: str | None) -> SpecReport:
    why = ""
    if backbone is None:
        backbone, tried = _compatible_backbone(spec)
        if backbone is None:  # never a silent skip: the head would go unchecked
            report = new_report(spec)
            report.results.append(CheckResult(
                "build", "fail", f"no backbone to check this head on: plugin {spec.plugin!r} registers none it "
                f"accepts, and of the built-in ones {'; '.join(tried) or 'none is loaded'}",
                "name a backbone that fits: pytest --zoo-backbone=NAME (check_spec(..., backbone=NAME)); "
                "`zoo compat NAME` says which heads a backbone fits", task=spec.task))
            return report
        if backbone.partition(":")[0] != spec.plugin:
            why = (f" (built in: plugin {spec.plugin!r} registers no backbone this head accepts; "
                   "--zoo-backbone=NAME picks another)")
    with tempfile.TemporaryDirectory(prefix="zoo-conformance-") as tmp:
        return _HeadCheck(spec, backbone, Path(tmp), checks, why).run()


def _compatible_backbone(spec: HeadSpec) -> tuple[str | None, list[str]]:
    """The backbone to check a head on, and why each built-in candidate was passed over.

    The smallest backbone of the head's own plugin whose declared FeatureInfo the head accepts; else the
    first of :data:`BUILTIN_BACKBONES` that fits (directly or through the simple feature pyramid).
    Candidates are built on the meta device (no memory, no weights) to read FeatureInfo and size.
    """
    import torch

    from ..compose import build_backbone, pairing

    def fits(bspec: Any) -> tuple[int, str | None]:
        with torch.device("meta"):
            bb, _ = build_backbone(bspec, check=False)
        return sum(p.numel() for p in bb.parameters()), pairing(bb.feature_info, spec)[0]

    reg = get_registry()
    best: tuple[int, str] | None = None
    for bspec in reg.specs("backbone"):
        if bspec.plugin != spec.plugin:
            continue
        try:
            size, reason = fits(bspec)
        except Exception:  # a broken backbone is reported by its own checks
            continue
        if reason is None:
            best = min(best or (size, bspec.qualified_name), (size, bspec.qualified_name))
    if best is not None:
        return best[1], []
    tried = []
    for name in BUILTIN_BACKBONES:
        plugin = name.partition(":")[0]
        if plugin not in reg.plugins or not reg.plugins[plugin].ok:
            continue
        try:
            _, reason = fits(reg.resolve("backbone", name))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            return name, tried
        tried.append(f"{name}: {reason}")
    return None, tried


__all__ = ["check_component", "TASK_CHECKS", "BACKBONE_CHECKS"]
