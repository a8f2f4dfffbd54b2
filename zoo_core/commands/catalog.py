"""``zoo list``, ``zoo info``, ``zoo plugins``: read the catalog only (no torch import)."""

from __future__ import annotations

import argparse

from .. import api
from ..registry import get_registry


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list models (no model code is imported)")
    p.add_argument("pattern", nargs="?", help="glob on the name, e.g. 'resnet*' or 'timm:vit_*'")
    p.add_argument("--task", help="only models for this task (cls, det, seg...)")
    p.add_argument("--plugin", help="only models from this plugin")
    p.add_argument("--providers", action="store_true", help="show every provider of each name")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="describe a model: tasks, providers, input size, weights")
    p.add_argument("name")
    p.add_argument("--task")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("plugins", help="discovered plugins and their load errors")
    p.add_argument("action", nargs="?", choices=["doctor"], help="doctor: a full diagnosis")
    p.set_defaults(func=cmd_plugins)


def cmd_list(args: argparse.Namespace) -> int:
    names = api.list_models(args.pattern, task=args.task, plugin=args.plugin)
    reg = get_registry()
    for name in names:
        if args.providers:
            provs = [s.plugin for s in reg.providers("model", name, args.task and reg.canonical_task(args.task))]
            print(f"{name}\t{','.join(provs)}")
        else:
            print(name)
    return 0 if names else 1


def cmd_info(args: argparse.Namespace) -> int:
    print(api.info(args.name, task=args.task))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.action == "doctor":
        from ..doctor import run_doctor

        return run_doctor()
    plugins = api.list_plugins()
    width = max([len(p.name) for p in plugins] + [6])
    print(f"{'plugin':<{width}}  {'distribution':<24} {'version':<10} status")
    for p in plugins:
        counts = ", ".join(f"{n} {k}s" for k, n in sorted(p.registered.items())) or "nothing registered"
        status = f"ERROR {p.error}" if p.error else f"ok ({counts})"
        print(f"{p.name:<{width}}  {(p.distribution or '-'):<24} {(p.version or '-'):<10} {status}")
    return 0
