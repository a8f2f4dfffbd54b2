"""Segmentation layouts: mask folders, Pascal VOC ``SegmentationClass``, Cityscapes ``gtFine`` label ids.

- ``masks``: ``images/`` + ``masks/`` (:mod:`..seg_data`), names from ``classes.txt``/``data.yaml``/
  ``labelmap.txt`` in the split folder or the root; masks named ``<stem>_labelIds.png`` pair with
  ``<stem>.png``/``<stem>_leftImg8bit.png`` and are mapped from Cityscapes label ids to train ids;
- ``voc``: ``JPEGImages/<id>.jpg`` + ``SegmentationClass/<id>.png`` (palette PNGs: the stored value is
  the class, 255 the "void" border = ignore), split from ``ImageSets/Segmentation/<split>.txt``; names
  from a names file, else VOC's 21 (``background`` + 20); CVAT's ``labelmap.txt`` also gives each class's
  colour, for colour (RGB) masks;
- ``cityscapes``: ``leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` + ``gtFine/<split>/<city>/
  <x>_gtFine_labelTrainIds.png`` (used as they are) or ``<x>_gtFine_labelIds.png`` (mapped by
  :data:`CITYSCAPES_TRAIN_IDS`: 34 label ids to the 19 evaluated classes, every other id ignored).

The task option ``label_map`` (``{stored value: class index or 255}``) replaces any mapping; a stored
value it lacks is an error naming the file and the first pixel holding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from zoo_core.data.folders import split_dirs
from zoo_core.data.images import is_image_file
from zoo_core.data.layouts import SPLITS, detect_format, find_layouts
from zoo_core.errors import DataError

from ..seg_data import IGNORE_INDEX, find_folders, pair_files
from .names import find_names
from .voc import split_ids, voc_root

VOC_SEG_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                   "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                   "train", "tvmonitor")
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")
#: Cityscapes label id -> train id (cityscapesScripts' labels.py); ids not evaluated go to 255 (ignore)
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    **{i: IGNORE_INDEX for i in range(34)},
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18}


@dataclass
class MaskSource:
    """One split of segmentation data: its (image, mask) pairs, and how to read the masks."""

    format: str
    where: Path
    pairs: list[tuple[Path, Path]]
    class_names: list[str] | None
    names_from: str = ""
    palette: list[tuple[int, int, int]] | None = None
    value_map: dict[int, int] | None = None


def label_map_option(value: Any) -> dict[int, int] | None:
    """The task option ``label_map`` as ``{int: int}`` (YAML/JSON may give string keys), or None."""
    if value is None:
        return None
    try:
        out = {int(k): int(v) for k, v in dict(value).items()}
    except (TypeError, ValueError):
        raise DataError(f"task option label_map={value!r}: expected a mapping of stored mask value -> class index "
                        "(or 255 to ignore), e.g. {7: 0, 8: 1}") from None
    if any(k < 0 or v < 0 for k, v in out.items()):
        raise DataError(f"task option label_map={value!r}: values and classes are >= 0")
    return out


def _names(*folders: Path, default: Sequence[str] | None = None, default_from: str = ""
           ) -> tuple[list[str] | None, str, list[tuple[int, int, int]] | None]:
    found = find_names(*folders)
    if found is not None:
        return found.names, str(found.path), found.palette
    return (list(default), default_from, None) if default is not None else (None, "", None)


def mask_format(source: Any, fmt: str | None = None) -> str:
    """``masks``, ``voc`` or ``cityscapes`` for a segmentation source (a pair is mask folders)."""
    if isinstance(source, (tuple, list)):
        return "masks"
    path = Path(source).expanduser()
    if fmt in (None, "auto") and not any(lay.task == "segmentation" for lay in find_layouts(path)):
        return "masks"  # nothing recognised: the mask-folder reader's error says what it looked for
    return detect_format(path, task="segmentation", format=fmt).format


def mask_source(source: Any, split: str, *, fmt: str | None = None, label_map: Any = None) -> MaskSource:
    """The (image, mask) pairs of ``split`` at ``source`` in any segmentation layout (module docstring)."""
    name = mask_format(source, fmt)
    mapping = label_map_option(label_map)
    if name == "voc":
        out = _voc(source, split)
    elif name == "cityscapes":
        out = _cityscapes(Path(source).expanduser(), split)
    else:
        images_dir, masks_dir = find_folders(source, split)
        pairs = pair_files(images_dir, masks_dir)
        names, names_from, palette = _names(images_dir.parent, images_dir.parent.parent)
        ids = any(m.stem.endswith("_labelIds") for _, m in pairs)
        out = MaskSource("masks", images_dir.parent, pairs, names if names or not ids else list(CITYSCAPES_CLASSES),
                         names_from or ("Cityscapes' 19 classes" if ids else ""), palette,
                         CITYSCAPES_TRAIN_IDS if ids else None)
    if mapping is not None:
        out.value_map = mapping
        if out.names_from and not Path(out.names_from).is_file():  # a format's default names: not the user's classes
            out.class_names, out.names_from = None, ""
    return out


def _voc(source: Any, split: str) -> MaskSource:
    path = Path(source).expanduser()
    present = split_dirs(path)
    root = voc_root(present.get(split, path) if present else path, "SegmentationClass")
    ids = split_ids(root, split, "Segmentation", path)
    masks = root / "SegmentationClass"
    if ids is None:
        ids = sorted(p.stem for p in masks.glob("*.png"))
    images = {p.stem: p for p in sorted((root / "JPEGImages").iterdir()) if is_image_file(p)}
    missing = [i for i in ids if i not in images or not (masks / f"{i}.png").is_file()]
    if missing:
        what = "image" if missing[0] not in images else "mask"
        raise DataError(f"{root}: {len(missing)} listed id(s) have no {what} (the first, {missing[0]}: "
                        f"{'JPEGImages/' + missing[0] + '.jpg' if what == 'image' else masks / (missing[0] + '.png')})",
                        root)
    names, names_from, palette = _names(root, root.parent, default=VOC_SEG_CLASSES,
                                        default_from="Pascal VOC's 21 classes")
    return MaskSource("voc", root, [(images[i], masks / f"{i}.png") for i in ids], names, names_from, palette)


def _cityscapes(root: Path, split: str) -> MaskSource:
    names_ = SPLITS.get(split, (split,))
    images_dir = next((root / "leftImg8bit" / n for n in names_ if (root / "leftImg8bit" / n).is_dir()), None)
    if images_dir is None:
        raise DataError(f"{root}: no leftImg8bit/{split}/ folder (Cityscapes keeps each split in leftImg8bit/<split>/"
                        "<city>/)", root)
    masks_dir = root / "gtFine" / images_dir.name
    pairs, mapped = [], False
    for image in sorted(p for p in images_dir.rglob("*_leftImg8bit.png")):
        rel = image.relative_to(images_dir).parent
        stem = image.stem[: -len("_leftImg8bit")]
        train_ids = masks_dir / rel / f"{stem}_gtFine_labelTrainIds.png"
        label_ids = masks_dir / rel / f"{stem}_gtFine_labelIds.png"
        if train_ids.is_file():
            pairs.append((image, train_ids))
        elif label_ids.is_file():
            pairs.append((image, label_ids))
            mapped = True
        else:
            raise DataError(f"{image}: no mask {label_ids} (nor {train_ids.name})", image)
    if not pairs:
        raise DataError(f"{images_dir}: no *_leftImg8bit.png images", images_dir)
    if mapped and any(m.stem.endswith("labelTrainIds") for _, m in pairs):
        raise DataError(f"{masks_dir}: some masks are label ids, some train ids; keep one kind", masks_dir)
    names, names_from, palette = _names(root, default=CITYSCAPES_CLASSES, default_from="Cityscapes' 19 classes")
    return MaskSource("cityscapes", root, pairs, names, names_from, palette,
                      CITYSCAPES_TRAIN_IDS if mapped else None)


def mask_class_names(source: Any, split: str, fmt: str | None = None, label_map: Any = None) -> list[str] | None:
    """The class names a segmentation source defines (``None``: masks alone, no names file), read as
    :func:`mask_source` reads them (without pairing the files unless a ``label_map`` is given).

    With a ``label_map`` the classes are the map's: the names file's when the data has one, else
    ``class_0..class_{K-1}`` for the K = largest mapped class + 1 (a format's default names, such as
    Cityscapes' 19, are not the mapped classes).
    """
    mapping = label_map_option(label_map)
    if mapping is not None:
        named = mask_source(source, split, fmt=fmt, label_map=mapping).class_names
        classes = [v for v in mapping.values() if v != IGNORE_INDEX]
        return named or ([f"class_{i}" for i in range(max(classes) + 1)] if classes else None)
    name = mask_format(source, fmt)
    if name != "masks":
        return mask_source(source, split, fmt=name).class_names
    images_dir, masks_dir = find_folders(source, split)
    names = _names(images_dir.parent, images_dir.parent.parent)[0]
    if names is None and next(iter(masks_dir.glob("*_labelIds.png")), None) is not None:
        return list(CITYSCAPES_CLASSES)
    return names


def palette_of(src: MaskSource, option: Sequence[Sequence[int]] | None) -> Sequence[Sequence[int]] | None:
    """The colour palette for colour masks: the task option's, else the dataset's labelmap.txt."""
    return option if option is not None else src.palette
