"""What ``zoo predict`` writes: annotated copies of the images (``--save DIR``) and JSON Lines (``--json``).

:func:`annotate` draws a prediction on its image with PIL, at the image's own size: detection boxes
in a colour per class with ``name score`` labels (instance masks tinted in their box's colour; keypoints as dots,
a colour per point, and skeleton lines); segmentation masks as a tinted overlay (class 0,
the background by convention, untinted) with the classes present listed; classification's top-k as
text. It chooses by the prediction's type (:mod:`zoo_core.task`), as ``zoo serve``'s JSON does, so
no task is named here; another task's prediction gets its scalar fields written on the image.

:class:`AnnotatedFolder` writes them batch by batch under the zoo's file rule
(:mod:`zoo_core.run_files`): a file already at a name it writes is replaced only when the zoo wrote
it there and it is unchanged since, else a :class:`~zoo_core.run_files.ForeignFileError` names it
(``overwrite=True`` / ``--overwrite`` is the user's consent). Each file is written to a temp file,
listed in the folder's manifest and renamed into place, so a kill never leaves half an image.

:func:`json_line` is one prediction as JSON (:func:`zoo_core.serve.results.to_json`: boxes as
``[x1, y1, x2, y2]`` lists, masks as COCO RLE per class), with ``frame`` for a video's frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .task import Classification, Detections, Instances, Keypoints, Prediction, SegmentationMask

if TYPE_CHECKING:
    from .predict_sources import SourceItem

#: one colour per class (cycled): a qualitative palette, readable on photos
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
           (0, 0, 128), (128, 128, 128))
MASK_ALPHA = 0.5
#: most lines of text (top-k classes, segmentation classes, fields) written on an image
MAX_LINES = 10


def colour(label: int) -> tuple[int, int, int]:
    return PALETTE[int(label) % len(PALETTE)]


def to_pil(image: Any) -> Image.Image:
    """An RGB PIL copy of what a task was given: a PIL image (any mode) or a ``(C, H, W)`` tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    t = image.detach().float().cpu().clamp(0, 1).mul(255).round().byte()
    arr = t[0].numpy() if t.shape[0] == 1 else t[:3].permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def _font(height: int) -> Any:
    size = max(10, min(32, height // 32))
    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple[int, int, int],
           font: Any, *, above: bool = True) -> None:
    """``text`` on a ``fill`` box (white, or black on a light colour), just above ``xy`` (inside the image) or
    from it downwards."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    x, y = xy[0], xy[1] - h if above else xy[1]
    x, y = max(0.0, x), max(0.0, y)
    draw.rectangle((x, y, x + w, y + h), fill=fill)
    light = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 150
    draw.text((x + 2 - left, y + 2 - top), text, fill=(0, 0, 0) if light else (255, 255, 255), font=font)


def _lines(draw: ImageDraw.ImageDraw, lines: Sequence[tuple[str, tuple[int, int, int]]], font: Any) -> None:
    y = 2.0
    for text, fill in list(lines)[:MAX_LINES]:
        _label(draw, (2.0, y), text, fill, font, above=False)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        y += bottom - top + 6


def annotate(image: Any, pred: Prediction, class_names: Sequence[str] = ()) -> Image.Image:
    """``image`` (a PIL image or ``(C, H, W)`` tensor in [0, 1]) with ``pred`` drawn on it, as a new RGB image."""
    canvas = to_pil(image)
    font = _font(canvas.height)
    if isinstance(pred, SegmentationMask):
        canvas = _overlay(canvas, pred.mask)
    if isinstance(pred, Instances):  # each object's mask tinted in its class colour; its box is drawn below
        canvas = _tint_instances(canvas, pred)
    draw = ImageDraw.Draw(canvas)
    if isinstance(pred, Detections):
        width = max(1, min(canvas.size) // 200 + 1)
        for box, score, label, name in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist(),
                                           pred.names):
            draw.rectangle(tuple(box), outline=colour(label), width=width)
            _label(draw, (box[0], box[1]), f"{name} {score:.2f}", colour(label), font)
    elif isinstance(pred, SegmentationMask):
        present = torch.unique(pred.mask).tolist()
        names = [(class_names[i] if 0 <= i < len(class_names) else str(i), i) for i in present]
        _lines(draw, [(name, colour(i) if i else (0, 0, 0)) for name, i in names], font)
    elif isinstance(pred, Classification):
        rows = pred.topk or [(pred.label, pred.name, pred.score)]
        _lines(draw, [(f"{name} {score:.2f}", colour(label)) for label, name, score in rows], font)
    else:
        fields = [(f"{f.name}: {_short(getattr(pred, f.name))}", (0, 0, 0)) for f in dataclasses.fields(pred)
                  if f.name != "source"]
        _lines(draw, fields, font)
    if isinstance(pred, Keypoints):  # a Detections too: its boxes are drawn above, its points on top of them
        _draw_keypoints(draw, pred, max(1, min(canvas.size) // 200 + 1))
    return canvas


def _draw_keypoints(draw: ImageDraw.ImageDraw, pred: Keypoints, width: int) -> None:
    """Each object's skeleton as lines in its class colour and its points as dots, a colour per keypoint."""
    radius = width + 1
    for points, label in zip(pred.keypoints.detach().cpu().float().tolist(), pred.labels.tolist()):
        for i, j in pred.skeleton:
            if max(i, j) < len(points):
                draw.line((points[i][0], points[i][1], points[j][0], points[j][1]), fill=colour(label), width=width)
        for k, (x, y, _score) in enumerate(points):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour(k), outline=(0, 0, 0))


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.numel() <= 8 else f"<tensor {tuple(value.shape)}>"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _overlay(canvas: Image.Image, mask: torch.Tensor) -> Image.Image:
    """``canvas`` with each pixel of class > 0 tinted by its class colour (a mask of another size is
    resized to the image's, nearest)."""
    m = mask.detach().cpu().numpy().astype(np.int64)
    if m.shape != (canvas.height, canvas.width):
        m = np.asarray(Image.fromarray(m.astype(np.int32)).resize(canvas.size, Image.Resampling.NEAREST))
    colours = np.asarray(PALETTE, dtype=np.float32)[np.mod(m, len(PALETTE))]
    img = np.asarray(canvas, dtype=np.float32)
    tinted = m > 0
    img[tinted] = (1 - MASK_ALPHA) * img[tinted] + MASK_ALPHA * colours[tinted]
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))


