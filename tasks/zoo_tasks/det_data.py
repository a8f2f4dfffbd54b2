"""COCO detection data: find, validate and read a COCO json with its images.

Sources: a directory holding ``annotations.json`` (or ``instances.json``, Roboflow's
``_annotations.coco.json``, Label Studio's ``result.json``, ``annotations/instances*.json`` as COCO
and CVAT write it), a root with ``train/`` and ``val/`` such directories, a ``.json`` path, or an
explicit ``(images_dir, json_path)`` pair. The json is read with pycocotools. Each ``file_name`` is
looked up in the images folder (``images/`` beside the json, ``<root>/images`` or ``<root>/train2017``
for ``annotations/instances_train2017.json``), then the json's folder, then the dataset root: the
first that holds it wins, so ``images/0001.jpg`` next to Label Studio's ``result.json`` is found. An
image in none of them is named with every place looked (an error when no image is found at all).
Other formats (YOLO, Pascal VOC) are read into the same :class:`CocoIndex` by :mod:`.formats`.

Labels: COCO category ids (any integers) become contiguous labels 0..K-1 in ascending id order
(or in the order of ``class_names`` when given); the class names are the categories' names. A
detector that reserves 0 for background shifts by one inside its own wrapper, never here.

Bad annotations (see BAD_INPUTS.md): a box with zero/negative size is dropped and one wholly
outside its image is dropped, one partly outside is clamped (each warned with the annotation ids);
an unknown ``category_id``/``image_id``, a malformed or non-finite ``bbox`` or a duplicate annotation
id is a :class:`DataError` naming the annotation, and so are sections that are not lists, ids that are
not integers, duplicate image or category ids, duplicate category names and an image without
``file_name`` (:mod:`.coco_checks`); a polygon ``segmentation`` with fewer than 3 points is warned
about (unused for boxes, fatal to COCO mask tools); ``iscrowd=1`` boxes are kept out of training
targets but passed to COCOeval as crowd regions; images without boxes are negatives (``filter_empty``
drops them); an empty file, or a training set with no box left, is an error before training starts,
and so is an evaluation set without any usable box (every COCO number would be undefined, -1).
An image without width/height in the json gets its size from the file header, EXIF orientation applied.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from zoo_core.data.folders import DETECTION_FILES
from zoo_core.data.layouts import SPLITS, coco_files
from zoo_core.data.images import load_image, pil_to_tensor
from zoo_core.data.robust import SkipTracker, load_or_skip
from zoo_core.errors import DataError, warn

from .coco_checks import check_coco

ANNOTATION_NAMES = DETECTION_FILES  # one list: zoo_core reads the same names to tell detection data apart


@dataclass
class ImageRecord:
    """One image and its cleaned annotations (boxes xyxy in the image's pixels)."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)
    #: where each kept box came from (its annotation id, a ``file:line``), in step with ``boxes``: how a task
    #: reading more per annotation (keypoints, masks) pairs its data with the cleaned boxes
    ann_ids: list[Any] = field(default_factory=list)
    size_from_header: bool = False  # width/height read from the file (the json has none), not the json
    looked: tuple[Path, ...] = ()  # the places an image found in none of them was looked for

    @property
    def n_train_boxes(self) -> int:
        return sum(1 for c in self.crowd if not c)


@dataclass
class CocoIndex:
    """A validated COCO file: its images (with cleaned boxes), class names and category ids.

    Every detection format is read into this (``json_path`` is then the file or folder the annotations
    came from: a YOLO ``data.yaml``/``labels/``, a VOC ``Annotations/``), so one dataset class, one
    set of transforms and COCOeval serve them all.
    """

    json_path: Path
    images_dir: Path
    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]


# ---- finding the files --------------------------------------------------------------------------
def resolve_source(source: Any, split: str) -> tuple[Path, Path]:
    """``(json_path, images_dir)`` for any accepted source form (see the module docstring)."""
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise DataError(f"a detection source pair must be (images_dir, annotations_json), got {source!r}")
        a, b = Path(source[0]), Path(source[1])
        json_path, images = (a, b) if a.suffix == ".json" else (b, a)
        if not json_path.is_file():
            raise DataError(f"{json_path}: annotation file not found", json_path)
        if not images.is_dir():
            raise DataError(f"{images}: images directory not found", images)
        return json_path, images
    path = Path(source)
    if path.is_file() and path.suffix == ".json":
        return path, _images_beside(path)
    if path.is_dir():
        for folder in (path, path / split):
            found = coco_files(folder)
            if found:
                return found[0], _images_beside(found[0])
        raise DataError(f"{path}: no COCO annotation file ({' / '.join(ANNOTATION_NAMES)}, "
                        f"annotations/instances*.json) in it or in {path / split}, nor YOLO labels/ + images/ or VOC "
                        "Annotations/ + JPEGImages/; pass a directory holding annotations.json, or (images_dir, json)",
                        path)
    raise DataError(f"{path}: detection data not found (expected a directory with annotations.json, a "
                    ".json file, or an (images_dir, json) pair)", path)


