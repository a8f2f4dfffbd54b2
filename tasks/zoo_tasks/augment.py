"""Augmentation as task options, and a user's own transforms, for classification and segmentation.

Options (``zoo.load(..., task_options={...})``; every value is checked where it enters):

============================ ======== ==============================================================
option                       default  effect (training only, unless it says evaluation)
============================ ======== ==============================================================
``auto_augment``             None     classification: ``"randaugment"`` (torchvision's
                                      ``RandAugment(num_ops=augment_ops, magnitude=augment_magnitude)``),
                                      ``"trivialaugment"`` (``TrivialAugmentWide``), ``"autoaugment"``
                                      (the ImageNet policy) or ``"augmix"``; on the crop, before normalising
``augment_magnitude``        9        RandAugment's magnitude, 0-30
``augment_ops``              2        RandAugment's operations per image
``color_jitter``             0.0      brightness, contrast and saturation each scaled by a factor in
                                      ``[1 - s, 1 + s]``; or ``(b, c, s, hue)``; 0 is off
``mixup`` / ``cutmix``       0.0      classification: timm's ``Mixup`` with these alphas (0 is off); the
                                      loss becomes cross-entropy on soft targets (label smoothing folded
                                      in): :mod:`.mixup`
``mixup_prob``               1.0      probability that a batch is mixed
``mixup_switch_prob``        0.5      with both on, the probability of cutmix instead of mixup
``train_transform``          None     your own pipeline, replacing the task's random crop, flip and the
                                      options above; it gets the image as read (PIL for classification,
                                      ``tv_tensors.Image`` + ``tv_tensors.Mask`` for segmentation), and the
                                      task then resizes to the model's input size if needed, converts to
                                      float and normalises (leave ``Normalize`` out)
``eval_transform``           None     the same for evaluation and validation (not for ``predict``, which
                                      keeps the model's own preprocessing)
============================ ======== ==============================================================

Segmentation takes ``color_jitter`` and the two transforms (a geometric ``auto_augment`` would move the
image without its mask: torchvision's AutoAugment family transforms images only); detection's options
are in :mod:`.det_augment`. Random draws come from torch's generator, which the Trainer seeds per sample
(:class:`zoo_core.train.data.SeededDataset`), so a seeded run augments the same way every time. Masks are
resized with nearest interpolation (``tv_tensors.Mask``), whatever the pipeline says.
"""

from __future__ import annotations

from typing import Any, Sequence

from torchvision.transforms import v2

from zoo_core.errors import OptionError
from zoo_core.model import Preprocess

from .option_checks import choice, color_jitter, number, transform_or_none, whole
from .transforms import after_user_transform, eval_transform, train_transform

AUTO_AUGMENT = ("randaugment", "trivialaugment", "autoaugment", "augmix")

COLOR_DEFAULTS: dict[str, Any] = {"color_jitter": 0.0}
COLOR_CHECKS = {"color_jitter": color_jitter}

CLASSIFICATION_DEFAULTS: dict[str, Any] = {
    "auto_augment": None, "augment_magnitude": 9, "augment_ops": 2, **COLOR_DEFAULTS,
    "mixup": 0.0, "cutmix": 0.0, "mixup_prob": 1.0, "mixup_switch_prob": 0.5,
    "train_transform": None, "eval_transform": None,
}
CLASSIFICATION_CHECKS = {
    "auto_augment": choice(None, *AUTO_AUGMENT), "augment_magnitude": whole(0, 30), "augment_ops": whole(1, 10),
    **COLOR_CHECKS, "mixup": number(0, None, what=" (a Beta alpha; 0 is off)"),
    "cutmix": number(0, None, what=" (a Beta alpha; 0 is off)"), "mixup_prob": number(0, 1),
    "mixup_switch_prob": number(0, 1), "train_transform": transform_or_none(joint=None),
    "eval_transform": transform_or_none(joint=None),
}
SEGMENTATION_DEFAULTS: dict[str, Any] = {**COLOR_DEFAULTS, "train_transform": None, "eval_transform": None}
SEGMENTATION_CHECKS = {**COLOR_CHECKS, "train_transform": transform_or_none(joint="masks"),
                       "eval_transform": transform_or_none(joint="masks")}

