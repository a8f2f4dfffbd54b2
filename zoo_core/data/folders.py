"""Image folders: ``root/<class>/<image>``, the layout of torchvision's ImageFolder and of Keras.

A root that holds ``train/`` and ``val/`` (or ``valid/``/``validation/``) is split by them (a root
holding only one of them is refused for the other split, never read whole); any other root is one split. Classes are the sorted sub-folder names (images may sit in nested folders below
a class folder). Problems a user can fix (missing folder, no images, one class, images lying
directly in the root, a class the model does not know, another task's data) raise :class:`DataError`
naming the path and the fix. Unreadable images are handled by :mod:`zoo_core.data.robust`: skipped with a warning
in training, fatal (naming the file) in evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, is_image_file, load_image
from .layouts import COCO_FILES, TASK_ALIASES, find_layouts, format_splits
from .robust import SkipTracker, load_or_skip

SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test",),
}

LAYOUT = "root/<class_name>/<image>.jpg (one sub-folder per class)"

#: the COCO json names the detection reader looks for (one list: :mod:`.layouts` tells formats apart by them)
DETECTION_FILES = COCO_FILES

@dataclass
class FolderIndex:
    """The files of one split: ``samples`` as (path, class index) and the ``class_names`` they index."""

    root: Path
    samples: list[tuple[Path, int]]
    class_names: list[str]

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        out = {name: 0 for name in self.class_names}
        for _, label in self.samples:
            out[self.class_names[label]] += 1
        return out


def split_dirs(root: str | Path) -> dict[str, Path]:
    """The split folders of a split root (``{"train": root/train, "val": root/valid}``...).

    A root is split when it holds ``train/`` or ``val/`` (any spelling of :data:`SPLIT_DIRS`) and no
    other folder: ``vehicles/{bus,car,train}`` is a folder of classes, one of them named ``train``.
    Empty when ``root`` is not a folder or not split.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        return {}
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    known = {n for names in SPLIT_DIRS.values() for n in names}
    if not subdirs or set(subdirs) - known:
        return {}
    found = {s: next((subdirs[n] for n in names if n in subdirs), None) for s, names in SPLIT_DIRS.items()}
    present = {s: p for s, p in found.items() if p is not None}
    return present if "train" in present or "val" in present else {}


def dataset_splits(root: str | Path) -> dict[str, Path]:
    """The splits of a dataset root: its ``train/``/``val/`` folders (:func:`split_dirs`), else the splits
    its format defines inside it (YOLO ``images/val``, VOC ``ImageSets/Main/val.txt``, Cityscapes
    ``leftImg8bit/val``, a ``data.yaml`` with ``val:``: :func:`.layouts.format_splits`). What the Trainer
    validates on when no ``val`` is given: a root with a val split is read again with ``split="val"``."""
    return split_dirs(root) or format_splits(root)


def missing_split_error(root: str | Path, split: str, present: Mapping[str, Path]) -> DataError:
    """The error for a dataset root split into folders that lacks ``split`` (never read it as one split:
    its ``train/`` would become a class, or every image a training image)."""
    have = ", ".join(f"{p.name}/" if p.is_dir() else p.name for p in present.values())
    names = "/ or ".join(SPLIT_DIRS.get(split, (split,)))
    fix = ("pass the validation data itself (val=<folder>, zoo train --val DIR) or train without validation "
           "(val=False, zoo train --val none)" if split == "val" else f"pass the folder of the {split} split itself")
    return DataError(f"{root} holds {have} but no {names}/ folder for the {split} split: {fix}", root)


def split_root(root: str | Path, split: str) -> Path:
    """The folder holding ``split``: ``root/train`` or ``root/val`` when the root is split, else ``root`` itself.

    A root holding a ``train/`` or ``val/`` folder is a split root: asking it for a split it lacks is a
    :class:`DataError` (reading it whole would make ``train`` a class).
    """
    if not isinstance(root, (str, os.PathLike)):
        raise DataError(f"image-folder data is one folder laid out as {LAYOUT} (or a root holding train/ and "
                        f"val/ such folders), not {type(root).__name__} {root!r}; a torch Dataset is passed as it is")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; pass a folder laid out as {LAYOUT}", root)
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a dataset folder; pass a folder laid out as {LAYOUT}", root)
    present = split_dirs(root)
    if present:
        if split not in present:
            raise missing_split_error(root, split, present)
        return present[split]
    return root


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def other_task_layout(folder: Path) -> tuple[str, str, str] | None:
    """``(task, evidence, task alias)`` when ``folder`` or a split folder in it holds another task's data.

    Only the file layout is looked at (:func:`.layouts.find_layouts`): a COCO json, YOLO labels or VOC
    xml mean detection, ``images/`` beside ``masks/`` (or VOC/Cityscapes masks) segmentation.
    ``evidence`` is relative to ``folder``. Read as class folders they would give classes such as
    "images" and "masks", and a puzzling error or a useless model.
    """
    other = next((lay for lay in find_layouts(folder) if lay.task != "classification"), None)
    if other is None:
        return None
    return other.task, other.evidence, TASK_ALIASES.get(other.task, other.task)