def _images_beside(json_path: Path) -> Path:
    """``images/`` beside the json; for ``annotations/instances_train2017.json`` (COCO, CVAT), ``../images``
    or ``../train2017``; else the json's own folder."""
    folders = [json_path.parent / "images"]
    if json_path.parent.name == "annotations":
        folders += [json_path.parent.parent / "images",
                    json_path.parent.parent / json_path.stem.removeprefix("instances_")]
    return next((f for f in folders if f.is_dir()), json_path.parent)


def image_bases(json_path: Path, images_dir: Path, roots: Sequence[Path] = ()) -> list[Path]:
    """Where a ``file_name`` is looked up, in order: the images folder, the json's folder, the dataset
    root(s) (``roots``, and the folder above an ``annotations/`` or split folder holding the json)."""
    above = [json_path.parent.parent] if json_path.parent.name.lower() in (
        "annotations", *(n for names in SPLITS.values() for n in names)) else []
    return list(dict.fromkeys(Path(p) for p in (images_dir, json_path.parent, *roots, *above)))


# ---- reading and validating ---------------------------------------------------------------------
def read_coco(json_path: Path, images_dir: Path, *, class_names: Sequence[str] | None = None,
              train: bool = True, filter_empty: bool = False, roots: Sequence[Path] = (),
              require_boxes: bool = True, raw: dict[str, Any] | None = None) -> CocoIndex:
    """Read and validate a COCO json (see the module docstring for what is dropped or refused).

    ``roots``: dataset root folders where a ``file_name`` is also looked for (:func:`image_bases`);
    ``require_boxes=False`` (conversion, ``zoo data check``) accepts a file without usable boxes; ``raw``:
    the file already read by :func:`load_coco_json` (a task reading more of it parses it once)."""
    from pycocotools.coco import COCO

    raw = load_coco_json(json_path) if raw is None else raw
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = raw
        coco.createIndex()
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])
    names, cat_ids = _label_order(cats, class_names, json_path)
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    problems: dict[str, list[Any]] = {"zero": [], "outside": [], "clamped": []}
    bases = image_bases(json_path, images_dir, roots)
    records = []
    for img in sorted(coco.imgs.values(), key=lambda i: i["id"]):
        rec = _record(img, bases, json_path)
        for ann in coco.imgToAnns.get(img["id"], []):
            _add_box(rec, ann, label_of[ann["category_id"]], problems)
        records.append(rec)
    _warn(json_path, problems)
    return finish_index(json_path, images_dir, records, names, cat_ids, train=train, filter_empty=filter_empty,
                        require_boxes=require_boxes)


def finish_index(source: Path, images_dir: Path, records: list[ImageRecord], names: list[str], cat_ids: list[int],
                 *, train: bool, filter_empty: bool, require_boxes: bool = True) -> CocoIndex:
    """The checks every detection format's records pass (``source`` names the annotations in messages):
    images found somewhere, a box to train on, a box to evaluate against (unless not ``require_boxes``)."""
    _check_found(source, records)
    if not require_boxes:
        return CocoIndex(source, images_dir, records, names, cat_ids)
    if filter_empty:
        records = [r for r in records if r.n_train_boxes]
    if train and not any(r.n_train_boxes for r in records):
        raise DataError(f"{source}: no image has a usable (non-crowd, valid) box after filtering; nothing "
                        "to train on. Check the bbox values ([x, y, width, height] in pixels)", source)
    if not train and records and not any(r.n_train_boxes for r in records):
        raise DataError(f"{source}: no boxes in this evaluation split ({len(records)} image(s), no usable "
                        "non-crowd box): mAP is undefined (COCOeval would report -1 for every number). Add "
                        "annotations or choose another validation split", source)
    if not records:
        raise DataError(f"{source}: no image left (filter_empty dropped every image)", source)
    return CocoIndex(source, images_dir, records, names, cat_ids)


def load_coco_json(json_path: Path) -> dict[str, Any]:
    """The parsed COCO file, checked (:func:`.coco_checks.check_coco`); errors name the file."""
    try:
        raw = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{json_path}: not a readable JSON file ({exc})", json_path) from exc
    check_coco(raw, json_path)
    return raw


def category_names(json_path: Path) -> list[str]:
    """The class names of a COCO file in label order (ascending category id), without indexing its images."""
    return _label_order(coco_categories(json_path), None, json_path)[0]


