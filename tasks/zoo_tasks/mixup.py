"""Mixup and CutMix for a training batch, with timm's ``Mixup``: soft targets, seeded like the rest.

``mixup``/``cutmix`` (Beta alphas; 0 is off), ``mixup_prob`` and ``mixup_switch_prob`` are task options
(:mod:`.augment`). The batch is mixed on its device right before the forward, in :meth:`loss`:
images blend with the batch reversed (mixup) or get a box pasted from it (cutmix), and targets become
probabilities, ``lam * y + (1 - lam) * y_reversed`` (label smoothing folded in for single-label
classification, as timm does); the loss is then cross-entropy on soft targets (BCE for multi-label).

timm draws from NumPy's global generator. Its draws here are seeded from one number taken from
torch's generator, the training step's own stream (the Trainer seeds it and a checkpoint restores it),
and NumPy's state is put back afterwards: a seeded run mixes the same way with any number of data
workers, and a resumed run as if it never stopped. An odd batch mixes all but its last sample, which
keeps its own (smoothed) target.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo_core.errors import OptionError


def mixer(opts: dict[str, Any], num_classes: int, *, multi_label: bool = False) -> Any | None:
    """timm's ``Mixup`` for these options, or None when both alphas are 0."""
    mix, cut = float(opts.get("mixup") or 0.0), float(opts.get("cutmix") or 0.0)
    if mix <= 0 and cut <= 0:
        return None
    from timm.data import Mixup

    kwargs: dict[str, Any] = dict(mixup_alpha=mix, cutmix_alpha=cut, prob=float(opts["mixup_prob"]),
                                  switch_prob=float(opts["mixup_switch_prob"]), mode="batch",
                                  label_smoothing=0.0 if multi_label else float(opts.get("label_smoothing") or 0.0),
                                  num_classes=num_classes)
    if multi_label:
        if "multi_label" not in inspect.signature(Mixup).parameters:
            raise OptionError("mixup/cutmix for multi-label classification needs a timm whose Mixup takes "
                              "multi_label= (pip install -U timm)")
        kwargs["multi_label"] = True
    return Mixup(**kwargs)


def mix_batch(mix: Any, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(mixed images, soft targets (B, K))``; ``images`` is not changed in place."""
    from timm.data.mixup import mixup_target

    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # the training stream: seeded, checkpointed
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        x = images.clone()
        even = x.shape[0] - x.shape[0] % 2
        if even < 2:
            return x, _plain_target(mix, targets)
        kwargs = {"multi_label": True} if getattr(mix, "multi_label", False) else {}
        mixed, soft = mix(x[:even], targets[:even])
        x[:even] = mixed
        if even == x.shape[0]:
            return x, soft
        rest = mixup_target(targets[even:], mix.num_classes, 1.0, mix.label_smoothing, **kwargs)
        return x, torch.cat([soft, rest.to(soft.dtype)])
    finally:
        np.random.set_state(state)


def _plain_target(mix: Any, targets: Tensor) -> Tensor:
    from timm.data.mixup import mixup_target

    kwargs = {"multi_label": True} if getattr(mix, "multi_label", False) else {}
    return mixup_target(targets, mix.num_classes, 1.0, mix.label_smoothing, **kwargs)
