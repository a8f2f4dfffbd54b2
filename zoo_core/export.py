"""Export a model to ONNX, TorchScript or ``torch.export``, and prove the file computes the same.

Every export runs the exported artefact on a sample input (ONNX Runtime for ONNX, ``torch.jit.load``
for TorchScript, ``torch.export.load`` for ``torch_export``) and compares each output with the eager
model. The max absolute difference is returned; above the tolerance the export fails and no file is
left behind (the file is written to a temp name and renamed only once verified).

Tolerance (``atol``): when not given, each output ``o`` may differ by ``1e-4 * max(1, max|o|)``,
i.e. absolutely for logits and probabilities, relatively for large-valued outputs such as box
coordinates in pixels. Integer outputs (labels) must match exactly at that tolerance.

The ONNX opset, when not given, is the highest that the exporter, the ``onnx`` package and the
installed ONNX Runtime all support (ONNX Runtime is probed with a one-node model, once per process).

Per-model hints come from the plugin (``BuiltModel.extra["export"]`` -> ``ZooModel.export_options``):
``dynamic_batch`` (False for models traced at a fixed input such as torchvision's Faster R-CNN),
``onnx_exporter`` (``"dynamo"`` or ``"torchscript"``), ``batch`` (sample batch size), ``atol``, and
``reasons`` (``{format: why it is unsupported}``, shown when a user asks for that format). A network's
optional ``export_mode()`` is a context the whole export runs in (Mask2Former: eager attention). Tied
detections are compared as sets of rows (:mod:`zoo_core.export_match`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .errors import IncompatibleError, UnknownNameError, ZooError, warn
from .export_match import all_tied, detection_groups, match_detection_rows
from .fileio import check_file_target
from .run_files import check_replaceable, publishing
from .specs import EXPORT_FORMATS

FORMATS = EXPORT_FORMATS
ALIASES = {"ts": "torchscript", "jit": "torchscript", "pt2": "torch_export", "export": "torch_export",
           "torch.export": "torch_export"}
DEFAULT_RTOL_SCALE = 1e-4
FALLBACK_OPSET = 17  # used only if the exporter's limits cannot be read
_EXTERNAL_DATA_BYTES = 1_800_000_000  # ONNX protobuf files stop at 2 GB: larger weights go beside it


class ExportError(ZooError):
    """An export that failed, or whose output differs from the eager model beyond tolerance."""


class ExportMismatchError(ExportError):
    """The exported file ran, but its outputs differ from the eager model's beyond tolerance."""


class ExportTiesError(ExportMismatchError):
    """The outputs differ where the model's detection scores all tie (an untrained model): which of them
    its top-k keeps is arbitrary, so the export cannot be verified on these weights."""


@dataclass
class ExportResult:
    """Where the verified file is and how close it is to eager: ``max_abs_diff`` over all outputs."""

    format: str
    path: Path
    max_abs_diff: float
    tolerance: float
    exporter: str
    opset: int | None = None
    dynamic_batch: bool = True
    batch_sizes: tuple[int, ...] = ()
    per_output: dict[str, float] = field(default_factory=dict)
    unordered_match: bool = False
    seconds: float = 0.0

    def __str__(self) -> str:
        extra = f", opset {self.opset}" if self.opset else ""
        order = " (tied rows matched as sets)" if self.unordered_match else ""
        return (f"{self.format} -> {self.path} [{self.exporter}{extra}, batch "
                f"{'dynamic' if self.dynamic_batch else 'fixed'}; checked at {list(self.batch_sizes)}]: "
                f"max |exported - eager| = {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}){order}")


def normalize_format(fmt: str) -> str:
    """``"ONNX"`` -> ``"onnx"``, ``"pt2"`` -> ``"torch_export"``; unknown names raise with suggestions."""
    key = fmt.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        raise UnknownNameError("export format", fmt, FORMATS + tuple(ALIASES), f"formats: {', '.join(FORMATS)}")
    return key