def coco_categories(json_path: Path) -> list[dict[str, Any]]:
    """A COCO file's categories, sorted by id. Parsed once per version of the file (path, size and
    modification time): ``zoo train`` asks for the class names and then the keypoint layout, and COCO's
    own annotation files take seconds to parse."""
    stat = json_path.stat()
    return copy.deepcopy(_categories(json_path.resolve(), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _categories(json_path: Path, size: int, mtime_ns: int) -> list[dict[str, Any]]:
    return sorted(load_coco_json(json_path)["categories"], key=lambda c: c["id"])


def _label_order(cats: list[dict[str, Any]], class_names: Sequence[str] | None, json_path: Path
                 ) -> tuple[list[str], list[int]]:
    names = [str(c.get("name", c["id"])) for c in cats]
    if class_names is None:
        return names, [c["id"] for c in cats]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{json_path}: categories named {twice} appear more than once, so they cannot be matched "
                        "to the model's classes by name; rename them", json_path)
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise DataError(f"{json_path}: categories {unknown} are not among the model's classes "
                        f"{list(class_names)[:20]}; load the model with class_names= matching the data", json_path)
    by_name = {str(c.get("name", c["id"])): c["id"] for c in cats}
    return list(class_names), [by_name.get(n, -1 - i) for i, n in enumerate(class_names)]


def find_image(name: str, bases: Sequence[Path]) -> tuple[Path, tuple[Path, ...]]:
    """``(path, ())`` for the first ``base / name`` that exists, else ``(bases[0] / name, every place looked)``."""
    candidates = [Path(base) / name for base in bases]
    found = next((c for c in candidates if c.is_file()), None)
    return (found, ()) if found is not None else (candidates[0], tuple(dict.fromkeys(candidates)))


def _check_found(source: Path, records: list[ImageRecord]) -> None:
    """No image found anywhere: an error naming the places looked; some missing: a warning (each fails or is
    skipped, named, when it is read)."""
    missing = [r for r in records if r.looked]
    if not missing:
        return
    places = ", ".join(str(p) for p in missing[0].looked)
    if len(missing) == len(records):
        raise DataError(f"{source}: none of its {len(records)} image(s) was found; the first was looked for at "
                        f"{places}. Put the images there, or pass (images_dir, annotations) explicitly",
                        missing[0].path)
    warn(f"{source}: {len(missing)} of {len(records)} image(s) not found (the first, {missing[0].path.name}, was "
         f"looked for at {places}); training skips them, evaluation stops at them")


def _record(img: dict[str, Any], bases: Sequence[Path], json_path: Path) -> ImageRecord:
    path, looked = find_image(img["file_name"], bases)
    width, height = img.get("width"), img.get("height")
    if width and height:
        return ImageRecord(img["id"], path, int(width), int(height), looked=looked)
    if looked:
        raise DataError(f"{json_path}: image {img['id']} has no width/height and its file {img['file_name']!r} was "
                        f"found in none of {', '.join(map(str, looked))}; add width/height or fix the file_name", path)
    try:
        width, height = _header_size(path)
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{json_path}: image {img['id']} has no width/height and {path} cannot be read "
                        f"({exc}); add width/height or fix the file_name", path) from exc
    return ImageRecord(img["id"], path, width, height, size_from_header=True)


