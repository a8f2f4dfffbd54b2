"""Which dataset format a folder holds, from its file layout alone, naming the evidence.

One function, :func:`detect_format`, looks at a folder (and the split folders in it) and says which
of the formats the built-in tasks read it holds. Only names of files and folders are looked at (no
annotation is parsed, no image opened), so it is cheap and never fails on a bad file:

========== ============== ===============================================================================
format     read by        evidence
========== ============== ===============================================================================
coco       detection      ``annotations.json`` / ``instances.json`` / ``_annotations.coco.json`` (Roboflow) /
                          ``result.json`` (Label Studio) / ``annotations/instances*.json`` (COCO, CVAT)
yolo       detection      ``labels/`` of ``.txt`` files beside ``images/`` (also ``images/train`` +
                          ``labels/train`` and ``train/images`` + ``train/labels``), or ``data.yaml``
voc        detection      ``Annotations/*.xml`` beside ``JPEGImages/`` (also under ``VOCdevkit/VOC20xx/``)
voc        segmentation   ``SegmentationClass/*.png`` beside ``JPEGImages/``
masks      segmentation   ``images/`` beside ``masks/`` (same file stems)
cityscapes segmentation   ``leftImg8bit/`` beside ``gtFine/``
imagefolder classification one sub-folder of images per class (only when nothing above is found)
========== ============== ===============================================================================

Two formats in one folder (a COCO json next to YOLO labels, say) is a :class:`DataError` naming
both pieces of evidence and how to pick: ``format=`` (the task option ``format``, ``zoo train
--task-option format=yolo``, ``zoo data check --format yolo``) or a path to the annotation file
itself. The task names here are data, as :func:`zoo_core.data.folders.other_task_layout` has them:
the kernel imports no task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from .images import is_image_file

#: COCO annotation files the detection reader looks for in a folder (plus ``annotations/instances*.json``)
COCO_FILES = ("annotations.json", "instances.json", "_annotations.coco.json", "result.json")
#: YOLO dataset files naming the classes (``names:``), in the order they are looked for
YOLO_YAMLS = ("data.yaml", "dataset.yaml", "data.yml")
#: split folder names, in the order each split looks for them
SPLITS: dict[str, tuple[str, ...]] = {"train": ("train", "training"), "val": ("val", "valid", "validation"),
                                      "test": ("test",)}
#: each format: the task that reads it and a one-line description for messages
FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "coco": (("detection",), "a COCO json (annotations.json) with its images"),
    "yolo": (("detection",), "YOLO txt labels (images/ + labels/, data.yaml names)"),
    "voc": (("detection", "segmentation"), "Pascal VOC (Annotations/*.xml or SegmentationClass/ + JPEGImages/)"),
    "masks": (("segmentation",), "images/ + masks/ folders of class-index PNGs"),
    "cityscapes": (("segmentation",), "Cityscapes (leftImg8bit/ + gtFine/ *_labelIds.png)"),
    "imagefolder": (("classification",), "one sub-folder of images per class"),
}
#: the task aliases a message suggests (``--task det``)
TASK_ALIASES = {"detection": "det", "segmentation": "seg", "classification": "cls"}
HOW_TO_PICK = ("pick one with format= (task_options={{'format': '{f}'}}; zoo train --task-option format={f}; "
               "zoo data check --format {f}) or pass the annotation file / folder pair itself")


@dataclass(frozen=True)
class Layout:
    """A format seen in a folder: its ``format`` name, the ``task`` reading it, the ``evidence`` (paths
    relative to the folder looked at) and ``root``, the folder holding the format's files (a split
    folder, or ``VOCdevkit/VOC2012``)."""

    format: str
    task: str
    evidence: str
    root: Path

    def __str__(self) -> str:
        return f"{self.format} ({self.evidence})"


def _dirs(folder: Path) -> dict[str, Path]:
    try:
        return {p.name: p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    except OSError:
        return {}


def _has(folder: Path, pattern: str) -> bool:
    return next(iter(folder.rglob(pattern)), None) is not None if folder.is_dir() else False


def coco_files(folder: Path) -> list[Path]:
    """The COCO annotation files of ``folder``: the named files, then ``annotations/instances*.json``."""
    found = [folder / n for n in COCO_FILES if (folder / n).is_file()]
    ann = folder / "annotations"
    if ann.is_dir():
        found += sorted(p for p in ann.glob("instances*.json") if p.is_file())
    return found


def voc_roots(folder: Path) -> list[Path]:
    """``folder`` and the ``VOCdevkit/VOC20xx``/``VOC20xx`` folders below it (torchvision's layout)."""
    out = [folder]
    for base in (folder, folder / "VOCdevkit"):
        out += [p for name, p in sorted(_dirs(base).items()) if name.upper().startswith("VOC") and name != "VOCdevkit"]
    return out


def _layouts_here(base: Path, prefix: str) -> Iterator[Layout]:
    """Every format whose files sit in ``base`` (``prefix`` is ``base`` relative to the folder looked at)."""
    dirs = _dirs(base)
    for f in coco_files(base):
        yield Layout("coco", "detection", prefix + f.relative_to(base).as_posix(), base)
    yamls = [n for n in YOLO_YAMLS if (base / n).is_file()]
    labels = "images" in dirs and "labels" in dirs and _has(dirs["labels"], "*.txt")
    if yamls or labels:
        seen = [prefix + y for y in yamls[:1]] + [f"{prefix}labels/*.txt + {prefix}images/"] * labels
        yield Layout("yolo", "detection", " + ".join(seen), base)
    for root in voc_roots(base):
        sub = _dirs(root)
        where = prefix + ("" if root == base else f"{root.relative_to(base).as_posix()}/")
        if "JPEGImages" in sub and "Annotations" in sub and _has(sub["Annotations"], "*.xml"):
            yield Layout("voc", "detection", f"{where}Annotations/*.xml + {where}JPEGImages/", root)
        if "JPEGImages" in sub and "SegmentationClass" in sub:
            yield Layout("voc", "segmentation", f"{where}SegmentationClass/ + {where}JPEGImages/", root)
    if "images" in dirs and "masks" in dirs:
        yield Layout("masks", "segmentation", f"{prefix}images/ + {prefix}masks/", base)
    if "leftImg8bit" in dirs and "gtFine" in dirs:
        yield Layout("cityscapes", "segmentation", f"{prefix}leftImg8bit/ + {prefix}gtFine/", base)


def find_layouts(folder: str | Path) -> list[Layout]:
    """Every format seen in ``folder`` or in its split folders (``train/``, ``val/``...), imagefolder
    only when nothing else is; one entry per (format, task), the folder's own files first."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return []
    dirs = _dirs(folder)
    split_names = {n for names in SPLITS.values() for n in names}
    bases = [(folder, "")] + [(p, f"{name}/") for name, p in sorted(dirs.items()) if name.lower() in split_names]
    found: dict[tuple[str, str], Layout] = {}
    for base, prefix in bases:
        for layout in _layouts_here(base, prefix):
            found.setdefault((layout.format, layout.task), layout)
    if not found:
        for base, prefix in bases[1:] or bases:
            classes = [name for name, p in sorted(_dirs(base).items())
                       if any(is_image_file(f) for f in p.iterdir() if f.is_file())]
            if classes:
                shown = ", ".join(classes[:4]) + (" ..." if len(classes) > 4 else "")
                found[("imagefolder", "classification")] = Layout(
                    "imagefolder", "classification", f"{len(classes)} class folder(s) in {prefix or './'}: {shown}",
                    folder)
                break
    return list(found.values())


def detect_format(folder: str | Path, *, task: str | None = None, format: str | None = None) -> Layout:
    """The one format ``folder`` holds (for ``task`` when given: ``"detection"``...), or a :class:`DataError`.

    ``format`` (``"auto"``/None: detect) picks one where several are present, and is checked to be
    present. No format found, or two (for the task), is an error naming what was seen and the fix.
    """
    folder = Path(folder).expanduser()
    if format not in (None, "auto") and format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; known: {', '.join(FORMATS)} (or 'auto')")
    if not folder.exists():
        raise DataError(f"{folder}: dataset folder not found", folder)
    seen = find_layouts(folder)
    usable = [lay for lay in seen if task is None or lay.task == task]
    if format not in (None, "auto"):
        picked = [lay for lay in usable if lay.format == format]
        if not picked:
            others = "; it holds " + ", ".join(map(str, seen)) if seen else ""
            raise DataError(f"{folder}: format={format!r} was asked for, but no {FORMATS[format][1]} was found "
                            f"there{others}", folder)
        usable = picked
    if not usable:
        wanted = [f"{name}: {desc}" for name, (tasks, desc) in FORMATS.items() if task is None or task in tasks]
        also = (f" (it holds {', '.join(map(str, seen))}, which {'is' if len(seen) == 1 else 'are'} not "
                f"{task} data: use --task {TASK_ALIASES.get(seen[0].task, seen[0].task)})" if seen else "")
        raise DataError(f"{folder}: no dataset format recognised{also}; expected one of: " + "; ".join(wanted), folder)
    formats = list(dict.fromkeys(lay.format for lay in usable))
    if len(formats) > 1:
        both = " and ".join(str(lay) for lay in usable)
        raise DataError(f"{folder} holds {len(formats)} dataset formats: {both}; "
                        + HOW_TO_PICK.format(f=formats[0]), folder)
    if len(usable) > 1:  # one format read by two tasks (VOC boxes and VOC masks)
        tasks = " or ".join(f"--task {TASK_ALIASES.get(lay.task, lay.task)}" for lay in usable)
        raise DataError(f"{folder} holds {' and '.join(map(str, usable))}, data of {len(usable)} tasks: pass "
                        f"{tasks} (task= in Python)", folder)
    return usable[0]


def format_splits(root: str | Path) -> dict[str, Path]:
    """The splits a dataset root defines inside its own format (no ``train/``/``val/`` folders):
    YOLO's ``images/train`` + ``images/val``, VOC's ``ImageSets/*/train.txt`` + ``val.txt``, Cityscapes'
    ``leftImg8bit/train`` + ``leftImg8bit/val``; ``{}`` for any other folder."""
    root = Path(root).expanduser()
    out: dict[str, Path] = {}
    for split, names in SPLITS.items():
        for name in names:
            for folder in (root / "images" / name, root / "leftImg8bit" / name):
                if folder.is_dir():
                    out.setdefault(split, folder)
            for voc in voc_roots(root):
                for kind in ("Main", "Segmentation"):
                    if (voc / "ImageSets" / kind / f"{name}.txt").is_file():
                        out.setdefault(split, voc / "ImageSets" / kind / f"{name}.txt")
    yaml_file = next((root / n for n in YOLO_YAMLS if (root / n).is_file()), None)
    if yaml_file is not None:
        import yaml

        try:
            spec = yaml.safe_load(yaml_file.read_text())
        except (OSError, yaml.YAMLError):
            spec = None  # the YOLO reader names the broken file when it reads it
        for split in ("train", "val", "test"):
            if isinstance(spec, dict) and spec.get(split):
                out.setdefault(split, yaml_file)
    return out


def source_layout(source: object, *, task: str | None = None, format: str | None = None) -> Layout:
    """:func:`detect_format` for any source a reader takes: a folder, an annotation file (``.json``: COCO,
    ``data.yaml``: YOLO, ``ImageSets/Main/<split>.txt``: VOC) or a pair (``(images, annotations.json)``: COCO,
    ``(images, masks)``: mask folders)."""
    if isinstance(source, (tuple, list)):
        json_file = any(str(p).endswith(".json") for p in source)
        name, what = ("coco", "detection") if json_file else ("masks", "segmentation")
        return Layout(format if format not in (None, "auto") else name, task or what,
                      " + ".join(str(p) for p in source), Path(str(source[0])))
    path = Path(str(source)).expanduser()
    if path.is_file():
        by_suffix = {".json": "coco", ".yaml": "yolo", ".yml": "yolo", ".txt": "voc"}
        name = format if format not in (None, "auto") else by_suffix.get(path.suffix.lower())
        if name is None or name not in FORMATS:
            raise DataError(f"{path}: a {path.suffix or 'suffix-less'} file is no dataset format the zoo reads; "
                            "pass a dataset folder, a COCO .json, a YOLO data.yaml or a VOC ImageSets/Main/<split>.txt",
                            path)
        return Layout(name, task or FORMATS[name][0][0], path.name, path.parent)
    return detect_format(path, task=task, format=format)
