"""``zoo weights``, ``zoo pull`` and ``zoo export``: list, mirror and ship weights.

Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Iterator


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list every known pretrained weight of a model name")
    p.add_argument("name", help="a model name, e.g. resnet50 or timm:resnet50")
    p.add_argument("--task")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("pull", help="download weights into a mirror that an offline machine uses as ZOO_HOME")
    p.add_argument("names", nargs="+", metavar="NAME[.TAG]",
                   help="model (its default weights) or model.tag; 'NAME.all' pulls every tag")
    p.add_argument("--to", required=True, type=Path, metavar="DIR",
                   help="mirror directory, laid out like $ZOO_HOME (then: export ZOO_HOME=DIR)")
    p.add_argument("--task")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("export", help="export a model to ONNX/TorchScript/torch.export, verified against eager")
    p.add_argument("model", metavar="NAME_OR_DIR", help="a model name (random init unless --weights), a "
                   "directory written by model.save(), a run folder or a training checkpoint")
    p.add_argument("out", type=Path, metavar="OUT", help="output file (.onnx, .pt for TorchScript, .pt2 for "
                   "torch.export)")
    p.add_argument("--format", help="onnx, torchscript or torch_export (default: from OUT's suffix, else onnx)")
    p.add_argument("--task")
    p.add_argument("--weights", help="a tag, 'default', or a weights file")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--image-size", type=int, help="export input size (default: the model's)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the highest supported)")
    p.add_argument("--static-batch", action="store_true", help="fixed batch axis instead of a dynamic one")
    p.add_argument("--atol", type=float, help="tolerance on |exported - eager| (default: 1e-4 relative)")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT the zoo did not write (by default only "
                                                            "a previous zoo export there is replaced)")
    p.set_defaults(func=cmd_export)


def cmd_weights(args: argparse.Namespace) -> int:
    from ..weights_catalog import format_table, list_weights

    rows = list_weights(args.name, task=args.task)
    print(format_table(rows))
    return 0


@contextlib.contextmanager
def _zoo_home(path: Path) -> Iterator[None]:
    """Point ZOO_HOME at ``path`` and allow downloads (pulling is an explicit request for them)."""
    saved = {k: os.environ.get(k) for k in ("ZOO_HOME", "ZOO_OFFLINE")}
    os.environ["ZOO_HOME"] = str(path)
    os.environ.pop("ZOO_OFFLINE", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cmd_pull(args: argparse.Namespace) -> int:
    from ..api import split_tag
    from ..errors import ZooError
    from ..registry import get_registry
    from ..weights import fetch
    from ..weights_catalog import describe_weights, find_weights

    reg = get_registry()
    mirror = args.to.expanduser().resolve()
    jobs = []
    for name in args.names:
        every = name.endswith(".all")
        spec, tag = split_tag(reg, name[:-4] if every else name, args.task, None)
        if not spec.weights and not spec.weights_info:
            raise ZooError(f"{spec.qualified_name} has no known pretrained weights to pull "
                           f"(`zoo weights {spec.name}` lists what is known)")
        described = (describe_weights(spec) if every
                     else [find_weights(spec, tag or (spec.weights[0] if spec.weights else ""))])
        jobs += [(spec, w) for w in described]
    with _zoo_home(mirror):
        for spec, w in jobs:
            path = fetch(w, plugin=spec.plugin, model=spec.name)
            print(f"{spec.qualified_name}.{w.tag}: {path}")
    print(f"mirror ready: on the offline machine run `export ZOO_HOME={mirror}` (and ZOO_OFFLINE=1)")
    return 0


#: what an export file's suffix says it holds (torch.export archives are .pt2; TorchScript .pt or .ts)
SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "torch_export", ".pt": "torchscript", ".ts": "torchscript",
                  ".torchscript": "torchscript"}


def export_format(out: Path, given: str | None) -> str:
    """The format to write: ``given``, else the one OUT's suffix names, else ONNX; an ONNX file asked to hold
    a torch archive (or the reverse) is an error."""
    from ..export import normalize_format

    implied = SUFFIX_FORMATS.get(out.suffix.lower())
    if given is None:
        return implied or "onnx"
    canonical = normalize_format(given)
    # only ONNX vs a torch archive is a real contradiction (.pt holds TorchScript or torch.export alike)
    if implied is not None and (implied == "onnx") != (canonical == "onnx"):
        wanted = [s for s, f in SUFFIX_FORMATS.items() if f == canonical]
        raise ValueError(f"{out} ends in {out.suffix} (a {implied} file) but --format is {given}: name it "
                         f"{out.with_suffix(wanted[0])}, or drop --format")
    return canonical


def cmd_export(args: argparse.Namespace) -> int:
    from ..fileio import check_file_target
    from .train import open_model

    check_file_target(args.out, "OUT")  # before the model is loaded: a folder there, or a file as its folder
    args.format = export_format(args.out, args.format)
    model = open_model(args.model, task=args.task, num_classes=args.num_classes, weights=args.weights)
    if args.image_size:
        model.set_image_size(args.image_size)
    result = model.export(args.format, args.out, opset=args.opset, atol=args.atol,
                          dynamic_batch=False if args.static_batch else None, overwrite=args.overwrite)
    print(result)
    print(f"max abs difference: {result.max_abs_diff:.3g}")
    return 0
