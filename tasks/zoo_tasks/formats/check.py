"""``zoo data check``: read a dataset as training would, without a model, and list what is in it and wrong.

Each split is read by the task's own reader with ``require_boxes=False`` (an empty split is described,
not refused) and every image is decoded, so what training would trip over is found now: unreadable
images, images in no place looked, boxes outside their image or of zero size (dropped or clamped by the
reader: each is a problem here), bad label lines and xml files (named with their line), mask values
that are no class (named with the first pixel), masks of the wrong size or stored as JPEG.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from zoo_core.data.check import DataCheck, SplitCheck
from zoo_core.data.folders import dataset_splits, scan_image_folder
from zoo_core.data.images import load_image
from zoo_core.data.layouts import detect_format
from zoo_core.errors import DataError

from ..seg_data import IGNORE_INDEX, read_mask
from .detection import read_detection
from .masks import label_map_option, mask_source, palette_of


def splits_of(source: Any, split: str | None) -> list[str]:
    """The splits to check: ``split``, else every split the source defines, else one (read as ``train``)."""
    if split is not None:
        return [split]
    if isinstance(source, (tuple, list)):
        return ["train"]
    path = Path(source).expanduser()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from .names import load_yaml

        spec = load_yaml(path)
        return [s for s in ("train", "val", "test") if spec.get(s)] or ["train"]
    return list(dataset_splits(path)) or ["train"]


def _describe(source: Any, task: str, fmt: str | None) -> tuple[str, str]:
    """``(format, evidence)`` for the report's title."""
    if isinstance(source, (tuple, list)):
        return fmt or "pair", " + ".join(map(str, source))
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            layout = detect_format(path, task=task, format=fmt)
            return layout.format, layout.evidence
        except DataError:
            return fmt or "unknown", "no layout recognised"
    return fmt or path.suffix.lstrip("."), path.name


def _captured(run: Callable[[], Any], split: SplitCheck) -> Any:
    """``run()``; its warnings become problems of ``split`` and its DataError one too (``None`` returned)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run()
        except DataError as exc:
            split.problems.append(str(exc))
            result = None
    split.problems += [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return result


def _open_images(paths: Iterable[Path], split: SplitCheck) -> dict[Path, tuple[int, int]]:
    sizes = {}
    for path in paths:
        try:
            with load_image(path) as img:
                sizes[path] = img.size
        except DataError as exc:
            split.problems.append(str(exc))
    split.sizes.update(sizes.values())
    return sizes


def check_detection(source: Any, split: str | None = None, fmt: str | None = None) -> DataCheck:
    """The ``zoo data check`` report of detection data (see the module docstring)."""
    name, evidence = _describe(source, "detection", fmt)
    report = DataCheck(str(source), "detection", name, evidence)
    for s in splits_of(source, split):
        out = SplitCheck(s, what_counted="boxes")
        report.splits.append(out)
        errors: list[DataError] = []
        index = _captured(lambda: read_detection(source, s, fmt=fmt, train=False, require_boxes=False, errors=errors),
                          out)
        out.problems[:0] = [str(e) for e in errors]
        if index is None:
            continue
        out.images = len(index.records)
        out.class_names = list(index.class_names)
        counts = Counter(label for rec in index.records for label in rec.labels)
        out.per_class = {n: counts.get(i, 0) for i, n in enumerate(index.class_names)}
        out.objects_per_image = [len(rec.boxes) for rec in index.records]
        found = [rec for rec in index.records if not rec.looked]
        sizes = _open_images([rec.path for rec in found], out)
        for rec in found:
            if rec.path in sizes and sizes[rec.path] != (rec.width, rec.height):
                out.problems.append(f"{rec.path}: the annotations say {rec.width}x{rec.height}, the image is "
                                    f"{sizes[rec.path][0]}x{sizes[rec.path][1]}")
    return report


def check_segmentation(source: Any, split: str | None = None, fmt: str | None = None, label_map: Any = None,
                       palette: Any = None) -> DataCheck:
    """The ``zoo data check`` report of segmentation data (see the module docstring)."""
    name, evidence = _describe(source, "segmentation", fmt)
    report = DataCheck(str(source), "segmentation", name, evidence)
    for s in splits_of(source, split):
        out = SplitCheck(s, what_counted="images with")
        report.splits.append(out)
        src = _captured(lambda: mask_source(source, s, fmt=fmt, label_map=label_map_option(label_map)), out)
        if src is None:
            continue
        out.images = len(src.pairs)
        num_classes = len(src.class_names) if src.class_names else IGNORE_INDEX
        seen: Counter = Counter()
        sizes = _open_images([image for image, _ in src.pairs], out)
        for image, mask in src.pairs:
            if image not in sizes:
                continue
            try:
                arr = read_mask(mask, image_size=sizes[image], num_classes=num_classes,
                                palette=palette_of(src, palette), image_path=image, value_map=src.value_map)
            except DataError as exc:
                out.problems.append(str(exc))
                continue
            seen.update(int(v) for v in np.unique(arr) if v != IGNORE_INDEX)
        names = src.class_names or [str(v) for v in sorted(seen)]
        out.class_names = list(names)
        out.per_class = {n: seen.get(i if src.class_names else int(n), 0) for i, n in enumerate(names)}
        if not src.class_names:
            out.notes.append("no classes.txt / data.yaml names the classes: the values found are listed")
    return report


def check_classification(source: Any, split: str | None = None) -> DataCheck:
    """The ``zoo data check`` report of class folders (see the module docstring)."""
    report = DataCheck(str(source), "classification", "imagefolder", "class sub-folders")
    for s in splits_of(source, split):
        out = SplitCheck(s, what_counted="images")
        report.splits.append(out)
        index = _captured(lambda: scan_image_folder(source, s), out)
        if index is None:
            continue
        out.images = len(index.samples)
        out.class_names = list(index.class_names)
        out.per_class = index.counts()
        _open_images([path for path, _ in index.samples], out)
    return report

