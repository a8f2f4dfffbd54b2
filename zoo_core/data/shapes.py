"""The built-in detection/segmentation dataset: coloured shapes on textured, noisy backgrounds.

:func:`make_shapes` paints circles, squares and triangles (several per image, random size, colour,
rotation and position, never overlapping) on a smooth random colour field with pixel noise, so a
network has to learn geometry rather than a colour. Deterministic by ``seed`` and fast (pure numpy,
PNGs written with light compression): ``zoo data synth`` and the tests build it in seconds.

Layouts (``out_dir/{train,val}/...``):

- ``layout="coco"`` (what the detection demo trains on): ``annotations.json`` (COCO: ``images``, ``annotations`` with ``bbox`` xywh,
  ``area``, ``iscrowd=0``, polygon ``segmentation``; ``categories`` 1..3) + ``images/*.png``;
- ``layout="masks"`` (what the segmentation demo trains on): ``images/*.png`` + ``masks/*.png`` (same stem; single-channel class indices,
  0 background, 1..3 the shapes; with ``ignore_border=k`` a ``k``-pixel ring of 255 = "ignore"
  around each shape, the way VOC marks uncertain edges) and ``classes.txt`` (the names, index order).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .generated import write_once

MARKER = "shapes.json"
#: the names make_shapes writes: which files of a folder it wrote before manifests existed are its own
LEGACY_FILES = r"(train|val)/(images|masks)/\d{5}\.png|(train|val)/annotations\.json|classes\.txt"
SHAPES = ("circle", "square", "triangle")
#: class names of the segmentation layout (mask value = index); detection uses ``SHAPES`` (ids 1..3)
SEG_CLASS_NAMES = ("background", *SHAPES)
IGNORE_INDEX = 255
LAYOUTS = ("coco", "masks")
_CIRCLE_POINTS = 32


def _params(layout: str, n_train: int, n_val: int, image_size: int, seed: int, ignore_border: int) -> dict:
    return {"dataset": "shapes", "version": 2, "layout": layout, "n_train": n_train, "n_val": n_val,
            "image_size": image_size, "seed": seed, "ignore_border": ignore_border}


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field (a 4x4 grid upsampled bilinearly) plus pixel noise, float RGB in [0, 1]."""
    grid = rng.uniform(0.15, 0.85, size=(4, 4, 3)).astype(np.float32)
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    grid = 0.5 * grid + 0.5 * base  # a dominant hue with local variation
    field = np.asarray(Image.fromarray((grid * 255).astype(np.uint8), mode="RGB").resize((size, size), Image.BILINEAR),
                       dtype=np.float32) / 255.0
    stripes = 0.06 * np.sin(np.arange(size, dtype=np.float32) * rng.uniform(0.2, 0.8) + rng.uniform(0, 6.3))
    field += stripes[None, :, None] if rng.random() < 0.5 else stripes[:, None, None]
    return field + rng.normal(0.0, 0.04, size=field.shape).astype(np.float32)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices ``(N, 2)`` (x, y) of a shape of circumradius ``r`` centred at ``(cx, cy)``."""
    n = {"circle": _CIRCLE_POINTS, "square": 4, "triangle": 3}[kind]
    t = angle + np.arange(n) * (2 * math.pi / n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _inside(kind: str, poly: np.ndarray, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean mask of pixel centres ``(xs, ys)`` inside the shape (exact circle, convex polygon otherwise)."""
    if kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    inside = np.ones(np.broadcast(xs, ys).shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):  # counter-clockwise in image coordinates
        inside &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return inside


