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

from ..errors import DataError

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


def as_image_list(inputs: Any) -> tuple[list[Any], list[str]]:
    """Normalise predict() inputs to (list of PIL images or (C,H,W) tensors, list of source names).

    Accepts a path, a PIL image, a (C,H,W) or (B,C,H,W) tensor, or a list/tuple mixing them.
    """
    items: Iterable[Any]
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        items = list(inputs.unbind(0))
    elif isinstance(inputs, (list, tuple)):
        items = inputs
    else:
        items = [inputs]
    images, sources = [], []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            images.append(load_image(item))
            sources.append(str(item))
        elif isinstance(item, Image.Image):
            images.append(to_rgb(ImageOps.exif_transpose(item)))
            sources.append(f"<image {i}>")
        elif isinstance(item, torch.Tensor):
            if item.dim() != 3:
                raise ValueError(f"input {i}: expected a (C, H, W) image tensor, got shape {tuple(item.shape)}")
            if item.dtype == torch.uint8:
                item = item.float() / 255.0
            if item.shape[0] == 1:
                item = item.expand(3, -1, -1)
            images.append(item)
            sources.append(f"<tensor {i}>")
        else:
            raise TypeError(f"input {i}: expected a path, PIL image or tensor, got {type(item).__name__}")
    if not images:
        raise ValueError("predict() got no inputs")
    return images, sources
