"""Writing a generated dataset folder once per parameters, atomically, never over someone's files.

The built-in synthetic datasets (:mod:`.shapes`, and any generator that wants the same guarantees)
call :func:`write_once`: a folder already holding the same dataset (its marker file records the
parameters) is reused as is; otherwise the data is written into a temporary sibling folder and
moved into place at the end, so an interrupted run leaves nothing half-written; a non-empty folder
without the marker was not written by the zoo and is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError


def matches(out_dir: Path, marker: str, params: dict[str, Any]) -> bool:
    """True when ``out_dir/marker`` records exactly ``params``."""
    try:
        return json.loads((out_dir / marker).read_text()).get("params") == params
    except (OSError, ValueError):
        return False


def write_once(out_dir: str | Path, *, marker: str, params: dict[str, Any],
               write: Callable[[Path], dict[str, Any]], what: str) -> Path:
    """Fill ``out_dir`` with ``write(tmp_dir)`` unless it already holds the dataset of ``params``.

    ``write`` fills the temporary folder and returns extra fields for the marker file; ``what``
    names the generator in errors (e.g. ``"make_shapes"``).
    """
    out_dir = Path(out_dir).expanduser()
    if matches(out_dir, marker, params):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / marker).exists():
        raise DataError(f"{out_dir} exists and holds other files; {what} only writes into an empty folder or "
                        "one it wrote before: pick another folder", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        extra = write(tmp)
        (tmp / marker).write_text(json.dumps({"params": params, **extra}, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)  # ours (marker present) or empty: safe to replace
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
