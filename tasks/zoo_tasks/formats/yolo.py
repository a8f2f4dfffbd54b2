"""YOLO txt labels (Ultralytics, darknet, Label Studio and Roboflow exports), read and written.

Layout: images under an ``images`` folder, one ``.txt`` per image under ``labels`` at the same relative
path (``images/train/a.jpg`` -> ``labels/train/a.txt``, the last ``/images/`` of the path replaced, as
Ultralytics does; a ``.txt`` beside its image, darknet style, also counts). Splits: ``data.yaml``'s
``train:``/``val:`` (a folder, a list of folders or a ``.txt`` list of images, relative to its ``path:``
or its own folder), else ``images/<split>``, ``<split>/images``, else one split: ``images/``. Names:
``data.yaml``'s ``names`` (list or ``{id: name}``), else ``classes.txt``/``obj.names`` beside it, else the
model's ``class_names``.

A label line is ``class cx cy w h`` (fractions of the image), or a polygon ``class x1 y1 x2 y2 x3 y3 ...``
(YOLO-seg; its bounding box is used). Anything else is a :class:`DataError` naming the file and line: a
wrong number of values (a line with 4 numbers), a class id that is not a whole number or not in
``0..len(names)-1``, a value that is not a finite number, or values above :data:`MAX_FRACTION` (pixel
coordinates where fractions are expected). Boxes are then cleaned as COCO boxes are
(:func:`~..det_data.add_box`): zero-size and wholly-outside boxes dropped, partly-outside ones clamped,
warned with ``file:line``. An image without a label file, or with an empty one, is a negative.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from zoo_core.data.images import is_image_file
from zoo_core.data.layouts import SPLITS, YOLO_YAMLS
from zoo_core.errors import DataError

from ..det_data import CocoIndex, ImageRecord, _header_size, _label_order, add_box, finish_index, warn_problems
from .names import NamesFile, find_names, load_yaml

#: a coordinate above this is not a fraction of the image (pixels written where YOLO expects [0, 1])
MAX_FRACTION = 2.0


@dataclass
class YoloSplit:
    """One split of a YOLO dataset: its images (sorted), where they were listed, and the names file."""

    where: Path
    images: list[Path]
    names: NamesFile | None


def label_path(image: Path) -> Path:
    """The label file of ``image``: the last ``images`` folder of its path replaced by ``labels``, ``.txt``."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _listed(entry: Any, base: Path, yaml_file: Path, split: str) -> list[Path]:
    """The images a ``data.yaml`` split entry names (a folder, a .txt list, or a list of them)."""
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        rel = Path(str(item))
        candidates = [rel] if rel.is_absolute() else [base / rel, yaml_file.parent / rel]
        if str(item).startswith("../"):  # Roboflow writes ../train/images beside the yaml
            candidates.append(yaml_file.parent / str(item)[3:])
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DataError(f"{yaml_file}: {split}: {item!r} was not found (looked at "
                            f"{', '.join(map(str, dict.fromkeys(candidates)))}); fix the path or path:", yaml_file)
        if found.is_dir():
            out += _images_in(found)
        else:
            out += [found.parent / line.strip() for line in found.read_text().splitlines() if line.strip()]
    return out


