"""``zoo data synth``: write a task's built-in synthetic dataset (the one its ``zoo demo`` recipe trains on)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

#: CLI flag -> the generator keywords it can mean, first match wins; an unset flag keeps the recipe's value
FLAGS = {"n_train": ("n_train",), "n_val": ("n_val",), "limit": ("limit",), "size": ("image_size", "size"),
         "seed": ("seed",), "ignore_border": ("ignore_border",)}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="built-in datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="write a small learnable synthetic dataset to OUT_DIR",
                        description="Write the dataset a task's demo recipe (Task.demo()) trains on, e.g. shapes "
                                    "as COCO json (det) or mask folders (seg), digits as class folders (cls). "
                                    "Flags the task's generator does not take are refused; unset ones keep the "
                                    "recipe's values.")
    s.add_argument("--task", required=True, help="a task with a demo recipe (name or alias)")
    s.add_argument("out_dir", type=Path, help="folder to write (created; empty, or a dataset zoo wrote there, which "
                                              "is replaced only if it holds no file zoo did not write)")
    s.add_argument("--n-train", type=int, help="training images")
    s.add_argument("--n-val", type=int, help="validation images")
    s.add_argument("--limit", type=int, help="total images, for generators that take a limit")
    s.add_argument("--size", type=int, help="image side in pixels")
    s.add_argument("--seed", type=int, help="random seed")
    s.add_argument("--ignore-border", type=int, help="width of a 255 'ignore' ring around each shape's mask")
    s.set_defaults(func=cmd_synth)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..demo import demo_recipes

    start = time.perf_counter()
    recipe = demo_recipes([args.task])[args.task]
    accepted = recipe.generator_keywords()
    overrides = {}
    for flag, keys in FLAGS.items():
        if getattr(args, flag) is not None:
            key = next((k for k in keys if accepted is None or k in accepted), keys[0])
            overrides[key] = getattr(args, flag)
    out = recipe.write_data(args.out_dir, **overrides)
    print(f"wrote {out} ({recipe.dataset}) in {time.perf_counter() - start:.1f}s")
    return 0
