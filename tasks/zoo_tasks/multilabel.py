"""Multi-label classification (``multilabel_classification``, aliases ``mlcls``, ``multilabel-cls``).

Any number of labels per image: one sigmoid per class, binary cross-entropy with logits, mAP over labels
and F1 at a threshold (:class:`~.cls_metrics.MultiLabelMetrics`). It reuses the classification models as
they are: a classifier's network returns ``(B, K)`` logits either way, so every built-in classifier (all
of torchvision's and timm's) declares this task too, and ``zoo.load("resnet18",
task="multilabel_classification", class_names=[...])`` builds the same network with a K-way head. A
third-party classifier offers it by listing the task in its spec's ``tasks`` (its builder must not
branch on the task name). Data: :mod:`.multilabel_data`.

Options: ``threshold`` (0.5: a label is predicted when its probability reaches it; F1, exact match and
``predict``), ``hflip`` (0.5), ``scale`` ((0.5, 1.0)), and the classification task's augmentation
(``auto_augment``, ``color_jitter``, ``mixup``/``cutmix`` on multi-hot targets, ``train_transform``,
``eval_transform``: :mod:`.augment`) and hooks (``loss``, ``metrics``: :mod:`.hooks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from zoo_core.errors import DataError
from zoo_core.task import Batch, Metrics, Prediction, Task

from .augment import CLASSIFICATION_CHECKS, CLASSIFICATION_DEFAULTS, check_transform_conflict
from .augment import classification_transform
from .classification import _logits, _model_device, _placeholder_names
from .cls_loss import classification_loss
from .cls_metrics import MultiLabelMetrics
from .hooks import HOOK_CHECKS, HOOK_DEFAULTS, LOSS_CHECK, HooksMixin
from .multilabel_data import MultiLabelDataset, class_order, index_items, multilabel_sample
from .option_checks import fraction_range
from .task_options import OptionsMixin
from .transforms import eval_transform

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

DEFAULT_OPTIONS: dict[str, Any] = {"threshold": 0.5, "hflip": 0.5, "scale": (0.5, 1.0), "loss": None,
                                   **HOOK_DEFAULTS, **CLASSIFICATION_DEFAULTS}


@dataclass
class LabelSet(Prediction):
    """The labels whose probability reaches ``threshold`` (best first), and every label's probability."""

    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5


class MultiLabelClassificationTask(HooksMixin, OptionsMixin, Task):
    """The ``multilabel_classification`` task; see the module docstring."""

    name = "multilabel_classification"
    default_metric = "map"
    default_metric_mode = "max"
    option_defaults = DEFAULT_OPTIONS
    unit_interval_options = (*OptionsMixin.unit_interval_options, "threshold")
    option_checks = {"scale": fraction_range, "loss": LOSS_CHECK, **HOOK_CHECKS, **CLASSIFICATION_CHECKS}
    option_rules = (check_transform_conflict,)
    predict_options = {"threshold": "list the labels whose probability reaches this (a number in [0, 1])"}

    def validate_num_classes(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"multi-label classification needs num_classes >= 1, got {num_classes}")

    # ---- data -----------------------------------------------------------------------------------
    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> MultiLabelDataset:
        """The label file under ``source`` (or its ``split`` folder); see :mod:`.multilabel_data`."""
        folder, labels, data_names = class_order(source, split)
        if class_names is None and not _placeholder_names(model.class_names):
            class_names = model.class_names
        names = list(class_names) if class_names is not None else data_names
        if len(names) != model.num_classes:
            raise DataError(f"{labels.path} has {len(names)} labels ({names[:6]}{' ...' if len(names) > 6 else ''}) "
                            f"but the model predicts {model.num_classes}; load it with class_names={names} (or "
                            f"num_classes={len(names)}; zoo train --num-classes {len(names)})", labels.path)
        items = index_items(folder, labels, names)
        transform = classification_transform(model.preprocess, image_size, self.options(model), train=train)
        return MultiLabelDataset(items, names, transform, train=train)

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """``(image, labels)`` datasets, labels a 0/1 vector or a list of class indices or names, with this
        task's transforms (:func:`.multilabel_data.multilabel_sample`)."""
        import functools

        from .formats.adapt import AdaptedDataset, dataset_label, dataset_names

        if isinstance(dataset, (MultiLabelDataset, AdaptedDataset)):
            return dataset
        names = dataset_names(dataset, class_names, model)
        if len(names) != model.num_classes:
            raise DataError(f"{dataset_label(dataset)} has {len(names)} labels but the model predicts "
                            f"{model.num_classes}; load it with class_names={names[:6]}... (or num_classes=)")
        transform = classification_transform(model.preprocess, image_size, self.options(model), train=train)
        convert = functools.partial(multilabel_sample, transform, names, dataset_label(dataset))
        return AdaptedDataset(dataset, convert, names)

    def source_class_names(self, source: Any, *, split: str) -> list[str]:
        """The label names the data gives (``classes.txt``, a one-column-per-class header, or those found)."""
        return class_order(source, split)[2]

    def collate(self, samples: list[Any]) -> Batch:
        images, targets, sources = zip(*samples)
        return Batch(inputs=torch.stack([torch.as_tensor(i) for i in images]),
                     targets=torch.stack([torch.as_tensor(t) for t in targets]).float(),
                     meta=[{"source": s} for s in sources])

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """``n`` random normalised images at the model's input size with random label sets."""
        g = torch.Generator().manual_seed(seed)
        transform = eval_transform(model.preprocess)
        h, w = model.preprocess.input_size
        return [(transform(torch.rand(3, h, w, generator=g)).as_subclass(Tensor),
                 (torch.rand(model.num_classes, generator=g) < 0.5).float(), f"<example {i}>") for i in range(n)]

    # ---- training and evaluation ----------------------------------------------------------------
    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        """BCE with logits (after mixup/cutmix when on), or the ``loss`` option's."""
        return classification_loss(self.options(model), batch, lambda x: _logits(model(x)), model.num_classes,
                                   multi_label=True)

    def forward_eval(self, model: "ZooModel", batch: Batch) -> Tensor:
        return _logits(model(batch.inputs))

    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return MultiLabelMetrics(class_names, float(self.defaults["threshold"]))

    def base_metrics(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """Scored at the model's own ``threshold`` option."""
        return MultiLabelMetrics(class_names, self.unit_value("threshold", self.options(model)["threshold"]))

    # ---- inference ------------------------------------------------------------------------------
    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any) -> list[LabelSet]:
        """One :class:`LabelSet` per image; ``threshold=`` overrides the model's option."""
        threshold = self.unit_value("threshold", options.get("threshold", self.options(model)["threshold"]))
        transform = eval_transform(model.preprocess)
        device, dtype = _model_device(model)
        x = torch.stack([transform(img).as_subclass(Tensor) for img in images]).to(device=device, dtype=dtype)
        probs = _logits(model(x)).float().sigmoid().cpu()
        names = model.class_names
        out = []
        for src, row in zip(sources, probs.tolist()):
            on = sorted((i for i, p in enumerate(row) if p >= threshold), key=lambda i: -row[i])
            out.append(LabelSet(source=src, labels=on, names=[names[i] for i in on], scores=dict(zip(names, row)),
                                threshold=threshold))
        return out
