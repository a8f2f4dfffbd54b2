"""Writing a generated dataset folder once per parameters, atomically, never over someone's files.

The built-in synthetic datasets (:mod:`.shapes`, :mod:`.digits`, and any generator that wants the
same guarantees) call :func:`write_once`: a folder already holding the same dataset (its marker
file records the parameters) is reused as is, files added to it included; otherwise the data is
written into a temporary sibling folder and swapped into place at the end
(:func:`zoo_core.fileio.staged`), so an interrupted run leaves nothing half-written. The folder's
manifest (``.zoo-manifest.json``, :class:`~zoo_core.run_files.Manifest`) lists every file the
generator wrote: a dataset of other parameters is replaced only when the folder holds nothing else,
and a file the generator did not write (a user's notes, added images) is never deleted: it is an
error naming it. A folder without a marker is written only when empty.

A dataset written before manifests has its marker but no manifest: the generator's
``legacy_files`` pattern (the names it has always written, e.g. ``train/images/00012.png``) says
which files are its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from ..fileio import check_folder_target, remove_stale_temps, staged
from ..run_files import MANIFEST_NAME, Manifest, files_under, name_files


def matches(out_dir: Path, marker: str, params: dict[str, Any]) -> bool:
    """True when ``out_dir/marker`` records exactly ``params``."""
    try:
        return json.loads((out_dir / marker).read_text()).get("params") == params
    except (OSError, ValueError, AttributeError):
        return False


def foreign_files(out_dir: Path, marker: str, legacy_files: str = "") -> list[Path]:
    """Files in ``out_dir`` its generator did not write (all of them in a folder without ``marker``)."""
    found = files_under(out_dir)
    manifest = Manifest.read(out_dir)
    if manifest.found:
        return [p for p in found if p != manifest.path and not manifest.owns(p)]
    if not (out_dir / marker).is_file():
        return found
    pattern = re.compile(legacy_files) if legacy_files else None  # written before manifests: by its names

    def ours(rel: str) -> bool:
        return rel == marker or bool(pattern and pattern.fullmatch(rel))

    return [p for p in found if not ours(p.relative_to(out_dir).as_posix())]


def write_once(out_dir: str | Path, *, marker: str, params: dict[str, Any],
               write: Callable[[Path], dict[str, Any]], what: str, legacy_files: str = "") -> Path:
    """Fill ``out_dir`` with ``write(tmp_dir)`` unless it already holds the dataset of ``params``.

    ``write`` fills the temporary folder and returns extra fields for the marker file; ``what``
    names the generator in errors (e.g. ``"make_shapes"``); ``legacy_files``: a regular expression
    matching the relative paths the generator writes, for datasets written before manifests.
    """
    out_dir = Path(out_dir).expanduser()
    check_folder_target(out_dir, f"{what} folder")
    if matches(out_dir, marker, params):
        return out_dir
    theirs = foreign_files(out_dir, marker, legacy_files)
    if theirs:
        why = (f"not listed in its {MANIFEST_NAME}" if (out_dir / MANIFEST_NAME).is_file() else
               f"not a file {what} writes" if (out_dir / marker).is_file() else f"{what} did not write this folder")
        raise DataError(f"{out_dir} exists and holds other files than {what}'s: {name_files(theirs, out_dir)} "
                        f"({why}). {what} writes only into an empty folder or replaces a dataset it wrote, and "
                        "never deletes anything else: move those files away or pick another folder", out_dir)
    if out_dir.parent.is_dir():
        remove_stale_temps(out_dir.parent)  # a killed run's staging folder
    with staged(out_dir, what=f"{what} dataset", elsewhere="pick another folder") as tmp:
        extra = write(tmp)
        (tmp / marker).write_text(json.dumps({"params": params, **extra}, indent=2) + "\n")
        manifest = Manifest(tmp)
        for p in files_under(tmp):
            manifest.add(p)
        manifest.save()  # the old folder held only this generator's files (checked above): replaced whole
    return out_dir
