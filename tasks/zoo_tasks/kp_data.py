"""COCO keypoint data: the detection reader's images and boxes, plus ``[x, y, v]`` keypoints per box.

A COCO keypoints file (``person_keypoints_*.json``, or any COCO json whose categories list
``keypoints``) is read by the detection reader (:func:`.det_data.read_coco`: image lookup, box
cleaning, crowd regions, every check of :mod:`.coco_checks`); this module adds what is particular to
keypoints:

- the layout (:class:`KeypointLayout`): the keypoint names and ``skeleton`` of the categories (every
  category that lists ``keypoints`` must list the same ones: one network predicts one set; COCO's
  1-based skeleton pairs become 0-based), and the left/right pairs a horizontal flip swaps
  (:func:`flip_pairs`: ``left_x``/``right_x`` or ``x_left``/``x_right`` names);
- each annotation's ``keypoints`` checked: ``3 * K`` numbers, finite, visibility ``v`` in 0 (not
  labelled), 1 (labelled, hidden), 2 (visible), a labelled point inside its image. A bad one is a
  :class:`~zoo_core.errors.DataError` naming the file, the image id, the annotation id and the fix.
  An annotation without ``keypoints`` has none labelled; a ``num_keypoints`` that disagrees with the
  labelled count is warned about (COCOeval reads it: the zoo recounts);
- the dataset (:class:`KeypointDataset`): detection samples whose target also holds ``keypoints``
  ``(N, K, 3)`` (crowd boxes left out, as for boxes), ``meta["gt_keypoints"]`` for COCOeval, and a
  horizontal flip that mirrors boxes and points and swaps each left/right pair. With no pair known the
  flip is refused, saying why (a mirrored "left_eye" is a right eye).

COCO's own layout is found in a dataset root too: ``annotations/person_keypoints_<split>*.json``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from zoo_core.data.layouts import SPLITS
from zoo_core.errors import DataError, OptionError, warn

from .det_data import CocoDetection, CocoIndex, eval_transform, load_coco_json, read_coco, resolve_source

#: COCO's 17 person keypoints, its skeleton (0-based) and its per-keypoint OKS sigmas (pycocotools' values)
COCO_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                       "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                       "right_knee", "left_ankle", "right_ankle")
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
                 (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
COCO_OKS_SIGMAS = tuple(v / 10.0 for v in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                                           .89, .89))  # as pycocotools computes them, to the last bit
VISIBILITY = (0, 1, 2)


@dataclass(frozen=True)
class KeypointLayout:
    """The keypoints one network predicts: their names and the skeleton (0-based index pairs) drawn between them."""

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return flip_pairs(self.names)


def flip_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """The ``(i, j)`` pairs a horizontal flip swaps: ``left_x``/``right_x`` or ``x_left``/``x_right`` (any case)."""
    index = {str(n).lower(): i for i, n in enumerate(names)}
    pairs = []
    for name, i in index.items():
        for a, b in (("left_", "right_"), ("l_", "r_")):
            if name.startswith(a) and b + name[len(a):] in index:
                pairs.append((i, index[b + name[len(a):]]))
        if name.endswith("_left") and name[:-5] + "_right" in index:
            pairs.append((i, index[name[:-5] + "_right"]))
    return sorted(set(pairs))


def flip_permutation(k: int, pairs: Sequence[Sequence[int]]) -> list[int]:
    """The order of the points after a mirror (``points[:, perm]``): each pair swapped, the others in place."""
    perm = list(range(k))
    for i, j in pairs:
        perm[int(i)], perm[int(j)] = int(j), int(i)
    return perm


def check_pairs(pairs: Any, k: int, what: str) -> list[tuple[int, int]]:
    """``pairs`` as 0-based ``(i, j)`` index pairs below ``k``, each index in one pair at most; else an OptionError."""
    try:
        out = [(int(a), int(b)) for a, b in pairs]
        ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for p in pairs for v in p)
    except (TypeError, ValueError):
        ok, out = False, []
    used = [v for p in out for v in p]
    if not ok or any(not 0 <= v < k for v in used) or len(used) != len(set(used)):
        raise OptionError(f"{what}={pairs!r}: must be pairs [i, j] of distinct keypoint indices 0..{k - 1}, each "
                          "index in one pair at most (e.g. [[1, 2], [3, 4]]; [] when no point has a mirror twin)")
    return out


def layout_of(categories: Sequence[dict[str, Any]], source: Path) -> KeypointLayout:
    """The keypoint layout the categories declare (see the module docstring); a DataError when none or two differ."""
    with_kp = [c for c in categories if c.get("keypoints") is not None]
    if not with_kp:
        raise DataError(f"{source}: no category lists 'keypoints' (the names of its points), so this is no COCO "
                        "keypoints file; for COCO's own data pass annotations/person_keypoints_*.json (the "
                        "instances_*.json files hold boxes only)", source)
    first = with_kp[0]
    names = first["keypoints"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{source}: category {first.get('id')} has keypoints={names!r}; expected a non-empty list of "
                        "point names", source)
    for c in with_kp[1:]:
        if c["keypoints"] != names:
            raise DataError(f"{source}: categories {first.get('id')} and {c.get('id')} list different keypoints "
                            f"({names} vs {c['keypoints']}); one network predicts one set of points: give every "
                            "category the same list, or split the file by category", source)
    skeleton = []
    for pair in first.get("skeleton") or []:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                isinstance(v, int) and 1 <= v <= len(names) for v in pair)):
            raise DataError(f"{source}: category {first.get('id')} has skeleton entry {pair!r}; COCO's skeleton is "
                            f"pairs of 1-based keypoint numbers, 1..{len(names)}", source)
        skeleton.append((pair[0] - 1, pair[1] - 1))
    return KeypointLayout(tuple(names), tuple(skeleton))


def keypoint_json(source: Any, split: str) -> tuple[Path, Path]:
    """``(json_path, images_dir)``: :func:`.det_data.resolve_source`, after COCO's own layout
    (``<root>/annotations/person_keypoints_<split>*.json``, images in ``<root>/<split>*`` or ``images/``)."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        root = Path(source)
        names = SPLITS.get(split, (split,))
        found = [p for p in sorted((root / "annotations").glob("person_keypoints*.json"))
                 if any(p.stem.removeprefix("person_keypoints_").startswith(n) for n in names)]
        if found:
            stem = found[0].stem.removeprefix("person_keypoints_")
            images = next((d for d in (root / stem, root / "images") if d.is_dir()), root)
            return found[0], images
    return resolve_source(source, split)


