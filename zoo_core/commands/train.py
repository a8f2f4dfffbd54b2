"""``zoo train``, ``zoo eval`` and ``zoo predict``.

``zoo train`` has one flag per :class:`~zoo_core.train.config.TrainConfig` field (generated, so the
flags, the YAML keys of ``--config run.yaml`` and ``Trainer(...)`` never disagree); precedence is
defaults < YAML < flags. It runs unchanged under ``torchrun``. torch is imported only inside the
command functions, so ``zoo list`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from ..train.sources import add_arguments, from_sources, load_yaml

#: keys of a --config YAML file that describe the run rather than the Trainer
RUN_KEYS = ("model", "task", "data", "train", "val", "num_classes", "weights", "resume", "options",
            "task_options")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model (every Trainer setting is a flag)",
                       usage="zoo train --model NAME --data DIR [settings...]  (zoo train -h lists them all)",
                       description="Train MODEL on a dataset in its task's format. Settings come from "
                                   "--config YAML (Trainer fields plus model/task/data/train/val/num_classes/"
                                   "weights/options keys), overridden by flags.")
    p.add_argument("--model", help="model name (zoo list), or a saved model directory to fine-tune")
    p.add_argument("--task", help="task (cls, det, seg...; default: the model's first)")
    p.add_argument("--data", help="dataset root holding train/ and val/ in the task's format")
    p.add_argument("--train", dest="train_data", help="training data (default: --data)")
    p.add_argument("--val", dest="val_data", help="validation data (default: --data; 'none' to skip)")
    p.add_argument("--num-classes", type=int, help="replace the head for this many classes")
    p.add_argument("--weights", help="pretrained tag ('default') or a weights file / saved model")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option for zoo.load (repeatable), e.g. --option backbone=resnet34")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (augmentation, loss; repeatable), e.g. --task-option hflip=0")
    p.add_argument("--config", type=Path, help="YAML file of settings (flags override it)")
    p.add_argument("--resume", nargs="?", const="last", help="resume from out_dir/last.pt or a checkpoint path")
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a model on a dataset: metrics, images/s, plots")
    p.add_argument("model", help="model name, saved model directory, run directory or checkpoint .pt")
    p.add_argument("--data", required=True, help="dataset (a root with val/, or the split folder itself)")
    _model_flags(p)
    p.add_argument("--split", default="val", help="split to read from a root holding several (default val)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--precision", default="32", choices=["32", "bf16-mixed", "16-mixed"])
    p.add_argument("--out", type=Path, help="folder for the plots (default zoo_eval/<model>)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out the zoo did not write (by "
                                                            "default only its own earlier plots are replaced)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="predict images, folders, globs, URLs or videos with a model",
                       description="Predict every image of each SOURCE, a batch at a time (results are printed as "
                                   "they come; nothing holds all the images). --save writes annotated copies.")
    p.add_argument("model", help="model name, saved model directory, run directory or checkpoint .pt")
    p.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files, folders (read recursively), glob patterns (quote them: 'data/**/*.jpg'), "
                        "http(s) image URLs, or video files (one result per frame; needs PyAV: pip install av)")
    _model_flags(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines) on stdout: boxes as "
                                                       "[x1, y1, x2, y2], masks as COCO RLE per class")
    p.add_argument("--save", type=Path, metavar="DIR", help="write each image with its prediction drawn into DIR "
                                                            "(boxes, mask overlay or top-k)")
    p.add_argument("--overwrite", action="store_true", help="replace files in --save the zoo did not write")
    p.add_argument("--conf", type=float, help="keep results scoring at least this (0..1)")
    p.add_argument("--iou", type=float, help="detection: non-maximum suppression IoU (0..1)")
    p.add_argument("--max-det", type=int, help="detection: at most this many boxes per image")
    p.add_argument("--classes", help="keep only these classes: names or ids, comma-separated (cat,dog or 0,2)")
    p.add_argument("--topk", type=int, help="classification: how many classes to list")
    p.set_defaults(func=cmd_predict)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="task of a model name (default: its first)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--weights", help="weights tag or file for a model name")
    p.add_argument("--device", help="device (default: cuda when available)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (repeatable), e.g. --task-option format=yolo for the data's format")


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["backbone=resnet34", "depth=3"]`` -> ``{"backbone": "resnet34", "depth": 3}`` (YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"option {item!r}: expected KEY=VALUE")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def open_model(spec: str, *, task: str | None = None, num_classes: int | None = None,
               weights: str | None = None, options: dict[str, Any] | None = None,
               task_options: dict[str, Any] | None = None, seed: int | None = None) -> Any:
    """A model from a name, a saved directory, a run directory or a checkpoint file: :func:`zoo_core.load`
    (:mod:`zoo_core.model_files` says what each path means), with flag names in its errors.

    ``seed``: the initialisation of a new head (or a model built by name) is repeatable (``zoo train --seed``).
    """
    import zoo_core as zoo
    from ..model_files import model_on_disk

    found = model_on_disk(spec)
    if found is not None and (weights or options):
        given = [f"--weights {weights}"] * bool(weights) + [f"--option {k}=..." for k in options or {}]
        raise ValueError(f"{', '.join(given)} cannot apply to {found}: a saved model or checkpoint rebuilds with the "
                         "options and weights it holds. Pass a model name to build with them")
    return zoo.load(spec, task=task, num_classes=num_classes, weights=weights, task_options=task_options,
                    seed=seed, **(options or {}))


def checkpoint_class_names(out_dir: str, resume: Any) -> list[str] | None:
    """The class names of the checkpoint ``zoo train --resume`` continues (its head, whatever the data says)."""
    from ..train.checkpoint import load_checkpoint, resume_path

    path = resume_path(resume, Path(out_dir) / "last.pt")
    if path is None or not path.is_file():
        return None  # the Trainer names the missing checkpoint
    return list(load_checkpoint(path, mmap=True).get("class_names") or []) or None  # metadata: no tensor read


def data_class_names(name: str, task: str | None, train: Any,
                     task_options: Mapping[str, Any] | None = None) -> list[str] | None:
    """The classes of the training data, for a model loaded by name without ``--num-classes``.

    What a user of ``zoo train --data`` expects: fine-tuning a 1000-class ImageNet model on 10 folders
    trains a 10-way head named after the folders (the printed line says so). Read before the model
    is built, so it is built (and its weights read) once. ``None``: the task cannot tell. The task reads the data with the run's
    data options (``--task-option format=yolo``, ``label_map=...``), as its training will.
    """
    names = list(_data_task(name, task, task_options)[1].source_class_names(train, split="train") or [])
    if names:
        print(f"{name}: a {len(names)}-class head for the classes of {train} (--num-classes overrides)",
              flush=True)
    return names or None


def data_model_options(name: str, task: str | None, train: Any, given: Mapping[str, Any],
                       task_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Builder options the training data defines besides its classes (:meth:`Task.source_model_options`:
    a keypoints file's ``keypoint_names`` and ``skeleton``), less those the user ``given`` and those the
    model's builder does not take (those its spec lists in ``saved_options``); printed."""
    spec, task_impl = _data_task(name, task, task_options)
    found = task_impl.source_model_options(train, split="train") or {}
    taken = {k: v for k, v in found.items() if k not in given and k in spec.saved_options}
    if taken:
        shown = ", ".join(f"{k}={v!r}" if len(repr(v)) < 60 else f"{k}=[{len(v)} items]" for k, v in taken.items())
        print(f"{name}: from {train}: {shown} (--option overrides)", flush=True)
    return taken


