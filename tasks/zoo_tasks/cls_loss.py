"""The training loss of single- and multi-label classification: mixup/cutmix, then the user's loss or the task's.

Single-label: cross-entropy with ``label_smoothing``; on mixed (soft) targets, cross-entropy against the
probabilities (timm's SoftTargetCrossEntropy, with the smoothing already in the targets). Multi-label:
binary cross-entropy with logits, on hard or mixed targets. A ``loss`` option (:mod:`.hooks`) replaces
either and receives the (possibly mixed) targets.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn.functional as F
from torch import Tensor

from zoo_core.task import Batch

from .hooks import custom_loss
from .mixup import mix_batch, mixer


def classification_loss(opts: dict[str, Any], batch: Batch, forward: Callable[[Tensor], Tensor], num_classes: int,
                        *, multi_label: bool = False) -> dict[str, Tensor]:
    """Named losses for one training batch; ``forward(images) -> logits (B, K)``."""
    images, targets = batch.inputs, batch.targets
    mix = mixer(opts, num_classes, multi_label=multi_label)
    if mix is not None:
        images, targets = mix_batch(mix, images, targets)
    logits = forward(images)
    if opts.get("loss") is not None:  # float32 logits, as the built-in losses take them under mixed precision
        return custom_loss(opts["loss"], logits.float(), targets)
    if multi_label:
        return {"loss": F.binary_cross_entropy_with_logits(logits.float(), targets.float())}
    if mix is not None:  # probabilities: smoothing is already in them
        return {"loss": F.cross_entropy(logits.float(), targets.float())}
    return {"loss": F.cross_entropy(logits.float(), targets, label_smoothing=float(opts.get("label_smoothing") or 0))}
