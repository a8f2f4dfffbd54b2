"""``zoo list``, ``zoo info``, ``zoo plugins``, ``zoo compat``: the catalog (torch only for ``compat``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import api
from ..registry import get_registry


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list models (no model code is imported)")
    p.add_argument("pattern", nargs="?", help="glob on the name, e.g. 'resnet*' or 'timm:vit_*'")
    p.add_argument("--task", help="only models for this task (cls, det, seg...)")
    p.add_argument("--plugin", help="only models from this plugin")
    p.add_argument("--providers", action="store_true", help="show every provider of each name")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="describe a model (tasks, providers, input size, weights), a head "
                                    "(task, what it needs of a backbone) or a backbone")
    p.add_argument("name")
    p.add_argument("--task")
    p.add_argument("--kind", choices=["model", "head", "backbone"],
                   help="which kind of name (default: a model, else a head, else a backbone)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compat", help="which heads a backbone can feed, and why not the others")
    p.add_argument("backbone", help="a backbone name, e.g. timm:vit_small_patch16_224 or torchvision:resnet50")
    p.add_argument("--task", help="only heads of this task")
    p.set_defaults(func=cmd_compat)

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
    if not names:
        print(f"zoo list: {_why_empty(reg, args)}", file=sys.stderr)
    return 0 if names else 1


def _why_empty(reg: Any, args: argparse.Namespace) -> str:
    """Why ``zoo list`` printed nothing: a broken, skipped or unknown plugin, or a filter that matches none."""
    plugin = args.plugin
    if plugin:
        info = reg.plugins.get(plugin)
        if plugin in reg.skipped:
            return f"plugin {plugin!r} was not loaded on purpose ({reg.skipped[plugin]})"
        if info is None:
            return f"no plugin is called {plugin!r}; installed: {', '.join(sorted(reg.plugins)) or 'none'}"
        if not info.ok:
            return f"plugin {plugin!r} failed to load: {info.error} (`zoo plugins` shows the traceback)"
        parts = {kind: n for kind, n in info.registered.items() if n}
        if parts and not parts.get("model"):
            hint = (" (`zoo info NAME` describes a backbone or head; `zoo compat BACKBONE` lists what fits)"
                    if parts.keys() & {"backbone", "head"} else "")
            return (f"plugin {plugin!r} registers no whole models but "
                    + ", ".join(f"{n} {kind}(s)" for kind, n in sorted(parts.items())) + hint)
    filters = [f"{k} {v!r}" for k, v in (("pattern", args.pattern), ("task", args.task), ("plugin", plugin)) if v]
    return f"no model matches {', '.join(filters) or 'anything'}"


def cmd_info(args: argparse.Namespace) -> int:
    print(api.info(args.name, task=args.task, kind=args.kind))  # a model, a head or a backbone
    return 0


def cmd_compat(args: argparse.Namespace) -> int:
    from ..compose import compat_fits  # builds the backbone (on the meta device) to read its feature maps

    verdicts = compat_fits(args.backbone, task=args.task)
    width = max([len(h) for h in verdicts] + [4])
    for head, verdict in verdicts.items():
        print(f"{head:<{width}}  {verdict}")
    return 0 if any(v.ok for v in verdicts.values()) else 1


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.action == "doctor":
        from ..doctor import run_doctor

        return run_doctor()
    plugins = api.list_plugins()
    width = max([len(p.name) for p in plugins] + [6])
    print(f"{'plugin':<{width}}  {'distribution':<24} {'version':<10} status")
    for p in plugins:
        counts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(p.registered.items())) \
            or "nothing registered"
        status = f"ERROR {' '.join(p.error.split())}" if p.error else f"ok ({counts})"  # one line per row
        print(f"{p.name:<{width}}  {(p.distribution or '-'):<24} {(p.version or '-'):<10} {status}")
    reg = get_registry()
    for name, why in sorted(reg.skipped.items()):
        print(f"{name:<{width}}  {'-':<24} {'-':<10} not loaded ({why})")
    return 0
