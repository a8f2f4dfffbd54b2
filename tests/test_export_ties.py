"""Export verification of detections whose scores tie: rows paired one to one, never a vacuous pass.

The comparison is fed eager and "exported" outputs directly (``_compare``, the function every export
runs its outputs through), so each case is exact: a permutation among tied scores, another member of
the tie at the top-k cut, a real difference hidden among ties, and an output whose every score ties.
"""

from __future__ import annotations

import pytest
import torch

from zoo_core.export import ExportMismatchError, ExportResult, ExportTiesError, _compare
from zoo_core.export_match import detection_groups, match_detection_rows

NAMES = ["[0]['boxes']", "[0]['scores']", "[0]['labels']"]


def _dets(n: int = 6, tie_from: int = 3) -> dict[str, torch.Tensor]:
    """``n`` detections sorted by score; rows ``tie_from`` on share one score (the cut falls among them)."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 20], dim=1)
    scores = torch.linspace(0.9, 0.5, n)
    scores[tie_from:] = 0.3
    return {"boxes": boxes, "scores": scores, "labels": torch.arange(n) % 3}


def _run(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> ExportResult:
    result = ExportResult("onnx", None, 0.0, 0.0, "test")  # type: ignore[arg-type]
    keys = ["boxes", "scores", "labels"]
    _compare([got[k] for k in keys], NAMES, [ref[k] for k in keys], None, result, "m.onnx")
    return result


def _rows(d: dict[str, torch.Tensor], order: list[int]) -> dict[str, torch.Tensor]:
    return {k: v[order] for k, v in d.items()}


def test_tied_rows_in_another_order_are_paired_and_reported_as_such():
    ref = _dets()
    result = _run(_rows(ref, [0, 1, 2, 5, 3, 4]), ref)
    assert result.unordered_match and result.max_abs_diff == 0.0
    assert "tied rows matched as sets" in str(result)


def test_another_member_of_the_tie_at_the_cut_is_accepted():
    """The top-k kept a different one of the rows tied at the k-th place: both are right."""
    ref = _dets()
    got = _rows(ref, [0, 1, 2, 3, 4, 5])
    got["boxes"][5] = torch.tensor([1.0, 2.0, 30.0, 40.0])  # another candidate with the same (tied) score
    assert _run(got, ref).unordered_match


@pytest.mark.parametrize("field, row, value", [("boxes", 1, 7.0), ("labels", 0, 2), ("scores", 2, 0.61)])
def test_a_real_difference_above_the_tie_is_still_refused(field, row, value):
    ref = _dets()
    got = _rows(ref, [0, 1, 2, 4, 5, 3])
    got[field] = got[field].clone()
    got[field][row] = got[field][row] + value
    with pytest.raises(ExportMismatchError, match=r"differs from eager"):
        _run(got, ref)


def test_a_box_swapped_between_two_labels_of_the_tie_is_refused():
    """Sorting each output on its own would accept this; pairing whole rows does not."""
    ref = _dets()
    ref["scores"] = torch.tensor([0.9, 0.7, 0.7, 0.7, 0.5, 0.4])  # a tie above the cut
    got = {k: v.clone() for k, v in ref.items()}
    got["labels"][1], got["labels"][2] = ref["labels"][2], ref["labels"][1]
    with pytest.raises(ExportMismatchError, match=r"\['labels'\] differs"):
        _run(got, ref)


def test_an_output_whose_every_score_ties_is_unverifiable_not_a_pass():
    ref = _dets(tie_from=0)
    got = {k: v.clone() for k, v in ref.items()}
    got["boxes"][0] += 100.0  # a box no eager row has: with every score tied, nothing could vouch for it
    with pytest.raises(ExportTiesError, match=r"6 detection scores all lie within 0 of each other.*Export the trained"):
        _run(got, ref)
    assert not _run({k: v[[1, 0, 2, 3, 4, 5]] for k, v in ref.items()}, ref).max_abs_diff  # a permutation pairs


def test_groups_are_found_per_image_and_only_where_there_are_scores():
    names = ["[0]['boxes']", "[0]['scores']", "[1]['boxes']", "[1]['scores']", "[1]['labels']", "['masks']"]
    assert detection_groups(names) == {"[0]": {"boxes": 0, "scores": 1}, "[1]": {"boxes": 2, "scores": 3, "labels": 4}}
    ref = _dets()
    assert match_detection_rows({"scores": ref["scores"][:3]}, {"scores": ref["scores"]}, {"scores": 1e-4}) is None


def test_the_conformance_checks_jittered_copy_is_seeded_and_leaves_the_model_alone():
    import zoo_core as zoo
    from zoo_core.testing.checks import untied_copy

    model = zoo.load("timm:test_resnet", task="cls", num_classes=3, seed=0)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    a, b = untied_copy(model), untied_copy(model)
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    assert all(torch.equal(v, b.net.state_dict()[k]) for k, v in a.net.state_dict().items())
    moved = [k for k, v in a.net.named_parameters() if not torch.equal(v, before[k])]
    assert len(moved) == len(list(model.net.parameters()))
