"""Segmentation losses over logits ``(B, K, H, W)`` and index masks ``(B, H, W)``; 255 is "ignore".

- ``"ce"``: cross-entropy, mean over non-ignored pixels (0, not NaN, when every pixel is ignored);
- ``"dice"``: segmentation-models-pytorch's multiclass ``DiceLoss`` (soft Dice on softmax
  probabilities; classes absent from the batch's masks do not contribute);
- ``"focal"``: softmax focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al.), mean over non-ignored pixels;
- ``"dice_ce"``: Dice + cross-entropy, the usual U-Net recipe (each term weighted 1).

:func:`build_loss` returns a callable ``loss(logits, target) -> scalar``; the segmentation task
picks the name from its options (a model may declare its default, e.g. U-Net's ``"dice_ce"``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = 255
LOSSES = ("ce", "dice", "focal", "dice_ce")

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross-entropy averaged over the pixels that are not ``ignore_index`` (0 if there are none)."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    valid = (target != ignore_index).sum().clamp_min(1)
    return total / valid


def focal(logits: Tensor, target: Tensor, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Softmax focal loss averaged over non-ignored pixels: easy pixels (p_t near 1) weigh little."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    logp = F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - logp.exp()) ** gamma) * logp
    return (loss * valid).sum() / valid.sum().clamp_min(1)


class DiceCE(nn.Module):
    """``dice_weight * Dice + ce_weight * cross-entropy``, both ignoring ``ignore_index``."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.dice = dice_loss(ignore_index)
        self.dice_weight, self.ce_weight, self.ignore_index = dice_weight, ce_weight, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return (self.dice_weight * self.dice(logits, target)
                + self.ce_weight * cross_entropy(logits, target, self.ignore_index))


def dice_loss(ignore_index: int = IGNORE_INDEX) -> nn.Module:
    """segmentation-models-pytorch's multiclass soft Dice loss on logits, ignoring ``ignore_index``."""
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)


def build_loss(name: str, *, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0) -> LossFn:
    """The loss called ``name`` (one of :data:`LOSSES`) as ``loss(logits, target) -> scalar``."""
    key = str(name).lower().replace("+", "_").replace("-", "_")
    if key in ("ce", "cross_entropy"):
        return lambda logits, target: cross_entropy(logits, target, ignore_index)
    if key == "dice":
        return dice_loss(ignore_index)
    if key == "focal":
        return lambda logits, target: focal(logits, target, gamma, ignore_index)
    if key in ("dice_ce", "ce_dice"):
        return DiceCE(ignore_index=ignore_index)
    raise ValueError(f"unknown segmentation loss {name!r}; choose one of {', '.join(LOSSES)}")
