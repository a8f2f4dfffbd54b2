"""Binary segmentation: a model with ``num_classes=1`` has one sigmoid channel.

``zoo.load("unet", task="seg", num_classes=1, class_names=["lesion"])`` is a binary segmenter, as the
tutorials build one: one logit per pixel, ``sigmoid(logit) > 0.5`` (logit > 0) is the positive class.
Masks hold 0 (background) and 1 (the positive class), 255 is ignored, as for any segmentation; a
``classes.txt`` may name both (``background``, ``lesion``). The ``loss`` names map to their binary
forms (BCE, Dice, focal, BCE + Dice; :mod:`.losses`), metrics are the positive class's IoU and Dice
(:class:`~.seg_metrics.BinarySegmentationMetrics`), and predictions are masks of 0/1 with the positive
class's probability where it wins (the background's elsewhere), named ``background`` and the model's
one class name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

BACKGROUND = "background"


def is_binary(model: "ZooModel") -> bool:
    """A segmentation model with one output channel (``num_classes=1``)."""
    return model.num_classes == 1


def mask_classes(model: "ZooModel") -> int:
    """How many values a mask may hold for ``model``: its classes, or 0 and 1 for a binary model."""
    return max(2, model.num_classes)


def class_map(logits: Tensor) -> Tensor:
    """``(B, K, H, W)`` logits -> class indices ``(B, H, W)``: argmax, or ``logit > 0`` for one channel."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def class_probs(logits: Tensor) -> Tensor:
    """``(K, H, W)`` logits -> per-class probabilities: softmax, or ``(1 - p, p)`` for one channel."""
    if logits.shape[0] == 1:
        p = logits.float().sigmoid()
        return torch.cat([1 - p, p])
    return logits.float().softmax(dim=0)


def mask_names(model: "ZooModel") -> list[str]:
    """The name of each mask value: the class names, or (background, the positive class) when binary."""
    return [BACKGROUND, *model.class_names] if is_binary(model) else list(model.class_names)
