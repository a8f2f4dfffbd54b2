"""The ``zoo`` command. Each sub-command lives in :mod:`zoo_core.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from ._version import __version__
from .commands import MODULES
from .errors import ZooError


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="A plugin-based computer-vision model zoo.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in MODULES:
        try:
            module = importlib.import_module(f"zoo_core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"zoo_core.commands.{name}":
                raise
            continue
        module.add_parsers(sub)
    return parser


def _error_line(exc: BaseException) -> str:
    """The one line an error prints as; a plugin builder's ValueError/TypeError, which the zoo wrapped to
    name the builder, is shown under its original type (``ValueError: ...``): its text alone may not say
    what kind of failure it was."""
    from .errors import BuilderError, shown_type

    return f"{shown_type(exc)}: {exc}" if isinstance(exc, BuilderError) else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ZooError, LookupError, ValueError, FileNotFoundError) as exc:
        print(f"zoo {args.command}: error: {_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # 130 = 128 + SIGINT, what shells report for Ctrl-C
        print(f"\nzoo {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo list | head`: the reader left; exit quietly like other Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not raise again
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