def _colour(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A saturated colour far enough from the background's mean that the shape stays visible."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        c = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        c[rng.integers(3)] = rng.choice([0.05, 0.95])
        if np.abs(c - mean).sum() > 0.6:
            return c
    return (1.0 - mean).astype(np.float32)


def _render(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image (uint8 RGB) and its shapes: ``kind``, class index, polygon, pixel mask, bbox."""
    rgb = _background(size, rng)
    placed: list[tuple[float, float, float]] = []
    shapes: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = SHAPES[int(rng.integers(len(SHAPES)))]
        for _attempt in range(30):  # rejection sampling: no overlap, fully inside the image
            r = float(rng.uniform(0.08, 0.2) * size)
            cx, cy = (float(v) for v in rng.uniform(r + 1, size - r - 1, size=2))
            if all(math.hypot(cx - px, cy - py) > r + pr + 2 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        poly = _polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
        x0, y0 = (max(0, int(math.floor(v - r)) - 1) for v in (cx, cy))
        x1, y1 = (min(size, int(math.ceil(v + r)) + 2) for v in (cx, cy))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        local = _inside(kind, poly, cx, cy, r, xs, ys)
        if not local.any():
            continue
        colour = _colour(rgb[y0:y1, x0:x1], rng)
        shade = colour + rng.normal(0.0, 0.03, size=local.shape + (3,)).astype(np.float32)
        rgb[y0:y1, x0:x1][local] = shade[local]
        mask = np.zeros((size, size), dtype=bool)
        mask[y0:y1, x0:x1] = local
        if kind == "circle":
            bbox = [cx - r, cy - r, 2 * r, 2 * r]
        else:
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            bbox = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
        shapes.append({"kind": kind, "label": SHAPES.index(kind) + 1, "polygon": poly, "mask": mask,
                       "bbox": [round(float(v), 2) for v in bbox]})
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), shapes


def _seg_mask(size: int, shapes: list[dict[str, Any]], ignore_border: int) -> np.ndarray:
    """Class-index mask; with ``ignore_border`` a ring of 255 of that width on both sides of every edge."""
    out = np.zeros((size, size), dtype=np.uint8)
    for s in shapes:
        out[s["mask"]] = s["label"]
    if ignore_border > 0:
        from scipy import ndimage  # installed with scikit-learn

        edge = np.zeros((size, size), dtype=bool)
        for s in shapes:
            grown = ndimage.binary_dilation(s["mask"], iterations=ignore_border)
            shrunk = ndimage.binary_erosion(s["mask"], iterations=ignore_border, border_value=1)
            edge |= grown & ~shrunk
        out[edge] = IGNORE_INDEX
    return out


def _write_split(folder: Path, layout: str, n: int, size: int, rng: np.random.Generator, ignore_border: int,
                 start_id: int) -> int:
    (folder / "images").mkdir(parents=True)
    if layout == "masks":
        (folder / "masks").mkdir()
    images, annotations = [], []
    ann_id = start_id
    for i in range(n):
        rgb, shapes = _render(size, rng)
        name = f"{i:05d}.png"
        Image.fromarray(rgb, mode="RGB").save(folder / "images" / name, compress_level=1)
        if layout == "masks":
            Image.fromarray(_seg_mask(size, shapes, ignore_border), mode="L").save(folder / "masks" / name,
                                                                                  compress_level=1)
            continue
        image_id = start_id + i
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for s in shapes:
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": s["label"], "bbox": s["bbox"],
                                "area": float(s["mask"].sum()), "iscrowd": 0,
                                "segmentation": [[round(float(v), 2) for v in s["polygon"].reshape(-1)]]})
            ann_id += 1
    if layout == "coco":
        coco = {"info": {"description": "zoo synthetic shapes"}, "images": images, "annotations": annotations,
                "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]}
        (folder / "annotations.json").write_text(json.dumps(coco))
    return n


def make_shapes(out_dir: str | Path, *, layout: str = "coco", n_train: int = 64, n_val: int = 16, image_size: int = 128,
                seed: int = 0, ignore_border: int = 0) -> Path:
    """Write the shapes dataset in ``layout`` (``"coco"`` or ``"masks"``) under ``out_dir``; return ``out_dir``.

    Deterministic for given arguments; a folder already holding the same dataset is reused as is.
    ``ignore_border`` (masks only): width in pixels of the 255 ring around every shape (0: none). The
    folder is written next to ``out_dir`` and moved into place at the end, so an interrupted run
    leaves nothing half-written; a non-empty ``out_dir`` this function did not write is never touched, and
    one it wrote with other arguments is replaced only while it holds no file it did not write
    (:func:`~zoo_core.data.generated.write_once`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"make_shapes(layout={layout!r}): must be one of {LAYOUTS} (use make_digits for class folders)")
    if image_size < 32:
        raise ValueError(f"make_shapes(image_size={image_size}): must be at least 32 pixels")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"make_shapes: n_train and n_val must be >= 1 (got {n_train}, {n_val})")
    if ignore_border < 0 or (ignore_border and layout != "masks"):
        raise ValueError(f"make_shapes(ignore_border={ignore_border}): a non-negative width, for layout='masks' only")
    params = _params(layout, int(n_train), int(n_val), int(image_size), int(seed), int(ignore_border))
    rng = np.random.default_rng(seed)

    def write(tmp: Path) -> dict[str, Any]:
        _write_split(tmp / "train", layout, n_train, image_size, rng, ignore_border, start_id=1)
        _write_split(tmp / "val", layout, n_val, image_size, rng, ignore_border, start_id=1)
        classes = list(SEG_CLASS_NAMES) if layout == "masks" else list(SHAPES)
        if layout == "masks":
            (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
        return {"classes": classes}

    return write_once(out_dir, marker=MARKER, params=params, write=write, what="make_shapes", legacy_files=LEGACY_FILES)
