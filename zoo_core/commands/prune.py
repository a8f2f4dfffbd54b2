"""``zoo prune`` and ``zoo quantize``: a smaller model for deployment, saved, with what it cost.

    zoo prune runs/cli runs/cli-pruned --amount 0.3 --data data/digits
    zoo quantize runs/cli runs/cli-int8 --data data/digits

Both read MODEL_OR_RUN as ``zoo eval`` does (a saved model, a run folder, a checkpoint or a name), print
the report (parameters, MACs, size, CPU latency, and with ``--data`` the metric before/after on its
validation split, calibrating on its training split), and save the result with ``model.save(OUT)``: it
loads with ``zoo.load(OUT)`` and its model card holds the metric change. Nothing here imports torch until
a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune channels (structured) or weights (unstructured), report, save",
                       description="Prune a copy of MODEL_OR_RUN (l1-structured: whole channels and attention "
                                   "heads through torch-pruning's dependency graph, pip install \"zoo[prune]\"; "
                                   "unstructured: the smallest weights set to zero), print parameters, MACs, size, "
                                   "CPU latency and (with --data) the metric before/after, and save it to OUT.")
    _common(p)
    p.add_argument("--amount", type=float, default=0.3,
                   help="fraction of channels (structured) or weights (unstructured) removed (default 0.3)")
    p.add_argument("--method", default="l1-structured", choices=["l1-structured", "unstructured"])
    p.add_argument("--ignore", action="append", default=[], metavar="PREFIX",
                   help="a layer (state-dict prefix) to leave whole, besides the head (repeatable)")
    p.add_argument("--round-to", type=int, help="keep channel counts multiples of this")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("quantize", help="int8 copy for CPU deployment (dynamic or static), report, save",
                       description="Quantise a copy of MODEL_OR_RUN to int8 (dynamic: Linear layers, no data "
                                   "needed; static: convolutions too, calibrated on --data; auto picks), print size, "
                                   "latency and output changes and (with --data) the metric before/after, and save "
                                   "it to OUT.")
    _common(p)
    p.add_argument("--method", default="auto", choices=["auto", "dynamic", "static"])
    p.add_argument("--calibration-batches", type=int, default=8, help="batches of --data to calibrate on (default 8)")
    p.add_argument("--backend", help="int8 CPU backend (default: x86/fbgemm, else qnnpack)")
    p.set_defaults(func=cmd_quantize)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_RUN", help="saved model directory, run directory, checkpoint .pt or "
                                                         "model name")
    p.add_argument("out", type=Path, metavar="OUT", help="folder to save the result in (model.save)")
    p.add_argument("--data", help="dataset root: the metric before/after on its val split, inputs from its train split")
    p.add_argument("--task", help="task of a model name (default: its first)")
    p.add_argument("--weights", help="weights tag or file for a model name")
    p.add_argument("--image-size", type=int, help="input size (default: the model's)")
    p.add_argument("--eval-batches", type=int, help="evaluate on at most this many batches (quick runs)")


def _open(args: argparse.Namespace) -> Any:
    from ..fileio import check_folder_target
    from ..saving import check_save_target
    from .train import open_model

    check_folder_target(args.out, "OUT")  # before the work: a file where the folder goes, someone else's files
    if args.out.exists():
        check_save_target(args.out)
    model = open_model(args.model, task=args.task, weights=args.weights)
    if args.image_size:
        model.set_image_size(args.image_size)
    return model


def _eval_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"limit_batches": args.eval_batches} if args.eval_batches else {}


def cmd_prune(args: argparse.Namespace) -> int:
    model = _open(args)
    result = model.prune(args.amount, args.method, calibration_data=args.data, eval_data=args.data,
                         ignore=args.ignore, round_to=args.round_to, eval_kwargs=_eval_kwargs(args))
    print(result)
    print(f"saved: {result.model.save(args.out)}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    model = _open(args)
    result = model.quantize("int8", method=args.method, calibration_data=args.data, eval_data=args.data,
                            calibration_batches=args.calibration_batches, backend=args.backend,
                            eval_kwargs=_eval_kwargs(args))
    print(result)
    print(f"saved: {result.model.save(args.out)}")
    return 0
