"""``zoo data synth``: write a built-in synthetic dataset (shapes for det/seg, digits for cls)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="built-in datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="write a small learnable synthetic dataset to OUT_DIR",
                        description="det: coloured shapes as COCO json + images; seg: shapes as image + "
                                    "mask folders; cls: handwritten digits as image folders.")
    s.add_argument("--task", required=True, choices=["det", "seg", "cls"], help="which layout to write")
    s.add_argument("out_dir", type=Path, help="folder to write (created; must be empty or written by zoo)")
    s.add_argument("--n-train", type=int, default=64, help="training images (det/seg; default 64)")
    s.add_argument("--n-val", type=int, default=16, help="validation images (det/seg; default 16)")
    s.add_argument("--limit", type=int, default=None, help="cls: total images (default: all 1,797 digits)")
    s.add_argument("--size", type=int, default=None, help="image side in pixels (default 128; cls 32)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ignore-border", type=int, default=0,
                   help="seg: width of the 255 'ignore' ring around each shape (default 0: none)")
    s.set_defaults(func=cmd_synth)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def cmd_synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.task == "cls":
        from ..data.digits import make_digits

        out = make_digits(args.out_dir, image_size=args.size or 32, seed=args.seed, limit=args.limit)
    else:
        from ..data.shapes import make_shapes

        out = make_shapes(args.out_dir, task=args.task, n_train=args.n_train, n_val=args.n_val,
                          image_size=args.size or 128, seed=args.seed, ignore_border=args.ignore_border)
    layout = {"det": "{train,val}/annotations.json + images/", "seg": "{train,val}/images/ + masks/",
              "cls": "{train,val}/<class>/*.png"}[args.task]
    print(f"wrote {out} ({layout}) in {time.perf_counter() - start:.1f}s")
    return 0