#: options a user's ``train_transform`` replaces: setting both is refused rather than one silently ignored
REPLACED_BY_TRANSFORM = ("auto_augment", "color_jitter", "scale_jitter", "iou_crop")


def _on(opts: dict[str, Any], key: str) -> bool:
    value = opts.get(key)
    return bool(value) and value != 0.0


def own_augmentation(opts: dict[str, Any]) -> list[str]:
    """The augmentation options that are on (the ones a ``train_transform`` would replace)."""
    return [k for k in REPLACED_BY_TRANSFORM if k in opts and _on(opts, k)]


def check_transform_conflict(opts: dict[str, Any]) -> dict[str, Any]:
    """Refuse a ``train_transform`` together with the task's own augmentation options (option rule)."""
    clash = own_augmentation(opts)
    if opts.get("train_transform") is not None and clash:
        raise OptionError(f"task options train_transform and {', '.join(clash)} were both given: your "
                          "train_transform replaces the task's augmentation; put those steps in your pipeline "
                          "(e.g. v2.RandAugment(), v2.ColorJitter(...)) or drop train_transform")
    return opts


def resolve_decode(opts: dict[str, Any]) -> dict[str, Any]:
    """Classification's ``decode``: the device path applies only crop, flip and normalise, so with other
    augmentation or a user's transform ``"auto"`` means PIL and ``"device"`` is refused (option rule)."""
    extra = own_augmentation(opts) + [k for k in ("train_transform", "eval_transform") if opts.get(k) is not None]
    decode = str(opts.get("decode", "pil")).lower()
    if not extra or decode == "pil":
        return opts
    if decode == "device":
        raise OptionError(f"task option decode='device' decodes and crops on the device, which cannot apply "
                          f"{', '.join(extra)}; use decode='pil' (or 'auto', which then picks PIL)")
    return {**opts, "decode": "pil"}


def color_steps(opts: dict[str, Any]) -> list[v2.Transform]:
    """``color_jitter`` as a v2 ColorJitter (empty when off)."""
    value = opts.get("color_jitter") or 0.0
    if isinstance(value, (list, tuple)):
        b, c, s, h = (float(v) for v in value)
        return [v2.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)] if any((b, c, s, h)) else []
    s = float(value)
    return [v2.ColorJitter(brightness=s, contrast=s, saturation=s)] if s > 0 else []


def auto_augment_steps(opts: dict[str, Any]) -> list[v2.Transform]:
    """``auto_augment`` as torchvision's transform (empty when None)."""
    name = opts.get("auto_augment")
    if not name:
        return []
    name = str(name).lower()
    if name == "randaugment":
        return [v2.RandAugment(num_ops=int(opts["augment_ops"]), magnitude=int(opts["augment_magnitude"]))]
    if name == "trivialaugment":
        return [v2.TrivialAugmentWide()]
    if name == "autoaugment":
        return [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)]
    return [v2.AugMix()]


def classification_transform(pre: Preprocess, size: int | Sequence[int] | None, opts: dict[str, Any], *,
                             train: bool) -> v2.Compose:
    """The image pipeline a classification dataset applies: the user's transform (then resize and
    normalise), or the task's own random crop, flip and augmentation options; evaluation: resize, crop."""
    user = opts.get("train_transform" if train else "eval_transform")
    if user is not None:
        return v2.Compose([user, *after_user_transform(pre, size)])
    if not train:
        return eval_transform(pre, size)
    return train_transform(pre, size, scale=tuple(opts["scale"]), hflip=float(opts["hflip"]),
                           augment=[*auto_augment_steps(opts), *color_steps(opts)])


def segmentation_transform(pre: Preprocess, size: int | Sequence[int] | None, opts: dict[str, Any], *,
                           train: bool) -> v2.Compose:
    """The joint image + mask pipeline of a segmentation dataset (called with ``(Image, Mask)``)."""
    from .seg_data import joint_transform

    user = opts.get("train_transform" if train else "eval_transform")
    if user is not None:
        return v2.Compose([user, *after_user_transform(pre, size)])
    base = joint_transform(pre, size, train=train, scale=tuple(opts["scale"]), hflip=float(opts["hflip"]))
    colour = color_steps(opts) if train else []
    return v2.Compose([*colour, base]) if colour else base
