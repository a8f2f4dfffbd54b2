"""Reading multi-label data: a label file beside the images, every problem named with its file and line.

A dataset folder (or ``train/`` and ``val/`` folders under a root, each laid out the same way) holds one of:

- ``labels.csv`` with a header ``image,labels``: each row an image path and its labels separated by ``;``
  (``cat;dog``; an empty cell: no label). ``tags`` is accepted for ``labels``;
- ``labels.csv`` with one column per class: ``image,cat,dog,...`` and 0/1 in each (the layout of
  ChestX-ray14-style exports); the header gives the class order;
- ``labels.json``: ``{"images/a.png": ["cat", "dog"], ...}``.

Image paths are relative to the folder holding the label file. Class order: ``class_names=``, else the
model's own (named) classes, else ``classes.txt`` (one name a line, in the folder or the root), else the
one-column-per-class header, else the sorted labels found. A label outside that order, a cell other than
0/1, an empty image path or a missing image is a :class:`~zoo_core.errors.DataError` naming file and line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from zoo_core.data.folders import split_root
from zoo_core.data.images import load_image
from zoo_core.data.robust import SkipTracker, load_or_skip
from zoo_core.errors import DataError

LABEL_FILES = ("labels.csv", "labels.json")
LIST_COLUMNS = ("labels", "tags")
LAYOUT = ("a folder with labels.csv (image,labels with labels separated by ';', or image,<class>,<class>... "
          "with 0/1) or labels.json ({image: [labels]}), image paths relative to it")


@dataclass
class LabelRows:
    """A parsed label file: ``(line, image path, labels)`` rows and the class order its header gives."""

    path: Path
    rows: list[tuple[int, str, list[str]]]
    header_classes: list[str] | None = None


def label_file(folder: Path) -> Path:
    """The label file of ``folder`` (``labels.csv`` first), or a DataError describing the layout."""
    found = [folder / n for n in LABEL_FILES if (folder / n).is_file()]
    if not found:
        raise DataError(f"{folder} has no {' or '.join(LABEL_FILES)}: multi-label data is {LAYOUT}", folder)
    return found[0]


def read_labels(path: Path) -> LabelRows:
    """Parse ``labels.csv``/``labels.json`` (see the module docstring)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON ({exc})", path) from exc
        if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                                 for v in data.values()):
            raise DataError(f"{path} must map each image path to a list of label names, e.g. "
                            '{"images/a.png": ["cat", "dog"]}', path)
        return LabelRows(path, [(i + 1, str(k), list(v)) for i, (k, v) in enumerate(data.items())])
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc})", path) from exc
    if not table or len(table[0]) < 2:
        raise DataError(f"{path}: the header must be 'image,labels' or 'image,<class>,<class>...', got "
                        f"{table[0] if table else 'an empty file'}", path)
    header = [h.strip() for h in table[0]]
    list_form = len(header) == 2 and header[1].lower() in LIST_COLUMNS
    rows = []
    for line, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} columns, the header has {len(header)}", path)
        image = row[0].strip()
        if not image:
            raise DataError(f"{path}, line {line}: empty image path", path)
        if list_form:
            rows.append((line, image, [s.strip() for s in row[1].split(";") if s.strip()]))
            continue
        labels = []
        for name, cell in zip(header[1:], row[1:]):
            if cell.strip() not in ("0", "1"):
                raise DataError(f"{path}, line {line}, column {name!r}: {cell!r} is not 0 or 1 (one column per "
                                "class holds 0 or 1)", path)
            if cell.strip() == "1":
                labels.append(name)
        rows.append((line, image, labels))
    if not rows:
        raise DataError(f"{path} lists no images", path)
    return LabelRows(path, rows, None if list_form else header[1:])