# ---- reading and validating ---------------------------------------------------------------------
@dataclass
class KeypointIndex:
    """A detection index plus, per record, the keypoints ``(n_boxes, K, 3)`` of its boxes (in step with them)."""

    index: CocoIndex
    layout: KeypointLayout
    keypoints: list[np.ndarray] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return self.index.json_path


def read_keypoints(source: Any, split: str, *, class_names: Sequence[str] | None = None, train: bool = True,
                   filter_empty: bool = False) -> KeypointIndex:
    """Read and check a COCO keypoints file (see the module docstring)."""
    json_path, images_dir = keypoint_json(source, split)
    raw = load_coco_json(json_path)
    layout = layout_of(raw["categories"], json_path)
    index = read_coco(json_path, images_dir, class_names=class_names, train=train, filter_empty=filter_empty,
                      raw=raw)
    sizes = {r.image_id: (r.width, r.height) for r in index.records}
    k = len(layout.names)
    by_id: dict[Any, np.ndarray] = {}
    recounted = []
    kept = {aid for r in index.records for aid in r.ann_ids}  # a box the reader dropped (with its warning)
    for ann in raw["annotations"]:                             # takes its points with it, unchecked
        if ann["id"] not in kept:
            continue
        points = checked_keypoints(ann, layout, sizes.get(ann["image_id"]), json_path)
        stated = ann.get("num_keypoints")
        if stated is not None and stated != int((points[:, 2] > 0).sum()):
            recounted.append(ann["id"])
        by_id[ann["id"]] = points
    if recounted:
        shown = ", ".join(map(str, recounted[:10])) + (" ..." if len(recounted) > 10 else "")
        warn(f"{json_path}: num_keypoints disagrees with the labelled points (v > 0) of {len(recounted)} "
             f"annotation(s) (ids {shown}); the labelled points are counted instead")
    kps = [np.stack([by_id[a] for a in r.ann_ids]) if r.ann_ids else np.zeros((0, k, 3), np.float32)
           for r in index.records]
    labelled = sum(int((p[..., 2] > 0).sum()) for p in kps)
    if not labelled:
        use = "train on" if train else "evaluate (OKS AP is undefined: COCOeval would report -1)"
        raise DataError(f"{json_path}: no labelled keypoint (v = 1 or 2) on any usable box of this split; nothing to "
                        f"{use}. Check the annotations' keypoints [x, y, v, ...]", json_path)
    return KeypointIndex(index, layout, kps)


