"""Export verification of detections whose scores tie: exported rows matched to eager rows one to one.

A detector returns its top-k (query, class) pairs sorted by score. Where two scores are equal to the last
digit (an untrained model's near-constant class scores, many saturated low scores), their order is
arbitrary, and PyTorch and ONNX Runtime may list them differently, or keep a different one of those tied
at the k-th place. Compared row by row, such an export looks wrong although it computes the same function.

:func:`match_detection_rows` compares them as sets instead: each exported row must pair with a distinct
eager row that agrees on every field (score, label, box, ...) within that field's tolerance; rows left
unpaired are allowed only where the cut fell among ties (their score is within the tolerance of the
lowest score listed), and only when some rows score above those ties: an output whose every score ties
must pair all its rows. Anything else is a real difference and the export is refused as before.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

#: a leaf of a detection output, e.g. ``[0]['boxes']``: (prefix, field)
_FIELD = re.compile(r"^(.*)\['([A-Za-z_]+)'\]$")
#: rows wider than this (masks) are checked on the matched pairs only, not while matching
_MATCH_WIDTH = 64
#: matching is quadratic: larger outputs are compared row by row only
_MAX_ROWS = 2000


def detection_groups(names: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{prefix: {field: leaf index}}`` for the outputs that hold per-detection ``scores`` rows."""
    groups: dict[str, dict[str, int]] = {}
    for i, name in enumerate(names):
        m = _FIELD.match(name)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2)] = i
    return {p: g for p, g in groups.items() if "scores" in g}


def match_detection_rows(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
                         tol: dict[str, float]) -> dict[str, float] | None:
    """Per-field max |diff| over the best one-to-one pairing of exported and eager rows, or None when
    no pairing explains the difference (see the module docstring). Every tensor's first axis is the row."""
    from scipy.optimize import linear_sum_assignment

    n = int(ref["scores"].shape[0]) if ref["scores"].dim() == 1 else -1
    if n < 1 or n > _MAX_ROWS or any(t.shape[:1] != (n,) or got[k].shape != t.shape for k, t in ref.items()):
        return None
    rows = {k: (got[k].double().reshape(n, -1), ref[k].double().reshape(n, -1)) for k in ref}
    admissible = torch.ones(n, n, dtype=torch.bool)  # [eager row, exported row]
    for k, (g, r) in rows.items():
        if r.shape[1] <= _MATCH_WIDTH:
            admissible &= (r[:, None, :] - g[None, :, :]).abs().amax(-1).nan_to_num(float("inf")) <= tol[k]
    eager_rows, got_rows = linear_sum_assignment(admissible.numpy(), maximize=True)
    eager_rows, got_rows = torch.as_tensor(eager_rows), torch.as_tensor(got_rows)
    paired = admissible[eager_rows, got_rows]
    cut_ref, cut_got = rows["scores"][1].min(), rows["scores"][0].min()
    left_ref = rows["scores"][1][eager_rows[~paired], 0]
    left_got = rows["scores"][0][got_rows[~paired], 0]
    if ((left_ref - cut_ref).abs() > tol["scores"]).any() or ((left_got - cut_got).abs() > tol["scores"]).any():
        return None
    if left_ref.numel() and all_tied(ref["scores"], tol["scores"]):
        return None  # every score ties: no cut to speak of, and nothing would say the unpaired rows are right
    er, gr = eager_rows[paired], got_rows[paired]
    diffs = {k: float((g[gr] - r[er]).abs().max()) if er.numel() else 0.0 for k, (g, r) in rows.items()}
    return None if any(d > tol[k] or d != d for k, d in diffs.items()) else diffs


def all_tied(scores: torch.Tensor, tol: float) -> bool:
    """Whether every score lies within ``tol`` of the lowest (at least two of them): an untrained model's
    output, of which any top-k is as right as another."""
    s = scores.double().reshape(-1)
    return s.numel() > 1 and float(s.max() - s.min()) <= tol
