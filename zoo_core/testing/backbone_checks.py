"""The conformance checks of a model's declared backbone (``BuiltModel.backbone``).

:func:`backbone_prefix_problem` (part of the ``build`` check): the declared prefixes name real
state-dict keys and none overlaps a head prefix. :func:`check_freezing` (the ``freeze`` check):
the model declares a backbone, and after the Trainer's ``freeze_backbone`` one SGD step trains the
head (and whatever else is not backbone) while every backbone parameter stays as it was. A model or
head builder that declares no backbone fails it: the Trainer would fall back to "everything but the
head", which freezes a newly initialised decoder or neck.
"""

from __future__ import annotations

from typing import Any, Callable

from ..model import under
from .checks import _Fail

BACKBONE_FIX = ("list the state-dict prefixes of the pretrained feature extractor in BuiltModel(backbone=(...)) "
                "(a classifier: zoo_core.model.prefixes_except(net, head); a segmenter: its encoder; a head "
                "builder: zoo.build finds the backbone it was given, if the network holds that very module)")


def backbone_prefix_problem(model: Any) -> tuple[str, str] | None:
    """``(detail, fix)`` when the declared backbone prefixes match no state-dict key or overlap the head."""
    declared, head = tuple(model.backbone_prefixes), tuple(model.head_prefixes)
    keys = list(model.net.state_dict())
    missing = [p for p in declared if not any(under(k, (p,)) for k in keys)]
    if missing:
        return (f"BuiltModel.backbone prefixes {missing} match no state-dict key (keys start with "
                f"{sorted({k.split('.')[0] for k in keys})[:8]})", BACKBONE_FIX)
    overlap = [(b, h) for b in declared for h in head if under(b, (h,)) or under(h, (b,))]
    if overlap:
        return (f"backbone and head prefixes overlap: {overlap[:3]} (the head, re-initialised for a new "
                "num_classes, must train when the backbone is frozen)",
                "leave the classifier out of BuiltModel.backbone (prefixes_except(net, head) does)")
    return None


def check_freezing(model: Any, sgd_step: Callable[[Any], tuple[Any, dict[str, Any], list[str]]]) -> str:
    """The ``freeze`` check: under ``freeze_backbone`` the head trains and the backbone does not.

    ``sgd_step(model)`` runs one training step on the check's synthetic batch and returns
    ``(loss, weights before, names of the parameters that changed)``. Parameters' ``requires_grad``
    flags are restored afterwards, so the checks that follow see the model as built.
    """
    from ..train.config import TrainConfig
    from ..train.optim import apply_freezing

    declared = tuple(model.backbone_prefixes)
    if not declared:
        raise _Fail("the model declares no backbone (BuiltModel.backbone): freeze_backbone and backbone_lr_mult "
                    "would treat every parameter outside the head as backbone, freezing a new decoder or neck",
                    BACKBONE_FIX)
    params = dict(model.net.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    try:
        frozen = set(apply_freezing(model, TrainConfig(freeze_backbone=True)))
        if not frozen:
            raise _Fail(f"freeze_backbone froze nothing with backbone prefixes {list(declared)}", BACKBONE_FIX)
        _, _, changed = sgd_step(model)
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
    moved = sorted(frozen & set(changed))
    if moved:
        raise _Fail(f"frozen backbone parameters changed in a training step: {moved[:5]}",
                    "do not update parameters outside the optimizer (no in-place writes in forward)")
    head = [n for n in params if under(n, model.head_prefixes)]
    if not changed or (head and not set(head) & set(changed)):
        raise _Fail(f"with the backbone {list(declared)} frozen, the head {list(model.head_prefixes)} did not "
                    f"train ({len(changed)} parameter tensors changed)", BACKBONE_FIX)
    return (f"backbone {list(declared)[:4]}{'...' if len(declared) > 4 else ''}: {len(frozen)} of {len(params)} "
            f"parameter tensors frozen; {len(changed)} trained")
