"""Between the zoo's detection contract and a transformers detector: targets in, losses and boxes out.

- :func:`hf_labels`: zoo targets (boxes xyxy in input pixels, labels 0..K-1) as Hugging Face ``labels``
  (``class_labels``, ``boxes`` as cxcywh normalised by the image's size, DETR's convention).
- :func:`loss_terms`: the model's own loss dict, weighted as transformers weights it, so that the sum the
  zoo's Trainer takes is exactly the model's ``loss``: the last decoder layer's terms by name and every
  auxiliary term (other decoder layers, denoising queries, encoder proposals) summed into ``loss_aux``.
- :func:`detections`: the post-processing of transformers' ``post_process_object_detection``, written
  here: sigmoid scores and the top ``k`` (query, class) pairs for focal-loss models (RT-DETR, Conditional
  and Deformable DETR), softmax and each query's best real class for DETR; boxes in input pixels.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

#: an auxiliary term's suffix: another decoder layer (``_0``), denoising (``_dn_0``), encoder (``_aux_0``, ``_enc``)
_AUX = re.compile(r"_(aux|dn|enc)(_\d+)?$|_\d+$")


def hf_labels(targets: Sequence[Mapping[str, Tensor]], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
    """Hugging Face's ``labels`` for zoo ``targets`` of images of ``sizes`` (H, W) (the sizes given, before resizing)."""
    out = []
    for t, (h, w) in zip(targets, sizes):
        boxes = t["boxes"].float().reshape(-1, 4)
        scale = boxes.new_tensor([w, h, w, h])
        xyxy = boxes / scale
        cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                              xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=1)
        out.append({"class_labels": t["labels"].long().reshape(-1), "boxes": cxcywh.clamp(0.0, 1.0)})
    return out


def term_weights(config: Any) -> dict[str, float] | None:
    """transformers' weight of each loss term (by its base name) for DETR-style losses, or None when the
    loss dict's values are already weighted (RT-DETR: its loss is the plain sum of its dict)."""
    if getattr(config, "model_type", "").startswith("rt_detr"):
        return None
    return {"loss_ce": 1.0, "loss_bbox": float(config.bbox_loss_coefficient),
            "loss_giou": float(config.giou_loss_coefficient)}


def loss_terms(out: Any, config: Any) -> dict[str, Tensor]:
    """The model's loss as named terms whose sum is ``out.loss`` (see the module docstring).

    Terms without a weight (DETR's ``cardinality_error``, a logged metric) are left out. Should a
    transformers release weigh its terms otherwise, the sum would no longer be ``out.loss``: the model's
    own total is then returned alone (``loss_hf``), with a warning, so training never optimises a
    different objective than transformers'.
    """
    weights = term_weights(config)
    terms: dict[str, Tensor] = {}
    for key, value in dict(out.loss_dict).items():
        base = _AUX.sub("", key)
        w = 1.0 if weights is None else weights.get(base)
        if w is None:
            continue
        name = key if key == base else "loss_aux"
        terms[name] = terms[name] + value * w if name in terms else value * w
    total = sum(terms.values()) if terms else None
    if total is None or not torch.allclose(total.detach(), out.loss.detach(), rtol=1e-4, atol=1e-5):
        warnings.warn(f"{type(out).__name__}: the loss terms do not add up to the model's loss "
                      f"({None if total is None else float(total):.6g} vs {float(out.loss):.6g}); training on the "
                      "model's total, reported as loss_hf", stacklevel=3)
        return {"loss_hf": out.loss}
    return terms


def detections(logits: Tensor, pred_boxes: Tensor, sizes: Sequence[tuple[int, int]], *, scores: str,
               top_k: int | None) -> list[dict[str, Tensor]]:
    """One dict per image: ``boxes`` (xyxy in the pixels of an image of ``sizes[i]``), ``scores``, ``labels``.

    Fixed-size outputs (every query, or the top ``top_k`` pairs), unthresholded: the task applies
    ``score_threshold`` and its filters. Boxes are clipped to the image.
    """
    logits = logits.float()
    if scores == "softmax":  # DETR: the last class is "no object"
        prob = logits.softmax(-1)[..., :-1]
        best, labels = prob.max(-1)
        boxes = pred_boxes
    else:
        prob = logits.sigmoid()
        n_cls = prob.shape[-1]
        k = min(int(top_k or prob.shape[1]), prob.shape[1] * n_cls)
        best, index = prob.flatten(1).topk(k, dim=-1)
        labels = index % n_cls
        boxes = pred_boxes.gather(1, (index // n_cls).unsqueeze(-1).expand(-1, -1, 4))
    cx, cy, w, h = boxes.float().unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    out = []
    for i, (hi, wi) in enumerate(sizes):
        scale = xyxy.new_tensor([wi, hi, wi, hi])
        b = (xyxy[i] * scale).clamp(min=0.0)
        b = torch.minimum(b, scale)
        out.append({"boxes": b, "scores": best[i], "labels": labels[i]})
    return out