def _tint_instances(canvas: Image.Image, pred: Instances) -> Image.Image:
    """``canvas`` with every object's mask tinted by its class colour, the best-scoring object on top (a mask
    of another size is resized to the image's, nearest)."""
    img = np.asarray(canvas, dtype=np.float32).copy()
    masks = pred.masks.detach().cpu().bool().numpy()
    for k in np.argsort(pred.scores.detach().cpu().float().numpy(), kind="stable").tolist():
        m = masks[k]
        if m.shape != img.shape[:2]:
            m = np.asarray(Image.fromarray(m).resize(canvas.size, Image.Resampling.NEAREST))
        img[m] = (1 - MASK_ALPHA) * img[m] + MASK_ALPHA * np.asarray(colour(int(pred.labels[k])), dtype=np.float32)
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))


def json_line(pred: Prediction, class_names: Sequence[str], item: "SourceItem | None" = None) -> str:
    """One prediction as one line of JSON (see the module docstring); ``frame`` for a video frame."""
    from .serve.results import to_json

    out = to_json(pred, class_names)
    if item is not None and item.frame is not None:
        out["frame"] = item.frame
    return json.dumps(out)


class AnnotatedFolder:
    """Writes annotated images into ``folder`` as they come, under the zoo's file rule (see above).

    >>> with AnnotatedFolder("out") as folder:
    ...     folder.add("cat.jpg", annotate(image, pred))

    Each image goes to a temp file at once (nothing is held in memory); every :data:`FLUSH` images, and
    on leaving the block, they are listed in the folder's manifest and renamed into place. The folder is
    locked for the run (:class:`~zoo_core.run_files.DirLock`: two runs never write it together). A file
    the zoo did not write where an image would go is a :class:`~zoo_core.run_files.ForeignFileError`
    before that image is predicted further (checked again before the rename). A second image with the
    same relative name in one run gets ``-2``, ``-3``... before its suffix rather than replacing the first.
    """

    #: images written to temp files between two manifest updates
    FLUSH = 256

    def __init__(self, folder: str | Path, *, overwrite: bool = False) -> None:
        from .fileio import check_folder_target

        self.folder = Path(folder)
        check_folder_target(self.folder, "--save folder")
        self.overwrite = overwrite
        self.used: set[str] = set()
        self.pending: list[tuple[Path, str]] = []
        self.written = 0
        self._lock: Any = None
        self._known: Any = None
        self._created = False

    def __enter__(self) -> "AnnotatedFolder":
        from .fileio import make_folder, remove_stale_temps
        from .run_files import DirLock, Manifest

        self._created = make_folder(self.folder, what="--save folder")
        self._lock = DirLock(self.folder, what="--save folder").acquire()
        remove_stale_temps(self.folder)
        self._known = Manifest.read(self.folder)
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            for tmp, _ in self.pending:
                tmp.unlink(missing_ok=True)
            self.pending = []
            if self._lock is not None:
                self._lock.release()
            if self._created and not self.written:  # a run that failed before writing leaves no empty folder
                from .run_files import remove_empty_dirs

                remove_empty_dirs(self.folder)

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.used:
            n += 1
            p = Path(name)
            candidate = p.with_name(f"{p.stem}-{n}{p.suffix}").as_posix()
        self.used.add(candidate)
        return candidate

    def _refuse_foreign(self, names: list[str]) -> Any:
        from .run_files import check_replaceable

        return check_replaceable(self.folder, [Path(n) for n in names], overwrite=self.overwrite,
                                 what="zoo predict --save", elsewhere="pick another --save folder")

    def add(self, name: str, image: Image.Image) -> Path:
        """Write ``image`` (to a temp file now; in place at the next flush) as ``name`` (relative); its path."""
        from .fileio import create_temp, ensure_folder, temp_prefix, write_error

        name = self._unique(name)
        target = self.folder / name
        if (target.exists() or target.is_symlink()) and not self.overwrite and \
                (not self._known.owns(name) or self._known.edited(name)):
            self._refuse_foreign([name])  # raises, naming it
        ensure_folder(target.parent, what=f"the folder for {name}")
        tmp = None
        try:
            fd, tmp = create_temp(target.parent, temp_prefix(target.name))
            with os.fdopen(fd, "wb") as f:
                image.save(f, format=Image.registered_extensions().get(target.suffix.lower(), "PNG"))
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            error = write_error(exc, target, what="annotated image", kept=False)
            if error is not None:
                raise error from exc
            raise
        self.pending.append((tmp, name))
        if len(self.pending) >= self.FLUSH:
            self.flush()
        return target

    def flush(self) -> None:
        """List the images written since the last flush in the manifest and rename them into place."""
        from .fileio import write_error
        from .run_files import sha256_file

        if not self.pending:
            return
        manifest = self._refuse_foreign([name for _, name in self.pending])
        try:
            for tmp, name in self.pending:
                manifest.add(name, size=tmp.stat().st_size, sha256=sha256_file(tmp), incoming=True)
            manifest.save()  # listed before the renames: a kill in between leaves no unlisted file of ours
            for tmp, name in self.pending:
                os.replace(tmp, self.folder / name)
        except OSError as exc:
            error = write_error(exc, self.folder, what="--save folder", kept=False)
            raise (error or exc) from exc
        self.written += len(self.pending)
        self.pending = []
        self._known = manifest
