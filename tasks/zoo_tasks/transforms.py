"""Image transforms built from a model's :class:`~zoo_core.model.Preprocess` (torchvision.transforms.v2).

Every task normalises and resizes the same way the model's library did when it was trained, so
these builders take the ``Preprocess`` a model carries and nothing task-specific: the
classification task uses the whole pipelines; detection/segmentation can reuse
:func:`to_float_normalized` and :func:`interpolation_mode` with their own geometry.

Pipelines accept PIL images and ``(C, H, W)`` tensors (float in [0, 1] or uint8) alike and return
a normalised float32 tensor.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torchvision.transforms import InterpolationMode, v2

from zoo_core.model import Preprocess


def interpolation_mode(name: str) -> InterpolationMode:
    """``"bilinear"``/``"bicubic"``/``"nearest"``... -> torchvision's enum.

    :class:`~zoo_core.model.Preprocess` refuses unknown names when it is made, so a failure here
    means a caller passed a raw string: it raises instead of quietly resizing with another filter.
    """
    try:
        return InterpolationMode(str(name).lower())
    except ValueError:
        raise ValueError(f"unknown interpolation {name!r}; use one of "
                         f"{', '.join(m.value for m in InterpolationMode)}") from None


def target_size(pre: Preprocess, size: int | Sequence[int] | None = None) -> tuple[int, int]:
    """The ``(H, W)`` a pipeline produces: ``size`` when given (the Trainer's ``image_size``), else the model's."""
    if size is None:
        return tuple(pre.input_size)  # type: ignore[return-value]
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def to_float_normalized(pre: Preprocess) -> list[v2.Transform]:
    """PIL/uint8/float image -> float32 tensor in [0, 1] -> normalised with the model's mean/std."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std))]


def eval_transform(pre: Preprocess, size: int | Sequence[int] | None = None) -> v2.Compose:
    """Evaluation transform: resize (short side to ``size / crop_pct``), centre-crop, normalise.

    With ``crop_pct == 1`` the image is resized straight to the input size (no crop), which is what
    timm does for models evaluated without cropping.
    """
    h, w = target_size(pre, size)
    mode = interpolation_mode(pre.interpolation)
    crop_pct = float(pre.crop_pct or 1.0)
    if crop_pct >= 1.0:
        geometry: list[v2.Transform] = [v2.Resize((h, w), interpolation=mode, antialias=True)]
    else:
        if h == w:  # resize the short side, like torchvision's and timm's presets
            resize: int | tuple[int, int] = math.floor(h / crop_pct)
        else:
            resize = (math.floor(h / crop_pct), math.floor(w / crop_pct))
        geometry = [v2.Resize(resize, interpolation=mode, antialias=True), v2.CenterCrop((h, w))]
    return v2.Compose([v2.ToImage(), *geometry, *to_float_normalized(pre)[1:]])


def train_transform(pre: Preprocess, size: int | Sequence[int] | None = None, *,
                    scale: tuple[float, float] = (0.5, 1.0), hflip: float = 0.5,
                    augment: Sequence[v2.Transform] = ()) -> v2.Compose:
    """Training augmentation: random-resized crop (area ``scale``), horizontal flip, ``augment`` (on the
    crop, still uint8, as timm orders RandAugment and colour jitter: :mod:`.augment`), normalise."""
    h, w = target_size(pre, size)
    steps: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop((h, w), scale=tuple(scale), interpolation=interpolation_mode(pre.interpolation),
                             antialias=True),
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    return v2.Compose([*steps, *augment, *to_float_normalized(pre)[1:]])


def after_user_transform(pre: Preprocess, size: int | Sequence[int] | None = None) -> list[v2.Transform]:
    """What follows a user's own transform: to a tensor image, resize to the input size (a no-op when it
    already is; masks nearest), float, normalise with the model's mean/std."""
    h, w = target_size(pre, size)
    return [v2.ToImage(), v2.Resize((h, w), interpolation=interpolation_mode(pre.interpolation), antialias=True),
            *to_float_normalized(pre)[1:]]
