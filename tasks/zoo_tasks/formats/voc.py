"""Pascal VOC detection data: ``Annotations/<id>.xml`` + ``JPEGImages/`` + ``ImageSets/Main/<split>.txt``.

A root may be the ``VOC2012`` folder itself, or one above it (``VOCdevkit/VOC2012``, as torchvision lays
it out). The split is ``ImageSets/Main/<split>.txt`` (its first column); without ``ImageSets/Main`` every
xml is one split. Names: ``classes.txt``/``data.yaml``/``labelmap.txt`` beside the folders, else the
model's ``class_names``, else the sorted names found in every xml of ``Annotations/`` (so train and val
agree). Box corners are read as pixel coordinates as written (no 1-based shift); ``difficult=1`` objects
are kept out of training targets and passed to COCOeval as crowd (ignored), as COCO's ``iscrowd``.

Bad files are :class:`DataError` naming the file and line: an xml that does not parse (expat's line),
an object without ``name`` or ``bndbox``, a corner that is not a number, a name not among the classes.
A box outside the image is cleaned as COCO boxes are (:func:`~..det_data.add_box`): wholly outside or
empty dropped, partly outside clamped, each warned with ``file:line``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoo_core.data.layouts import voc_roots
from zoo_core.errors import DataError

from ..det_data import CocoIndex, ImageRecord, _header_size, add_box, finish_index, find_image, warn_problems
from .names import find_names

SPLIT_KINDS = ("Main", "Segmentation")


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels
    difficult: bool
    line: int


@dataclass
class VocFile:
    """One parsed annotation file."""

    path: Path
    filename: str
    width: int
    height: int
    objects: list[VocObject] = field(default_factory=list)


def voc_root(source: str | Path, need: str = "Annotations") -> Path:
    """The VOC folder (holding ``JPEGImages/`` and ``need``) at or below ``source``; one only."""
    source = Path(source).expanduser()
    if source.is_file():  # ImageSets/Main/val.txt
        source = source.parents[2]
    roots = [r for r in voc_roots(source) if (r / "JPEGImages").is_dir() and (r / need).is_dir()]
    if not roots:
        raise DataError(f"{source}: no Pascal VOC folders ({need}/ beside JPEGImages/) in it or in "
                        "VOCdevkit/VOC20xx/ below it", source)
    if len(roots) > 1:
        raise DataError(f"{source} holds {len(roots)} VOC datasets ({', '.join(str(r) for r in roots)}); pass one "
                        "of them", source)
    return roots[0]


def split_ids(root: Path, split: str, kind: str = "Main", source: Path | None = None) -> list[str] | None:
    """The image ids of ``split`` (``ImageSets/<kind>/<split>.txt``, or the list file ``source``); ``None``
    when the dataset has no ``ImageSets/<kind>`` (every file is one split)."""
    listing = source if source is not None and source.is_file() else root / "ImageSets" / kind / f"{split}.txt"
    if not listing.is_file():
        if not listing.parent.is_dir():
            return None
        have = sorted(p.stem for p in listing.parent.glob("*.txt") if "_" not in p.stem)
        raise DataError(f"{listing}: no {split} list in this VOC dataset (it has {', '.join(have) or 'none'}); "
                        "pass split= one of those", listing)
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def parse_voc(path: Path) -> VocFile:
    """One VOC xml; every problem a :class:`DataError` naming ``path`` and the line."""
    try:
        raw = path.read_bytes()
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else "?"
        raise DataError(f"{path}:{line}: not a parseable XML file ({exc}); fix or remove it", path) from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})", path) from exc
    if root.tag != "annotation":
        raise DataError(f"{path}:1: the root element is <{root.tag}>, not a VOC <annotation>", path)
    text = raw.decode("utf-8", errors="replace")
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object[\s>]", text)]
    size = root.find("size")
    dims = []
    for tag in ("width", "height"):
        value = _text(size, tag)
        try:
            dims.append(int(float(value)) if value else 0)
        except ValueError:
            raise DataError(f"{path}: <size><{tag}> is {value!r}, not a number", path) from None
    out = VocFile(path, _text(root, "filename") or f"{path.stem}.jpg", dims[0], dims[1])
    for k, obj in enumerate(root.findall("object")):
        line = lines[k] if k < len(lines) else 0
        name, box = _text(obj, "name"), obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{path}:{line}: an <object> without {'<name>' if not name else '<bndbox>'}", path)
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            value = _text(box, tag)
            try:
                corners.append(float(value))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(f"{path}:{line}: object {name!r} has <{tag}> {value!r}, not a number", path) from None
            if not math.isfinite(corners[-1]):
                raise DataError(f"{path}:{line}: object {name!r} has <{tag}> {value!r}", path)
        difficult = (_text(obj, "difficult") or "0") not in ("0", "false", "False")
        out.objects.append(VocObject(name, tuple(corners), difficult, line))  # type: ignore[arg-type]
    return out


def _all_xml(root: Path) -> list[Path]:
    return sorted((root / "Annotations").glob("*.xml"))


def voc_class_names(source: str | Path, class_names: Sequence[str] | None = None) -> tuple[list[str], str]:
    """The class names and what gave them: a names file, ``class_names``, or every xml's names, sorted."""
    root = voc_root(source)
    found = find_names(root, root.parent)
    if found is not None:
        return found.names, str(found.path)
    if class_names is not None:
        return list(class_names), "the model's class_names"
    names = sorted({obj.name for path in _all_xml(root) for obj in parse_voc(path).objects})
    return names, f"the object names in {root / 'Annotations'}"


