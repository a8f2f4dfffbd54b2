"""``zoo data``: ``synth`` writes a task's built-in synthetic dataset (the one its ``zoo demo`` recipe trains
on); ``check`` describes a dataset and lists what is wrong with it, exiting 1 when anything is; ``convert``
writes a dataset in another format. Both read through the task (``Task.check_data``, ``Task.convert_data``),
chosen by ``--task`` or by the format the folder holds (:func:`zoo_core.data.layouts.source_layout`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

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

    c = dsub.add_parser("check", help="describe a dataset (counts, classes, boxes, sizes) and list bad files",
                        description="Read DATA as training would, without a model: per split, the images, classes, "
                                    "images (boxes) per class, boxes per image, image sizes, and every problem "
                                    "(unreadable images, boxes outside their image, bad label lines, mask values "
                                    "that are no class), naming files and lines. Exits 1 when there is a problem.")
    c.add_argument("data", help="dataset folder, annotation file (.json, data.yaml) or split folder")
    c.add_argument("--task", help="task reading it (default: the one the folder's format belongs to)")
    c.add_argument("--format", help="format, where a folder holds two (coco, yolo, voc, masks, cityscapes)")
    c.add_argument("--split", help="check this split only (default: every split the dataset has)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=cmd_check)

    v = dsub.add_parser("convert", help="write a dataset in another format (coco -> yolo, yolo -> coco, voc -> coco)",
                        description="Read SRC (every split) with the zoo's reader and write it to DST (a new or empty "
                                    "folder) in another format, images copied.")
    v.add_argument("src", help="dataset to read")
    v.add_argument("dst", type=Path, help="new folder to write")
    v.add_argument("--from", dest="src_format", default="auto", help="format of SRC (default: detected)")
    v.add_argument("--to", dest="dst_format", required=True, help="format to write")
    v.add_argument("--task", help="task whose formats these are (default: the one --from belongs to)")
    v.set_defaults(func=cmd_convert)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _task_for(source: str, task: str | None, fmt: str | None) -> tuple[Any, Any]:
    """``(task object, layout)`` for ``source``: ``--task`` when given, else the task its format belongs to."""
    import zoo_core as zoo
    from ..data.layouts import source_layout

    impl = zoo.get_task(task) if task else None
    layout = source_layout(source, task=impl.name if impl is not None else None, format=fmt)
    return impl or zoo.get_task(layout.task), layout


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from ..errors import ZooError
    from ..train.loggers import summary_table

    task, layout = _task_for(args.data, args.task, args.format)
    report = task.check_data(args.data, split=args.split, format=args.format)
    if report is None:
        raise ZooError(f"the {task.name} task has no data check (Task.check_data)")
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        from rich.markup import escape  # file names and messages hold brackets ([x, y, w, h], [train])

        for split in report.splits:
            summary_table(escape(f"{args.data} · {split.split} · {report.task}, {report.format}: {report.evidence}"),
                          [(escape(k), escape(v)) for k, v in split.rows()])
        bad = sum(len(s.problems) for s in report.splits)
        print(f"{args.data}: {'ok' if report.ok else f'{bad} problem(s)'} ({len(report.splits)} split(s) checked)")
    return 0 if report.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    fmt = None if args.src_format == "auto" else args.src_format
    task, layout = _task_for(args.src, args.task, fmt)
    if args.dst_format not in getattr(task, "data_formats", ()):
        raise ValueError(f"--to {args.dst_format}: the {task.name} task reads {', '.join(task.data_formats) or 'none'}")
    out = task.convert_data(args.src, args.dst, src_format=layout.format, dst_format=args.dst_format)
    print(f"wrote {args.dst} ({layout.format} -> {args.dst_format}): read it as {out}")
    return 0


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
