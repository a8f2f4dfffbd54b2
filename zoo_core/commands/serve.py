"""``zoo serve``: models behind an HTTP API (FastAPI on uvicorn) with batching, metrics and a web page.

Needs the serve extra (``pip install "zoo[serve]"``); without it the command says so before
loading any model. torch, FastAPI and uvicorn are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ..serve.defaults import DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_WAIT_MS

#: ``NAME=SPEC`` names a model explicitly (``digits=runs/digits``)
NAMED = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")


def _whole(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    return parse


def _millis(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP: POST /predict, GET /models /health /metrics, a web page",
                       description="Serve one or more models (a name, saved model folder, run folder or checkpoint; "
                                   "NAME=SPEC to name one) with FastAPI on uvicorn. Requests arriving together are "
                                   "batched per model. The page at / draws predictions; POST /predict takes image "
                                   "files (multipart), JSON with base64 images or URLs, or an image/* body. Needs "
                                   "the serve extra: pip install \"zoo[serve]\".")
    p.add_argument("models", nargs="+", metavar="MODEL_OR_RUN",
                   help="model name, saved model folder, run folder or checkpoint .pt; NAME=SPEC names it")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every "
                                                        "interface)")
    p.add_argument("--port", type=_whole(0), default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--max-batch", type=_whole(1), default=DEFAULT_MAX_BATCH,
                   help=f"most images per forward pass (default {DEFAULT_MAX_BATCH}; 1: no batching)")
    p.add_argument("--max-wait-ms", type=_millis, default=DEFAULT_MAX_WAIT_MS,
                   help=f"longest a request waits for its batch to fill, in ms (default {DEFAULT_MAX_WAIT_MS:g})")
    p.add_argument("--max-bytes", type=_whole(1), default=DEFAULT_MAX_BYTES,
                   help=f"largest request body (and image fetched from a URL) in bytes (default {DEFAULT_MAX_BYTES})")
    p.add_argument("--no-urls", action="store_true", help="refuse image URLs in requests (never fetched when "
                                                          "ZOO_OFFLINE=1 anyway)")
    p.add_argument("--device", help="device for every model (default: cuda when available, else cpu)")
    p.add_argument("--task", help="task of a model name (default: its first)")
    p.add_argument("--num-classes", type=int, help="head size for a model name")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def model_name(spec: str) -> tuple[str, str]:
    """``(name, spec)``: ``NAME=SPEC`` as given; a path by its folder (a run's ``model/`` or checkpoint by the
    run's); a model name as itself."""
    named = NAMED.match(spec)
    if named and not Path(spec).exists():
        return named.group(1), named.group(2)
    path = Path(spec)
    if not path.exists():
        return spec, spec
    path = path.resolve()
    if path.is_file() or path.name == "model":
        path = path.parent
    return path.name or spec, spec


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import require_serve_extra

    require_serve_extra()  # before loading any model: the missing extra is named at once
    import torch

    from ..serve.app import create_app, serving_device
    from ..serve.server import bind, run
    from .train import open_model

    named: dict[str, str] = {}
    for spec in args.models:
        name, spec = model_name(spec)
        if name in named:
            raise ValueError(f"two models would both be called {name!r} ({named[name]} and {spec}); name them with "
                             f"NAME=SPEC, e.g. {name}2={spec}")
        named[name] = spec
    sock = bind(args.host, args.port)  # first: a port in use fails before any model loads; 0 picks a free one
    port = sock.getsockname()[1]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = {}
    for name, spec in named.items():
        models[name] = open_model(spec, task=args.task, num_classes=args.num_classes)
        where = serving_device(models[name], device)  # int8 stays on the CPU (with a warning)
        models[name].to(where)
        print(f"{name}: {models[name].label} ({models[name].task}, {models[name].num_classes} classes) on {where}",
              flush=True)
    app = create_app(models, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_bytes=args.max_bytes,
                     allow_urls=not args.no_urls)  # each model is on its device already
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"zoo serve: http://{host}:{port}/ (page), POST /predict, GET /models /health /metrics; "
          f"batches of up to {args.max_batch} within {args.max_wait_ms:g} ms. Ctrl-C stops.", flush=True)
    run(app, sock, log_level=args.log_level)
    return 0
