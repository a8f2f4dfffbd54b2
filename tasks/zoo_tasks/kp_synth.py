"""The built-in keypoints dataset: houses (a roof on a box) whose five corners are named keypoints.

:func:`make_keypoint_shapes` paints 1-3 "houses" per image on the textured, noisy backgrounds of
:mod:`zoo_core.data.shapes` (its background, colour and polygon-fill helpers): an upright convex
pentagon, turned by up to 25 degrees, of random size, width, roof height and colour, never
overlapping another. Its corners are the keypoints ``apex``, ``left_eave``, ``right_eave``,
``left_base``, ``right_base`` (all visible, ``v=2``), in the image's left/right, so a horizontal flip
swaps the ``left_``/``right_`` pairs (what the keypoints task's flip does). The layout is COCO keypoints:
``{train,val}/annotations.json`` (one category ``house`` with ``keypoints`` and a 1-based
``skeleton``; annotations with ``bbox``, ``area``, ``keypoints``, ``num_keypoints``, a polygon
``segmentation``) and ``images/*.png``. Deterministic by ``seed``; a folder holding the same
dataset is reused (:func:`zoo_core.data.generated.write_once`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zoo_core.data.generated import write_once
from zoo_core.data.shapes import _background, _colour, _inside

MARKER = "keypoint_shapes.json"
KEYPOINT_NAMES = ("apex", "left_eave", "right_eave", "left_base", "right_base")
#: 0-based pairs drawn between the points (the json holds COCO's 1-based form)
SKELETON = ((0, 1), (0, 2), (1, 2), (1, 3), (2, 4), (3, 4))
CATEGORY = "house"
MAX_TURN = math.radians(25)


def _house(cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """The five corners ``(5, 2)`` (x, y) of a house of half-height ``r`` centred at ``(cx, cy)``, in
    :data:`KEYPOINT_NAMES` order."""
    half_w = float(rng.uniform(0.55, 0.8))
    eave = float(rng.uniform(-0.4, -0.1))
    local = np.array([[0.0, -1.0], [-half_w, eave], [half_w, eave], [-half_w, 0.9], [half_w, 0.9]])
    t = float(rng.uniform(-MAX_TURN, MAX_TURN))
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return local @ rot.T * r + np.array([cx, cy])


def _render(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image (uint8 RGB) and its houses: corners ``(5, 2)``, pixel mask, bbox."""
    rgb = _background(size, rng)
    placed: list[tuple[float, float, float]] = []
    houses: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(30):  # rejection sampling: no overlap, fully inside the image
            r = float(rng.uniform(0.12, 0.24) * size)
            cx, cy = (float(v) for v in rng.uniform(1.25 * r + 1, size - 1.25 * r - 1, size=2))
            if all(math.hypot(cx - px, cy - py) > 1.25 * (r + pr) + 2 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        corners = _house(cx, cy, r, rng)
        outline = corners[[0, 2, 4, 3, 1]]  # apex, right eave, right base, left base, left eave: one way round
        x0, y0 = (max(0, int(math.floor(v))) for v in corners.min(axis=0))
        x1, y1 = (min(size, int(math.ceil(v)) + 1) for v in corners.max(axis=0))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        local = _inside("polygon", outline, cx, cy, r, xs, ys)
        if not local.any():
            continue
        colour = _colour(rgb[y0:y1, x0:x1], rng)
        shade = colour + rng.normal(0.0, 0.03, size=local.shape + (3,)).astype(np.float32)
        rgb[y0:y1, x0:x1][local] = shade[local]
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        houses.append({"corners": corners, "outline": outline, "area": float(local.sum()),
                       "bbox": [round(float(v), 2) for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])]})
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), houses


def _write_split(folder: Path, n: int, size: int, rng: np.random.Generator) -> None:
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        rgb, houses = _render(size, rng)
        name = f"{i:05d}.png"
        Image.fromarray(rgb, mode="RGB").save(folder / "images" / name, compress_level=1)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for h in houses:
            points = [v for x, y in h["corners"].tolist() for v in (round(x, 2), round(y, 2), 2)]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "bbox": h["bbox"],
                                "area": h["area"], "iscrowd": 0, "keypoints": points,
                                "num_keypoints": len(KEYPOINT_NAMES),
                                "segmentation": [[round(float(v), 2) for v in h["outline"].reshape(-1)]]})
    category = {"id": 1, "name": CATEGORY, "supercategory": "shape", "keypoints": list(KEYPOINT_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in SKELETON]}
    coco = {"info": {"description": "zoo synthetic keypoint houses"}, "images": images, "annotations": annotations,
            "categories": [category]}
    (folder / "annotations.json").write_text(json.dumps(coco))


def make_keypoint_shapes(out_dir: str | Path, *, n_train: int = 64, n_val: int = 16, image_size: int = 128,
                         seed: int = 0) -> Path:
    """Write the houses dataset (see the module docstring) under ``out_dir``; return ``out_dir``.

    Deterministic for given arguments; a folder already holding the same dataset is reused as is, and a
    folder holding files it did not write is never touched (:func:`~zoo_core.data.generated.write_once`).
    """
    if image_size < 32:
        raise ValueError(f"make_keypoint_shapes(image_size={image_size}): must be at least 32 pixels")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"make_keypoint_shapes: n_train and n_val must be >= 1 (got {n_train}, {n_val})")
    params = {"dataset": "keypoint_shapes", "version": 1, "n_train": int(n_train), "n_val": int(n_val),
              "image_size": int(image_size), "seed": int(seed)}
    rng = np.random.default_rng(seed)

    def write(tmp: Path) -> dict[str, Any]:
        _write_split(tmp / "train", n_train, image_size, rng)
        _write_split(tmp / "val", n_val, image_size, rng)
        return {"classes": [CATEGORY], "keypoints": list(KEYPOINT_NAMES)}

    return write_once(out_dir, marker=MARKER, params=params, write=write, what="make_keypoint_shapes")
