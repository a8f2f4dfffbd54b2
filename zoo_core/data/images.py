"""Reading images safely: every mode becomes RGB, EXIF orientation is applied, bad files are named.

PIL's global ``LOAD_TRUNCATED_IMAGES`` is never touched: a truncated file is an error here, and the
caller (a training dataset) decides whether to skip it with a warning or fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, InputError, warn

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha dropped (composited on black), 16-bit rescaled, CMYK mapped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB with EXIF orientation applied; :class:`DataError` names a bad file."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty (zero-byte) image file; delete or replace it", path)
        with Image.open(path) as img:
            img.load()  # decode fully now: a truncated file fails here, not deep in a transform
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc}); the file is corrupt, truncated or not an "
                        "image: replace or remove it", path) from exc


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def as_image_list(inputs: Any, *, channels: int = 3) -> tuple[list[Any], list[str]]:
    """Normalise predict() inputs to (list of PIL images or (C,H,W) float tensors in [0, 1], list of source names).

    Accepts a path, a PIL image, a (C,H,W) or (B,C,H,W) tensor, or a list/tuple mixing them. Tensors
    are checked and converted by :func:`image_tensor` for a model taking ``channels`` channels; files
    and PIL images become RGB, or grey (mode ``L``) for a 1-channel model. (``model.predict`` reads
    more kinds of input, lazily: :mod:`zoo_core.predict_sources`.)
    """
    items: Iterable[Any]
    batch_note: str | None = None
    batched = isinstance(inputs, torch.Tensor) and inputs.dim() == 4
    if batched:
        tensor, batch_note = image_tensor(inputs, "the input batch", channels)  # checked once, not per image
        items = list(tensor.unbind(0))
    elif isinstance(inputs, (list, tuple)):
        items = inputs
    else:
        items = [inputs]
    images, sources, notes = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            images.append(load_image(item))
            sources.append(str(item))
            continue
        if not isinstance(item, (Image.Image, torch.Tensor)):
            raise TypeError(f"input {i}: expected a path, PIL image or tensor, got {type(item).__name__}")
        image, note = (item, None) if batched else prepare_image(item, f"input {i}", channels)
        images.append(image)
        sources.append(f"<image {i}>" if isinstance(item, Image.Image) else f"<tensor {i}>")
        notes += [note] if note else []
    if not images:
        raise InputError("predict() got no inputs")
    images = [as_channels(im, channels) for im in images]
    warn_range_notes(notes + ([batch_note] if batch_note else []))
    return images, sources


def prepare_image(item: Image.Image | torch.Tensor, what: str, channels: int) -> tuple[Any, str | None]:
    """A user's PIL image (RGB, EXIF orientation applied) or ``(C, H, W)`` tensor (checked by
    :func:`image_tensor`) in the form a task's ``predict`` takes, and the tensor's range note if any."""
    if isinstance(item, Image.Image):
        return to_rgb(ImageOps.exif_transpose(item)), None
    if item.dim() != 3:
        hint = (": a (H, W) grayscale image needs its channel dimension, x[None]" if item.dim() == 2
                else ": pass a (B, C, H, W) batch on its own, not inside a list" if item.dim() == 4
                else "")
        raise InputError(f"{what}: expected a (C, H, W) image tensor, got shape {tuple(item.shape)} "
                         f"(dtype {item.dtype}){hint}")
    return image_tensor(item, what, channels)


def as_channels(image: Any, channels: int) -> Any:
    """A PIL image as grey (mode ``L``) for a 1-channel model; anything else unchanged."""
    return image.convert("L") if channels == 1 and isinstance(image, Image.Image) else image


def warn_range_notes(notes: list[str]) -> None:
    """One warning for the tensors of a call (or batch) whose values do not look like [0, 1] images."""
    if notes:
        warn("predict() expects images in [0, 1] (it normalises them itself): " + "; ".join(notes[:5]) +
             (f" and {len(notes) - 5} more" if len(notes) > 5 else ""))


#: floating images outside this range by more than this much get a warning (resampling overshoots a little)
RANGE_SLACK = 0.5


def image_tensor(x: torch.Tensor, what: str, channels: int = 3) -> tuple[torch.Tensor, str | None]:
    """A ``(C, H, W)`` or ``(B, C, H, W)`` image tensor as float32 in [0, 1] for a ``channels``-channel model.

    Returns the tensor and a note when float values look like 0-255 or like an already normalised
    image (they are used as given). ``uint8`` is divided by 255; another integer dtype must hold
    values in 0..255 (a 16-bit image is ambiguous: scale it yourself); 1 channel for a 3-channel model
    is repeated (as PIL's ``convert("RGB")`` does for a grey image). Anything else -- bool, complex,
    NaN/Inf values, another channel count, channels last -- raises :class:`InputError` naming
    ``what``, the shape and dtype, and what is expected.
    """
    desc = f"{what} (shape {tuple(x.shape)}, dtype {x.dtype})"
    integer = not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    if x.layout != torch.strided or x.is_quantized or not (x.is_floating_point() or integer):
        raise InputError(f"{desc}: not an image dtype; pass float values in [0, 1] or uint8 values in 0..255")
    if x.numel() == 0:
        raise InputError(f"{desc}: an empty image")
    accepted = {channels} | ({1} if channels == 3 else set())
    c = int(x.shape[-3])
    if c not in accepted:
        names = {1: "1 (grey)", 3: "3 (RGB)"}
        want = names.get(channels, str(channels)) + (" or 1 (grey, repeated to 3)" if channels == 3 else "")
        if int(x.shape[-1]) in accepted:
            order = "x.permute(2, 0, 1)" if x.dim() == 3 else "x.permute(0, 3, 1, 2)"
            fix = f"it looks like HWC (channels last): pass {order}"
        elif c == 4 and channels == 3:
            fix = "4 channels look like RGBA: drop alpha (x[..., :3, :, :]) or composite it first"
        else:
            fix = "convert it to the model's channels"
        raise InputError(f"{desc}: {c} channels, but the model takes {want} channels in (C, H, W) order; {fix}")
    if integer:
        if x.dtype != torch.uint8:
            lo, hi = (int(v) for v in torch.aminmax(x))
            if lo < 0 or hi > 255:
                raise InputError(f"{desc}: integer values {lo}..{hi}; integer images must hold 0..255 (they are "
                                 "divided by 255). Scale a 16-bit image to float [0, 1] yourself (x / 65535)")
        x = x.float().div_(255.0)
        note = None
    else:
        x = x.float()
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            raise InputError(f"{desc}: {int((~finite).sum())} NaN/Inf value(s); the predictions would be NaN. "
                             "Fix the image (e.g. x.nan_to_num()) before predicting")
        lo, hi = (float(v) for v in torch.aminmax(x))
        note = None
        if lo < -RANGE_SLACK:
            note = f"{what} has values {lo:.3g}..{hi:.3g}: it looks already normalised; pass the [0, 1] image"
        elif hi > 1.0 + RANGE_SLACK:
            note = f"{what} has values up to {hi:.4g}: it looks like 0-255 pixel values; divide by 255"
    if c == 1 and channels == 3:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return x, note
