"""``model.save(dir)`` / ``zoo.load(dir)``: safetensors weights + a JSON config + a model card.

The config says how to rebuild the network (the qualified model name and builder options, or the
backbone + head of a composed model), the task, class names, preprocessing, and versions. Loading
rebuilds through the same registry path as ``zoo.load(name)`` and loads the weights strictly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ._version import __version__
from .errors import WeightsError

if TYPE_CHECKING:
    from .model import ZooModel

FORMAT = "zoo.model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def model_label(config: Mapping[str, Any]) -> str:
    """A model's name from its config: ``model``, or ``backbone + head`` for a composed one."""
    if config.get("model"):
        return str(config["model"])
    if config.get("backbone") or config.get("head"):
        return f"{config.get('backbone', '?')} + {config.get('head', '?')}"
    return "an unnamed model"


def is_saved_model(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename; the old file survives any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def versions() -> dict[str, str]:
    """Versions of the zoo, torch and every loaded plugin distribution (for provenance)."""
    import torch

    from .registry import get_registry

    out = {"zoo": __version__, "torch": torch.__version__}
    for p in get_registry().plugins.values():
        if p.distribution and p.version:
            out[p.distribution] = p.version
    return out


def _plugins_of(config: Mapping[str, Any]) -> list[str]:
    """The plugins a saved model's names come from (``plugin:name``; composed: backbone and head)."""
    names = [config.get("model")] if config.get("model") else [config.get("backbone"), config.get("head")]
    return sorted({str(n).partition(":")[0] for n in names if n and ":" in str(n)})


def providers(config: Mapping[str, Any]) -> dict[str, str]:
    """``{plugin: "distribution version"}`` for the plugins that built this model (to name on load)."""
    from .registry import get_registry

    plugins = get_registry().plugins
    return {p: f"{plugins[p].distribution} {plugins[p].version}".strip() if p in plugins and plugins[p].distribution
            else "" for p in _plugins_of(config)}


def _missing_provider(path: Path, config: Mapping[str, Any], exc: Exception) -> Exception:
    """The error for a saved model whose plugin (or model) this environment lacks: names the file and fix."""
    from .errors import PluginError
    from .registry import get_registry

    plugins = get_registry().plugins
    absent = [p for p in _plugins_of(config) if p not in plugins or not plugins[p].ok]
    where = f"{path / CONFIG_NAME} names {model_label(config)}"
    if absent:
        dists = ", ".join(f"{p} ({(config.get('providers') or {}).get(p) or 'distribution not recorded'})"
                          for p in absent)
        state = "failed to load" if any(p in plugins for p in absent) else "is not installed"
        return PluginError(f"{where}, built by plugin(s) {dists}, which {state} here: install that "
                           "distribution (or fix it: `zoo plugins`), then load again")
    return PluginError(f"{where}: {exc}")


def save_model(model: "ZooModel", path: Path) -> Path:
    """Write weights, config and model card into directory ``path`` (created if needed)."""
    from safetensors.torch import save

    if model.config.get("quantized"):
        raise WeightsError("an int8 model cannot be saved with model.save() (safetensors holds plain tensors, "
                           "not packed int8 kernels); export it with model.export('torchscript', path), or "
                           "save the float model and quantize after loading")
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    state = _dedupe_shared(state)
    blob = save(state, metadata={"format": "pt"})
    atomic_write_bytes(path / WEIGHTS_NAME, blob)
    provenance = {k: v for k, v in model.provenance.items() if _jsonable(v)}
    provenance["saved"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "zoo_version": __version__,
        **model.config, "task": model.task, "num_classes": model.num_classes,
        "class_names": model.class_names, "preprocess": model.preprocess.to_dict(),
        "provenance": provenance, "metrics": _metrics(model.last_metrics),
        "export_formats": list(model.export_formats),
        "versions": versions(), "providers": providers(model.config), "sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_bytes(path / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(path / "README.md", model_card(config).encode())
    return path


def _dedupe_shared(state: dict) -> dict:
    """safetensors refuses tensors sharing memory (tied weights): clone the duplicates."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else (id(v), 0)
        out[k] = v.clone() if key in seen else v
        seen.setdefault(key, k)
    return out


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe part of ``model.last_metrics``: numbers (tensor/numpy scalars become floats),
    strings, and nested dicts of those (per-class values); anything else is dropped."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            value = _metrics(value)
        elif hasattr(value, "item") and getattr(value, "ndim", getattr(value, "dim", lambda: 1)) in (0, ()):
            value = value.item()
        elif hasattr(value, "item") and callable(getattr(value, "numel", None)) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (bool, int, float, str)) or (isinstance(value, dict) and value):
            out[str(key)] = value
    return out


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def read_config(path: Path) -> dict[str, Any]:
    """Read and check a saved model's config.json (format and version)."""
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise WeightsError(f"{path} has no {CONFIG_NAME}: it is not a directory written by model.save() "
                           "(pass a model name, or weights=<file> for a bare weights file)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{cfg_path} is not valid JSON ({exc}); the saved model is damaged") from exc
    if config.get("format") != FORMAT:
        raise WeightsError(f"{cfg_path} is not a zoo model config (format={config.get('format')!r})")
    version = config.get("format_version")
    if not isinstance(version, int):
        raise WeightsError(f"{cfg_path} has no valid format_version ({version!r}); the saved model is "
                           "damaged or was not written by the zoo")
    if version > FORMAT_VERSION:
        raise WeightsError(f"{cfg_path} was written by a newer zoo (format_version {version}, zoo "
                           f"{config.get('zoo_version')}); this zoo {__version__} reads up to "
                           f"{FORMAT_VERSION}. Upgrade the zoo: pip install -U zoo")
    return config


def load_model(path: Path, *, task: str | None = None, num_classes: int | None = None,
               class_names: Sequence[str] | None = None, strict: bool = True) -> "ZooModel":
    """Rebuild a saved model and load its weights; ``num_classes`` re-heads it for fine-tuning."""
    from .api import build_model, check_task
    from .model import Preprocess
    from .registry import get_registry
    from .weights import WeightsError as _WE, sha256_file

    config = read_config(path)
    weights = path / WEIGHTS_NAME
    if not weights.exists():
        raise WeightsError(f"{path} has a config but no {WEIGHTS_NAME}; the saved model is incomplete")
    if config.get("sha256") and sha256_file(weights) != config["sha256"]:
        raise _WE(f"{weights} does not match the sha256 recorded in {path / CONFIG_NAME}; it is "
                  "corrupt or was replaced. Save the model again")
    rehead = num_classes is not None and num_classes != config["num_classes"]
    names = class_names if class_names is not None else (None if rehead else config["class_names"])
    n = num_classes if num_classes is not None else (None if class_names is not None else config["num_classes"])
    from .errors import PluginError, UnknownNameError

    try:
        if "backbone" in config:
            from .compose import build_composed

            model = build_composed(config["task"], backbone=config["backbone"], head=config["head"],
                                   num_classes=n, class_names=names, weights_path=weights, strict=strict,
                                   options=config.get("options", {}))
        else:
            spec = get_registry().resolve("model", config["model"], task=config["task"])
            model = build_model(spec, config["task"], num_classes=n, class_names=names, tag=None,
                                weights_path=weights, strict=strict, options=config.get("options", {}))
    except (UnknownNameError, PluginError) as exc:
        raise _missing_provider(path, config, exc) from exc
    check_task(model, task)
    model.preprocess = Preprocess.from_dict(config["preprocess"])  # input handling survives a new head
    if config.get("training"):
        model.config["training"] = config["training"]
    if config.get("task_options"):  # the task options the model was saved with (a user's edits too)
        model.config["task_options"] = dict(config["task_options"])
    saved = dict(config.get("provenance", {}))
    origin, origin_sha = saved.pop("weights", None), saved.pop("sha256", None)
    if origin and "derived_from" not in saved:  # keep the chain: pretrained tag -> fine-tuned dir
        saved.update(derived_from=origin, derived_from_sha256=origin_sha)
    model.provenance.update(saved)
    model.provenance["weights"] = str(path)
    model.last_metrics = {} if rehead else dict(config.get("metrics", {}))
    return model


def model_card(config: dict[str, Any]) -> str:
    """A README.md describing the saved model: task, classes, metrics, training, provenance.

    Metrics are ``model.last_metrics`` (set by ``zoo.evaluate`` and the Trainer's last validation);
    the training section is ``model.config["training"]`` (the Trainer's resolved settings).
    """
    name = model_label(config)
    names = [str(c) for c in config.get("class_names", [])]
    pre = config.get("preprocess", {})
    prov = config.get("provenance", {})
    vers = config.get("versions", {})
    lines = [f"# {name} ({config['task']})", "",
             f"A {config['task']} model with {len(names)} classes, saved by zoo {config.get('zoo_version')}.",
             "", "```python", "import zoo_core as zoo", 'model = zoo.load("path/to/this/directory")',
             'predictions = model.predict("image.jpg")', "```", "", "## Model", "",
             f"- architecture: `{name}`" + (f" with options `{json.dumps(config['options'])}`"
                                           if config.get("options") else ""),
             f"- task: {config['task']}",
             f"- classes ({len(names)}): {', '.join(names[:50])}" + (" ..." if len(names) > 50 else ""),
             f"- input: {pre.get('in_chans', 3)} x {' x '.join(map(str, pre.get('input_size', [])))}, "
             f"mean {_fmt_seq(pre.get('mean'))}, std {_fmt_seq(pre.get('std'))}, "
             f"{pre.get('interpolation')} resize, crop_pct {pre.get('crop_pct')}",
             "- export formats (each export is run and compared with eager when written): "
             f"{', '.join(config.get('export_formats') or []) or 'not declared'}"]
    metrics = config.get("metrics") or {}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    lines += ["", "## Metrics (last evaluation)", ""]
    if scalars:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt_value(v)} |" for k, v in sorted(scalars.items())]
        nested = sorted(k for k, v in metrics.items() if isinstance(v, dict))
        if nested:
            lines += ["", f"Per-class and structured results ({', '.join(nested)}) are in config.json."]
    else:
        lines.append("Not evaluated yet (run `zoo.evaluate(model, data)` before saving).")
    lines += ["", "## Training", ""]
    if config.get("training"):
        lines += ["```json", json.dumps(config["training"], indent=2, sort_keys=True, default=str), "```"]
    else:
        lines.append("No training run recorded (weights as loaded or initialised).")
    lines += ["", "## Provenance", "",
              f"- weights: {prov.get('weights') or 'random initialisation'}"]
    if prov.get("derived_from"):
        lines.append(f"- fine-tuned from: {prov['derived_from']}"
                     + (f" (sha256 {prov['derived_from_sha256']})" if prov.get("derived_from_sha256") else ""))
    for key in ("url", "license"):
        if prov.get(key):
            lines.append(f"- {key}: {prov[key]}")
    if prov.get("sha256"):
        lines.append(f"- source file sha256: {prov['sha256']}")
    lines += [f"- saved: {prov.get('saved', '-')}",
              f"- model.safetensors sha256: {config['sha256']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items()))]
    return "\n".join(lines) + "\n"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _fmt_seq(seq: Any) -> str:
    return "(" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in (seq or [])) + ")"