def yolo_split(source: str | Path, split: str) -> YoloSplit:
    """The images of ``split`` in a YOLO dataset at ``source`` (a root, a split folder, or a data.yaml)."""
    source = Path(source).expanduser()
    yaml_file = source if source.suffix in (".yaml", ".yml") else \
        next((source / n for n in YOLO_YAMLS if (source / n).is_file()), None)
    root = yaml_file.parent if yaml_file is not None else source
    names = find_names(root)
    if yaml_file is not None:
        spec = load_yaml(yaml_file)
        base = Path(str(spec.get("path") or "."))
        base = base if base.is_absolute() else yaml_file.parent / base
        keys = [k for k in SPLITS.get(split, (split,)) if spec.get(k)]
        if keys:
            return YoloSplit(yaml_file, _listed(spec[keys[0]], base, yaml_file, split), names)
        if any(spec.get(k) for names_ in SPLITS.values() for k in names_):
            raise DataError(f"{yaml_file} has no {split}: entry (it lists "
                            f"{', '.join(k for k in ('train', 'val', 'test') if spec.get(k))}); add one, or pass the "
                            f"{split} data itself", yaml_file)
    layouts = [root / "images" / n for n in SPLITS.get(split, (split,))] + \
              [root / n / "images" for n in SPLITS.get(split, (split,))]
    folder = next((f for f in layouts if f.is_dir()), None)
    if folder is None:
        split_folders = [f for names_ in SPLITS.values() for n in names_
                         for f in (root / "images" / n, root / n / "images") if f.is_dir()]
        if split_folders:
            raise DataError(f"{root} holds {', '.join(str(f.relative_to(root)) for f in split_folders)} but no "
                            f"{split} split ({' or '.join(str(f.relative_to(root)) for f in layouts[:2])}); pass "
                            f"the {split} data itself", root)
        folder = root / "images"
    if not folder.is_dir():
        raise DataError(f"{root}: no images/ folder for YOLO data (looked for {folder})", root)
    return YoloSplit(folder, _images_in(folder), names or find_names(folder.parent))


def parse_line(line: str, path: Path, lineno: int, n_classes: int, names_from: str
               ) -> tuple[int, tuple[float, float, float, float]]:
    """``(class id, (cx, cy, w, h))`` of one label line, or a :class:`DataError` naming ``path:lineno``."""
    parts = line.split()
    where = f"{path}:{lineno}"
    if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
        raise DataError(f"{where}: {len(parts)} value(s) ({line!r}); a YOLO label line is 'class cx cy w h' (5 "
                        "values, fractions of the image size) or a polygon 'class x1 y1 x2 y2 x3 y3 ...'", path)
    try:
        cls_value = float(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise DataError(f"{where}: {line!r} holds a value that is not a number", path) from None
    if not cls_value.is_integer():
        raise DataError(f"{where}: class id {parts[0]!r} is not a whole number", path)
    cls = int(cls_value)
    if not 0 <= cls < n_classes:
        raise DataError(f"{where}: class id {cls} is out of range: {names_from} names {n_classes} class(es), ids "
                        f"0..{n_classes - 1}; fix the id or add the class", path)
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{where}: {line!r} holds NaN or Inf", path)
    if max(abs(v) for v in values) > MAX_FRACTION:
        raise DataError(f"{where}: values {values[:4]} are not fractions of the image size (YOLO coordinates are in "
                        "[0, 1]: x / width, y / height); these look like pixels", path)
    if len(values) == 4:
        return cls, (values[0], values[1], values[2], values[3])
    xs, ys = values[0::2], values[1::2]
    return cls, ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys))


def read_labels(path: Path, n_classes: int, names_from: str, errors: list[DataError] | None = None
                ) -> list[tuple[int, int, tuple[float, float, float, float]]]:
    """``(line number, class id, (cx, cy, w, h))`` for each box of a label file (none when it is missing).

    With ``errors`` given, a bad line is appended there and skipped (``zoo data check`` lists them all);
    without, it raises."""
    if not path.is_file():
        return []
    out = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, box = parse_line(line, path, lineno, n_classes, names_from)
        except DataError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        out.append((lineno, cls, box))
    return out


def data_names(split: YoloSplit, class_names: Sequence[str] | None) -> tuple[list[str], str]:
    """The class names the label ids index, and what gave them (for messages)."""
    if split.names is not None:
        return split.names.names, str(split.names.path)
    if class_names is not None:
        return list(class_names), "the model's class_names"
    raise DataError(f"{split.where}: YOLO labels hold class ids only and no data.yaml (names: [...]), classes.txt "
                    "or obj.names names them; add one, or load the model with class_names=[...]", split.where)