def _refuse_other_task_layout(folder: Path) -> None:
    """A :class:`DataError` naming ``folder`` and the ``--task`` to use when it holds another task's data."""
    other = other_task_layout(folder)
    if other is not None:
        task, evidence, alias = other
        raise DataError(f"{folder} looks like {task} data (it holds {evidence}), not classification class folders "
                        f"({LAYOUT}); use --task {alias} (task={alias!r} in Python) with a {task} model, or pass "
                        "class folders", folder)


def folder_class_names(root: str | Path, split: str = "train") -> list[str]:
    """The sorted class sub-folder names of ``split`` under ``root`` (no image is opened).

    Detection or segmentation data is refused (:func:`other_task_layout`) rather than read as classes.
    """
    folder = split_root(root, split)
    _refuse_other_task_layout(folder)
    return [d.name for d in _class_dirs(folder)]


def scan_image_folder(root: str | Path, split: str = "train", *,
                      class_names: Sequence[str] | None = None, min_classes: int = 2) -> FolderIndex:
    """List the images of ``split`` under ``root`` and their labels.

    ``class_names`` (e.g. the training set's, when reading the validation set) fixes the label
    order; a folder naming a class outside it is an error. Without it, classes are the sorted
    sub-folder names and at least ``min_classes`` of them must hold images. Detection or segmentation
    data is a :class:`DataError` that names the task to use (:func:`other_task_layout`).
    """
    folder = split_root(root, split)
    _refuse_other_task_layout(folder)
    class_dirs = _class_dirs(folder)
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not class_dirs:
        what = (f"{len(stray)} images lie directly in it ({', '.join(stray[:3])}...)" if stray
                else "it has no sub-folders")
        raise DataError(f"no class folders in {folder}: {what}. Classification data must be laid out as "
                        f"{LAYOUT}", folder)
    found: list[tuple[str, list[Path]]] = [(d.name, _images_under(d)) for d in class_dirs]
    empty = [name for name, files in found if not files]
    if all(not files for _, files in found):
        raise DataError(f"no images found under {folder} (files ending in {', '.join(IMAGE_EXTENSIONS[:5])}...) "
                        f"in its {len(class_dirs)} class folder(s); lay the data out as {LAYOUT}", folder)
    if empty and class_names is None:
        raise DataError(f"class folder(s) without images in {folder}: {', '.join(empty[:5])}; add images "
                        "to them or remove them", folder / empty[0])
    if class_names is None:
        names = [name for name, _ in found]
        if len(names) < min_classes:
            raise DataError(f"only {len(names)} class ({names[0]!r}) found in {folder}; classification needs at "
                            f"least {min_classes} classes, one sub-folder each ({LAYOUT})", folder)
    else:
        names = [str(c) for c in class_names]
        unknown = [name for name, files in found if files and name not in names]
        if unknown:
            raise DataError(f"class folder(s) {', '.join(map(repr, unknown[:5]))} in {folder} are not among the "
                            f"{len(names)} known classes ({', '.join(names[:8])}{'...' if len(names) > 8 else ''}); "
                            "every evaluation class must also exist in the training data: rename or remove "
                            "the folder, or train with that class", folder / unknown[0])
    index = {name: i for i, name in enumerate(names)}
    samples = [(path, index[name]) for name, files in found for path in files]
    return FolderIndex(root=folder, samples=samples, class_names=names)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Samples ``(transform(image), label, path)`` from a :class:`FolderIndex`.

    ``train=True``: an unreadable image is skipped (warned by name; too many stop the run);
    ``train=False``: it raises, naming the file, so an evaluation set never shrinks silently.
    """

    def __init__(self, index: FolderIndex, transform: Callable[[Any], Any] | None = None, *,
                 train: bool = False, max_bad_fraction: float = 0.05) -> None:
        self.index = index
        self.samples = index.samples
        self.class_names = list(index.class_names)
        self.transform = transform
        self.train = train
        self.tracker = SkipTracker(len(self.samples), train=train, max_bad_fraction=max_bad_fraction)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        """Every sample's label, in order (for samplers and class counts)."""
        return [label for _, label in self.samples]

    def _load(self, i: int) -> tuple[Any, int, str]:
        path, label = self.samples[i]
        image = load_image(path)
        return (self.transform(image) if self.transform is not None else image), label, str(path)

    def __getitem__(self, i: int) -> tuple[Any, int, str]:
        return load_or_skip(i, len(self.samples), self._load, self.tracker)
