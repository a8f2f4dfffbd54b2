"""``model.save(dir)`` / ``zoo.load(dir)``: safetensors weights + a JSON config + a model card.

The config says how to rebuild the network (the qualified model name and builder options, or the
backbone + head of a composed model), the task, class names, preprocessing, and versions. Loading
rebuilds through the same registry path as ``zoo.load(name)`` and loads the weights strictly.

A save also writes ``.zoo-manifest.json`` (:class:`~zoo_core.run_files.Manifest`: each file's size and
sha256), so a later save replaces exactly the files it wrote, unchanged since: a user's own file in
the folder, or a ``README.md`` they edited, is never replaced or deleted (:func:`foreign_files`).
Loading reads only ``config.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import os
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
CARD_NAME = "README.md"
#: the files model.save() writes, besides its manifest (``.zoo-manifest.json``)
SAVED_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)


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


def _legacy_saved_files(folder: Path) -> dict[str, str] | None:
    """A folder saved by a zoo before manifests: ``{name: why it is not the zoo's}`` for the saved
    files that do not count as its own; None when the folder has no zoo config.json (nothing there is).
    config.json and model.safetensors count; README.md only when it is the very card the zoo writes
    for that config.json."""
    try:
        config = json.loads((Path(folder) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        return None
    card = Path(folder) / CARD_NAME
    try:
        from .model_card import model_card

        same = card.read_text(encoding="utf-8") == model_card(config)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no card, or a config it cannot describe
        same = False
    return {} if same or not card.is_file() else {CARD_NAME: "not the model card model.save() writes for this "
                                                             "config.json: written or edited by someone else"}


def foreign_files(folder: Path) -> dict[Path, str]:
    """The files in ``folder`` (recursively) that are not a previous ``model.save()``'s, unchanged since:
    ``{path: why}``. Such files are someone else's; a save replaces or deletes none of them."""
    from .run_files import Manifest, files_under

    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return {folder: "a file where the folder goes"}
    found = files_under(folder)
    manifest = Manifest.read(folder)
    if manifest.found:
        theirs = {p: f"not written by model.save(): not listed in its {manifest.path.name}" for p in found
                  if p != manifest.path and not manifest.owns(p)}
        theirs.update({p: "changed after model.save() wrote it: no longer what its manifest records" for p in found
                       if p != manifest.path and manifest.owns(p) and manifest.edited(p)})
        return theirs
    legacy = _legacy_saved_files(folder)
    if legacy is None:
        return dict.fromkeys(found, "not written by model.save(): the folder has no zoo config.json")
    return {p: legacy.get(p.name, "not written by model.save()") for p in found
            if p.parent != folder or p.name not in SAVED_FILES or p.name in legacy}


def check_save_target(path: Path) -> None:
    """Refuse a ``model.save()`` folder that is a file, or holds files that are not a previous save's."""
    from .fileio import check_folder_target
    from .run_files import ForeignFileError, name_by_reason

    check_folder_target(path, "model.save() folder")
    theirs = foreign_files(path) if path.exists() else {}
    if theirs:
        raise ForeignFileError(
            f"model.save() folder {path} holds files that are not a previous save's: {name_by_reason(theirs, path)}. "
            "model.save() replaces only the files it wrote there, unchanged since, and never replaces or deletes "
            "anything else: move those files away, or save to a new or empty folder")


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file of a save (inside the staging folder; a seam for tests)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _save_in_place(path: Path, files: dict[str, bytes]) -> None:
    """Write a save's files one by one into the existing folder ``path`` (its parent is not writable),
    each atomically and listed in ``path``'s manifest before its rename (the previous entry kept)."""
    from .fileio import atomic_write_bytes
    from .run_files import Manifest

    manifest = Manifest.read(path)
    if not manifest.found:  # a save by a zoo before manifests (checked: all of it is the zoo's): list it first
        for name in SAVED_FILES:
            if (path / name).is_file():
                manifest.add(name)
        manifest.save()
    for name, data in files.items():
        atomic_write_bytes(path / name, data, what="saved model", elsewhere="save to another folder", record_in=path)


def save_model(model: "ZooModel", path: Path) -> Path:
    """Write weights, config, model card and manifest into directory ``path`` (created if needed).

    Everything is written into a sibling staging folder and swapped in, so a crash or a full disk at
    any point leaves ``path`` as it was (or missing, for a first save) or complete. ``path`` may be
    new, empty or a previous save; a folder holding anything else (or a saved file edited since) is
    refused naming the files. When the parent folder is not writable but ``path`` is an existing
    writable folder, the files are written one by one inside it instead: each is replaced atomically,
    but the swap is then per file (a crash between two leaves a config.json whose sha256 does not
    match the weights, which ``zoo.load`` refuses by name).
    """
    from safetensors.torch import save

    from .fileio import ParentNotWritable, check_folder_target, ensure_folder, remove_stale_temps, staged
    from .model_card import model_card
    from .run_files import MANIFEST_NAME, Manifest, sha256_bytes
    from .unsaved import saveable_config

    path = Path(path)
    check_folder_target(path, "model.save() folder")  # before any work: a file where the folder goes
    ensure_folder(path.parent, what="the folder for model.save()")
    remove_stale_temps(path.parent)  # a killed save of this host: its staging folder (or the old save put back)
    if path.is_dir() and not path.is_symlink():
        remove_stale_temps(path)  # ... or the temp file of a killed save in place
    check_save_target(path)
    metadata = {"format": "pt"}
    if model.config.get("quantized"):  # packed int8 kernels: their integers, scales and a JSON layout
        from .compressed_io import encode_int8_state

        state, layout = encode_int8_state(model.net)
        metadata.update(layout)
    else:
        state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
    state = _dedupe_shared(state)
    blob = save(state, metadata=metadata)
    provenance = {k: v for k, v in model.provenance.items() if _jsonable(v)}
    provenance["saved"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "zoo_version": __version__,
        **saveable_config(model), "task": model.task, "num_classes": model.num_classes,  # code left out: unsaved
        "class_names": model.class_names, "preprocess": model.preprocess.to_dict(),
        "provenance": provenance, "metrics": _metrics(model.last_metrics),
        "export_formats": list(model.export_formats),
        "versions": versions(), "providers": providers(model.config), "sha256": hashlib.sha256(blob).hexdigest(),
    }
    files = {WEIGHTS_NAME: blob, CONFIG_NAME: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
             CARD_NAME: model_card(config).encode()}
    try:
        with staged(path, what="saved model", elsewhere="save to another folder") as tmp:
            manifest = Manifest(tmp)
            for name, data in files.items():
                _write_file(tmp / name, data)
                manifest.add(name, size=len(data), sha256=config["sha256"] if name == WEIGHTS_NAME
                             else sha256_bytes(data))
            _write_file(tmp / MANIFEST_NAME, manifest.to_bytes())
    except ParentNotWritable:
        if not path.is_dir() or path.is_symlink():
            raise
        _save_in_place(path, files)
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
    """Rebuild a saved model and load its weights; ``num_classes`` re-heads it for fine-tuning.

    The config is data: its names resolve through the registry (never an import of a module it names),
    and its builder options pass only when the plugin declares them and hold no path
    (:mod:`zoo_core.saved_options`), so loading never runs code or reads files the config names.
    """
    from .api import build_model, check_task
    from .model import Preprocess
    from .registry import get_registry
    from .unsaved import warn_unsaved
    from .weights import WeightsError as _WE, sha256_file

    config = read_config(path)
    weights = path / WEIGHTS_NAME
    if not weights.exists():
        raise WeightsError(f"{path} has a config but no {WEIGHTS_NAME}; the saved model is incomplete")
    if config.get("sha256") and sha256_file(weights) != config["sha256"]:
        raise _WE(f"{weights} does not match the sha256 recorded in {path / CONFIG_NAME}; it is "
                  "corrupt or was replaced. Save the model again")
    rehead = num_classes is not None and num_classes != config["num_classes"]
    # a pruned or int8 model: built as its builder makes it, reshaped / requantized, then loaded (compressed_io)
    reshaped = bool(config.get("quantized") or config.get("pruned"))
    relabel = class_names is not None and len(class_names) != config["num_classes"]
    if config.get("quantized") and (rehead or relabel):
        raise WeightsError(f"{path} holds an int8 model, which cannot take a new head: load the float model "
                           "with num_classes=..., fine-tune it, then quantize")
    names = class_names if class_names is not None else (None if rehead else config["class_names"])
    n = num_classes if num_classes is not None else (None if class_names is not None else config["num_classes"])
    from .errors import PluginError, UnknownNameError

    source = str(path / CONFIG_NAME)
    try:
        if "backbone" in config:
            from .compose import build_composed

            model = build_composed(config["task"], backbone=config["backbone"], head=config["head"],
                                   num_classes=n, class_names=names, weights_path=None if reshaped else weights,
                                   strict=strict, options=config.get("options"), source=source)
        else:
            from .saved_options import check_saved_options

            spec = get_registry().resolve("model", config["model"], task=config["task"])
            options = check_saved_options(spec, config.get("options"), source=source, fix=(
                f"zoo.load({spec.qualified_name!r}, task={config['task']!r}, num_classes="
                f"{config.get('num_classes')!r}, <option>=..., weights={str(path)!r})"))
            model = build_model(spec, config["task"], num_classes=n, class_names=names, tag=None,
                                weights_path=None if reshaped else weights, strict=strict, options=options)
    except (UnknownNameError, PluginError) as exc:
        raise _missing_provider(path, config, exc) from exc
    if reshaped:
        from .compressed_io import load_reshaped

        model = load_reshaped(model, config, weights, strict=strict, source=source)
    check_task(model, task)
    model.preprocess = Preprocess.from_dict(config["preprocess"])  # input handling survives a new head
    if config.get("training"):
        model.config["training"] = config["training"]
    warn_unsaved(config, str(path))  # a custom loss/metrics/transform it was trained with, not saved
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
