"""The predict filters the built-in tasks share: ``conf``, ``iou``, ``max_det`` and ``classes``.

Keyword options of ``model.predict`` / ``predict_iter`` (and ``zoo predict --conf/--iou/--max-det/
--classes``), each checked where it is read and refused by name (an
:class:`~zoo_core.errors.OptionError` saying what the value must be):

- ``conf``: a number in [0, 1]. Detection keeps boxes scoring at least this (the same as the
  ``score_threshold`` option); classification lists only top-k classes scoring at least this (the
  top-1 fields always hold the best class).
- ``iou``: a number in [0, 1]; detection runs class-wise non-maximum suppression
  (``torchvision.ops.batched_nms``) on the network's boxes, dropping a box that overlaps a
  better-scoring box of its class by more than this IoU (on top of any NMS the network does itself).
- ``max_det``: a whole number >= 1; detection keeps the best ``max_det`` boxes of each image.
- ``classes``: class names or ids (one, or a list), e.g. ``["cat", "dog"]`` or ``[0, 2]``; detection
  keeps boxes of these classes, classification ranks only these classes (the scores stay the model's
  probabilities over all classes). A text that is not a class name but a whole number is an id.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from zoo_core.errors import OptionError

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

FILTER_OPTIONS = {
    "conf": "keep results scoring at least this (a number in [0, 1])",
    "iou": "non-maximum suppression IoU: drop a box overlapping a better one of its class by more (in [0, 1])",
    "max_det": "keep at most this many boxes per image, the best (a whole number >= 1)",
    "classes": "keep only these classes (names or ids, e.g. [\"cat\", 2])",
}


def unit_option(key: str, value: Any) -> float:
    """``value`` of predict option ``key`` as a float in [0, 1]; anything else is an OptionError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise OptionError(f"predict option {key}={value!r}: must be a number in [0, 1]")
    return float(value)


def count_option(key: str, value: Any) -> int:
    """``value`` of predict option ``key`` as an int >= 1; anything else is an OptionError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise OptionError(f"predict option {key}={value!r}: must be a whole number >= 1")
    return int(value)


def class_ids(names: Sequence[str], classes: Any) -> list[int] | None:
    """The class indices ``classes`` names (names or ids, one or several); None for None.

    A name the model does not have, an id outside 0..K-1, or an empty list is an OptionError naming it
    (with close names) and listing the model's classes.
    """
    if classes is None:
        return None
    given = [classes] if isinstance(classes, (str, numbers.Integral)) else classes
    try:
        given = list(given.tolist() if isinstance(given, Tensor) else given)
    except TypeError:
        raise OptionError(f"predict option classes={classes!r}: expected class names or ids (one, or a list)") from None
    if not given:
        raise OptionError("predict option classes=[]: keeps no class; give class names or ids, or leave it out")
    index = {str(n): i for i, n in enumerate(names)}
    shown = ", ".join(map(str, names[:12])) + (f" ... ({len(names)} classes)" if len(names) > 12 else "")
    ids = []
    for c in given:
        if isinstance(c, str) and c in index:
            ids.append(index[c])
        elif isinstance(c, numbers.Integral) and not isinstance(c, bool) or (isinstance(c, str) and
                                                                             c.strip().lstrip("-").isdigit()):
            i = int(c)
            if not 0 <= i < len(names):
                raise OptionError(f"predict option classes: id {i} is not a class of this model "
                                  f"(ids 0..{len(names) - 1}: {shown})")
            ids.append(i)
        else:
            close = difflib.get_close_matches(str(c), list(index), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise OptionError(f"predict option classes: {c!r} is not a class of this model{hint} (its classes: "
                              f"{shown}; names or ids)")
    return sorted(set(ids))


@dataclass(frozen=True)
class DetectionFilter:
    """What a detection predict keeps of the network's boxes (see the module docstring)."""

    conf: float = 0.0
    iou: float | None = None
    max_det: int | None = None
    classes: tuple[int, ...] | None = None

    @classmethod
    def from_options(cls, model: "ZooModel", options: Mapping[str, Any], score_threshold: float) -> "DetectionFilter":
        """The filter ``options`` ask for; ``conf`` defaults to ``score_threshold`` and, given with a different
        ``score_threshold=``, is an OptionError (one threshold, two names)."""
        conf = score_threshold
        if options.get("conf") is not None:
            conf = unit_option("conf", options["conf"])
            if "score_threshold" in options and not math.isclose(conf, score_threshold):
                raise OptionError(f"predict options conf={conf:g} and score_threshold={score_threshold:g} are the same "
                                  "threshold; give one")
        iou = None if options.get("iou") is None else unit_option("iou", options["iou"])
        max_det = None if options.get("max_det") is None else count_option("max_det", options["max_det"])
        ids = class_ids(model.class_names, options.get("classes"))
        return cls(conf, iou, max_det, None if ids is None else tuple(ids))

    def apply(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The boxes, scores and labels (one image's) this filter keeps, best first when it reorders them."""
        idx = self.indices(boxes, scores, labels)
        return boxes[idx], scores[idx], labels[idx]

    def indices(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
        """The positions (one image's rows, in the order :meth:`apply` returns them) this filter keeps: index
        anything else per box (instance masks, keypoints) with them to keep it in step with the boxes."""
        idx = torch.nonzero(scores >= self.conf).flatten()
        if self.classes is not None:
            allowed = torch.isin(labels[idx], torch.tensor(self.classes, device=labels.device, dtype=labels.dtype))
            idx = idx[allowed]
        if self.iou is not None and len(idx):
            from torchvision.ops import batched_nms

            idx = idx[batched_nms(boxes[idx].float(), scores[idx].float(), labels[idx], self.iou)]  # best first
        if self.max_det is not None and len(idx) > self.max_det:
            idx = idx[scores[idx].argsort(descending=True, stable=True)[:self.max_det]]
        return idx


def ranked_classes(names: Sequence[str], probs: Tensor, k: int, options: Mapping[str, Any]
                   ) -> list[tuple[tuple[int, str, float], list[tuple[int, str, float]]]]:
    """Per row of ``probs`` (B, K): the best class and the top-``k`` list, as ``(label, name, score)``,
    among ``classes=`` when given, the list keeping only scores >= ``conf=`` when given."""
    ids = class_ids(names, options.get("classes"))
    conf = None if options.get("conf") is None else unit_option("conf", options["conf"])
    ranked = probs
    if ids is not None:
        allowed = torch.zeros(probs.shape[-1], dtype=torch.bool)
        allowed[ids] = True
        ranked = probs.masked_fill(~allowed, -1.0)  # never ranked above an allowed class
        k = min(k, len(ids))
    scores, labels = ranked.topk(k, dim=-1)
    out = []
    for s_row, l_row in zip(scores.tolist(), labels.tolist()):
        topk = [(int(lab), names[lab], float(sc)) for lab, sc in zip(l_row, s_row)]
        out.append((topk[0], [t for t in topk if conf is None or t[2] >= conf]))
    return out
