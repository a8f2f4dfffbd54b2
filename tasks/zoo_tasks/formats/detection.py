"""Which detection reader a source needs: COCO json, YOLO txt or Pascal VOC xml, one :class:`CocoIndex` out.

A source is a folder (its format detected by :func:`zoo_core.data.layouts.detect_format`, or named by
``fmt``), a file (``.json``: COCO; ``.yaml``: YOLO's data.yaml; ``ImageSets/Main/<split>.txt``: VOC)
or a pair ``(images_dir, annotations.json)``. A folder in which no format is recognised is read as COCO,
whose error names what it looked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from zoo_core.data.folders import split_dirs
from zoo_core.data.layouts import detect_format, find_layouts
from zoo_core.errors import DataError

from ..det_data import CocoIndex, category_names, read_coco, resolve_source
from .voc import read_voc, voc_class_names
from .yolo import read_yolo, yolo_class_names


def detection_format(source: Any, split: str, fmt: str | None = None) -> tuple[str, Any]:
    """``(format, source to read)`` for a detection source (see the module docstring)."""
    if isinstance(source, (tuple, list)):
        return "coco", source
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return "yolo", path
        if path.suffix == ".txt" and path.parent.parent.name == "ImageSets":
            return "voc", path
        return "coco", path
    if fmt in (None, "auto") and not any(lay.task == "detection" for lay in find_layouts(path)):
        return "coco", path  # nothing recognised: the COCO reader's error says what it looked for
    layout = detect_format(path, task="detection", format=fmt)
    if layout.format == "voc":
        present = split_dirs(path)  # a root with train/ and val/, each a VOC folder
        return "voc", present.get(split, path) if present else path
    return layout.format, path


def read_detection(source: Any, split: str, *, fmt: str | None = None, class_names: Sequence[str] | None = None,
                   train: bool = True, filter_empty: bool = False, require_boxes: bool = True,
                   errors: list[DataError] | None = None) -> CocoIndex:
    """The detection data at ``source`` (any format), boxes cleaned and labels in ``class_names`` order."""
    name, where = detection_format(source, split, fmt)
    if name == "yolo":
        return read_yolo(where, split, class_names=class_names, train=train, filter_empty=filter_empty,
                         require_boxes=require_boxes, errors=errors)
    if name == "voc":
        return read_voc(where, split, class_names=class_names, train=train, filter_empty=filter_empty,
                        require_boxes=require_boxes, errors=errors)
    json_path, images_dir = resolve_source(where, split)
    roots = [Path(where)] if not isinstance(where, (tuple, list)) and Path(where).is_dir() else []
    return read_coco(json_path, images_dir, class_names=class_names, train=train, filter_empty=filter_empty,
                     roots=roots, require_boxes=require_boxes)


def detection_class_names(source: Any, split: str, fmt: str | None = None) -> list[str] | None:
    """The class names a detection source defines, in label order, without reading its images."""
    name, where = detection_format(source, split, fmt)
    if name == "yolo":
        return yolo_class_names(where, split)
    if name == "voc":
        return voc_class_names(where)[0]
    return category_names(resolve_source(where, split)[0])
