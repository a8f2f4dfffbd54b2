"""Post-training int8 quantisation for CPU deployment, with what it costs and gains measured.

Two methods, chosen by where a model's weights are (``method="auto"``):

- ``"dynamic"``: ``nn.Linear`` weights stored as int8, activations quantised on the fly. Right for
  linear-heavy models (ViT, MLP heads); needs no calibration data.
- ``"static"``: FX graph-mode post-training quantisation: observers are inserted, the model runs
  on ``calibration_data`` (a few batches of representative images) to fix activation ranges, then
  convolutions and linears become int8 kernels (fbgemm/x86 on Intel/AMD, qnnpack on ARM). Right
  for convnets. A model FX cannot trace fails with a message suggesting ``method="dynamic"``.

The result reports the serialized state size before/after, the CPU latency of one calibration
batch (median of a few fixed iterations; reported, not a benchmark), how far int8 outputs are from
float ones, and, given ``eval_data``, the metric change measured with :func:`zoo_core.evaluate`.
The original model is never modified: a quantised copy is returned (CPU only).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn

from .errors import IncompatibleError, ZooError

if TYPE_CHECKING:
    from .model import ZooModel

METHODS = ("auto", "dynamic", "static")


@dataclass
class QuantizeResult:
    """The int8 model and what changed. Sizes in bytes, latencies in milliseconds."""

    model: "ZooModel"
    method: str
    backend: str
    size_before: int
    size_after: int
    latency_before_ms: float
    latency_after_ms: float
    output_max_abs_diff: float
    output_rel_error: float
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """``size_after / size_before`` (0.25-0.3 for a fully int8 convnet)."""
        return self.size_after / max(self.size_before, 1)

    @property
    def metric_change(self) -> dict[str, float]:
        """``after - before`` for every numeric metric measured on ``eval_data``."""
        return {k: self.metrics_after[k] - v for k, v in self.metrics_before.items() if k in self.metrics_after}

    def __str__(self) -> str:
        lines = [f"int8 ({self.method}, {self.backend}): size {self.size_before / 1e6:.2f} MB -> "
                 f"{self.size_after / 1e6:.2f} MB ({self.size_ratio:.0%}); CPU latency "
                 f"{self.latency_before_ms:.1f} ms -> {self.latency_after_ms:.1f} ms per batch; outputs vs "
                 f"float: max |diff| {self.output_max_abs_diff:.3g}, relative error {self.output_rel_error:.3g}"]
        for key, delta in self.metric_change.items():
            lines.append(f"  {key}: {self.metrics_before[key]:.4f} -> {self.metrics_after[key]:.4f} ({delta:+.4f})")
        return "\n".join(lines)


def quantize(model: "ZooModel", mode: str = "int8", *, calibration_data: Any = None, eval_data: Any = None,
             method: str = "auto", calibration_batches: int = 8, backend: str | None = None,
             timing_iters: int = 5, eval_kwargs: dict[str, Any] | None = None) -> QuantizeResult:
    """Quantise a copy of ``model`` to int8 and measure size, latency, output and metric changes.

    ``calibration_data``: a tensor ``(N, C, H, W)`` of normalised inputs, an iterable of such
    tensors, of ``Batch`` objects or of ``(inputs, targets)`` pairs, a Dataset/DataLoader, or a
    path the model's task reads; at most ``calibration_batches`` batches are used. Required for
    ``"static"``; for ``"dynamic"`` it is only used to measure latency and output error (random
    inputs at the model's size otherwise). ``eval_data``: anything :func:`zoo_core.evaluate`
    accepts; the float and int8 models are both evaluated on it.
    """
    from .export import default_sample

    if mode != "int8":
        raise ValueError(f"quantisation mode {mode!r} is not supported; use 'int8'")
    if method not in METHODS:
        raise ValueError(f"quantisation method {method!r} is unknown; use one of {', '.join(METHODS)}")
    method = choose_method(model.net) if method == "auto" else method
    backend = backend or _default_backend()
    batches = list(_calibration_batches(calibration_data, model, calibration_batches))
    if method == "static" and not batches:
        raise ValueError("static int8 quantisation needs calibration_data= (a few batches of representative, "
                         "preprocessed images, or a dataset path); or use method='dynamic'")
    probe = batches[0] if batches else default_sample(model, batch=2).cpu()
    float_net = copy.deepcopy(model.net).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its own deprecation
        if method == "dynamic":
            qnet = torch.ao.quantization.quantize_dynamic(copy.deepcopy(float_net), {nn.Linear}, dtype=torch.qint8)
        else:
            qnet = _static_fx(float_net, batches, backend)
    qmodel = _wrap_like(model, qnet, method, backend)
    with torch.no_grad():
        ref, got = _flat(float_net(probe)), _flat(qnet(probe))
    diff = float((got - ref).abs().max())
    rel = float((got - ref).norm() / ref.norm().clamp_min(1e-12))
    result = QuantizeResult(qmodel, method, backend, state_bytes(float_net), state_bytes(qnet),
                            cpu_latency_ms(float_net, probe, timing_iters), cpu_latency_ms(qnet, probe, timing_iters),
                            diff, rel)
    if eval_data is not None:
        from .evaluate import evaluate

        kwargs = {"plots": False, "progress": False, **(eval_kwargs or {})}
        float_model = _wrap_like(model, float_net, "float", backend)
        result.metrics_before = _scalars(evaluate(float_model, eval_data, device="cpu", **kwargs))
        result.metrics_after = _scalars(evaluate(qmodel, eval_data, device="cpu", **kwargs))
        qmodel.last_metrics = dict(result.metrics_after)
    return result


def choose_method(net: nn.Module) -> str:
    """``"dynamic"`` when most weights are in ``nn.Linear`` layers (transformers), else ``"static"``."""
    linear = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))
    conv = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd))
    return "dynamic" if linear > conv else "static"


def state_bytes(net: nn.Module) -> int:
    """Bytes of ``torch.save(net.state_dict())``: what a deployed file would weigh."""
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.tell()


def cpu_latency_ms(net: nn.Module, x: torch.Tensor, iters: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``net(x)`` over ``iters`` runs after ``warmup`` (milliseconds)."""
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _static_fx(net: nn.Module, batches: list[torch.Tensor], backend: str) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = backend
    try:
        prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping(backend), (batches[0],))
    except Exception as exc:  # symbolic tracing fails on data-dependent Python control flow
        raise IncompatibleError(f"static int8 quantisation could not trace {type(net).__name__} with torch.fx "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); use "
                                "method='dynamic' (Linear layers only)") from exc
    with torch.no_grad():
        for x in batches:
            prepared(x)
    return convert_fx(prepared)


