"""NaN/Inf outputs, weights and metrics: counted cheaply on the device, refused by name.

A model whose weights hold NaN/Inf gives NaN/Inf outputs, and those look like predictions to every
metric: the argmax of a NaN row is a valid class index (accuracy 0.5 on two classes), a softmax of
NaN logits is a "score" of ``nan``. The evaluator (:func:`zoo_core.evaluate.evaluation_loop`, which
the Trainer's validation also runs) and :meth:`zoo_core.model.ZooModel.predict` therefore

1. check the weights once before running (:func:`check_weights`: every parameter for NaN/Inf,
   every floating buffer for NaN; a buffer may hold ``-inf`` as an attention mask). This also
   covers detectors, whose post-processing *drops* boxes with NaN scores (torchvision keeps
   ``scores > thresh`` and boxes of positive size, both False for NaN), so a NaN detector's output
   is merely empty. The result is cached per model until a weight changes (in-place version
   counters), so repeated ``predict`` calls pay it once;
2. count the NaN/Inf values of the network's raw output in every forward (:class:`OutputCounter`, a
   forward hook on ``model.net``, and on the submodules the task names in
   :meth:`~zoo_core.task.Task.output_probes`, that walks tensors nested in dicts, lists and tuples),
   on the device: no host sync per batch. The count is read once, at the end, and a non-zero count raises
   :class:`~zoo_core.errors.NonFiniteOutputError` naming how many values and images, the first bad
   batch and its sources;
3. refuse a metric that came out NaN/Inf (:func:`check_finite_metrics`): nothing non-finite is
   ever reported as a score.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Mapping
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from .errors import NonFiniteMetricError, NonFiniteOutputError

#: what to do, appended to every NonFiniteOutputError
ADVICE = ("Check the training run that produced these weights (a NaN/Inf loss: lower lr, set "
          "gradient_clip_val) and the precision (float16 overflows: evaluate with precision='32' or "
          "'bf16-mixed'), or load a good checkpoint")

#: weights already found finite: model -> the (data pointer, version) of each checked tensor
_FINITE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


# ---- weights ------------------------------------------------------------------------------------
def _checked_tensors(module: nn.Module) -> list[tuple[str, Tensor, bool]]:
    """``(name, tensor, is_parameter)`` of every strided floating parameter and buffer."""
    out = [(n, p.detach(), True) for n, p in module.named_parameters()]
    out += [(n, b, False) for n, b in module.named_buffers()]
    return [(n, t, is_param) for n, t, is_param in out
            if t.layout == torch.strided and (t.is_floating_point() or t.is_complex())]


def _version_key(tensors: list[tuple[str, Tensor, bool]]) -> tuple | None:
    try:
        return tuple((t.data_ptr(), t._version) for _, t, _ in tensors)
    except RuntimeError:  # inference tensors keep no version counter: check every time
        return None


def nonfinite_weights(module: nn.Module) -> list[tuple[str, int, int]]:
    """``(name, bad values, size)`` of each parameter holding NaN/Inf and each floating buffer holding NaN.

    One fused norm per tensor group and one host read decide whether anything is wrong (a tensor
    with a NaN/Inf has a non-finite norm); only then are the flagged tensors counted exactly.
    """
    tensors = _checked_tensors(module)
    key = _version_key(tensors)
    if not tensors or (key is not None and _FINITE.get(module) == key):
        return []
    with torch.no_grad():
        norms = torch._foreach_norm([t for _, t, _ in tensors])
        device = norms[0].device
        flags = torch.isfinite(torch.stack([n.float().to(device) for n in norms])).tolist()  # the one host read
        suspect = [i for i, ok in enumerate(flags) if not ok]
        found = []
        for i in suspect:  # a finite tensor can overflow its norm: count exactly
            name, t, is_param = tensors[i]
            bad = int((~torch.isfinite(t)).sum()) if is_param else int(torch.isnan(t).sum())
            if bad:
                found.append((name, bad, t.numel()))
    if not found and key is not None:
        _FINITE[module] = key
    return found


def check_weights(module: nn.Module, doing: str) -> None:
    """Raise :class:`NonFiniteOutputError` naming the tensors if ``module`` holds NaN/Inf weights."""
    found = nonfinite_weights(module)
    if not found:
        return
    shown = "; ".join(f"{name}: {bad} of its {size} values" for name, bad, size in found[:5])
    more = f" (and {len(found) - 5} more tensors)" if len(found) > 5 else ""
    raise NonFiniteOutputError(
        f"{doing}: the model's weights hold NaN/Inf values ({shown}{more}), so every output they touch is "
        f"NaN/Inf and would be scored as if it were a prediction; nothing was computed. {ADVICE}")


# ---- outputs ------------------------------------------------------------------------------------
def _collect(obj: Any, batch_size: int, image: int | None, out: list[tuple[Tensor, int | None]]) -> None:
    """Floating tensors nested in ``obj``, each with the image it belongs to (``None``: by its rows).

    A ``list`` of ``batch_size`` dicts is one dict per image (torchvision's detection outputs);
    tuples and other lists are structure (``(logits, aux)``, deep-supervision lists).
    """
    if isinstance(obj, Tensor):
        if obj.layout == torch.strided and (obj.is_floating_point() or obj.is_complex()):
            out.append((obj.detach(), image))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _collect(value, batch_size, image, out)
    elif isinstance(obj, (list, tuple)):
        per_image = (image is None and isinstance(obj, list) and len(obj) == batch_size
                     and all(isinstance(v, Mapping) for v in obj))
        for i, value in enumerate(obj):
            _collect(value, batch_size, i if per_image else image, out)


def nonfinite_counts(output: Any, batch_size: int) -> Tensor | None:
    """``(batch_size + 1,)`` int64 counts of NaN/Inf values in ``output``, on its device, without a sync.

    Entry ``i`` counts image ``i`` (a tensor whose first dimension is the batch is split by rows;
    an item of a per-image list belongs to its image); the last entry counts what belongs to no one
    image. ``None`` when ``output`` holds no floating tensor.
    """
    pieces: list[tuple[Tensor, int | None]] = []
    _collect(output, batch_size, None, pieces)
    if not pieces:
        return None
    device = pieces[0][0].device
    counts = torch.zeros(batch_size + 1, dtype=torch.int64, device=device)
    for t, image in pieces:
        bad = ~torch.isfinite(t.to(device, non_blocking=True))
        if image is not None:
            counts[image] += bad.sum()
        elif batch_size and t.dim() >= 1 and t.shape[0] == batch_size:
            counts[:batch_size] += bad.reshape(batch_size, -1).sum(1)
        else:
            counts[batch_size] += bad.sum()
    return counts


class OutputCounter:
    """Counts NaN/Inf values in a module's outputs batch by batch; :meth:`check` reads them once.

    >>> counter = OutputCounter()
    >>> with counter.watch(model.net):
    ...     for i, batch in enumerate(loader):
    ...         counter.begin_batch(i, sources, len(batch))
    ...         model(batch.inputs)
    >>> counter.check("evaluation")      # one host read; raises NonFiniteOutputError
    """

    def __init__(self) -> None:
        self.counts: list[Tensor] = []
        self.where: list[tuple[int, list[str]]] = []
        self._batch: tuple[int, list[str], int] = (0, [], 0)
        #: images of the batches :meth:`check_batch` found clean (their counts are no longer kept)
        self.clean_images = 0

    def begin_batch(self, index: int, sources: Sequence[str], size: int) -> None:
        """Which batch the next forwards belong to (its index, each image's source, its size)."""
        self._batch = (index, list(sources), size)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        index, sources, size = self._batch
        counts = nonfinite_counts(output, size)
        if counts is not None:
            self.counts.append(counts)
            self.where.append((index, sources))

    @contextlib.contextmanager
    def watch(self, *modules: nn.Module) -> Iterator["OutputCounter"]:
        """Count the outputs of ``modules`` (every forward call of each) inside the block."""
        handles = [m.register_forward_hook(self._hook) for m in dict.fromkeys(modules)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def check_batch(self, doing: str) -> None:
        """:meth:`check` for a stream (``model.predict_iter``): raise if the outputs counted since the last
        call hold NaN/Inf, else fold them into :attr:`clean_images`, so a long stream keeps no record per
        batch. One host read per call; the error counts every image of the stream so far."""
        if not self.counts:
            return
        if int(torch.stack([c.sum().to(self.counts[0].device) for c in self.counts]).sum().item()):
            self.check(doing)
        self.clean_images += sum(len(c) - 1 for c in {index: c for c, (index, _) in zip(self.counts, self.where)}
                                 .values())
        self.counts, self.where = [], []

    def check(self, doing: str, *, distributed: bool = False, device: torch.device | None = None) -> None:
        """Raise :class:`NonFiniteOutputError` if any output value was NaN/Inf.

        ``distributed``: sum the count over ranks first (every rank raises, none is left waiting in
        the metrics merge; a rank without batches joins with 0 on ``device``); the sources named are
        this rank's.
        """
        if not self.counts and not distributed:
            return
        device = self.counts[0].device if self.counts else (device or torch.device("cpu"))
        per_call = [c.to(device) for c in self.counts]
        total = (torch.stack([c.sum() for c in per_call]).sum().reshape(1) if per_call
                 else torch.zeros(1, dtype=torch.int64, device=device))
        if distributed:
            torch.distributed.all_reduce(total)
        if int(total.item()) == 0:
            return
        rows: dict[int, list[int]] = {}  # batch index -> per-image counts (+ the unattributed), all calls summed
        sources_of: dict[int, list[str]] = {}
        for counts, (index, sources) in zip([c.cpu().tolist() for c in per_call], self.where):
            row = rows.setdefault(index, [0] * len(counts))
            rows[index] = [a + b for a, b in zip(row, counts)] if len(row) == len(counts) else row
            sources_of.setdefault(index, sources)
        images = sum(sum(1 for v in row[:-1] if v) for row in rows.values())
        seen = sum(len(row) - 1 for row in rows.values()) + self.clean_images
        first = next((k for k, row in rows.items() if any(row)), None)
        if first is None:
            where = "on another rank"
        else:
            bad = [s for s, v in zip(sources_of[first], rows[first]) if v] or sources_of[first]
            where = f"first in batch {first}" + (f": {', '.join(bad[:4])}" if bad else "") + \
                (" ..." if len(bad) > 4 else "")
        whose = f" in {images} of {seen} image(s)" if images else ""
        raise NonFiniteOutputError(
            f"{doing}: the model's outputs hold {int(total.item())} NaN/Inf value(s){whose} ({where}). NaN/Inf "
            "outputs would be scored as if they were predictions (the argmax of a NaN row is a valid class; a "
            "detector silently drops boxes with NaN scores), "
            "so nothing was reported. The weights are finite, so check the precision (float16 overflows: use "
            "precision='32' or 'bf16-mixed'), the input images, and statistics the weights rely on (a diverged "
            "run, a negative BatchNorm running_var)")


# ---- metrics ------------------------------------------------------------------------------------
def _nonfinite_entries(value: Any, key: str, out: list[str]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            out.append(f"{key}={value}")
    elif isinstance(value, Tensor) and value.numel() == 1:
        _nonfinite_entries(value.item(), key, out)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _nonfinite_entries(v, f"{key}[{k!r}]", out)
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _nonfinite_entries(v, f"{key}[{k}]", out)


def check_finite_metrics(values: Mapping[str, Any], doing: str) -> Mapping[str, Any]:
    """``values`` unchanged, or :class:`NonFiniteMetricError` naming every NaN/Inf number in them.

    Nested entries (per-class dicts, curves) are checked too; ``None`` (a class without samples) is
    not a number and passes.
    """
    bad: list[str] = []
    for key, value in values.items():
        _nonfinite_entries(value, str(key), bad)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise NonFiniteMetricError(
            f"{doing}: the metrics came out NaN/Inf ({shown}) although the model's outputs were finite; a "
            "non-finite number is never reported as a score. The task's metric code produced it for this data "
            "(e.g. a division by an empty count): report it with the data that triggers it")
    return values
