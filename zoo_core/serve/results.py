"""Typed predictions as JSON: what ``POST /predict`` returns for each image.

- :class:`~zoo_core.task.Classification`: ``label``, ``name``, ``score`` and ``topk`` (a list of
  ``{label, name, score}``, best first).
- :class:`~zoo_core.task.Detections`: ``boxes`` (``[x1, y1, x2, y2]`` in the input image's pixels),
  ``scores``, ``labels``, ``names``.
- :class:`~zoo_core.task.Instances`: the fields of Detections, ``size`` ``[height, width]`` and ``masks``,
  one COCO RLE per object, in the order of ``boxes``.
- :class:`~zoo_core.task.Keypoints`: the fields of Detections, ``keypoints`` (per object, ``[x, y, score]``
  per point in the input image's pixels), ``keypoint_names`` and ``skeleton`` (0-based point pairs).
- :class:`~zoo_core.task.SegmentationMask`: ``size`` ``[height, width]``, ``names`` (the classes
  present) and ``segments``: one per class present, ``{label, name, area, score, rle}`` where ``rle``
  is the class's binary mask as COCO run-length encoding (``{"size": [h, w], "counts": str}``,
  pycocotools' compressed form: ``pycocotools.mask.decode`` reads it back; the page decodes it in JS).
- any other :class:`~zoo_core.task.Prediction` (a plugin's task): its dataclass fields, tensors as lists.

Every result also has ``source`` (the file name sent, or ``<image i>``) and ``type`` (the class name).
The choice is by the prediction's type, so the server knows no task by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from ..task import Classification, Detections, Instances, Keypoints, Prediction, SegmentationMask


def plain(value: Any) -> Any:
    """Tensors, numpy values and tuples as JSON-ready Python values."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def mask_segments(mask: torch.Tensor, scores: torch.Tensor | None, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per class present in an ``(H, W)`` class-index mask, its pixels as COCO RLE."""
    from pycocotools import mask as mask_util

    m = mask.detach().cpu().numpy()
    s = scores.detach().cpu().float().numpy() if scores is not None else None
    out = []
    for label in np.unique(m).tolist():
        binary = m == label
        rle = mask_util.encode(np.asfortranarray(binary.astype(np.uint8)))
        area = int(binary.sum())
        out.append({"label": int(label),
                    "name": class_names[label] if 0 <= label < len(class_names) else str(label),
                    "area": area,
                    "score": float(s[binary].mean()) if s is not None and area else None,
                    "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    return out


def instance_rles(masks: torch.Tensor) -> list[dict[str, Any]]:
    """One COCO RLE (``{"size": [h, w], "counts": str}``, compressed) per ``(N, H, W)`` binary mask."""
    from pycocotools import mask as mask_util

    m = masks.detach().cpu().numpy().astype(np.uint8)
    if not m.shape[0]:
        return []
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}
            for r in mask_util.encode(np.asfortranarray(m.transpose(1, 2, 0)))]


def to_json(pred: Prediction, class_names: Sequence[str]) -> dict[str, Any]:
    """One typed prediction as a JSON-ready dict (see the module docstring for each type)."""
    out: dict[str, Any] = {"source": pred.source, "type": type(pred).__name__}
    if isinstance(pred, Classification):
        out.update(label=int(pred.label), name=pred.name, score=float(pred.score),
                   topk=[{"label": int(lab), "name": name, "score": float(score)} for lab, name, score in pred.topk])
    elif isinstance(pred, Instances):  # Detections' fields, plus ``size`` and one COCO RLE per object (``masks``)
        out.update({**to_json(Detections(source=pred.source, boxes=pred.boxes, scores=pred.scores, labels=pred.labels,
                                         names=pred.names), class_names), "type": "Instances"},
                   size=[int(v) for v in pred.masks.shape[-2:]], masks=instance_rles(pred.masks))
    elif isinstance(pred, Keypoints):  # Detections' fields, plus ``keypoints`` (N, K, 3) lists, their names, skeleton
        out.update({**to_json(Detections(source=pred.source, boxes=pred.boxes, scores=pred.scores, labels=pred.labels,
                                         names=pred.names), class_names), "type": "Keypoints"},
                   keypoints=plain(pred.keypoints.float()), keypoint_names=list(pred.keypoint_names),
                   skeleton=[[int(i), int(j)] for i, j in pred.skeleton])
    elif isinstance(pred, Detections):
        out.update(boxes=plain(pred.boxes.float().reshape(-1, 4)), scores=plain(pred.scores.float()),
                   labels=[int(v) for v in pred.labels.tolist()], names=list(pred.names))
    elif isinstance(pred, SegmentationMask):
        out.update(size=[int(v) for v in pred.mask.shape[-2:]], names=list(pred.names),
                   segments=mask_segments(pred.mask, pred.scores, class_names))
    else:
        for f in dataclasses.fields(pred):
            if f.name != "source":
                out[f.name] = plain(getattr(pred, f.name))
    return out