def _default_backend() -> str:
    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise ZooError(f"this torch build has no int8 CPU backend (supported engines: {engines})")


def _calibration_batches(data: Any, model: "ZooModel", limit: int) -> Iterable[torch.Tensor]:
    """Input tensors from the forms ``calibration_data`` may take (see :func:`quantize`)."""
    if data is None:
        return []
    if isinstance(data, torch.Tensor):
        batches = [_inputs(b) for b in data.split(8)][:limit]
    else:
        if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") or \
                isinstance(data, torch.utils.data.Dataset):
            from .train.data import read_data

            task = model.task_impl
            ds = read_data(data, task, model, split="train", train=False)
            data = ds if isinstance(ds, torch.utils.data.DataLoader) else torch.utils.data.DataLoader(
                ds, batch_size=8, shuffle=False, collate_fn=task.collate)
        batches = [_inputs(item) for item in islice(data, limit)]
    channels = model.preprocess.in_chans
    wrong = next((tuple(b.shape) for b in batches if b.shape[1] != channels), None)
    if wrong is not None:
        raise ValueError(f"calibration data has batches of shape {wrong}, but the model takes {channels}-channel "
                         f"images (preprocess.in_chans): pass (B, {channels}, H, W) tensors or an image folder")
    return batches


def _inputs(item: Any) -> torch.Tensor:
    x = getattr(item, "inputs", item)  # a Batch, or a plain tensor / pair / list of images
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        x = x[0] if x[0].dim() == 4 else torch.stack(list(x))
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise TypeError(f"calibration data must yield (B, C, H, W) image tensors; got {type(x).__name__}"
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    return x.cpu().float()


def _flat(out: Any) -> torch.Tensor:
    from torch.utils._pytree import tree_leaves

    leaves = [t.dequantize() if t.is_quantized else t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    return torch.cat([t.detach().float().reshape(-1) for t in leaves])


def _scalars(report: Any) -> dict[str, float]:
    return {k: float(v) for k, v in dict(report).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _wrap_like(model: "ZooModel", net: nn.Module, method: str, backend: str) -> "ZooModel":
    from .model import ZooModel

    config = dict(model.config)
    if method != "float":
        config["quantized"] = {"dtype": "int8", "method": method, "backend": backend}
    out = ZooModel(net, task=model.task, class_names=model.class_names, preprocess=model.preprocess,
                   config=config, head=model.head_prefixes, backbone=model.backbone_prefixes,
                   export_formats=("torchscript",) if method != "float" else model.export_formats,
                   provenance=dict(model.provenance))
    out.export_options = {**model.export_options, "reasons": {
        "onnx": "int8 models are exported to ONNX with onnxruntime's own quantiser, not from torch",
        "torch_export": "torch.ao int8 modules are not supported by torch.export; use torchscript"}}
    return out.eval()
