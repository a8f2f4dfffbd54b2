"""Validation of a parsed COCO json before pycocotools indexes it (see :func:`check_coco`).

Each problem is a :class:`DataError` naming the json file, the offending entry (by id, or by position
when it has no usable id) and the fix, so nothing reaches pycocotools or the reader as a raw
TypeError/KeyError. COCO ids are integers; numbers are finite and never booleans.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zoo_core.errors import DataError, warn


def check_coco(raw: Any, json_path: Path) -> None:
    """Refuse a COCO file whose layout, ids or boxes are broken; fill in a missing ``annotations``."""
    if not isinstance(raw, dict):
        raise DataError(f"{json_path}: the top level is a {type(raw).__name__}, not a COCO object; a COCO file "
                        "is {'images': [...], 'annotations': [...], 'categories': [...]}", json_path)
    if not raw.get("images"):
        raise DataError(f"{json_path}: empty annotation file (no 'images'); a COCO file needs 'images', "
                        "'annotations' and 'categories'", json_path)
    if not raw.get("categories"):
        raise DataError(f"{json_path}: no 'categories'; list every class as {{'id': int, 'name': str}}", json_path)
    raw.setdefault("annotations", [])  # an image-info file (no boxes) has none
    for key in ("images", "categories", "annotations"):
        _check_list(raw, key, json_path)
    _normalise_numbers(raw)
    images = _check_images(raw["images"], json_path)
    cats = _check_categories(raw["categories"], json_path)
    _check_annotations(raw["annotations"], images, cats, json_path)


def _normalise_numbers(raw: dict[str, Any]) -> None:
    """Integral float ids (``1.0``, as pandas writes them) become ints, numeric-string sizes numbers.

    pycocotools and older readers accept these; refusing them would reject files that work elsewhere.
    """
    def as_int(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    for key, fields in (("images", ("id",)), ("categories", ("id",)),
                        ("annotations", ("id", "image_id", "category_id"))):
        for entry in raw[key]:
            for f in fields:
                if f in entry:
                    entry[f] = as_int(entry[f])
    for img in raw["images"]:
        for side in ("width", "height"):
            value = img.get(side)
            if isinstance(value, str) and value.strip().isdigit():
                img[side] = int(value)


def is_int(value: Any) -> bool:
    """An integer id (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (no NaN, inf or bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_list(raw: dict[str, Any], key: str, json_path: Path) -> None:
    value = raw[key]
    if not isinstance(value, list):
        raise DataError(f"{json_path}: '{key}' is {_describe(value)}, not a list; write it as a list of objects "
                        f"({'use [] for none' if key == 'annotations' else 'one per entry'})", json_path)
    for k, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise DataError(f"{json_path}: '{key}'[{k}] is {_describe(entry)}, not an object; every entry of "
                            f"'{key}' must be an object such as {{'id': int, ...}}", json_path)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}" if value is not None else "null"


def _check_id(entry: dict[str, Any], key: str, k: int, json_path: Path) -> int:
    """The integer ``id`` of ``key``'s ``k``-th entry."""
    if "id" not in entry:
        raise DataError(f"{json_path}: '{key}'[{k}] has no 'id'; give every entry of '{key}' a unique "
                        f"integer id ({_describe(entry)})", json_path)
    if not is_int(entry["id"]):
        raise DataError(f"{json_path}: '{key}'[{k}] has id {entry['id']!r} ({type(entry['id']).__name__}); "
                        "COCO ids are integers: renumber them (and every reference to them)", json_path)
    return entry["id"]


def _check_images(images: list[dict[str, Any]], json_path: Path) -> set[int]:
    file_of: dict[int, str] = {}
    for k, img in enumerate(images):
        iid = _check_id(img, "images", k, json_path)
        name = img.get("file_name")
        if not isinstance(name, str) or not name.strip():
            what = f"file_name {name!r}" if "file_name" in img else "no 'file_name'"
            raise DataError(f"{json_path}: image {iid} has {what}; give every image the path of its file, "
                            "relative to the images directory", json_path)
        if iid in file_of:
            raise DataError(f"{json_path}: duplicate image id {iid} ({file_of[iid]!r} and {name!r}); every image "
                            "needs a unique id (COCO tools would keep only the last, so boxes and scores would "
                            "go to the wrong image)", json_path)
        file_of[iid] = name
        for side in ("width", "height"):
            size = img.get(side)
            if size is not None and size != 0 and not (is_number(size) and size > 0):
                raise DataError(f"{json_path}: image {iid} ({name}) has {side} {size!r}; expected a positive "
                                "number of pixels, or leave width/height out to read them from the file", json_path)
    return set(file_of)


def _check_categories(cats: list[dict[str, Any]], json_path: Path) -> set[int]:
    name_of: dict[int, str] = {}
    id_of: dict[str, int] = {}
    for k, cat in enumerate(cats):
        cid = _check_id(cat, "categories", k, json_path)
        name = str(cat.get("name", cid))
        if cid in name_of:
            raise DataError(f"{json_path}: duplicate category id {cid} ({name_of[cid]!r} and {name!r}); every "
                            "category needs a unique id", json_path)
        if name in id_of:  # e.g. Roboflow's placeholder category 0 named like a class: usable, but ambiguous
            warn(f"{json_path}: categories {id_of[name]} and {cid} are both named {name!r}; they stay separate "
                 "classes with the same name (predictions cannot tell them apart): rename one, or merge them")
        name_of[cid], id_of[name] = name, cid
    return set(name_of)


def _check_annotations(anns: list[dict[str, Any]], images: set[int], cats: set[int], json_path: Path) -> None:
    seen: set[int] = set()
    bad_polygons: list[Any] = []
    for k, ann in enumerate(anns):
        aid = _check_id(ann, "annotations", k, json_path)
        if aid in seen:
            raise DataError(f"{json_path}: duplicate annotation id {aid}; every annotation needs a unique id",
                            json_path)
        seen.add(aid)
        cid, iid = ann.get("category_id"), ann.get("image_id")
        if not is_int(cid) or cid not in cats:
            raise DataError(f"{json_path}: annotation {aid} has category_id {cid!r}, which is not in "
                            f"'categories' (ids {sorted(cats)}); fix the id or add the category", json_path)
        if not is_int(iid) or iid not in images:
            raise DataError(f"{json_path}: annotation {aid} refers to image_id {iid!r}, which is not in 'images'",
                            json_path)
        box = ann.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(is_number(v) for v in box):
            raise DataError(f"{json_path}: annotation {aid} has bbox {box!r}; expected [x, y, width, height] as "
                            "4 finite numbers in pixels (no NaN/Infinity, no booleans)", json_path)
        area = ann.get("area")
        if area is not None and not (is_number(area) and area >= 0):
            raise DataError(f"{json_path}: annotation {aid} has area {area!r}; expected a finite number >= 0 "
                            "(or leave it out to use the box area)", json_path)
        polygons = ann.get("segmentation")
        if isinstance(polygons, list) and any(not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                                              for poly in polygons):
            bad_polygons.append(aid)
    if bad_polygons:
        shown = ", ".join(map(str, bad_polygons[:10])) + (" ..." if len(bad_polygons) > 10 else "")
        warn(f"{json_path}: {len(bad_polygons)} annotation(s) have a polygon 'segmentation' with fewer "
             f"than 3 (x, y) points or an odd number of values (ids {shown}); detection uses only "
             "'bbox', but COCO mask tools will fail on them: fix or drop those polygons")