#: EXIF orientations that turn the stored image by 90 degrees (transpose, 90 cw, transverse, 90 ccw)
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def _header_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`load_image` will show it: EXIF orientation applied."""
    with Image.open(path) as im:  # header (and EXIF) only, not the pixels of a JPEG
        width, height = im.size
        try:
            orientation = im.getexif().get(0x0112)  # ExifTags.Base.Orientation
        except (OSError, ValueError, SyntaxError):  # a broken EXIF block: no orientation to apply
            orientation = None
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _add_box(rec: ImageRecord, ann: dict[str, Any], label: int, problems: dict[str, list[Any]]) -> None:
    add_box(rec, ann["bbox"], label, problems, ann["id"], area=ann.get("area"), crowd=bool(ann.get("iscrowd", 0)))


def add_box(rec: ImageRecord, xywh: Sequence[float], label: int, problems: dict[str, list[Any]], where: Any, *,
            area: float | None = None, crowd: bool = False) -> None:
    """Add a ``[x, y, width, height]`` pixel box to ``rec``: a box of zero size or wholly outside the image is
    dropped, one partly outside clamped, each noted in ``problems`` under ``where`` (an annotation id, a
    ``file:line``) for :func:`warn_problems`. Every format goes through here, so all clean boxes alike."""
    x, y, w, h = (float(v) for v in xywh)
    if w <= 0 or h <= 0:
        problems["zero"].append(where)
        return
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(rec.width)), min(y + h, float(rec.height))
    if x1 <= x0 or y1 <= y0:
        problems["outside"].append(where)
        return
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        problems["clamped"].append(where)
    rec.boxes.append([x0, y0, x1, y1])
    rec.labels.append(label)
    rec.areas.append(float(area or (x1 - x0) * (y1 - y0)))
    rec.crowd.append(crowd)
    rec.ann_ids.append(where)


def _warn(json_path: Path, problems: dict[str, list[Any]]) -> None:
    warn_problems(json_path, problems, "annotation ids")


def warn_problems(source: Path, problems: dict[str, list[Any]], unit: str) -> None:
    """One warning per kind of box :func:`add_box` dropped or clamped, naming up to 10 of them (``unit``:
    what the names are, ``"annotation ids"``, ``"lines"``)."""
    what = {"zero": "dropped {n} box(es) with zero or negative width/height",
            "outside": "dropped {n} box(es) wholly outside their image",
            "clamped": "clamped {n} box(es) partly outside their image to the image"}
    for key, ids in problems.items():
        if ids:
            shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
            warn(f"{source}: {what[key].format(n=len(ids))} ({unit} {shown})")


# ---- the dataset --------------------------------------------------------------------------------
def train_transform(hflip: float = 0.5) -> v2.Compose:
    """Joint image + box augmentation for training (boxes follow the image)."""
    return v2.Compose([v2.RandomHorizontalFlip(hflip), v2.ToDtype(torch.float32, scale=True)])


def eval_transform() -> v2.Compose:
    """No geometry at evaluation: the model resizes inside and maps boxes back to the image."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True)])


class CocoDetection(torch.utils.data.Dataset):
    """Samples ``(image (3,H,W) float in [0,1], target {boxes xyxy, labels}, meta)``.

    ``meta`` carries what COCOeval needs (image id, every ground-truth box in xywh with its
    label, area and crowd flag), so metrics need no access to the file. Unreadable images are
    skipped with a warning in training and raise in evaluation (:mod:`zoo_core.data.robust`).
    """

    def __init__(self, index: CocoIndex, transform: v2.Transform, *, train: bool) -> None:
        self.index, self.transform, self.train = index, transform, train
        self.class_names = index.class_names
        self.tracker = SkipTracker(len(index.records), train=train)

    def __len__(self) -> int:
        return len(self.index.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        return load_or_skip(i, len(self), self._load, self.tracker)

    def _load(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        rec = self.index.records[i]
        if rec.looked:
            raise DataError(f"{rec.path.name} (image {rec.image_id} of {self.index.json_path}): image file not "
                            f"found at {', '.join(map(str, rec.looked))}", rec.path)
        img = load_image(rec.path)
        if img.size != (rec.width, rec.height):
            src = self.index.json_path
            where, fix = ((f"its file header (EXIF orientation applied), read with {src}, which has no "
                           "width/height", "the file changed since: restore it or read the data again")
                          if rec.size_from_header else
                          (f"width/height in {src}", f"fix width/height in {src} (and the boxes) or the image"))
            raise DataError(f"{rec.path}: expected {rec.width}x{rec.height} (from {where}) but the image (after its "
                            f"EXIF orientation) is {img.size[0]}x{img.size[1]}; {fix}", rec.path)
        return record_sample(pil_to_tensor(img), rec, self.transform)


def record_sample(image: torch.Tensor, rec: ImageRecord, transform: v2.Transform
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """A detection sample from an image ``(3, H, W)`` float in [0, 1] and its record: ``transform`` applied to
    image and training boxes (crowd boxes left out), every box in ``meta`` for COCOeval."""
    keep = [k for k, c in enumerate(rec.crowd) if not c]
    boxes = torch.tensor([rec.boxes[k] for k in keep], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([rec.labels[k] for k in keep], dtype=torch.int64)
    image = tv_tensors.Image(image)
    bbs = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(rec.height, rec.width))
    image, bbs = transform(image, bbs)
    gt = torch.tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4)
    meta = {"image_id": rec.image_id, "source": str(rec.path), "orig_size": (rec.height, rec.width),
            "gt_boxes": torch.cat([gt[:, :2], gt[:, 2:] - gt[:, :2]], 1),  # xywh, as COCO
            "gt_labels": torch.tensor(rec.labels, dtype=torch.int64),
            "gt_areas": torch.tensor(rec.areas, dtype=torch.float64),
            "gt_crowd": torch.tensor(rec.crowd, dtype=torch.bool)}
    return image.as_subclass(torch.Tensor), {"boxes": bbs.as_subclass(torch.Tensor), "labels": labels}, meta
