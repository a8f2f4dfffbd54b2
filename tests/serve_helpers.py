"""Tiny models and images shared by the ``zoo serve`` tests (tests/test_serve*.py)."""

from __future__ import annotations

import io
import shutil

from PIL import Image, ImageDraw

CLS_NAMES = ["cat", "dog", "bird"]
DET_NAMES = ["circle", "square"]
SEG_NAMES = ["background", "circle", "square"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def tiny_models() -> dict:
    """A classifier (32 px), a detector (64 px) and a segmenter (64 px), seeded: fast on the CPU."""
    import zoo_core as zoo

    cls = zoo.load("timm:test_resnet", task="cls", class_names=CLS_NAMES, seed=0)
    cls.set_image_size(32)
    det = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=DET_NAMES, min_size=64,
                    max_size=64, fpn_channels=16, representation_size=32, max_levels=3, seed=0)
    seg = zoo.load("unet", task="seg", backbone="resnet18", class_names=SEG_NAMES, seed=0)
    seg.set_image_size(64)
    return {"cls": cls, "det": det, "seg": seg}


def shapes_image(colour: tuple[int, int, int] = (220, 40, 40), size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A light background with a coloured disc and a blue square."""
    img = Image.new("RGB", size, (240, 240, 235))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w // 8, h // 6, w // 2, h * 2 // 3), fill=colour)
    draw.rectangle((w * 9 // 16, h // 3, w * 7 // 8, h * 5 // 6), fill=(40, 90, 220))
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def find_chromium() -> str | None:
    """A Chromium executable: $ZOO_CHROMIUM, /usr/bin/chromium, or `chromium` / `chromium-browser` on PATH."""
    import os
    from pathlib import Path

    given = os.environ.get("ZOO_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
