"""The built-in classification dataset: scikit-learn's handwritten digits as coloured PNG folders.

scikit-learn ships 1,797 8x8 grey digits (10 classes) inside the package, so this needs no
download. :func:`make_digits` upscales them, paints each on its own random background/foreground
colour with a small random shift and noise (so a network has to learn shapes, not pixel values),
and writes ``out_dir/{train,val}/<digit>/<index>.png``: the image-folder layout every
classification reader takes. Used by ``zoo demo`` and the tests; a small ResNet learns it in
seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .generated import write_once

MARKER = "digits.json"
#: the names make_digits writes: which files of a folder it wrote before manifests existed are its own
LEGACY_FILES = r"(train|val)/\d/\d{4}\.png"
CLASS_NAMES = [str(d) for d in range(10)]


def _params(image_size: int, seed: int, val_fraction: float, limit: int | None) -> dict:
    return {"dataset": "sklearn-digits", "version": 1, "image_size": image_size, "seed": seed,
            "val_fraction": val_fraction, "limit": limit}


def _select(targets: np.ndarray, rng: np.random.Generator, limit: int | None) -> list[np.ndarray]:
    """Per-class shuffled indices; with ``limit``, about ``limit`` images in all, balanced across classes."""
    per_class = [rng.permutation(np.flatnonzero(targets == c)) for c in range(10)]
    if limit is None:
        return per_class
    if limit < 20:
        raise ValueError(f"make_digits(limit={limit}): need at least 20 images (2 per class, train and val)")
    base, extra = divmod(int(limit), 10)
    return [idx[: base + (1 if c < extra else 0)] for c, idx in enumerate(per_class)]


def _render(gray8: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One 8x8 digit (0..16) -> ``size``x``size`` RGB uint8 with random colours, shift and noise."""
    small = Image.fromarray(np.clip(gray8 * (255.0 / 16.0), 0, 255).astype(np.uint8), mode="L")
    inner = max(8, int(round(size * 0.8)))
    glyph = np.asarray(small.resize((inner, inner), Image.BICUBIC), dtype=np.float32) / 255.0
    alpha = np.zeros((size, size), np.float32)
    margin = size - inner
    dy, dx = rng.integers(0, margin + 1, size=2)
    alpha[dy:dy + inner, dx:dx + inner] = glyph
    background = rng.uniform(0.0, 0.45, size=3)
    foreground = rng.uniform(0.55, 1.0, size=3)
    if rng.random() < 0.5:  # light-on-dark and dark-on-light, so brightness alone says nothing
        background, foreground = foreground, background
    rgb = background[None, None, :] * (1 - alpha[..., None]) + foreground[None, None, :] * alpha[..., None]
    rgb += rng.normal(0.0, 0.03, size=rgb.shape)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_digits(out_dir: str | Path, *, image_size: int = 32, seed: int = 0, val_fraction: float = 0.2,
                limit: int | None = None) -> Path:
    """Write the digits dataset as image folders under ``out_dir`` and return ``out_dir``.

    Deterministic for a given ``seed``; a folder already holding the same dataset is reused as is.
    ``limit`` caps the total number of images (balanced across the 10 classes); ``val_fraction``
    of each class (at least one image) goes to ``val/``. A non-empty ``out_dir`` that was not
    written by this function is never touched, and one it wrote with other arguments is replaced
    only while it holds no file it did not write (:func:`~zoo_core.data.generated.write_once`).
    """
    from sklearn.datasets import load_digits

    if image_size < 8:
        raise ValueError(f"make_digits(image_size={image_size}): must be at least 8 pixels")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"make_digits(val_fraction={val_fraction}): must be between 0 and 1")
    params = _params(int(image_size), int(seed), float(val_fraction), limit)

    def write(tmp: Path) -> dict:
        data = load_digits()
        rng = np.random.default_rng(seed)
        counts = {"train": 0, "val": 0}
        for label, indices in enumerate(_select(data.target, rng, limit)):
            n_val = max(1, int(round(len(indices) * val_fraction)))
            for rank, i in enumerate(indices):
                split = "val" if rank < n_val else "train"
                folder = tmp / split / CLASS_NAMES[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_render(data.images[i], image_size, rng), mode="RGB").save(folder / f"{i:04d}.png")
                counts[split] += 1
        return {"counts": counts, "classes": CLASS_NAMES}

    return write_once(out_dir, marker=MARKER, params=params, write=write, what="make_digits", legacy_files=LEGACY_FILES)