def classes_file(root: Path, folder: Path) -> list[str] | None:
    """The names in ``classes.txt`` (the split folder's, else the root's), or None."""
    for candidate in (folder / "classes.txt", root / "classes.txt"):
        if candidate.is_file():
            return [line.strip() for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


def class_order(source: Any, split: str) -> tuple[Path, LabelRows, list[str]]:
    """The split's folder, its parsed labels and the class order the data itself gives."""
    root = Path(source).expanduser()
    folder = split_root(root, split)
    labels = read_labels(label_file(folder))
    found = sorted({lab for _, _, row in labels.rows for lab in row})
    return folder, labels, classes_file(root, folder) or labels.header_classes or found


def index_items(folder: Path, labels: LabelRows, names: Sequence[str]) -> list[tuple[Path, list[int]]]:
    """``(image path, label indices)`` for every row, checked against ``names`` and the disk."""
    index = {n: i for i, n in enumerate(names)}
    items = []
    for line, rel, row in labels.rows:
        unknown = [lab for lab in row if lab not in index]
        if unknown:
            raise DataError(f"{labels.path}, line {line} ({rel}): unknown label(s) {unknown}; the classes are "
                            f"{list(names)[:10]}{' ...' if len(names) > 10 else ''} (list every label in "
                            "classes.txt, or load the model with class_names=[...] to give it a head for them)",
                            labels.path)
        image = folder / rel
        if not image.is_file():
            raise DataError(f"{labels.path}, line {line}: image {image} does not exist", image)
        items.append((image, sorted({index[lab] for lab in row})))
    return items


class MultiLabelDataset(torch.utils.data.Dataset):
    """Samples ``(image tensor, multi-hot float (K,), path)``; unreadable images skipped in training."""

    def __init__(self, items: list[tuple[Path, list[int]]], class_names: Sequence[str],
                 transform: Callable[[Any], Any], *, train: bool) -> None:
        self.items, self.class_names, self.transform = items, list(class_names), transform
        self.tracker = SkipTracker(len(items), train=train)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int) -> tuple[Tensor, Tensor, str]:
        path, labels = self.items[i]
        target = torch.zeros(len(self.class_names))
        target[labels] = 1.0
        return self.transform(load_image(path)).as_subclass(Tensor), target, str(path)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, str]:
        return load_or_skip(i, len(self.items), self._load, self.tracker)


def multi_hot(target: Any, names: Sequence[str], where: str) -> Tensor:
    """A user's multi-label target as a float multi-hot ``(K,)``: a 0/1 vector of length K (tensor, array,
    or a list as a CSV row gives it), or a list/tuple/set of class indices or class names.

    A list of K zeros and ones is a 0/1 vector when it cannot be a list of distinct class indices (a value
    repeats, or it holds floats/bools); ``[0, 1]`` with K=2 could be either and is refused by name.
    """
    k = len(names)
    if isinstance(target, (Tensor, np.ndarray)) and tuple(target.shape) == (k,):
        vec = torch.as_tensor(target).float()
        if bool(((vec != 0) & (vec != 1)).any()):
            raise DataError(f"{where}: a multi-hot target holds only 0 and 1, got {vec.tolist()[:8]}")
        return vec
    if _zeros_and_ones(target, k):
        distinct_ints = all(type(v) is int or isinstance(v, np.integer) for v in target) and \
            len(set(target)) == len(target)
        if not distinct_ints:
            return torch.tensor([float(v) for v in target])
        raise DataError(f"{where}: the target {list(target)} is ambiguous with {k} classes: a 0/1 vector or the "
                        f"class indices {list(target)}? Give a tensor/array for a 0/1 vector, or class names")
    if isinstance(target, (list, tuple, set)):
        index = {n: i for i, n in enumerate(names)}
        out = torch.zeros(k)
        for item in target:
            i = index.get(item) if isinstance(item, str) else int(item) if isinstance(item, (int, np.integer)) else None
            if i is None or not 0 <= i < k:
                raise DataError(f"{where}: label {item!r} is not one of the {k} classes {list(names)[:8]}")
            out[i] = 1.0
        return out
    raise DataError(f"{where}: the target is a {type(target).__name__}; expected a 0/1 vector of length {k}, or a "
                    "list of class indices or names")


def _zeros_and_ones(target: Any, k: int) -> bool:
    """Whether ``target`` is a list/tuple of ``k`` numbers, each 0 or 1 (a possible multi-hot row)."""
    numbers = (bool, int, float, np.bool_, np.integer, np.floating)
    return isinstance(target, (list, tuple)) and len(target) == k and \
        all(isinstance(v, numbers) and v in (0, 1) for v in target)


def multilabel_sample(transform: Callable[[Any], Any], names: Sequence[str], name: str, sample: Any,
                      index: int) -> Any:
    """``(image, target)`` -> ``(transform(image), multi-hot, "<name[index]>")``; the zoo form passes."""
    from .formats.adapt import _bad, _image

    if isinstance(sample, (tuple, list)) and len(sample) == 3 and isinstance(sample[2], str):
        return sample
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise _bad(name, index, sample, "(image, labels): a 0/1 vector, or a list of class indices or names")
    where = f"{name}[{index}]"
    return transform(_image(sample[0], where)).as_subclass(Tensor), multi_hot(sample[1], names, where), f"<{where}>"