def _data_task(name: str, task: str | None, task_options: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """``(spec, task)``: the model's spec and the task that reads ``zoo train``'s data (``task``, else the
    model's first), with the run's data options."""
    import zoo_core as zoo
    from ..api import split_tag
    from ..registry import get_registry

    spec, _ = split_tag(get_registry(), name, task, None)  # "resnet50.a1_in1k" names a weights tag
    task_impl = zoo.get_task(task or spec.tasks[0])
    data_options = {k: v for k, v in (task_options or {}).items() if k in getattr(task_impl, "data_options", ())}
    if data_options:  # a task instance reading this run's data as read_dataset will (format, label_map)
        task_impl = type(task_impl)(**data_options)
    return spec, task_impl


def cmd_train(args: argparse.Namespace) -> int:
    import zoo_core as zoo

    file_values = load_yaml(args.config) if args.config else {}
    config = from_sources(file_values, args, other_keys=RUN_KEYS, source=str(args.config))
    run = {k: file_values.get(k) for k in RUN_KEYS}
    for key, attr in (("model", "model"), ("task", "task"), ("data", "data"), ("train", "train_data"),
                      ("val", "val_data"), ("num_classes", "num_classes"), ("weights", "weights"),
                      ("resume", "resume")):
        if getattr(args, attr, None) is not None:
            run[key] = getattr(args, attr)
    if not run["model"]:
        raise ValueError("zoo train needs --model NAME (or model: in --config)")
    train = run["train"] or run["data"]
    if not train:
        raise ValueError("zoo train needs --data DIR (a root with train/ and val/) or --train/--val")
    val = run["val"] if run["val"] is not None else run["data"]
    val = False if str(val).lower() == "none" else val  # False: no validation (None would use the root's val/)
    options = {**dict(run["options"] or {}), **parse_options(args.option)}
    task_options = {**dict(run["task_options"] or {}), **parse_options(args.task_option)}
    by_name = not Path(str(run["model"])).exists()
    names = None
    if by_name and run["num_classes"] is None:  # a resumed run keeps the head its checkpoint has
        names = (checkpoint_class_names(config.out_dir, run["resume"]) if run["resume"] else
                 data_class_names(str(run["model"]), run["task"], train, task_options))
    if names:
        options = {**options, "class_names": names}
    if by_name and not run["resume"]:  # a resumed run's model options are its checkpoint's
        options = {**data_model_options(str(run["model"]), run["task"], train, options, task_options), **options}
    model = open_model(str(run["model"]), task=run["task"], num_classes=len(names) if names else run["num_classes"],
                       weights=run["weights"], options=options, task_options=task_options, seed=config.seed)
    result = zoo.Trainer(config).fit(model, train, val, resume=run["resume"])
    if config.verbose and result.model_dir is not None:
        print(f"evaluate it: zoo eval {result.model_dir} --data {val or train}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import zoo_core as zoo

    model = open_model(args.model, task=args.task, num_classes=args.num_classes, weights=args.weights,
                       task_options=parse_options(args.task_option))
    report = zoo.evaluate(model, args.data, batch_size=args.batch_size, device=args.device, out_dir=args.out,
                          plots=not args.no_plots, split=args.split, num_workers=args.num_workers,
                          precision=args.precision, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"metrics": report.scalars(), "images_per_s": report.images_per_s,
                          "latency_ms": report.latency_ms, "plots": [str(p) for p in report.plots]}))
    else:
        print(report)
    return 0