def read_yolo(source: str | Path, split: str, *, class_names: Sequence[str] | None = None, train: bool = True,
              filter_empty: bool = False, require_boxes: bool = True,
              errors: list[DataError] | None = None) -> CocoIndex:
    """A YOLO split as a :class:`CocoIndex` (labels in ``class_names`` order when given; see the module doc)."""
    ys = yolo_split(source, split)
    if not ys.images:
        raise DataError(f"{ys.where}: no image files for the {split} split", ys.where)
    names, names_from = data_names(ys, class_names)
    out_names, cat_ids = _label_order([{"id": i, "name": n} for i, n in enumerate(names)], class_names,
                                      Path(names_from))
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    problems: dict[str, list[Any]] = {"zero": [], "outside": [], "clamped": []}
    records = []
    for image_id, image in enumerate(ys.images, 1):
        try:
            width, height = _header_size(image)
        except OSError:  # unreadable: the dataset names it when it is read (skipped in training)
            records.append(ImageRecord(image_id, image, 1, 1, size_from_header=True))
            continue
        rec = ImageRecord(image_id, image, width, height, size_from_header=True)
        labels = label_path(image) if label_path(image).is_file() else image.with_suffix(".txt")
        for lineno, cls, (cx, cy, w, h) in read_labels(labels, len(names), names_from, errors):
            add_box(rec, ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height), label_of[cls],
                    problems, f"{labels.name}:{lineno}")
        records.append(rec)
    warn_problems(ys.where, problems, "lines")
    images_dir = Path(os.path.commonpath([p.parent for p in ys.images]))
    return finish_index(ys.where, images_dir, records, out_names, cat_ids, train=train, filter_empty=filter_empty,
                        require_boxes=require_boxes)


def yolo_class_names(source: str | Path, split: str) -> list[str] | None:
    """The names of a YOLO dataset (its data.yaml / classes.txt), ``None`` when it has none."""
    ys = yolo_split(source, split)
    return list(ys.names.names) if ys.names is not None else None


def write_yolo(indexes: dict[str, CocoIndex], out: Path) -> Path:
    """Write ``{split: index}`` as a YOLO dataset under ``out`` (``images/<split>``, ``labels/<split>``,
    ``data.yaml``; one split called ``""`` is written flat); crowd boxes have no YOLO form and are left out.
    Returns the ``data.yaml``. Values are written with 12 significant digits (a round trip keeps boxes to
    ~1e-12 relative)."""
    import yaml

    names = next(iter(indexes.values())).class_names
    spec: dict[str, Any] = {"path": ".", "names": dict(enumerate(names))}
    dropped = 0
    for split, index in indexes.items():
        images, labels = (out / kind / split if split else out / kind for kind in ("images", "labels"))
        if split:
            spec[split] = f"images/{split}"
        for rec, rel in zip(index.records, relative_names([r.path for r in index.records], index.images_dir)):
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rec.path, images / rel)
            lines = []
            for (x0, y0, x1, y1), label, crowd in zip(rec.boxes, rec.labels, rec.crowd):
                if crowd:
                    dropped += 1
                    continue
                cx, cy = (x0 + x1) / 2 / rec.width, (y0 + y1) / 2 / rec.height
                w, h = (x1 - x0) / rec.width, (y1 - y0) / rec.height
                lines.append(f"{label} {cx:.12g} {cy:.12g} {w:.12g} {h:.12g}")
            target = (labels / rel).with_suffix(".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(line + "\n" for line in lines))
    if dropped:
        from zoo_core.errors import warn

        warn(f"{dropped} crowd / difficult box(es) left out of the YOLO labels (YOLO has no crowd flag)")
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return out / "data.yaml"


def relative_names(paths: list[Path], folder: Path) -> list[Path]:
    """Where each image goes in a converted dataset: below ``folder`` as it lies (sub-folders kept); an image
    elsewhere (a COCO ``file_name`` resolved against the json's folder or the root) below the deepest folder
    all such images share, so ``a/1.jpg`` and ``b/1.jpg`` stay apart. Two images that would still land on
    one name are a :class:`DataError` naming both (one would silently replace the other and its labels)."""
    import os

    outside = [p for p in paths if not p.is_relative_to(folder)]
    base = Path(os.path.commonpath([p.parent for p in outside])) if outside else folder
    out, seen = [], {}
    for path in paths:
        rel = path.relative_to(folder if path.is_relative_to(folder) else base)
        key = rel.as_posix()
        if key in seen and seen[key] != path:
            raise DataError(f"{seen[key]} and {path} would both be written as {key}: rename one, or move the "
                            f"images into {folder}")
        seen[key] = path
        out.append(rel)
    return out
