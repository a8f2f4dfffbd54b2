"""Segmentation losses over logits ``(B, K, H, W)`` and index masks ``(B, H, W)``; 255 is "ignore".

- ``"ce"``: cross-entropy, mean over non-ignored pixels (0, not NaN, when every pixel is ignored);
- ``"dice"``: segmentation-models-pytorch's multiclass ``DiceLoss`` (soft Dice on softmax
  probabilities; classes absent from the batch's masks do not contribute);
- ``"focal"``: softmax focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al.), mean over non-ignored pixels;
- ``"dice_ce"``: Dice + cross-entropy, the usual U-Net recipe (each term weighted 1).

A binary model (one sigmoid channel, logits ``(B, 1, H, W)``, masks of 0/1 and 255) takes the same
names: ``"ce"`` (or ``"bce"``) is binary cross-entropy with logits, ``"dice"`` smp's binary soft Dice,
``"focal"`` the sigmoid focal loss (``alpha`` left out, as smp's default), ``"dice_ce"`` (or
``"bce_dice"``) BCE + Dice, as the tutorials teach; all ignore 255.

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
#: every name :func:`build_loss` accepts (aliases included), for option checks
LOSS_NAMES = (*LOSSES, "cross_entropy", "ce_dice", "bce", "bce_dice", "dice_bce")

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


def binary_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """BCE with logits of one channel ``(B, 1, H, W)`` against 0/1 masks, mean over non-ignored pixels."""
    z, valid = logits[:, 0], target != ignore_index
    loss = F.binary_cross_entropy_with_logits(z, (target == 1).to(z.dtype), reduction="none")
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def binary_focal(logits: Tensor, target: Tensor, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Sigmoid focal loss ``-(1 - p_t)^gamma log p_t`` on one channel, mean over non-ignored pixels."""
    z, valid = logits[:, 0], target != ignore_index
    y = (target == 1).to(z.dtype)
    logp_t = -F.binary_cross_entropy_with_logits(z, y, reduction="none")
    loss = -((1.0 - logp_t.exp()) ** gamma) * logp_t
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def binary_dice_loss(ignore_index: int = IGNORE_INDEX) -> nn.Module:
    """segmentation-models-pytorch's binary soft Dice loss on one channel of logits, ignoring ``ignore_index``."""
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss(mode="binary", from_logits=True, ignore_index=ignore_index)


def build_binary_loss(key: str, *, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0) -> LossFn:
    """The binary (one sigmoid channel) loss for a normalised name; see the module docstring."""
    if key in ("ce", "cross_entropy", "bce"):
        return lambda logits, target: binary_cross_entropy(logits, target, ignore_index)
    if key == "focal":
        return lambda logits, target: binary_focal(logits, target, gamma, ignore_index)
    dice = binary_dice_loss(ignore_index)
    if key == "dice":
        return lambda logits, target: dice(logits, target[:, None])
    if key in ("dice_ce", "ce_dice", "bce_dice", "dice_bce"):
        return lambda logits, target: dice(logits, target[:, None]) + binary_cross_entropy(logits, target,
                                                                                            ignore_index)
    raise ValueError(f"unknown segmentation loss {key!r}; choose one of {', '.join(LOSSES)}")


def build_loss(name: str, *, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0, binary: bool = False) -> LossFn:
    """The loss called ``name`` (one of :data:`LOSSES`) as ``loss(logits, target) -> scalar``;
    ``binary``: for a one-channel model (sigmoid)."""
    key = str(name).lower().replace("+", "_").replace("-", "_")
    if binary:
        return build_binary_loss(key, ignore_index=ignore_index, gamma=gamma)
    if key in ("ce", "cross_entropy"):
        return lambda logits, target: cross_entropy(logits, target, ignore_index)
    if key == "dice":
        return dice_loss(ignore_index)
    if key == "focal":
        return lambda logits, target: focal(logits, target, gamma, ignore_index)
    if key in ("dice_ce", "ce_dice"):
        return DiceCE(ignore_index=ignore_index)
    raise ValueError(f"unknown segmentation loss {name!r}; choose one of {', '.join(LOSSES)}")
