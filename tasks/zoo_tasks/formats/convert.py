"""``zoo data convert``: detection data from one format to another (COCO -> YOLO, YOLO -> COCO, VOC -> COCO).

Every split the source defines is read by the zoo's own reader (boxes cleaned and warned about as
training would see them; labels in the first split's class order for every split) and written with
its images copied: COCO as ``<split>/annotations.json`` + ``<split>/images/`` (category ids 1..K in
label order), YOLO as ``images/<split>``, ``labels/<split>``, ``data.yaml`` (``names`` in label order).
A source without splits is written without split folders. Crowd (COCO ``iscrowd``, VOC ``difficult``)
boxes stay crowd in COCO and are left out of YOLO, which has no such flag. The output folder must be
new or empty: nothing of the user's is ever replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from zoo_core.errors import DataError

from ..det_data import CocoIndex
from .check import splits_of
from .detection import detection_format, read_detection
from .yolo import relative_names, write_yolo

#: (from, to) pairs ``zoo data convert`` writes
CONVERSIONS = (("coco", "yolo"), ("yolo", "coco"), ("voc", "coco"), ("coco", "coco"), ("yolo", "yolo"))


def read_all(source: Any, fmt: str) -> dict[str, CocoIndex]:
    """Every split of ``source`` (``{"": index}`` when it has none), labels in the first split's order."""
    splits = splits_of(source, None)
    is_split = len(splits) > 1 or _has_split(source, splits[0])
    out: dict[str, CocoIndex] = {}
    names = None
    for split in splits:
        index = read_detection(source, split, fmt=fmt, class_names=names, train=False, require_boxes=False)
        names = names or index.class_names
        out[split if is_split else ""] = index
    return out


def _has_split(source: Any, split: str) -> bool:
    from zoo_core.data.folders import dataset_splits

    if isinstance(source, (tuple, list)):
        return False
    path = Path(source)
    if path.is_file():
        return path.suffix in (".yaml", ".yml")
    return split in dataset_splits(path)


def write_coco(indexes: dict[str, CocoIndex], out: Path) -> Path:
    """Write ``{split: index}`` as COCO under ``out``; return the first annotations.json written."""
    first = None
    for split, index in indexes.items():
        folder = out / split if split else out
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for rec, rel in zip(index.records, relative_names([r.path for r in index.records], index.images_dir)):
            (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rec.path, folder / "images" / rel)
            images.append({"id": rec.image_id, "file_name": rel.as_posix(), "width": rec.width, "height": rec.height})
            for (x0, y0, x1, y1), label, area, crowd in zip(rec.boxes, rec.labels, rec.areas, rec.crowd):
                anns.append({"id": len(anns) + 1, "image_id": rec.image_id, "category_id": label + 1,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": int(crowd)})
        coco = {"images": images, "annotations": anns,
                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(index.class_names)]}
        (folder / "annotations.json").write_text(json.dumps(coco))
        first = first or folder / "annotations.json"
    assert first is not None
    return first


def convert_detection(source: Any, out_dir: str | Path, *, src_format: str = "auto", dst_format: str) -> Path:
    """Convert detection data (see the module docstring); returns the file a reader takes (json or data.yaml)."""
    src = detection_format(source, "train", src_format)[0] if src_format in (None, "auto") else src_format
    if (src, dst_format) not in CONVERSIONS:
        raise DataError(f"zoo data convert: {src} -> {dst_format} is not supported; supported: "
                        + ", ".join(f"{a} -> {b}" for a, b in CONVERSIONS if a != b))
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder; converting never writes over files, pass a new "
                        "folder", out)
    indexes = read_all(source, src)
    out.mkdir(parents=True, exist_ok=True)
    return write_yolo(indexes, out) if dst_format == "yolo" else write_coco(indexes, out)
