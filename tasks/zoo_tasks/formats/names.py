"""Class names from the files other tools write beside a dataset.

``data.yaml`` (Ultralytics: ``names:`` a list, or a dict ``{0: person, 1: car}``), ``classes.txt``
(Label Studio, one name a line), ``obj.names`` (darknet) and ``labelmap.txt`` (CVAT's VOC export:
``name:r,g,b:parts:actions`` lines, which also give each class's mask colour). Each problem is a
:class:`DataError` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from zoo_core.data.layouts import YOLO_YAMLS
from zoo_core.errors import DataError

NAME_FILES = (*YOLO_YAMLS, "classes.txt", "obj.names", "labelmap.txt")


@dataclass
class NamesFile:
    """Names read from ``path`` (index order); ``palette[i]``: class ``i``'s RGB mask colour (labelmap.txt)."""

    path: Path
    names: list[str]
    palette: list[tuple[int, int, int]] | None = None


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or a :class:`DataError` naming the file (and line, for a syntax error)."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}{line}: not a readable YAML file ({exc})", path) from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})", path) from exc
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping (names: [...], train: ..., val: ...), got {type(spec).__name__}",
                        path)
    return spec


def yaml_names(spec: dict[str, Any], path: Path) -> list[str] | None:
    """``names`` of a YOLO yaml: a list, or a dict of consecutive ids from 0; ``nc`` alone gives ``class_<i>``."""
    names = spec.get("names")
    if names is None:
        nc = spec.get("nc")
        return [f"class_{i}" for i in range(int(nc))] if isinstance(nc, int) and nc > 0 else None
    if isinstance(names, dict):
        keys = sorted(names)
        if not all(isinstance(k, int) for k in keys) or keys != list(range(len(keys))):
            raise DataError(f"{path}: names has ids {keys[:10]}; a dict of names needs the ids 0, 1, 2 ... with no "
                            "gap (YOLO class ids index the names)", path)
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: names is {names!r}; expected a list of class names (or {{0: name, ...}})", path)
    return [str(n) for n in names]


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as text ({exc})", path) from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield lineno, line.strip()


def _labelmap(path: Path) -> NamesFile:
    names, palette = [], []
    for lineno, line in _lines(path):
        name, _, rest = line.partition(":")
        colour = rest.partition(":")[0]
        try:
            rgb = tuple(int(v) for v in colour.split(","))
        except ValueError:
            rgb = ()
        if not name or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DataError(f"{path}:{lineno}: {line!r} is not 'name:r,g,b::' (CVAT's labelmap.txt)", path)
        names.append(name)
        palette.append(rgb)  # type: ignore[arg-type]
    return NamesFile(path, names, palette)


def read_names_file(path: Path) -> NamesFile | None:
    """The names one file gives (``None`` for a YAML file without ``names``/``nc``)."""
    if path.suffix in (".yaml", ".yml"):
        names = yaml_names(load_yaml(path), path)
        return NamesFile(path, names) if names else None
    if path.name == "labelmap.txt":
        return _labelmap(path)
    names = [line for _, line in _lines(path)]
    if not names:
        raise DataError(f"{path}: no class names in it (one name a line)", path)
    return NamesFile(path, names)


def find_names(*folders: Path) -> NamesFile | None:
    """The first names file (:data:`NAME_FILES`, in that order) in ``folders``, read."""
    for folder in folders:
        for name in NAME_FILES:
            path = Path(folder) / name
            if path.is_file():
                found = read_names_file(path)
                if found is not None:
                    return found
    return None
