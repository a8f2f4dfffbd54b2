"""Writing a generated dataset folder once per parameters, atomically, never over someone's files.

The built-in synthetic datasets (:mod:`.shapes`, :mod:`.digits`, and any generator that wants the
same guarantees) call :func:`write_once`: a folder already holding the same dataset (its marker
file records the parameters) is reused as is, files added to it included; otherwise the data is
written into a temporary sibling folder and moved into place at the end, so an interrupted run
leaves nothing half-written. The marker also lists every file the generator wrote (its manifest):
a dataset of other parameters is replaced only when the folder holds nothing else, and a file the
generator did not write (a user's notes, added images) is never deleted: it is an error naming it.
A folder without the marker is written only when empty.

A marker written before the file list existed has none: the generator's ``legacy_files`` pattern
(the names it has always written, e.g. ``train/images/00012.png``) says which files are its own.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from ..fileio import check_folder_target, create_temp_dir, replace_folder
from ..run_files import files_under, name_files


def matches(out_dir: Path, marker: str, params: dict[str, Any]) -> bool:
    """True when ``out_dir/marker`` records exactly ``params``."""
    try:
        return json.loads((out_dir / marker).read_text()).get("params") == params
    except (OSError, ValueError, AttributeError):
        return False


def foreign_files(out_dir: Path, marker: str, legacy_files: str = "") -> list[Path]:
    """Files in ``out_dir`` its generator did not write (all of them in a folder without ``marker``)."""
    found = files_under(out_dir)
    if not (out_dir / marker).is_file():
        return found
    try:
        listed = json.loads((out_dir / marker).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    pattern = re.compile(legacy_files) if legacy_files and not isinstance(listed, list) else None
    own = set(listed) if isinstance(listed, list) else set()

    def ours(rel: str) -> bool:
        return rel == marker or rel in own or bool(pattern and pattern.fullmatch(rel))

    return [p for p in found if not ours(p.relative_to(out_dir).as_posix())]


def write_once(out_dir: str | Path, *, marker: str, params: dict[str, Any],
               write: Callable[[Path], dict[str, Any]], what: str, legacy_files: str = "") -> Path:
    """Fill ``out_dir`` with ``write(tmp_dir)`` unless it already holds the dataset of ``params``.

    ``write`` fills the temporary folder and returns extra fields for the marker file; ``what``
    names the generator in errors (e.g. ``"make_shapes"``); ``legacy_files``: a regular expression
    matching the relative paths the generator writes, for markers without a file list.
    """
    out_dir = Path(out_dir).expanduser()
    check_folder_target(out_dir, f"{what} folder")
    if matches(out_dir, marker, params):
        return out_dir
    theirs = foreign_files(out_dir, marker, legacy_files)
    if theirs:
        why = f"not listed in its {marker}" if (out_dir / marker).is_file() else f"{what} did not write this folder"
        raise DataError(f"{out_dir} exists and holds other files than {what}'s: {name_files(theirs, out_dir)} "
                        f"({why}). {what} writes only into an empty folder or replaces a dataset it wrote, and "
                        "never deletes anything else: move those files away or pick another folder", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_dir(out_dir.parent, f".{out_dir.name}.")
    try:
        extra = write(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in files_under(tmp))
        (tmp / marker).write_text(json.dumps({"params": params, **extra, "files": files}, indent=2) + "\n")
        replace_folder(tmp, out_dir)  # the old folder held only this generator's files (checked above)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