def checked_keypoints(ann: dict[str, Any], layout: KeypointLayout, size: tuple[int, int] | None,
                      source: Path) -> np.ndarray:
    """One annotation's keypoints as a ``(K, 3)`` float32 array, checked (see the module docstring)."""
    k = len(layout.names)
    where = f"{source}: annotation {ann['id']} (image {ann['image_id']})"
    values = ann.get("keypoints")
    if values is None:
        return np.zeros((k, 3), np.float32)
    if not isinstance(values, list) or len(values) != 3 * k:
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise DataError(f"{where} has {n} keypoint values; expected {3 * k}: [x, y, v] for each of the {k} keypoints "
                        f"{list(layout.names)[:6]}{' ...' if k > 6 else ''} its category lists", source)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        bad = next(v for v in values if not (isinstance(v, numbers.Real) and not isinstance(v, bool)
                                             and math.isfinite(v)))
        raise DataError(f"{where} has a keypoint value {bad!r}; every x, y and v must be a finite number", source)
    points = np.asarray(values, dtype=np.float32).reshape(k, 3)
    for i, (x, y, v) in enumerate(points.tolist()):
        if v not in VISIBILITY:
            raise DataError(f"{where}: keypoint {i} ({layout.names[i]}) has visibility v={v:g}; v must be 0 (not "
                            "labelled), 1 (labelled, hidden) or 2 (visible)", source)
        if v > 0 and size is not None and not (0 <= x <= size[0] and 0 <= y <= size[1]):
            raise DataError(f"{where}: keypoint {i} ({layout.names[i]}) at ({x:g}, {y:g}) lies outside the "
                            f"{size[0]}x{size[1]} image; fix its x, y, or mark it v=0 (not labelled)", source)
    return points


# ---- the dataset --------------------------------------------------------------------------------
class KeypointDataset(CocoDetection):
    """Samples ``(image, {boxes, labels, keypoints (N, K, 3)}, meta)``; ``meta["gt_keypoints"]`` holds every
    box's points (crowd ones too) for COCOeval. ``hflip``: training flip probability, swapping ``pairs``."""

    def __init__(self, kp_index: KeypointIndex, *, train: bool, hflip: float = 0.0,
                 pairs: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__(kp_index.index, eval_transform(), train=train)
        self.kp_index = kp_index
        self.layout = kp_index.layout
        self.hflip = float(hflip) if train else 0.0
        self.perm = flip_permutation(len(self.layout.names), pairs)

    def _load(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        image, target, meta = super()._load(i)
        rec = self.index.records[i]
        points = torch.from_numpy(self.kp_index.keypoints[i]).reshape(-1, len(self.layout.names), 3)
        keep = ~torch.tensor(rec.crowd, dtype=torch.bool)
        target["keypoints"] = points[keep].clone()
        meta["gt_keypoints"] = points
        if self.hflip and float(torch.rand(())) < self.hflip:
            image, target = hflip_sample(image, target, self.perm)
        return image, target, meta


def hflip_sample(image: Tensor, target: dict[str, Tensor], perm: Sequence[int]) -> tuple[Tensor, dict[str, Tensor]]:
    """``image`` mirrored left-right with its boxes and keypoints (x -> W - x), each left/right pair swapped by
    ``perm`` (unlabelled points stay at their zeros)."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    points = target["keypoints"][:, list(perm)].clone()
    labelled = points[..., 2] > 0
    points[..., 0] = torch.where(labelled, width - points[..., 0], points[..., 0])
    return image.flip(-1), {**target, "boxes": boxes, "keypoints": points}