def export(model: nn.Module, format: str, path: str | Path, *, sample: torch.Tensor | None = None,
           opset: int | None = None, dynamic_batch: bool | None = None, atol: float | None = None,
           exporter: str | None = None, overwrite: bool = False) -> ExportResult:
    """Export ``model`` (a ZooModel or a plain module) to ``path`` and verify it against eager.

    ``sample``: the input to trace and compare with (default: uniform noise at the model's
    preprocessing size). ``dynamic_batch``: export a variable batch axis and also check batch 1 and
    ``B+1`` (default: the model's hint, else True). ``exporter``: ``"dynamo"``/``"torchscript"`` for
    ONNX, ``"trace"``/``"script"`` for TorchScript (default: automatic). Raises
    :class:`~zoo_core.errors.IncompatibleError` for a format the model cannot support, and
    :class:`ExportError` when the export fails or differs from eager beyond the tolerance. An existing
    file at ``path`` is replaced only when the zoo exported it (listed in that folder's manifest,
    unchanged since) or with ``overwrite=True``; the written files are listed there.
    """
    fmt = normalize_format(format)
    check_file_target(Path(path), "export path")  # a folder there, or a file where its folder goes: before any work
    check_replaceable(Path(path).parent, [Path(Path(path).name)], overwrite=overwrite, what="export",
                      elsewhere=EXPORT_ELSEWHERE)  # and again for every file written, before any is moved
    hints: dict[str, Any] = dict(getattr(model, "export_options", {}) or {})
    check_supported(model, fmt)
    net = getattr(model, "net", model)
    dynamic = hints.get("dynamic_batch", True) if dynamic_batch is None else bool(dynamic_batch)
    if sample is None:
        sample = default_sample(model, batch=int(hints.get("batch", 2 if dynamic else 1)))
    if dynamic and sample.shape[0] < 2:
        raise ValueError("a dynamic batch axis needs a sample with batch >= 2 (torch.export specialises "
                         "batch 1); pass a larger sample or dynamic_batch=False")
    atol = hints.get("atol") if atol is None else atol
    path = Path(path)
    was_training = net.training
    net.eval()
    start = time.perf_counter()
    mode = getattr(net, "export_mode", None)  # a network's switch to export-friendly kernels (optional)
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(mode() if callable(mode) else contextlib.nullcontext())
        with torch.no_grad():
            inputs = [sample] + ([sample[:1], _grow(sample)] if dynamic else [])
            expected = [_leaves(net(x)) for x in inputs]
        with _staging(path, overwrite) as tmp:
            if fmt == "onnx":
                exporter, opset, run = _export_onnx(net, sample, tmp, opset, dynamic,
                                                    exporter or hints.get("onnx_exporter"), len(expected[0][1]))
            elif fmt == "torchscript":
                exporter, run = _export_torchscript(net, sample, tmp, exporter)
            else:
                exporter, run = _export_torch_export(net, sample, tmp, dynamic)
            result = ExportResult(fmt, path, 0.0, 0.0, exporter, opset if fmt == "onnx" else None,
                                  dynamic, tuple(int(x.shape[0]) for x in inputs))
            for x, (names, ref) in zip(inputs, expected):
                where = f"{fmt} ({exporter}) at batch {x.shape[0]}"
                try:
                    got = run(x)
                except Exception as exc:  # ONNX Runtime / TorchScript / torch.export runtime errors
                    raise ExportError(f"{path}: the exported {where} was written but fails to run "
                                      f"({type(exc).__name__}: {_first_line(exc)}); nothing was saved. Try "
                                      "dynamic_batch=False, another exporter= or opset=") from exc
                _compare(got, names, ref, atol, result, where=where)
    finally:
        stack.close()
        net.train(was_training)
    result.seconds = time.perf_counter() - start
    return result


def check_supported(model: nn.Module, fmt: str) -> None:
    """Raise :class:`IncompatibleError` when the model's plugin declares it cannot export to ``fmt``."""
    formats = tuple(getattr(model, "export_formats", ()) or ())
    reasons = (getattr(model, "export_options", {}) or {}).get("reasons", {})
    if (formats and fmt not in formats) or (fmt in reasons and fmt not in formats):  # a stated reason: refused
        why = reasons.get(fmt) or f"its plugin declares only {', '.join(formats)} as export formats"
        name = getattr(model, "config", {}).get("model", type(model).__name__)
        raise IncompatibleError(f"{name} cannot be exported to {fmt}: {why}. Formats it supports: "
                                f"{', '.join(formats) or 'none'} (`zoo info {name}` lists them)")


def default_sample(model: nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Uniform noise ``(batch, C, H, W)`` at the model's preprocessing size, on its device."""
    pre = getattr(model, "preprocess", None)
    h, w = pre.input_size if pre is not None else (224, 224)
    chans = pre.in_chans if pre is not None else 3
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, chans, h, w, generator=gen).to(device)


