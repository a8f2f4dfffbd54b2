"""Pruning: a smaller copy of a model, with parameters, MACs, size, latency and metrics before/after.

Two methods:

- ``"l1-structured"``: whole channels are removed (convolution filters, Linear rows, and for
  attention blocks whole heads and MLP channels), ranked by the L1 norm of their weights, through
  torch-pruning's dependency graph, which removes the matching input channels of every layer that
  reads them (BatchNorm, the next convolution, residual additions, concatenations). The network really
  gets smaller and faster. ``amount`` is the fraction of channels removed from each prunable group
  (parameters and MACs fall by more: about ``1 - (1 - amount)^2`` for a plain convnet).
  Needs ``pip install "zoo[prune]"`` (torch-pruning).
- ``"unstructured"``: the ``amount`` fraction of individual weights with the smallest magnitude,
  counted over every convolution and Linear outside the head together, are set to zero
  (``torch.nn.utils.prune.global_unstructured``, made permanent with ``prune.remove``). The architecture
  and the dense compute do not change; the zeros compress and suit sparse kernels.

What must keep its shape is found from the model, never from a task name: the layers under the
model's head prefixes (``ZooModel.head_prefixes``; their inputs may shrink, their outputs, the
classes, never), any layer whose output is returned as the model's output, and the prefixes the
caller passes as ``ignore=``. After pruning, the model's output shapes are checked to be unchanged.

The result's model is a :class:`~zoo_core.model.ZooModel` that saves (its ``config["pruned"]`` records
the architecture change as data, :mod:`zoo_core.compressed_io`), loads, fine-tunes with the Trainer,
exports and quantizes like any other. The original model is left unchanged.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from .compressed_io import snapshot, structure_change
from .compression import (cpu_latency_ms, input_batches, is_set_output, macs_per_image, metric_change,
                          metric_lines, metrics_on, parameter_count, probe_input, state_bytes, wrap_like)
from .errors import IncompatibleError, ZooError
from .model import under

if TYPE_CHECKING:
    from .model import ZooModel

METHODS = ("l1-structured", "unstructured")
#: ``pip install`` hint for the optional dependency of structured pruning
EXTRA = 'pip install "zoo[prune]"  (torch-pruning)'


@dataclass
class PruneResult:
    """The pruned model and what changed. Sizes in bytes, latencies in milliseconds (CPU, one batch)."""

    model: "ZooModel"
    method: str
    amount: float
    params_before: int
    params_after: int
    nonzero_before: int
    nonzero_after: int
    macs_before: int
    macs_after: int
    size_before: int
    size_after: int
    latency_before_ms: float
    latency_after_ms: float
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)

    @property
    def metric_change(self) -> dict[str, float]:
        """``after - before`` for every numeric metric measured on ``eval_data``."""
        return metric_change(self.metrics_before, self.metrics_after)

    def summary(self) -> dict[str, Any]:
        """The numbers as plain data (what ``config["pruned"]`` keeps and the model card shows)."""
        return {"method": self.method, "amount": self.amount, "params": [self.params_before, self.params_after],
                "nonzero_params": [self.nonzero_before, self.nonzero_after],
                "macs_per_image": [self.macs_before, self.macs_after],
                "size_bytes": [self.size_before, self.size_after],
                "cpu_latency_ms": [round(self.latency_before_ms, 3), round(self.latency_after_ms, 3)],
                "metrics_before": dict(self.metrics_before), "metrics_after": dict(self.metrics_after)}

    def __str__(self) -> str:
        rows = [("parameters", self.params_before, self.params_after, "{:,}"),
                ("non-zero parameters", self.nonzero_before, self.nonzero_after, "{:,}"),
                ("MACs per image", self.macs_before, self.macs_after, "{:,}"),
                ("size (MB)", self.size_before / 1e6, self.size_after / 1e6, "{:.2f}"),
                ("CPU latency (ms/batch)", self.latency_before_ms, self.latency_after_ms, "{:.1f}")]
        lines = [f"pruned ({self.method}, amount {self.amount:g})", f"  {'':24}{'before':>14}{'after':>14}  ratio"]
        for name, before, after, fmt in rows:
            ratio = after / max(before, 1e-12)
            lines.append(f"  {name:24}{fmt.format(before):>14}{fmt.format(after):>14}  {ratio:.0%}")
        return "\n".join(lines + metric_lines(self.metrics_before, self.metrics_after))


def prune(model: "ZooModel", amount: float = 0.3, method: str = "l1-structured", *, calibration_data: Any = None,
          eval_data: Any = None, ignore: Sequence[str] = (), round_to: int | None = None,
          calibration_batches: int = 1, timing_iters: int = 5,
          eval_kwargs: dict[str, Any] | None = None) -> PruneResult:
    """Prune a copy of ``model`` and measure what changed (see the module doc).

    ``amount`` in (0, 1): the fraction of channels (structured) or of weights (unstructured) removed.
    ``calibration_data``: input batches in any form :func:`zoo_core.quantize.quantize` takes; the first
    traces the dependency graph and times the models (noise at the model's size otherwise; the L1 ranking
    itself needs no data). ``eval_data``: anything :func:`zoo_core.evaluate` reads; both models are
    evaluated on it. ``ignore``: state-dict prefixes to leave whole, besides the head. ``round_to``: keep
    channel counts multiples of this (hardware-friendly sizes).
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 < float(amount) < 1.0:
        raise ValueError(f"prune amount={amount!r} must be a fraction in (0, 1), e.g. 0.3 removes 30%")
    if method not in METHODS:
        raise ValueError(f"prune method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if model.config.get("quantized"):
        raise IncompatibleError(f"{model.label} is int8: prune the float model, then quantize it")
    batches = input_batches(calibration_data, model, calibration_batches)
    probe = probe_input(batches, model)
    float_net = copy.deepcopy(model.net).cpu().eval()
    net = copy.deepcopy(float_net)
    keep = tuple(model.head_prefixes) + tuple(ignore)
    before = snapshot(net)
    with torch.no_grad():
        ref = float_net(probe)
    if method == "l1-structured":
        keep += _outside(net, model.backbone_prefixes) + _output_layers(float_net, probe, ref)
        _structured(net, probe, float(amount), keep, round_to, model.label)
    else:
        _unstructured(net, float(amount), keep)
    net.eval()
    try:
        with torch.no_grad():
            out = net(probe)
    except RuntimeError as exc:  # a dependency the graph did not see: a layer still expects the old width
        raise IncompatibleError(f"structured pruning broke the forward pass of {model.label} (torch-pruning's "
                                f"graph missed a dependency: {str(exc).splitlines()[0][:200]}); pass the layers "
                                "involved in ignore=[...], or use method='unstructured'") from exc
    _check_outputs(ref, out, model.label)
    previous = (model.config.get("pruned") or {})
    config = {**model.config, "pruned": {
        "structure": structure_change(before, snapshot(net), previous.get("structure")),
        "history": [*(previous.get("history") or [])]}}
    pruned = wrap_like(model, net, config)
    result = PruneResult(pruned, method, float(amount), parameter_count(float_net), parameter_count(net),
                         parameter_count(float_net, nonzero=True), parameter_count(net, nonzero=True),
                         macs_per_image(float_net, probe), macs_per_image(net, probe),
                         state_bytes(float_net), state_bytes(net),
                         cpu_latency_ms(float_net, probe, timing_iters), cpu_latency_ms(net, probe, timing_iters))
    if eval_data is not None:
        result.metrics_before = metrics_on(wrap_like(model, float_net, model.config), eval_data, eval_kwargs)
        result.metrics_after = metrics_on(pruned, eval_data, eval_kwargs)
        pruned.last_metrics = dict(result.metrics_after)
    pruned.config["pruned"]["history"].append(result.summary())
    return result


def _require_torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError as exc:
        raise ZooError(f"structured pruning needs torch-pruning, which is not installed: {EXTRA}; or use "
                       "method='unstructured' (torch.nn.utils.prune, no extra needed)") from exc
    return torch_pruning


def _modules_under(net: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    return [m for name, m in net.named_modules() if name and under(name, prefixes)]


def _outside(net: nn.Module, backbone: Sequence[str]) -> tuple[str, ...]:
    """The top-level modules outside the declared feature extractor (``ZooModel.backbone_prefixes``): a
    detector's FPN, RPN and box head, a segmenter's decoder keep their channels (their inputs follow the
    backbone's). Nothing when the plugin declares no backbone: then everything but the head is pruned."""
    if not backbone:
        return ()
    return tuple(name for name, _ in net.named_modules() if name and not under(name, backbone)
                 and not any(b.startswith(name + ".") for b in backbone))


def _output_layers(net: nn.Module, x: torch.Tensor, out: Any) -> tuple[str, ...]:
    """Names of the layers whose output tensor is itself one of the model's outputs (their channels are
    the outputs: they must keep them). Found by running ``net`` with a hook on every leaf module."""
    from torch.utils._pytree import tree_leaves

    # every result is held until the end: a freed intermediate's id() is soon reused by a later tensor
    # (the model's output among them), so an id alone would name the wrong layer
    produced: dict[int, tuple[str, Any]] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, result: Any) -> None:  # None: the output is left as it is
            produced.setdefault(id(result), (name, result))  # first producer: an in-place op returns its input
        return record

    hooks = [m.register_forward_hook(hook(name)) for name, m in net.named_modules()
             if name and not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return tuple(produced[id(t)][0] for t in tree_leaves(out) if isinstance(t, torch.Tensor) and id(t) in produced)


def _attention_modules(net: nn.Module) -> list[nn.Module]:
    """Attention blocks in the common layout (a ``qkv`` Linear and an integer ``num_heads``: timm's ViTs
    and most ViT code): their heads are pruned whole and ``num_heads`` & co. follow."""
    return [m for m in net.modules() if isinstance(getattr(m, "qkv", None), nn.Linear)
            and isinstance(getattr(m, "num_heads", None), int)]


def _structured(net: nn.Module, x: torch.Tensor, amount: float, keep: Sequence[str], round_to: int | None,
                label: str) -> None:
    tp = _require_torch_pruning()
    attention = _attention_modules(net)
    num_heads = {m.qkv: m.num_heads for m in attention}
    try:
        with warnings.catch_warnings():
            # tokens and position embeddings (parameters outside any layer) are pruned along their last
            # dimension, the embedding width, as they should be: torch-pruning's notice about them is noise
            warnings.filterwarnings("ignore", message="Unwrapped parameters")
            pruner = tp.pruner.MetaPruner(
                net, x, importance=tp.importance.GroupMagnitudeImportance(p=1), pruning_ratio=amount,
                ignored_layers=_modules_under(net, keep), round_to=round_to, num_heads=num_heads,
                prune_num_heads=bool(num_heads), prune_head_dims=False,
                head_pruning_ratio=amount if num_heads else 0.0)
            pruner.step()
    except Exception as exc:  # torch-pruning's tracer meets an operation it cannot follow
        raise IncompatibleError(f"structured pruning could not trace {label} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); use method='unstructured', "
                                "or pass ignore=[...] with the layers it fails on") from exc
    for m in attention:
        m.num_heads = int(pruner.num_heads[m.qkv])
        head_dim = m.qkv.out_features // (3 * m.num_heads)
        for name, value in (("head_dim", head_dim), ("attn_dim", head_dim * m.num_heads)):
            if isinstance(getattr(m, name, None), int):
                setattr(m, name, value)


def _unstructured(net: nn.Module, amount: float, keep: Sequence[str]) -> None:
    from torch.nn.utils import prune as tprune

    targets = [(m, "weight") for name, m in net.named_modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and not under(name, keep)
               and isinstance(getattr(m, "weight", None), nn.Parameter)]
    if not targets:
        raise IncompatibleError("unstructured pruning found no convolution or Linear weight outside the head")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=amount)
    for module, name in targets:
        tprune.remove(module, name)  # permanent: the zeros are in the weight, no mask or hook is left


def _check_outputs(ref: Any, new: Any, label: str) -> None:
    """Pruning must not change what the model returns: the same structure and (but for sets of boxes,
    whose count varies with the weights) the same shapes."""
    from torch.utils._pytree import tree_flatten

    if is_set_output(ref) and is_set_output(new) and len(ref) == len(new):
        return
    (a, spec_a), (b, spec_b) = tree_flatten(ref), tree_flatten(new)
    shapes_a = [tuple(t.shape) for t in a if isinstance(t, torch.Tensor)]
    shapes_b = [tuple(t.shape) for t in b if isinstance(t, torch.Tensor)]
    if spec_a != spec_b or shapes_a != shapes_b:
        raise IncompatibleError(f"pruning changed the outputs of {label} ({shapes_a} -> {shapes_b}): a layer that "
                                "makes them was pruned; pass its name in ignore=[...]")
