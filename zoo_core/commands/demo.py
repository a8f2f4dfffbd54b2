"""``zoo demo``: for each task with a demo recipe, synthesise data, train a small model, evaluate, report.

The recipes come from the tasks (:meth:`zoo_core.task.Task.demo`), so this command knows none of
them; torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise data, fine-tune a small model per task on the CPU, evaluate",
                       description="For each task with a demo recipe (Task.demo()): write its small synthetic "
                                   "dataset, train its small model on it, evaluate it, and print one table with "
                                   "the metrics and where the checkpoints and plots are.")
    p.add_argument("--tasks", help="comma-separated task names or aliases (default: every task whose recipe runs by "
                                      "default; longer ones, e.g. inst and kp, run when named here)")
    p.add_argument("--quick", action="store_true", help="a few steps per task (smoke test, under a minute)")
    p.add_argument("--dir", type=Path, help="where to write data and runs (default: a new temp folder)")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--pretrained", action="store_true",
                   help="start from each model's (or backbone's) default pretrained weights, from the cache "
                        "or a download")
    p.add_argument("--device", help="device (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the models' initialisation and of training "
                                                       "(default 0: the same numbers on every run)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile
    import time

    import zoo_core as zoo
    from ..demo import demo_recipes
    from ..errors import ZooError
    from ..train.loggers import summary_table

    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    recipes = demo_recipes(wanted)
    if not recipes:
        raise ZooError("no installed task has a demo recipe (Task.demo()); `zoo plugins` lists the tasks")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="zoo-demo-"))
    rows: list[tuple[str, str]] = []
    for name, recipe in recipes.items():
        print(f"== {name}: {recipe.label} on {recipe.dataset}", flush=True)
        data = recipe.write_data(root / "data" / name, quick=args.quick)
        model = recipe.make_model(name, pretrained=args.pretrained, seed=args.seed)
        start = time.perf_counter()
        trainer = zoo.Trainer(out_dir=root / "runs" / name, device=args.device, seed=args.seed, overwrite=True,  # its own
                              **recipe.trainer_settings(quick=args.quick, epochs=args.epochs))
        result = trainer.fit(model, data, data)
        seconds = time.perf_counter() - start
        metric = result.monitor
        rows.append((f"{name}: {recipe.label}",
                     f"{metric} {result.metrics.get(metric, float('nan')):.3f} after {result.epochs} epoch(s), "
                     f"{seconds:.0f} s; run {result.out_dir}"))
        rows += [("", f"plot {p}") for p in result.plots]
    longer = [n for n in demo_recipes(every=True) if wanted is None and n not in recipes]
    if longer:
        rows.append(("more", f"zoo demo --tasks {','.join(longer)} (longer demos, run only when named)"))
    summary_table(f"zoo demo ({'quick' if args.quick else 'full'}): data and runs in {root}", rows)
    first = next(iter(recipes))
    print(f"next: zoo eval {root / 'runs' / first} --data {root / 'data' / first}")
    return 0
