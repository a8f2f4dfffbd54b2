"""The Task interface and the typed prediction results.

A task owns everything task-specific, so that the Trainer, the evaluator and ``model.predict`` stay
generic: how a dataset is read, how samples are collated into a :class:`Batch`, how a training
step's loss is computed, how raw outputs become typed predictions, and which metrics are reported.
A third-party task implements this class and registers it through the ``register_tasks`` hook.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .data.check import DataCheck
    from .model import ZooModel
    from .demo import DemoRecipe


# ---- typed predictions --------------------------------------------------------------------------
@dataclass
class Prediction:
    """Base of every typed prediction; ``source`` names the input (a path, or ``"<tensor 3>"``)."""

    source: str = ""


@dataclass
class Classification(Prediction):
    """Top-1 label, its name and probability, and the top-k list of (label, name, score)."""

    label: int = -1
    name: str = ""
    score: float = 0.0
    topk: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass
class Detections(Prediction):
    """Boxes ``(N, 4)`` in xyxy input-image pixels, with scores, labels and class names."""

    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    scores: Tensor = field(default_factory=lambda: torch.zeros(0))
    labels: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Instances(Detections):
    """Detections with one binary mask per object: ``masks`` ``(N, H, W)`` bool at the input image's size
    (instance segmentation; ``boxes``, ``scores``, ``labels``, ``names`` as :class:`Detections`)."""

    masks: Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0, dtype=torch.bool))


@dataclass
class Keypoints(Detections):
    """Detections with ``keypoints`` ``(N, K, 3)`` per object: x, y in input-image pixels and a visibility
    score; ``keypoint_names`` names the K points (keypoint detection); ``skeleton`` lists the 0-based
    ``(i, j)`` point pairs drawn as lines."""

    keypoints: Tensor = field(default_factory=lambda: torch.zeros(0, 0, 3))
    keypoint_names: list[str] = field(default_factory=list)
    skeleton: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class SegmentationMask(Prediction):
    """Per-pixel class indices ``(H, W)`` at the input image's size, and the class names present."""

    mask: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))
    names: list[str] = field(default_factory=list)
    scores: Tensor | None = None


# ---- batches and metrics ------------------------------------------------------------------------
@dataclass
class Batch:
    """What a task's ``collate`` returns and its ``loss``/``forward_eval`` consume.

    ``inputs`` is an image tensor ``(B, C, H, W)`` or a list of ``(C, H, W)`` tensors (detection);
    ``targets`` is whatever the task needs (a label tensor, a list of dicts, a mask tensor);
    ``meta`` holds one dict per sample (source path, original size, image id...).
    """

    inputs: Tensor | list[Tensor]
    targets: Any = None
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    def to(self, device: torch.device | str, *, channels_last: bool = False,
           non_blocking: bool = False) -> "Batch":
        """Move every tensor (nested in lists/dicts too) to ``device``."""
        def move(x: Any, image: bool = False) -> Any:
            if isinstance(x, Tensor):
                x = x.to(device, non_blocking=non_blocking)
                if image and channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                return x
            if isinstance(x, (list, tuple)):
                return type(x)(move(v, image) for v in x)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        return Batch(move(self.inputs, True), move(self.targets), self.meta)


class Metrics(abc.ABC):
    """An accumulator a task returns from :meth:`Task.new_metrics`.

    ``merge`` folds another instance (from another rank) into this one, so distributed evaluation
    is exact: the evaluator gathers every rank's accumulator and merges them before ``compute``.
    """

    @abc.abstractmethod
    def update(self, outputs: Any, batch: Batch) -> None: ...

    @abc.abstractmethod
    def compute(self) -> dict[str, Any]:
        """Scalar metrics by name (floats), plus optional structured entries (per-class dicts)."""

    @abc.abstractmethod
    def merge(self, other: "Metrics") -> None: ...

    def names(self) -> Sequence[str] | None:
        """The scalar metrics :meth:`compute` reports (what ``monitor=`` may watch), known before any update.

        The Trainer refuses a ``monitor``/``early_stopping_metric`` outside this list before the first
        step. ``None`` (the default): not known in advance; a wrong name is then found at the first
        validation.
        """
        return None