# ---- the three exporters: each writes the file and returns a runner for the written artefact ------
def _export_onnx(net: nn.Module, sample: torch.Tensor, path: Path, opset: int | None, dynamic: bool,
                 exporter: str | None, n_outputs: int) -> tuple[str, int, Callable]:
    import onnxruntime as ort

    names = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    external = _param_bytes(net) > _EXTERNAL_DATA_BYTES
    errors: list[str] = []
    chosen = None
    for kind in ([exporter] if exporter else ["dynamo", "torchscript"]):
        if kind not in ("dynamo", "torchscript"):
            raise ValueError(f"ONNX exporter {kind!r} is unknown; use 'dynamo' or 'torchscript'")
        use = opset or best_opset(kind)
        try:
            _run_onnx_exporter(kind, net, sample, path, use, dynamic, names, external)
            chosen = kind
            break
        except Exception as exc:  # the dynamo exporter fails on data-dependent models: try the next
            errors.append(f"{kind} exporter: {type(exc).__name__}: {_first_line(exc)}")
    if chosen is None:
        raise ExportError(f"ONNX export failed ({'; '.join(errors)}). If the model has data-dependent "
                          "control flow, try dynamic_batch=False or exporter='torchscript'")
    if errors:
        warn(f"ONNX: fell back to the {chosen} exporter ({errors[0]})")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in session.run(None, {in_name: x.detach().cpu().numpy()})]

    return chosen, use, run


def _run_onnx_exporter(kind: str, net: nn.Module, sample: torch.Tensor, path: Path, opset: int,
                       dynamic: bool, names: list[str], external: bool) -> None:
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        if kind == "dynamo":
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
            program = torch.onnx.export(net, (sample,), None, dynamo=True, verbose=False, opset_version=opset,
                                        input_names=["input"], output_names=names, dynamic_shapes=shapes)
            program.save(str(path), external_data=external)
        else:
            axes = {n: {0: "batch"} for n in ["input", *names]} if dynamic else None
            torch.onnx.export(net, (sample,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=names, dynamic_axes=axes)


def _export_torchscript(net: nn.Module, sample: torch.Tensor, path: Path,
                        exporter: str | None) -> tuple[str, Callable]:
    kind = exporter or "trace"
    if kind not in ("trace", "script"):
        raise ValueError(f"TorchScript exporter {kind!r} is unknown; use 'trace' or 'script'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = (torch.jit.script(net) if kind == "script"
                      else torch.jit.trace(net, (sample,), strict=False, check_trace=False))
            torch.jit.save(module, str(path))
            loaded = torch.jit.load(str(path), map_location=sample.device)
    except Exception as exc:
        other = "script" if kind == "trace" else "trace"
        raise ExportError(f"TorchScript {kind} failed: {type(exc).__name__}: {_first_line(exc)}. "
                          f"Try exporter='{other}' or another format") from exc
    loaded.eval()
    return kind, lambda x: _leaves(loaded(x))[1]


def _export_torch_export(net: nn.Module, sample: torch.Tensor, path: Path,
                         dynamic: bool) -> tuple[str, Callable]:
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (sample,), dynamic_shapes=shapes, strict=False)
            archive = path.with_name(path.stem + ".pt2")  # torch.export insists on the suffix
            torch.export.save(program, str(archive))
            loaded = torch.export.load(str(archive)).module()
            if archive != path:
                os.replace(archive, path)
    except Exception as exc:
        hint = " or dynamic_batch=False" if dynamic else ""
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {_first_line(exc)}. Try "
                          f"format='onnx' (which can fall back to the TorchScript exporter){hint}") from exc
    return "torch.export", lambda x: _leaves(loaded(x))[1]


