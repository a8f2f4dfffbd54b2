"""The conformance checks a plugin's specs must pass (``pytest --zoo-plugin=NAME`` runs them).

:func:`check_model_spec` runs every check that applies to a model spec and returns a
:class:`~zoo_core.testing.report.SpecReport` (:mod:`.suite` dispatches any spec here or to
:mod:`.component_checks`). A model spec is checked for every task it declares (each check's result names the task): its builder
imports; it builds a :class:`~zoo_core.model.BuiltModel` whose head and backbone prefixes exist (and do
not overlap) and whose class count the task accepts (``Task.validate_num_classes``); the task's contract holds on a tiny synthetic batch from :meth:`Task.example_samples`
(collate, forward_eval, metrics, typed predictions); one training step changes the weights; with
``freeze_backbone`` it trains the head and not the declared backbone
(:mod:`.backbone_checks`); save/load is exact; ``num_classes``
replacement (to another count the task accepts) re-initialises only the head; declared export formats export and verify.
Backbones, heads and tasks get the checks of :mod:`zoo_core.testing.component_checks`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..registry import get_registry
from ..specs import ModelSpec
from .report import CheckResult, SpecReport
from .runner import _Fail, _Runner, _Skip, new_report  # noqa: F401  (component_checks imports them from here)

#: the checks a model spec gets, in the order they run, each with the checks it needs
MODEL_CHECKS: dict[str, tuple[str, ...]] = {
    "builder": (), "build": ("builder",), "contract": ("build",), "train_step": ("contract",),
    "freeze": ("train_step",), "save_load": ("build",), "num_classes": ("save_load",), "export": ("build",)}


# ---- model specs --------------------------------------------------------------------------------
class _ModelCheck:
    """State shared by the checks of one model spec (the built model, the batch, a temp dir)."""

    def __init__(self, spec: ModelSpec, task: str, workdir: Path, only: Sequence[str] | None,
                 report: SpecReport | None = None) -> None:
        self.spec, self.task_name, self.workdir = spec, task, workdir
        self.report = report if report is not None else new_report(spec)
        self.runner = _Runner(self.report, only, MODEL_CHECKS, task=task)
        self.model: Any = None
        self.samples: list[Any] | None = None
        self.saved: Path | None = None
        self.max_params: int | None = None

    @property
    def task(self) -> Any:
        from ..api import get_task

        return get_task(self.task_name)

    def run(self) -> SpecReport:
        s, r = self.spec, self.runner
        r.run("builder", self.builder, f"make builder {s.builder!r} name an importable 'module:function'; "
              f"try `python -c \"import {s.builder.partition(':')[0]}\"`")
        r.run("build", self.build, self.build_fix())
        r.run("contract", self.contract, f"make the network's outputs what task {self.task_name!r} "
              "consumes (see its forward_eval, Metrics.update and predict)")
        r.run("train_step", self.train_step, f"return a finite scalar under 'loss' from task "
              f"{self.task_name!r}'s loss() that depends on trainable parameters of the network")
        r.run("freeze", self.freeze, "declare the pretrained feature extractor in BuiltModel.backbone")
        r.run("save_load", self.save_load, "the network must be rebuilt identically from its config "
              "(builder options only, no hidden state outside the state_dict, deterministic buffers)")
        r.run("num_classes", self.num_classes, "honour num_classes= in the builder and list the "
              "classifier's state-dict prefixes in BuiltModel.head")
        r.run("export", self.export, "declare only export formats the network supports "
              "(ModelSpec.export_formats / BuiltModel.export_formats)")
        return self.report

    def build_fix(self) -> str:
        s = self.spec
        return (f"make {s.builder} return zoo_core.model.BuiltModel(net=..., preprocess=Preprocess(...), "
                "num_classes=N, head=('<classifier prefix>',), backbone=('<feature extractor prefix>',)) when "
                f"called as {s.builder.partition(':')[2]}(spec, task={self.task_name!r}, num_classes=None, "
                "pretrained=None), without downloading anything")

    def builder(self) -> str:
        fn = self.spec.load_builder()
        if not callable(fn):
            raise _Fail(f"{self.spec.builder!r} is a {type(fn).__name__}, not a function",
                        "point the spec's builder at a function")
        return self.spec.builder

    def too_large(self) -> None:
        """Skip (with the count) a model above ``max_params``, counted on the meta device (no memory)."""
        import torch

        if self.max_params is None:
            return
        try:
            with torch.device("meta"):
                built = self.spec.load_builder()(self.spec, task=self.task_name, num_classes=None, pretrained=None)
            n = sum(p.numel() for p in built.net.parameters())
        except Exception:  # a builder that cannot run on meta is simply built for real below
            return
        if n > self.max_params:
            raise _Skip(f"{n:,} parameters is above the limit of {self.max_params:,} for this run",
                        "raise max_params (pytest --zoo-max-params=N) to check it")

    def build(self) -> str:
        import torch

        from ..api import build_model
        from ..model import ZooModel

        self.too_large()
        torch.manual_seed(0)
        model = build_model(self.spec, self.task_name, num_classes=None, class_names=None, tag=None,
                            weights_path=None)
        assert isinstance(model, ZooModel)
        keys = list(model.net.state_dict())
        if not keys:
            raise _Fail("the network has no parameters or buffers", "return the real network as net=")
        if model.num_classes < 1:
            raise _Fail(f"num_classes is {model.num_classes}", "set BuiltModel.num_classes >= 1")
        try:
            self.task.validate_num_classes(model.num_classes)
        except Exception as exc:
            raise _Fail(f"the model has {model.num_classes} classes, which task {self.task_name!r} refuses: {exc}",
                        f"build the number of outputs task {self.task_name!r} needs when num_classes=None") from exc
        bad = [p for p in model.head_prefixes if not any(k.startswith(p) for k in keys)]
        if bad:
            raise _Fail(f"BuiltModel.head prefixes {bad} match no state-dict key (keys start with "
                        f"{sorted({k.split('.')[0] for k in keys})[:8]})",
                        "list the classifier's state-dict key prefixes in BuiltModel.head")
        from .backbone_checks import backbone_prefix_problem

        problem = backbone_prefix_problem(model)
        if problem:
            raise _Fail(*problem)
        size = self.spec.input_size
        if size is not None and tuple(size[-2:]) != tuple(model.preprocess.input_size):
            raise _Fail(f"spec input_size {tuple(size)} disagrees with the built model's preprocess "
                        f"input_size {model.preprocess.input_size}", "register the size the model uses")
        self.model = model
        n_params = sum(p.numel() for p in model.net.parameters())
        return f"{type(model.net).__name__}, {n_params:,} parameters, {model.num_classes} classes"

    def contract(self) -> str:
        samples = self.task.example_samples(self.model, n=2, seed=0)
        if samples is None:
            raise _Skip(f"task {self.task_name!r} provides no example_samples(), so the forward, loss "
                        "and save/load output checks cannot run",
                        f"implement example_samples() in the task class of {self.task_name!r}")
        self.samples = list(samples)
        out, batch = self.forward_eval(self.model)
        # the accumulator validation and evaluation use for this model (keypoints: its points' OKS sigmas)
        metrics = self.task.metrics_for(self.model, self.model.class_names)
        metrics.update(out, batch)
        other = self.task.metrics_for(self.model, self.model.class_names)
        other.update(out, batch)
        metrics.merge(other)
        values = metrics.compute()
        if not isinstance(values, dict):
            raise _Fail(f"Metrics.compute() returned {type(values).__name__}, not a dict",
                        "return {metric name: float} from compute()")
        key = self.task.default_metric
        if key and not (isinstance(values.get(key), (int, float)) and math.isfinite(values[key])):
            raise _Fail(f"metrics lack a finite {key!r} (the task's default_metric): got "
                        f"{ {k: v for k, v in values.items() if isinstance(v, (int, float))} }",
                        "make the network's eval output what the task's metrics expect")
        preds = self.predictions(self.model)
        return f"{len(batch)} samples; metrics {sorted(values)[:6]}; predict -> {type(preds[0]).__name__}"

    def forward_eval(self, model: Any) -> tuple[Any, Any]:
        import torch

        from ..task import Batch

        batch = self.task.collate(list(self.samples or []))
        if not isinstance(batch, Batch):
            raise _Fail(f"task collate() returned {type(batch).__name__}", "return zoo_core.task.Batch")
        model.eval()
        with torch.no_grad():
            return self.task.forward_eval(model, batch), batch

    def predictions(self, model: Any) -> list[Any]:
        import torch

        from ..task import Prediction

        c = model.preprocess.in_chans
        h, w = model.preprocess.input_size
        g = torch.Generator().manual_seed(0)
        preds = model.predict([torch.rand(c, h, w, generator=g) for _ in range(2)])
        if len(preds) != 2 or not all(isinstance(p, Prediction) for p in preds):
            raise _Fail(f"predict() on 2 images returned {[type(p).__name__ for p in preds]}",
                        "return one zoo_core.task.Prediction subclass per image")
        return preds

    def train_step(self) -> str:
        loss, before, changed = self.sgd_step(self.model)
        if not changed:
            raise _Fail("no parameter changed after one SGD step", "the loss must depend on the "
                        "network's parameters (no .detach(), no torch.no_grad() in forward)")
        return f"loss {loss.item():.4f}; {len(changed)}/{len(before)} parameter tensors changed"

    def freeze(self) -> str:
        from .backbone_checks import check_freezing

        return check_freezing(self.model, self.sgd_step)

    def sgd_step(self, model: Any) -> tuple[Any, dict[str, Any], list[str]]:
        """One SGD step on the synthetic batch: ``(loss, trainable weights before, names that changed)``."""
        import torch

        batch = self.task.collate(list(self.samples or []))
        model.train()
        before = {n: p.detach().clone() for n, p in model.net.named_parameters() if p.requires_grad}
        if not before:
            raise _Fail("the network has no trainable parameters", "leave parameters trainable")
        losses = self.task.loss(model, batch)
        loss = losses.get("loss") if isinstance(losses, dict) else None
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise _Fail(f"loss() returned {type(losses).__name__} without a scalar tensor 'loss'",
                        "return {'loss': scalar tensor, ...}")
        if not torch.isfinite(loss):
            raise _Fail(f"loss is {loss.item()} on a synthetic batch", "check the output/target scaling")
        loss.backward()
        trainable = [p for p in model.net.parameters() if p.requires_grad]
        # a bounded step (gradient norm clipped to 1, as a fine-tuning recipe would): a randomly initialised
        # detector's loss is in the thousands, and a raw lr=0.1 step would turn its weights to NaN
        norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm=1.0)
        if not torch.isfinite(norm):
            raise _Fail(f"the gradient norm is {norm.item()} after one backward pass on a synthetic batch "
                        f"(loss {loss.item():.4g})", "check for divisions by zero and log(0) in the loss")
        torch.optim.SGD(trainable, lr=0.1).step()
        changed = [n for n, p in model.net.named_parameters() if n in before and not torch.equal(p, before[n])]
        model.zero_grad(set_to_none=True)
        return loss, before, changed

    def save_load(self) -> str:
        from ..api import load

        model = self.model
        self.saved = model.save(self.workdir / "saved")
        again = load(self.saved)
        diff = _state_diff(model.net.state_dict(), again.net.state_dict())
        if diff:
            raise _Fail(f"after model.save + zoo.load: {diff}", "")
        for attr in ("task", "class_names", "preprocess"):
            if getattr(model, attr) != getattr(again, attr):
                raise _Fail(f"{attr} changed in the round trip: {getattr(model, attr)!r} -> "
                            f"{getattr(again, attr)!r}", "")
        if self.samples is None:
            return "state_dict identical (outputs not compared: the task gives no example_samples)"
        out_a, _ = self.forward_eval(model)
        out_b, _ = self.forward_eval(again)
        where = _first_difference(out_a, out_b)
        if where:
            raise _Fail(f"eval outputs differ after the round trip at {where}", "")
        return "state_dict and eval outputs identical"

    def num_classes(self) -> str:
        import torch

        from ..api import load

        old = self.model.num_classes
        new = accepted_class_count(self.task, avoid=old)
        if new is None:
            raise _Skip(f"task {self.task_name!r} accepts no class count but {old} (its validate_num_classes), "
                        "so there is no head to replace")
        model = load(self.saved, num_classes=new)
        if model.num_classes != new:
            raise _Fail(f"load(..., num_classes={new}) gave a model with {model.num_classes} classes", "")
        report = model.weights_report
        reinit = list(report.reinitialized) if report is not None else []
        if not reinit:
            raise _Fail(f"num_classes {old} -> {new} re-initialised no tensor", "")
        stray = [k for k in reinit if not any(k.startswith(p) for p in self.model.head_prefixes)]
        if stray:
            raise _Fail(f"tensors outside BuiltModel.head were re-initialised: {stray[:5]}", "")
        saved = self.model.net.state_dict()
        kept = [k for k, v in model.net.state_dict().items() if k not in reinit]
        differ = [k for k in kept if k in saved and not torch.equal(saved[k], model.net.state_dict()[k])]
        if differ:
            raise _Fail(f"non-head tensors were not loaded: {differ[:5]}", "")
        if self.samples is not None:
            samples = self.task.example_samples(model, n=2, seed=1)
            batch = self.task.collate(list(samples or []))
            model.train()
            loss = self.task.loss(model, batch)["loss"]
            if not torch.isfinite(loss):
                raise _Fail(f"loss with {new} classes is {loss.item()}", "")
        return f"{old} -> {new} classes; re-initialised {len(reinit)} head tensor(s), kept {len(kept)}"

    def export(self) -> str:
        formats = tuple(self.model.export_formats)
        if not formats:
            raise _Skip("the spec declares no export formats")
        from ..export import ExportError, ExportMismatchError, ExportTiesError

        done = []
        for fmt in formats:
            try:
                result, how = self.model.export(fmt, self.workdir / f"model.{fmt}"), ""
            except ExportMismatchError as first:  # an untrained init's ties? a wrong graph differs on any weights
                try:
                    result = untied_copy(self.model).export(fmt, self.workdir / f"model.{fmt}")
                except ExportTiesError as exc:
                    raise _Skip(f"{fmt}: unverifiable at random init: {exc}") from exc
                except ExportError:
                    raise first from None  # the model as built is what the report is about
                how = " (verified on a copy with jittered weights: the untrained ones tie)"
            done.append(f"{fmt}: max |exported - eager| {result.max_abs_diff:.2g}{how}")
        return "; ".join(done)


def untied_copy(model: Any, scale: float = 0.05, floor: float = 0.05) -> Any:
    """A copy of ``model`` whose floating-point weights carry seeded noise (std ``scale`` x each tensor's
    spread + ``floor``): what the export check verifies when the model as built does not match its export.

    A fresh initialisation is often degenerate: an untrained detector's scores tie to the last digit, its
    anchors among them (RT-DETR picks its decoder's queries as the top-k of them). Where a network picks its
    top-k among ties, any choice is right, and PyTorch and ONNX Runtime may choose differently: outputs that
    then differ say nothing of the export. A trained model has no such ties; the noise gives the checked one
    the same property without training it. The graph exported is the same, and a wrong graph differs on
    these weights too.
    """
    import copy

    import torch

    twin = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in twin.net.parameters():
            if p.is_floating_point() and p.numel():
                spread = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                p.add_(torch.randn(p.shape, generator=g).to(p) * (scale * spread + floor))
    return twin


def _state_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    import torch

    if set(a) != set(b):
        return f"keys differ: only before {sorted(set(a) - set(b))[:5]}, only after {sorted(set(b) - set(a))[:5]}"
    bad = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    return f"tensors differ: {bad[:5]}" if bad else ""


def _first_difference(a: Any, b: Any, where: str = "output") -> str:
    """Path of the first place two nested outputs differ ('' when identical)."""
    import dataclasses

    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return "" if ok else where
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where} keys"
        return next((d for k in a if (d := _first_difference(a[k], b[k], f"{where}[{k!r}]"))), "")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} length"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{where}[{i}]"))), "")
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return _first_difference(dataclasses.asdict(a), dataclasses.asdict(b), where)
    return "" if a == b else where


def accepted_class_count(task: Any, *, avoid: int | None = None,
                         prefer: Iterable[int] = (3, 5, 2, 4, 1, 7)) -> int | None:
    """The first class count in ``prefer`` (other than ``avoid``) the task's ``validate_num_classes`` accepts."""
    for n in prefer:
        if n == avoid:
            continue
        try:
            task.validate_num_classes(n)
        except Exception:
            continue
        return n
    return None


def check_model_spec(spec: ModelSpec, *, task: str | None = None, checks: Sequence[str] | None = None,
                     workdir: Path | None = None, max_params: int | None = None) -> SpecReport:
    """Run :data:`MODEL_CHECKS` (or the subset ``checks``) on a model spec for every task it declares
    (or only ``task``): one report whose results name their task, so a builder that fails for its second
    task fails the spec, naming that task.

    ``max_params``: skip the model (saying so) when it has more parameters than this.
    """
    tasks = [get_registry().canonical_task(task)] if task else list(dict.fromkeys(spec.tasks))
    report = new_report(spec)
    if not tasks:
        report.results.append(CheckResult("build", "fail", "the spec declares no task",
                                          "register the model with tasks=('<task>',)"))
        return report
    for name in tasks:
        with tempfile.TemporaryDirectory(prefix="zoo-conformance-") as tmp:
            folder = Path(workdir) / name if workdir else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            run = _ModelCheck(spec, name, folder, checks, report)
            run.max_params = max_params
            run.run()
    return report
