"""``model.save(dir)`` / ``zoo.load(dir)``: safetensors weights + a JSON config + a model card.

The config says how to rebuild the network (the qualified model name and builder options, or the
backbone + head of a composed model), the task, class names, preprocessing, and versions. Loading
rebuilds through the same registry path as ``zoo.load(name)`` and loads the weights strictly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ._version import __version__
from .errors import WeightsError

if TYPE_CHECKING:
    from .model import ZooModel

FORMAT = "zoo.model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


def save_model(model: "ZooModel", path: Path) -> Path:
    """Write weights, config and model card into directory ``path`` (created if needed)."""
    from safetensors.torch import save

    from .weights import sha256_file

    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    state = _dedupe_shared(state)
    atomic_write_bytes(path / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "zoo_version": __version__,
        **model.config, "task": model.task, "num_classes": model.num_classes,
        "class_names": model.class_names, "preprocess": model.preprocess.to_dict(),
        "provenance": {k: v for k, v in model.provenance.items() if _jsonable(v)},
        "metrics": {k: v for k, v in model.last_metrics.items() if isinstance(v, (int, float, str))},
        "versions": versions(), "sha256": sha256_file(path / WEIGHTS_NAME),
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


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def read_config(path: Path) -> dict[str, Any]:
    """Read and check a saved model's config.json (format and version)."""
    cfg_path = path / CONFIG_NAME
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{cfg_path} is not valid JSON ({exc}); the saved model is damaged") from exc
    if config.get("format") != FORMAT:
        raise WeightsError(f"{cfg_path} is not a zoo model config (format={config.get('format')!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
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
    if "backbone" in config:
        from .compose import build_composed

        model = build_composed(config["task"], backbone=config["backbone"], head=config["head"],
                               num_classes=n, class_names=names, weights_path=weights, strict=strict,
                               options=config.get("options", {}))
    else:
        spec = get_registry().resolve("model", config["model"], task=config["task"])
        model = build_model(spec, config["task"], num_classes=n, class_names=names, tag=None,
                            weights_path=weights, strict=strict, options=config.get("options", {}))
    check_task(model, task)
    if not rehead:
        model.preprocess = Preprocess.from_dict(config["preprocess"])
    model.provenance.update(config.get("provenance", {}), weights=str(path))
    model.last_metrics = dict(config.get("metrics", {}))
    return model


def model_card(config: dict[str, Any]) -> str:
    """A README.md describing the saved model: task, classes, metrics, training, provenance."""
    names = config.get("class_names", [])
    lines = [f"# {config.get('model') or config.get('backbone', '')} ({config['task']})", "",
             "Saved by zoo. Load with:", "", "```python", "import zoo_core as zoo",
             "model = zoo.load(\"path/to/this/directory\")", "```", "",
             f"- task: {config['task']}", f"- classes ({len(names)}): {', '.join(map(str, names[:50]))}"
             + (" ..." if len(names) > 50 else ""),
             f"- input size: {config['preprocess']['input_size']}",
             f"- weights provenance: {config.get('provenance', {}).get('weights') or 'random init / trained'}",
             f"- zoo {config['zoo_version']}, torch {config['versions'].get('torch')}",
             f"- model.safetensors sha256: {config['sha256']}"]
    if config.get("metrics"):
        lines += ["", "## Metrics (last evaluation)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in sorted(config["metrics"].items())]
    if config.get("training"):
        lines += ["", "## Training", "", "```json", json.dumps(config["training"], indent=2), "```"]
    return "\n".join(lines) + "\n"
