"""Post-training int8 quantisation for CPU deployment, with what it costs and gains measured.

Two methods, chosen by where a model's weights are (``method="auto"``):

- ``"dynamic"``: ``nn.Linear`` weights stored as int8, activations quantised on the fly. Right for
  linear-heavy models (ViT, MLP heads) and for detectors (their box head); needs no calibration data.
- ``"static"``: FX graph-mode post-training quantisation: observers are inserted, the model runs
  on ``calibration_data`` (a few batches of representative images) to fix activation ranges, then
  convolutions and linears become int8 kernels (fbgemm/x86 on Intel/AMD, qnnpack on ARM). Right
  for convnets. A model FX cannot trace fails with a message suggesting ``method="dynamic"``; a
  detector (its outputs are per-image sets of boxes) is refused before tracing, saying why.

The result reports the serialized state size before/after, the CPU latency of one calibration
batch (median of a few fixed iterations; reported, not a benchmark), how far int8 outputs are from
float ones (a detector's boxes are matched by IoU, and the count difference is reported), and, given
``eval_data``, the metric change measured with :func:`zoo_core.evaluate`, which is also kept in the
int8 model's ``config["quantized"]`` (so ``model.save`` writes it to config.json and the model card).
The original model is never modified: a quantised copy is returned (CPU only). ``model.save`` stores
it as int8 tensors + a JSON layout (:mod:`zoo_core.compressed_io`) and ``zoo.load`` rebuilds it exactly.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from .compression import (compare_outputs, cpu_latency_ms, input_batches, is_set_output, metric_change,
                          metric_lines, metrics_on, probe_input, set_summary, state_bytes, wrap_like)
from .errors import IncompatibleError, ZooError

if TYPE_CHECKING:
    from .model import ZooModel

METHODS = ("auto", "dynamic", "static")


@dataclass
class QuantizeResult:
    """The int8 model and what changed. Sizes in bytes, latencies in milliseconds.

    ``output_max_abs_diff`` / ``output_rel_error`` compare int8 outputs with float ones on the probe
    batch; for a detector they cover the boxes and scores matched by IoU, and ``sets`` holds the
    counts and the matching (:class:`zoo_core.compression.OutputDiff`).
    """

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
    sets: dict[str, float] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """``size_after / size_before`` (0.25-0.3 for a fully int8 convnet)."""
        return self.size_after / max(self.size_before, 1)

    @property
    def metric_change(self) -> dict[str, float]:
        """``after - before`` for every numeric metric measured on ``eval_data``."""
        return metric_change(self.metrics_before, self.metrics_after)

    def __str__(self) -> str:
        lines = [f"int8 ({self.method}, {self.backend}): size {self.size_before / 1e6:.2f} MB -> "
                 f"{self.size_after / 1e6:.2f} MB ({self.size_ratio:.0%}); CPU latency "
                 f"{self.latency_before_ms:.1f} ms -> {self.latency_after_ms:.1f} ms per batch; outputs vs "
                 f"float: max |diff| {self.output_max_abs_diff:.3g}, relative error {self.output_rel_error:.3g}"]
        if self.sets:
            lines.append("  " + set_summary(self.sets, "float", "int8"))
        return "\n".join(lines + metric_lines(self.metrics_before, self.metrics_after))


def quantize(model: "ZooModel", mode: str = "int8", *, calibration_data: Any = None, eval_data: Any = None,
             method: str = "auto", calibration_batches: int = 8, backend: str | None = None,
             timing_iters: int = 5, eval_kwargs: dict[str, Any] | None = None) -> QuantizeResult:
    """Quantise a copy of ``model`` to int8 and measure size, latency, output and metric changes.

    ``calibration_data``: a tensor ``(N, C, H, W)`` of normalised inputs, an iterable of such
    tensors, of ``Batch`` objects or of ``(inputs, targets)`` pairs, a Dataset/DataLoader, or a
    path the model's task reads; at most ``calibration_batches`` batches are used. Required for
    ``"static"``; for ``"dynamic"`` it is only used to measure latency and output error (random
    inputs at the model's size otherwise). ``eval_data``: anything :func:`zoo_core.evaluate`
    accepts; the float and int8 models are both evaluated on it. ``"auto"`` picks ``"dynamic"`` for a
    model whose outputs are sets of boxes (a detector) or whose weights are mostly in Linear layers.
    """
    if mode != "int8":
        raise ValueError(f"quantisation mode {mode!r} is not supported; use 'int8'")
    if method not in METHODS:
        raise ValueError(f"quantisation method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if model.config.get("quantized"):
        raise ValueError(f"{model.label} is already int8 ({model.config['quantized'].get('method')}); quantize "
                         "the float model instead")
    backend = backend or _default_backend()
    batches = input_batches(calibration_data, model, calibration_batches)
    probe = probe_input(batches, model)
    float_net = copy.deepcopy(model.net).cpu().eval()
    with torch.no_grad():
        ref = float_net(probe)
    sets = is_set_output(ref)
    method = ("dynamic" if sets else choose_method(float_net)) if method == "auto" else method
    if method == "static" and sets:
        raise IncompatibleError(
            f"static int8 quantisation is refused for {model.label}: its forward returns per-image sets of boxes, "
            "made by data-dependent steps (image resizing, anchors, box decoding, NMS, a different number of "
            "boxes per image) that torch.fx cannot trace into one static graph, and int8 convolutions would need "
            "their activations quantised and dequantised around each of those steps. Use method='dynamic' "
            "(its Linear layers, the box head, become int8), or export to ONNX and quantise it there")
    if method == "static" and not batches:
        raise ValueError("static int8 quantisation needs calibration_data= (a few batches of representative, "
                         "preprocessed images, or a dataset path); or use method='dynamic'")
    qnet = quantize_net(float_net, method, backend, batches)
    qmodel = int8_model(model, qnet, {"dtype": "int8", "method": method, "backend": backend})
    with torch.no_grad():
        diff = compare_outputs(ref, qnet(probe))
    result = QuantizeResult(qmodel, method, backend, state_bytes(float_net), state_bytes(qnet),
                            cpu_latency_ms(float_net, probe, timing_iters), cpu_latency_ms(qnet, probe, timing_iters),
                            diff.max_abs_diff, diff.rel_error, sets=diff.sets)
    if eval_data is not None:
        float_model = wrap_like(model, float_net, model.config)
        result.metrics_before = metrics_on(float_model, eval_data, eval_kwargs)
        result.metrics_after = metrics_on(qmodel, eval_data, eval_kwargs)
        qmodel.last_metrics = dict(result.metrics_after)
        qmodel.config["quantized"].update(metrics_before=dict(result.metrics_before),
                                          metrics_after=dict(result.metrics_after))
    return result


def quantize_net(float_net: nn.Module, method: str, backend: str, batches: list[torch.Tensor]) -> nn.Module:
    """An int8 copy of ``float_net`` (eval mode, CPU) by ``method`` on ``backend`` (the quantized engine is
    set to it: packed int8 kernels depend on it). ``batches`` calibrate ``"static"``."""
    torch.backends.quantized.engine = backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its own deprecation
        if method == "dynamic":
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(float_net), {nn.Linear}, dtype=torch.qint8)
        return _static_fx(float_net, batches, backend)


def choose_method(net: nn.Module) -> str:
    """``"dynamic"`` when most weights are in ``nn.Linear`` layers (transformers), else ``"static"``."""
    linear = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Linear))
    conv = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd))
    return "dynamic" if linear > conv else "static"

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


def int8_model(model: "ZooModel", qnet: nn.Module, recipe: Mapping[str, Any]) -> "ZooModel":
    """The :class:`~zoo_core.model.ZooModel` around int8 ``qnet``: ``model``'s, with ``config["quantized"]``
    = ``recipe`` (saved with it) and TorchScript as its export format."""
    out = wrap_like(model, qnet, {**model.config, "quantized": dict(recipe)}, export_formats=("torchscript",))
    out.export_options = {**model.export_options, "reasons": {
        "onnx": "int8 models are exported to ONNX with onnxruntime's own quantiser, not from torch",
        "torch_export": "torch.ao int8 modules are not supported by torch.export; use torchscript"}}
    return out
