"""timm's model list, cached per installed timm version so that listing never imports timm or torch.

``timm.list_models()`` needs ``import timm`` (which imports torch: seconds). The catalog is computed
once per installed timm version and stored as JSON at ``$ZOO_HOME/catalog/timm-<version>.json``
(written atomically, so concurrent processes never read half a file); every later process reads the
JSON (milliseconds). The version comes from ``importlib.metadata``, so upgrading timm rebuilds it.

Cold cache: the catalog is computed by importing timm (not by scanning its sources): the names,
the pretrained tags and the default input sizes are then exactly timm's own. A corrupt or foreign
file is rebuilt.

Each model's entry: ``weights`` (pretrained tags, timm's default first; empty when timm has none)
and ``input_size`` ``[C, H, W]`` of the default pretrained config (None if unknown).
"""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path
from typing import Any

from zoo_core.paths import zoo_home

FORMAT = "zoo.timm-catalog"
FORMAT_VERSION = 1


def timm_version() -> str:
    """The installed timm's version (no import of timm)."""
    try:
        return md.version("timm")
    except md.PackageNotFoundError:
        raise ImportError("timm is not installed: `pip install timm` to use the timm models") from None


def catalog_path(version: str | None = None) -> Path:
    """``$ZOO_HOME/catalog/timm-<version>.json``."""
    return zoo_home() / "catalog" / f"timm-{version or timm_version()}.json"


def compute_catalog(version: str | None = None) -> dict[str, Any]:
    """Ask timm itself (imports timm and torch): every model name, its pretrained tags, its input size."""
    import timm
    from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg

    pretrained = set(timm.list_pretrained())
    models: dict[str, dict[str, Any]] = {}
    for name in timm.list_models():
        tags = [full.split(".", 1)[1] for full in get_arch_pretrained_cfgs(name) if full in pretrained]
        cfg = get_pretrained_cfg(name)
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        models[name] = {"weights": tags, "input_size": list(size) if size else None}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "timm_version": version or timm_version(),
            "models": models}


def _read(path: Path, version: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(data, dict) and data.get("format") == FORMAT and data.get("format_version") == FORMAT_VERSION
          and data.get("timm_version") == version and isinstance(data.get("models"), dict))
    return data if ok else None


def load_catalog(*, refresh: bool = False) -> dict[str, dict[str, Any]]:
    """``{model name: {"weights": [...], "input_size": [C, H, W] | None}}`` for the installed timm.

    Read from the cache when it is there and valid; otherwise computed (importing timm) and cached.
    ``refresh=True`` recomputes it.
    """
    from zoo_core.fileio import atomic_write_bytes

    version = timm_version()
    path = catalog_path(version)
    data = None if refresh else _read(path, version)
    if data is None:
        data = compute_catalog(version)
        try:
            atomic_write_bytes(path, (json.dumps(data, separators=(",", ":")) + "\n").encode())
        except OSError:  # a read-only home still lists models, just without the speed-up
            pass
    return data["models"]