def read_voc(source: str | Path, split: str, *, class_names: Sequence[str] | None = None, train: bool = True,
             filter_empty: bool = False, require_boxes: bool = True,
             errors: list[DataError] | None = None) -> CocoIndex:
    """A VOC split as a :class:`CocoIndex` (labels in ``class_names`` order when given; see the module doc).
    With ``errors`` given, a bad file is appended there and skipped (``zoo data check``)."""
    root = voc_root(source)
    ids = split_ids(root, split, "Main", Path(source))
    paths = [root / "Annotations" / f"{i}.xml" for i in ids] if ids is not None else _all_xml(root)
    names, names_from = (list(class_names), "the model's class_names") if class_names is not None else \
        voc_class_names(root)
    label_of = {n: i for i, n in enumerate(names)}
    problems: dict[str, list[Any]] = {"zero": [], "outside": [], "clamped": []}
    records = []
    for image_id, path in enumerate(paths, 1):
        try:
            rec = _voc_record(path, image_id, root, label_of, names_from, problems)
        except DataError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        records.append(rec)
    warn_problems(root / "Annotations", problems, "lines")
    return finish_index(root / "Annotations", root / "JPEGImages", records, names, list(range(len(names))),
                        train=train, filter_empty=filter_empty, require_boxes=require_boxes)


def _voc_record(path: Path, image_id: int, root: Path, label_of: dict[str, int], names_from: str,
                problems: dict[str, list[Any]]) -> ImageRecord:
    if not path.is_file():
        raise DataError(f"{path}: annotation file of image {path.stem} (listed in ImageSets) not found", path)
    ann = parse_voc(path)
    image, looked = find_image(ann.filename, [root / "JPEGImages"])
    if looked and Path(ann.filename).stem != path.stem:  # a <filename> that was renamed since: try the id
        image, looked = find_image(f"{path.stem}{Path(ann.filename).suffix or '.jpg'}", [root / "JPEGImages"])
    width, height, from_header = ann.width, ann.height, False
    if not (width and height) and not looked:
        (width, height), from_header = _header_size(image), True
    rec = ImageRecord(image_id, image, width or 1, height or 1, size_from_header=from_header, looked=looked)
    for obj in ann.objects:
        if obj.name not in label_of:
            raise DataError(f"{path}:{obj.line}: object {obj.name!r} is not one of the {len(label_of)} classes "
                            f"({', '.join(list(label_of)[:10])}) from {names_from}; fix the name or the classes",
                            path)
        x0, y0, x1, y1 = obj.box
        add_box(rec, (x0, y0, x1 - x0, y1 - y0), label_of[obj.name], problems, f"{path.name}:{obj.line}",
                crowd=obj.difficult)
    return rec