def predict_options(args: argparse.Namespace) -> dict[str, Any]:
    """The predict keyword options the flags set (unset flags are left to the task's defaults)."""
    given = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det, "topk": args.topk,
             "classes": [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes is not None else None}
    return {k: v for k, v in given.items() if v is not None}


def cmd_predict(args: argparse.Namespace) -> int:
    from ..predict_outputs import AnnotatedFolder, annotate, json_line
    from ..predict_stream import stream

    model = open_model(args.model, task=args.task, num_classes=args.num_classes, weights=args.weights,
                       task_options=parse_options(args.task_option))
    if args.device:
        model.to(args.device)
    names = model.task_impl.output_names(model)  # a binary mask's 1 is its class, 0 the background
    folder = AnnotatedFolder(args.save, overwrite=args.overwrite) if args.save is not None else None
    with folder if folder is not None else contextlib.nullcontext():
        for result in stream(model, args.images, batch_size=args.batch_size, options=predict_options(args)):
            pred = result.prediction
            if args.json:
                print(json_line(pred, names, result.item), flush=True)
            else:
                fields = describe(pred)
                print(f"{fields.pop('source')}: " + ", ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
            if folder is not None:
                folder.add(result.item.save_name, annotate(result.image, pred, names))
    if folder is not None:
        print(f"{folder.written} annotated image(s) in {folder.folder}", file=sys.stderr)
    return 0


def describe(pred: Any) -> dict[str, Any]:
    """A typed prediction as plain data: tensors become lists (short ones) or their shape."""
    import dataclasses

    import torch

    out: dict[str, Any] = {}
    for f in dataclasses.fields(pred):
        value = getattr(pred, f.name)
        if isinstance(value, torch.Tensor):
            value = value.tolist() if value.numel() <= 64 else f"<tensor {tuple(value.shape)}>"
            value = [round(v, 4) if isinstance(v, float) else v for v in value] if isinstance(value, list) \
                and value and isinstance(value[0], float) else value
        elif isinstance(value, float):
            value = round(value, 4)
        out[f.name] = value
    return out
