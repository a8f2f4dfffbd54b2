"""COCO detection data: find, validate and read a COCO json with its images.

Sources: a directory holding ``annotations.json`` (images in ``images/`` beside it or next to it),
a root with ``train/`` and ``val/`` such directories, a ``.json`` path, or an explicit
``(images_dir, json_path)`` pair. The json is read with pycocotools.

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
    size_from_header: bool = False  # width/height read from the file (the json has none), not the json

    @property
    def n_train_boxes(self) -> int:
        return sum(1 for c in self.crowd if not c)


@dataclass
class CocoIndex:
    """A validated COCO file: its images (with cleaned boxes), class names and category ids."""

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
            for name in ANNOTATION_NAMES:
                if (folder / name).is_file():
                    return folder / name, _images_beside(folder / name)
        raise DataError(f"{path}: no COCO annotation file ({' / '.join(ANNOTATION_NAMES)}) in it or in "
                        f"{path / split}; pass a directory holding annotations.json, or (images_dir, json)", path)
    raise DataError(f"{path}: detection data not found (expected a directory with annotations.json, a "
                    ".json file, or an (images_dir, json) pair)", path)


def _images_beside(json_path: Path) -> Path:
    images = json_path.parent / "images"
    return images if images.is_dir() else json_path.parent


# ---- reading and validating ---------------------------------------------------------------------
def read_coco(json_path: Path, images_dir: Path, *, class_names: Sequence[str] | None = None,
              train: bool = True, filter_empty: bool = False) -> CocoIndex:
    """Read and validate a COCO json (see the module docstring for what is dropped or refused)."""
    from pycocotools.coco import COCO

    raw = load_coco_json(json_path)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = raw
        coco.createIndex()
    cats = sorted(coco.cats.values(), key=lambda c: c["id"])
    names, cat_ids = _label_order(cats, class_names, json_path)
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    problems: dict[str, list[int]] = {"zero": [], "outside": [], "clamped": []}
    records = []
    for img in sorted(coco.imgs.values(), key=lambda i: i["id"]):
        rec = _record(img, images_dir, json_path)
        for ann in coco.imgToAnns.get(img["id"], []):
            _add_box(rec, ann, label_of[ann["category_id"]], problems)
        records.append(rec)
    _warn(json_path, problems)
    if filter_empty:
        records = [r for r in records if r.n_train_boxes]
    if train and not any(r.n_train_boxes for r in records):
        raise DataError(f"{json_path}: no image has a usable (non-crowd, valid) box after filtering; nothing "
                        "to train on. Check the bbox values ([x, y, width, height] in pixels)", json_path)
    if not train and records and not any(r.n_train_boxes for r in records):
        raise DataError(f"{json_path}: no boxes in this evaluation split ({len(records)} image(s), no usable "
                        "non-crowd box): mAP is undefined (COCOeval would report -1 for every number). Add "
                        "annotations or choose another validation split", json_path)
    if not records:
        raise DataError(f"{json_path}: no image left (filter_empty dropped every image)", json_path)
    return CocoIndex(json_path, images_dir, records, names, cat_ids)


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
    cats = sorted(load_coco_json(json_path)["categories"], key=lambda c: c["id"])
    return _label_order(cats, None, json_path)[0]


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


def _record(img: dict[str, Any], images_dir: Path, json_path: Path) -> ImageRecord:
    path = images_dir / img["file_name"]
    width, height = img.get("width"), img.get("height")
    if width and height:
        return ImageRecord(img["id"], path, int(width), int(height))
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


def _add_box(rec: ImageRecord, ann: dict[str, Any], label: int, problems: dict[str, list[int]]) -> None:
    x, y, w, h = (float(v) for v in ann["bbox"])
    if w <= 0 or h <= 0:
        problems["zero"].append(ann["id"])
        return
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(rec.width)), min(y + h, float(rec.height))
    if x1 <= x0 or y1 <= y0:
        problems["outside"].append(ann["id"])
        return
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        problems["clamped"].append(ann["id"])
    rec.boxes.append([x0, y0, x1, y1])
    rec.labels.append(label)
    rec.areas.append(float(ann.get("area") or (x1 - x0) * (y1 - y0)))
    rec.crowd.append(bool(ann.get("iscrowd", 0)))


def _warn(json_path: Path, problems: dict[str, list[int]]) -> None:
    what = {"zero": "dropped {n} box(es) with zero or negative width/height",
            "outside": "dropped {n} box(es) wholly outside their image",
            "clamped": "clamped {n} box(es) partly outside their image to the image"}
    for key, ids in problems.items():
        if ids:
            shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
            warn(f"{json_path}: {what[key].format(n=len(ids))} (annotation ids {shown})")


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
        img = load_image(rec.path)
        if img.size != (rec.width, rec.height):
            src = self.index.json_path
            where, fix = ((f"its file header (EXIF orientation applied), read with {src}, which has no "
                           "width/height", "the file changed since: restore it or read the data again")
                          if rec.size_from_header else
                          (f"width/height in {src}", f"fix width/height in {src} (and the boxes) or the image"))
            raise DataError(f"{rec.path}: expected {rec.width}x{rec.height} (from {where}) but the image (after its "
                            f"EXIF orientation) is {img.size[0]}x{img.size[1]}; {fix}", rec.path)
        keep = [k for k, c in enumerate(rec.crowd) if not c]
        boxes = torch.tensor([rec.boxes[k] for k in keep], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([rec.labels[k] for k in keep], dtype=torch.int64)
        image = tv_tensors.Image(pil_to_tensor(img))
        bbs = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(rec.height, rec.width))
        image, bbs = self.transform(image, bbs)
        gt = torch.tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4)
        meta = {"image_id": rec.image_id, "source": str(rec.path), "orig_size": (rec.height, rec.width),
                "gt_boxes": torch.cat([gt[:, :2], gt[:, 2:] - gt[:, :2]], 1),  # xywh, as COCO
                "gt_labels": torch.tensor(rec.labels, dtype=torch.int64),
                "gt_areas": torch.tensor(rec.areas, dtype=torch.float64),
                "gt_crowd": torch.tensor(rec.crowd, dtype=torch.bool)}
        return image.as_subclass(torch.Tensor), {"boxes": bbs.as_subclass(torch.Tensor), "labels": labels}, meta
