"""A tiny synthetic multi-label dataset: coloured images holding any subset of four shapes.

``make_shapes(out_dir)`` writes the layout :class:`~zoo_multilabel.task.MultiLabelTask` reads::

    out_dir/classes.txt                 circle, square, triangle, cross (one per line)
    out_dir/train/labels.csv            image,labels      e.g.  images/00003.png,circle;cross
    out_dir/train/images/00000.png ...
    out_dir/val/...

Each shape is present with probability 1/2, in its own randomly chosen quadrant, in a random
colour on a random background, so a model must learn shapes rather than colours or positions.
Command line: ``python -m zoo_multilabel.synthetic OUT_DIR [--train N] [--val N] [--size PX]``.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")


def render(labels: Sequence[str], size: int, rng: random.Random) -> Image.Image:
    """An RGB ``size`` x ``size`` image with each shape of ``labels`` drawn in its own quadrant."""
    bg = tuple(rng.randint(150, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    half = size // 2
    quadrants = rng.sample([(0, 0), (half, 0), (0, half), (half, half)], k=len(labels))
    for shape, (qx, qy) in zip(labels, quadrants):
        colour = tuple(rng.randint(0, 110) for _ in range(3))
        r = rng.uniform(0.28, 0.42) * half
        cx, cy = qx + half / 2 + rng.uniform(-2, 2), qy + half / 2 + rng.uniform(-2, 2)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        elif shape == "cross":
            w = max(1, int(r / 2.5))
            draw.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=w)
            draw.line((cx - r, cy + r, cx + r, cy - r), fill=colour, width=w)
        else:
            raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return img


def write_split(folder: Path, n: int, size: int, rng: random.Random) -> None:
    """``n`` images under ``folder/images`` and their labels in ``folder/labels.csv``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        labels = [s for s in SHAPES if rng.random() < 0.5]
        name = f"images/{i:05d}.png"
        render(labels, size, rng).save(folder / name)
        rows.append((name, ";".join(labels)))
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels"])
        writer.writerows(rows)


def make_shapes(out_dir: str | Path, *, n_train: int = 64, n_val: int = 32, size: int = 64, seed: int = 0) -> Path:
    """Write the dataset into ``out_dir`` (created; existing files of the same names are replaced)."""
    out = Path(out_dir)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    write_split(out / "train", n_train, size, rng)
    write_split(out / "val", n_val, size, rng)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo_multilabel.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=64, help="training images (default 64)")
    p.add_argument("--val", type=int, default=32, help="validation images (default 32)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = make_shapes(args.out_dir, n_train=args.train, n_val=args.val, size=args.size, seed=args.seed)
    print(f"wrote {args.train} train + {args.val} val images with labels {', '.join(SHAPES)} to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
