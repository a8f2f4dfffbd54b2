"""``model.predict`` and ``model.predict_iter``: read, predict and hand back one batch at a time.

:func:`stream` reads ``batch_size`` images from the inputs (:mod:`zoo_core.predict_sources`),
predicts them with the model's task, checks that batch's outputs for NaN/Inf, and yields its
predictions before reading the next batch: at most one batch of images is held (plus what the
caller keeps), whether the input is three tensors, a folder of a million files or a long video.

Per batch, as ``predict`` always did per call: a model (or its net) in training mode is put in eval
mode and every module's mode is restored before the results are yielded; NaN/Inf weights (checked
once, at the start) or outputs raise :class:`~zoo_core.errors.NonFiniteOutputError` instead of
yielding predictions built on them (:mod:`zoo_core.finite`).
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from .errors import InputError, OptionError

if TYPE_CHECKING:
    from .model import ZooModel
    from .predict_sources import SourceItem
    from .task import Prediction


@dataclass
class Predicted:
    """One result of :func:`stream`: the input item, the image the task was given (an RGB/grey PIL image
    or a ``(C, H, W)`` float tensor in [0, 1]; what ``zoo predict --save`` draws on) and the prediction."""

    item: "SourceItem"
    image: Any
    prediction: "Prediction"


def check_options(model: "ZooModel", options: Mapping[str, Any]) -> None:
    """Refuse option names the model's task does not declare (``Task.predict_options``), listing the ones it
    does; a task that declares none takes any (its own ``predict`` reads them)."""
    declared = getattr(model.task_impl, "predict_options", None)
    if declared is None:
        return
    unknown = sorted(set(options) - set(declared))
    if unknown:
        known = "; ".join(f"{k} ({v})" for k, v in declared.items()) or "none"
        raise OptionError(f"predict: the {model.task} task takes no option {', '.join(map(repr, unknown))}; its "
                          f"options: {known}")


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or int(batch_size) < 1:
        raise OptionError(f"predict: batch_size={batch_size!r} must be a whole number >= 1")
    return int(batch_size)


def stream(model: "ZooModel", inputs: Any, *, batch_size: int = 16, bgr: bool = False,
           options: Mapping[str, Any] | None = None) -> Iterator[Predicted]:
    """Predictions for ``inputs``, read and predicted ``batch_size`` images at a time.

    The options' names, ``batch_size`` and the model's weights are checked now; the inputs are read as
    the returned iterator is consumed (a missing file is named when the stream reaches it). No input at
    all is an :class:`~zoo_core.errors.InputError`.
    """
    from .finite import check_weights

    options = dict(options or {})
    size = check_batch_size(batch_size)
    check_options(model, options)
    check_weights(model, "predict")
    return _batches(model, inputs, size, bool(bgr), options)


def _batches(model: "ZooModel", inputs: Any, batch_size: int, bgr: bool, options: dict[str, Any]
             ) -> Iterator[Predicted]:
    from .data.images import as_channels, prepare_image, warn_range_notes
    from .finite import OutputCounter
    from .predict_sources import iter_sources

    channels = model.preprocess.in_chans
    items = iter_sources(inputs, channels=channels, bgr=bgr)
    counter = OutputCounter()
    task = model.task_impl
    empty = True
    for index in itertools.count():
        chunk = list(itertools.islice(items, batch_size))
        if not chunk:
            break
        empty = False
        images, notes = [], []
        for item in chunk:
            raw = item.load()
            image, note = (raw, None) if item.ready else prepare_image(raw, f"input {item.index}", channels)
            images.append(as_channels(image, channels))
            notes += [note] if note else []
        warn_range_notes(notes)
        sources = [item.source for item in chunk]
        with torch.inference_mode():
            preds = _predict_batch(model, task, counter, index, images, sources, options)
        counter.check_batch("predict")
        for item, image, pred in zip(chunk, images, preds):
            yield Predicted(item, image, pred)
        del chunk, images, preds  # the next batch is read with this one's images released
    if empty:
        raise InputError("predict() got no inputs")


def _predict_batch(model: "ZooModel", task: Any, counter: Any, index: int, images: list[Any], sources: list[str],
                   options: dict[str, Any]) -> list["Prediction"]:
    from .model import restored_modes

    switch = model.training or model.net.training
    with restored_modes(model) if switch else contextlib.nullcontext(), \
            counter.watch(model.net, *task.output_probes(model)):
        if switch:
            model.eval()
        counter.begin_batch(index, sources, len(images))
        preds = list(task.predict(model, images, sources, **options))
    if len(preds) != len(images):
        raise TypeError(f"the {model.task} task's predict returned {len(preds)} prediction(s) for {len(images)} "
                        "image(s); it must return one per image")
    return preds
