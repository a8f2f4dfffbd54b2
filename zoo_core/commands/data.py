"""``zoo data synth``: write a task's built-in synthetic dataset (the one its ``zoo demo`` recipe trains on)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

#: CLI flag -> generator keyword; a flag left unset keeps the recipe's value
FLAGS = {"n_train": "n_train", "n_val": "n_val", "limit": "limit", "size": "image_size", "seed": "seed",
         "ignore_border": "ignore_border"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="built-in datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="write a small learnable synthetic dataset to OUT_DIR",
                        description="Write the dataset a task's zoo demo trains on. det: coloured shapes as "
                                    "COCO json + images; seg: shapes as image + mask folders; cls: handwritten "
                                    "digits as image folders. Unset flags keep the demo's values.")
    s.add_argument("--task", required=True, help="a task with a demo recipe (cls, det, seg, or a plugin's)")
    s.add_argument("out_dir", type=Path, help="folder to write (created; must be empty or written by zoo)")
    s.add_argument("--n-train", type=int, help="training images (det/seg; demo: 96)")
    s.add_argument("--n-val", type=int, help="validation images (det/seg; demo: 12 det, 16 seg)")
    s.add_argument("--limit", type=int, help="cls: total images (default: all 1,797 digits)")
    s.add_argument("--size", type=int, help="image side in pixels (demo: det 128, seg 64, cls 32)")
    s.add_argument("--seed", type=int, help="random seed (default 0)")
    s.add_argument("--ignore-border", type=int,
                   help="seg: width of the 255 'ignore' ring around each shape (default 0: none)")
    s.set_defaults(func=cmd_synth)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..demo import demo_recipes

    start = time.perf_counter()
    recipe = demo_recipes([args.task])[args.task]
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    out = recipe.write_data(args.out_dir, **overrides)
    print(f"wrote {out} ({recipe.dataset}) in {time.perf_counter() - start:.1f}s")
    return 0