# ---- opsets ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def ort_max_opset(start: int = 30) -> int:
    """The newest default-domain opset the installed ONNX Runtime accepts (probed, cached)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    for version in range(start, 6, -1):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        proto.ir_version = 8
        try:
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            return version
        except Exception:
            continue
    return FALLBACK_OPSET


def best_opset(exporter: str = "dynamo") -> int:
    """The highest opset the exporter, ``onnx`` and ONNX Runtime all support."""
    import onnx

    try:
        from torch.onnx import _constants as c

        limit = c.ONNX_MAX_OPSET if exporter == "dynamo" else c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):
        limit = FALLBACK_OPSET
    return min(limit, onnx.defs.onnx_opset_version(), ort_max_opset())


# ---- comparison -----------------------------------------------------------------------------------
def _leaves(out: Any) -> tuple[list[str], list[torch.Tensor]]:
    """Flatten nested outputs (dicts, lists, tuples) into named tensors, in pytree order."""
    from torch.utils._pytree import keystr, tree_flatten_with_path

    pairs, _ = tree_flatten_with_path(out)
    names = [keystr(p) or "output" for p, _ in pairs]
    return names, [torch.as_tensor(v).detach().cpu() for _, v in pairs]


def _compare(got: Sequence[torch.Tensor], names: list[str], ref: list[torch.Tensor], atol: float | None,
             result: ExportResult, where: str) -> None:
    if len(got) != len(ref):
        raise ExportError(f"{where}: the exported model returns {len(got)} outputs, eager {len(ref)}")
    tols = [float(atol) if atol is not None else DEFAULT_RTOL_SCALE * max(1.0, _absmax(r)) for r in ref]
    for name, g, r in zip(names, got, ref):
        if tuple(g.shape) != tuple(r.shape):
            raise ExportMismatchError(f"{where}: output {name} has shape {tuple(g.shape)}, eager {tuple(r.shape)}; "
                              "the export is not equivalent (a fixed-size model needs dynamic_batch=False)")
    diffs = [_maxdiff(g, r) for g, r in zip(got, ref)]
    grouped: set[int] = set()
    for fields in detection_groups(names).values():  # detections: rows tied in score may come in another order
        grouped |= set(fields.values())
        if all(diffs[i] <= tols[i] for i in fields.values()):
            continue
        matched = match_detection_rows({k: got[i] for k, i in fields.items()}, {k: ref[i] for k, i in fields.items()},
                                       {k: tols[i] for k, i in fields.items()})
        if matched is not None:
            for k, i in fields.items():
                diffs[i] = matched[k]
            result.unordered_match = True
        elif all_tied(ref[fields["scores"]], tols[fields["scores"]]):
            scores = ref[fields["scores"]]
            raise ExportTiesError(
                f"{where}: the {scores.numel()} detection scores all lie within {float(scores.max() - scores.min()):.2g} "
                "of each other (untrained weights?), so which of them a top-k keeps is arbitrary and PyTorch and the "
                "exported model keep different ones: the export cannot be verified on these weights. Export the "
                "trained model; the file was not written")
    for i, (name, g, r) in enumerate(zip(names, got, ref)):
        diff, tol = diffs[i], tols[i]
        if diff > tol and i not in grouped and r.dim() >= 1 and r.shape[0] > 1:
            unordered = _maxdiff(_sort_rows(g), _sort_rows(r))  # equal rows in another order (ties)
            if unordered <= tol:
                diff, result.unordered_match = unordered, True
        if diff > tol or diff != diff:
            raise ExportMismatchError(f"{where}: output {name} differs from eager by max |diff| = {diff:.4g}, above "
                              f"the tolerance {tol:.4g}. The file was not written; pass atol= to accept a "
                              "larger difference, or try another exporter/opset")
        result.per_output[name] = max(result.per_output.get(name, 0.0), diff)
        result.max_abs_diff = max(result.max_abs_diff, diff)
        result.tolerance = max(result.tolerance, tol)


def _absmax(t: torch.Tensor) -> float:
    return float(t.double().abs().max()) if t.numel() else 0.0


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _sort_rows(t: torch.Tensor) -> torch.Tensor:
    flat = t.double().reshape(t.shape[0], -1)
    for col in reversed(range(flat.shape[1])):  # lexicographic: stable sorts from the last column
        flat = flat[torch.sort(flat[:, col], stable=True).indices]
    return flat


# ---- helpers --------------------------------------------------------------------------------------
def _grow(sample: torch.Tensor) -> torch.Tensor:
    """The sample with one more item (checks that the batch axis is really dynamic)."""
    return torch.cat([sample, sample[:1].flip(-1)], dim=0)


def _param_bytes(net: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


EXPORT_ELSEWHERE = "export to another path"


@contextlib.contextmanager
def _staging(path: Path, overwrite: bool):
    """Yield a temp file path; on success move it (and any external-data files) to ``path``'s folder."""
    with publishing(path.parent, overwrite=overwrite, what="export", elsewhere=EXPORT_ELSEWHERE) as tmp:
        yield tmp / path.name