# ---- the task -----------------------------------------------------------------------------------
class Task(abc.ABC):
    """Everything task-specific. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str] = ""
    #: the metric the Trainer's "best" checkpoint and early stopping watch by default
    default_metric: ClassVar[str] = ""
    #: higher is better for ``default_metric``
    default_metric_mode: ClassVar[str] = "max"
    #: the keyword options :meth:`predict` reads (``model.predict(x, topk=3)``), each with a one-line
    #: meaning; what ``zoo serve`` passes through from a request (and its page offers), refusing any
    #: other name. ``None``: not declared, so a server passes every option on unchecked.
    predict_options: ClassVar[Mapping[str, str] | None] = None
    #: task options that describe the data a run reads (its format, an id mapping), not the model: they
    #: apply to the run that sets them and are never saved with the model (a model trained on YOLO
    #: files must read COCO files tomorrow without being told to forget it)
    data_options: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """Read a dataset from ``source`` (a path in one of the task's formats).

        ``split`` is ``"train"`` or ``"val"`` (a root holding both is split by them); ``train``
        selects augmentations; the dataset exposes ``class_names``. Bad files raise
        :class:`zoo_core.errors.DataError` naming the file and the fix.
        """

    #: the dataset formats :meth:`read_dataset` reads, by the names of :data:`zoo_core.data.layouts.FORMATS`
    #: (``("coco", "yolo", "voc")``); what ``zoo data check``/``convert`` match a folder's format against
    data_formats: ClassVar[tuple[str, ...]] = ()

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """A user's ``Dataset`` in the form this task's :meth:`collate` takes. Default: ``dataset`` unchanged.

        The Trainer and the evaluator call this for a ``Dataset`` passed instead of a path (a
        ``DataLoader`` is used as given). A task that knows the common forms of its data converts
        them here, so ``Trainer().fit(model, torchvision.datasets.CIFAR10(...))`` works: it applies its
        transforms (``train`` selects augmentation; ``image_size`` as in :meth:`read_dataset`) and
        converts targets, naming classes by ``class_names``, else the dataset's ``class_names`` or
        ``classes``, else ``model.class_names``. Samples already in the task's form pass unchanged;
        a sample in no known form is a :class:`~zoo_core.errors.DataError` naming the dataset, the
        index and the form expected. The returned dataset exposes ``class_names``.
        """
        return dataset

    def check_data(self, source: Any, *, split: str | None = None,
                   format: str | None = None) -> "DataCheck | None":
        """``zoo data check``: read ``source`` (every split, or ``split``) without a model and describe it.

        Optional. Returns a :class:`~zoo_core.data.check.DataCheck` whose splits list counts, classes,
        sizes and every problem (bad files named with their line), or ``None`` when the task has no
        check. ``format`` picks one of :attr:`data_formats` where a folder holds several.
        """
        return None

    def convert_data(self, source: Any, out_dir: Path, *, src_format: str, dst_format: str) -> Path:
        """``zoo data convert``: write ``source`` (in ``src_format``) to ``out_dir`` in ``dst_format``, every
        split; return what a reader takes (a folder or an annotation file). Optional: the default refuses."""
        raise NotImplementedError(f"the {self.name} task converts no dataset formats")

    @abc.abstractmethod
    def collate(self, samples: list[Any]) -> Batch:
        """Combine dataset samples into a :class:`Batch`."""

    @abc.abstractmethod
    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        """Forward in training mode; return named losses with the total under ``"loss"``."""

    @abc.abstractmethod
    def forward_eval(self, model: "ZooModel", batch: Batch) -> Any:
        """Forward in eval mode; return what :meth:`Metrics.update` consumes."""

    @abc.abstractmethod
    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        """A fresh metrics accumulator."""

    def metrics_for(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """The accumulator the Trainer's validation and the evaluator use for ``model``.

        Default: :meth:`new_metrics`. A task overrides it to pick metrics by model (a binary
        segmenter's) or to add the ones a user asked for in the model's task options.
        """
        return self.new_metrics(class_names)

    @abc.abstractmethod
    def predict(self, model: "ZooModel", images: list[Any], sources: list[str],
                **options: Any) -> list[Prediction]:
        """Typed predictions for loaded images (PIL images or ``(C, H, W)`` float tensors in [0, 1])."""

    def output_probes(self, model: "ZooModel") -> list[torch.nn.Module]:
        """Submodules of ``model.net`` whose outputs the evaluator and ``predict`` also check for NaN/Inf.

        ``model.net``'s own output is always checked (:mod:`zoo_core.finite`). A task whose networks
        filter their raw outputs before returning them names the modules before the filter: a
        detector keeps boxes with ``score > threshold``, False for NaN, so its NaN outputs would only
        show as missing boxes. Default: none.
        """
        return []

    def plots(self, model: "ZooModel", dataset: torch.utils.data.Dataset, report: Mapping[str, Any],
              out_dir: Path) -> list[Path]:
        """Write plots a person would look at (confusion matrix, PR curve...); return their paths."""
        return []

    def source_class_names(self, source: Any, *, split: str) -> list[str] | None:
        """The class names a dataset at ``source`` defines, read without a model. Optional.

        ``zoo train`` uses it to size a fresh head to the data when ``--num-classes`` is not given;
        ``None`` (the default) keeps the model's head.
        """
        return None

    def source_model_options(self, source: Any, *, split: str) -> dict[str, Any]:
        """Builder options besides the class names that a dataset at ``source`` defines. Optional.

        ``zoo train`` passes them to a model loaded by name (the user's own ``--option`` values win), so
        its new head fits the data: the keypoints task returns the categories' ``keypoint_names`` and
        ``skeleton``. ``{}`` (the default): nothing beyond the classes.
        """
        return {}

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any] | None:
        """``n`` tiny synthetic samples for ``model``, shaped exactly as this task's datasets yield them.

        Optional. The conformance suite (:mod:`zoo_core.testing`, ``pytest --zoo-plugin=NAME``)
        passes them through :meth:`collate`, :meth:`loss`, :meth:`forward_eval` and the metrics to
        check that a plugin's models honour this task's contract. Use the model's
        ``preprocess.input_size`` (or something small and valid for it) and targets within
        ``model.num_classes``; derive everything from ``seed``. Returning ``None`` (the default)
        makes the suite skip those checks and say so.
        """
        return None

    def demo(self) -> "DemoRecipe | None":
        """How ``zoo demo`` and ``zoo data synth`` show this task on built-in data. Optional.

        Return a :class:`~zoo_core.demo.DemoRecipe` (a synthetic dataset generator, a small model
        and Trainer settings that visibly learn in a few CPU minutes); ``None`` (the default) leaves
        the task out of both commands.
        """
        return None

    def output_names(self, model: "ZooModel") -> list[str]:
        """The name of each label value this task's predictions hold (value ``i`` is ``names[i]``): what
        drawn results, ``zoo predict --json`` and ``zoo serve`` print. Default: the model's class names."""
        return list(model.class_names)

    def validate_num_classes(self, num_classes: int) -> None:
        """Refuse impossible class counts early."""
        if num_classes < 1:
            raise ValueError(f"{self.name}: num_classes must be >= 1, got {num_classes}")
