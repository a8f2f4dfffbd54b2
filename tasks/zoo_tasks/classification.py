"""Single-label image classification: image folders in, cross-entropy, top-k predictions, accuracy out.

Data: ``root/<class>/<image>`` folders (a root holding ``train/`` and ``val/`` is split by them),
read by :mod:`zoo_core.data.folders`. Training augmentation is a random-resized crop (area 0.5-1)
to the model's input size plus a horizontal flip; evaluation resizes and centre-crops as the model's
library did (:class:`~zoo_core.model.Preprocess`); both normalise with the model's mean/std.

Options (constructor defaults, overridden per model by ``model.config["task_options"]``):
``label_smoothing`` (0.0), ``hflip`` (0.5, flip probability; 0 for data where left/right matters),
``scale`` ((0.5, 1.0), crop area range), ``topk`` (5, length of each prediction's top-k list),
``decode`` (``"pil"``: PIL in DataLoader workers; ``"device"``: workers read bytes, the batch is
decoded and augmented on the training device, nvjpeg on CUDA — :mod:`.device_decode`; ``"auto"``:
device when CUDA is available). ``pil`` stays the default until the device path is measured on a GPU.
Augmentation (``auto_augment``, ``color_jitter``, ``mixup``/``cutmix``, ``train_transform``/``eval_transform``):
:mod:`.augment`; a custom ``loss`` and extra ``metrics``: :mod:`.hooks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from zoo_core.data.folders import ImageFolderDataset, folder_class_names, scan_image_folder
from zoo_core.errors import DataError
from zoo_core.demo import DemoRecipe
from zoo_core.task import Batch, Classification, Metrics, Task

from .augment import CLASSIFICATION_CHECKS, CLASSIFICATION_DEFAULTS, check_transform_conflict, resolve_decode
from .augment import classification_transform
from .cls_loss import classification_loss
from .cls_metrics import ClassificationMetrics
from .device_decode import EncodedBatch, EncodedFolderDataset, EncodedImage, use_device_decode
from .predict_filters import FILTER_OPTIONS, ranked_classes
from .hooks import HOOK_CHECKS, HOOK_DEFAULTS, LOSS_CHECK, HooksMixin
from .option_checks import choice, fraction_range, whole
from .task_options import OptionsMixin
from .transforms import eval_transform

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

DEFAULT_OPTIONS: dict[str, Any] = {"label_smoothing": 0.0, "hflip": 0.5, "scale": (0.5, 1.0), "topk": 5,
                                   "decode": "pil", "loss": None, **HOOK_DEFAULTS, **CLASSIFICATION_DEFAULTS}
#: per-key checks and cross-key rules of the options (:mod:`.task_options`); the multi-label task shares them
OPTION_CHECKS = {"scale": fraction_range, "topk": whole(1), "decode": choice("pil", "device", "auto"),
                 "loss": LOSS_CHECK, **HOOK_CHECKS, **CLASSIFICATION_CHECKS}
OPTION_RULES = (check_transform_conflict, resolve_decode)


def _placeholder_names(names: Sequence[str]) -> bool:
    """True for the ``class_0, class_1...`` names a model gets when nobody named its classes."""
    return list(names) == [f"class_{i}" for i in range(len(names))]


def _model_device(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _logits(output: Any) -> Tensor:
    """The logits of a forward: a tensor, or the first field of a (named) tuple (aux-logit nets)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    raise TypeError(f"a classification network must return logits (B, num_classes), got {type(output).__name__}")


class ClassificationTask(HooksMixin, OptionsMixin, Task):
    """The ``classification`` task (aliases ``cls``, ``classify``)."""

    name = "classification"
    default_metric = "accuracy"
    default_metric_mode = "max"
    option_defaults = DEFAULT_OPTIONS
    option_checks = OPTION_CHECKS
    option_rules = OPTION_RULES
    predict_options = {"topk": "how many classes to list, best first (a whole number >= 1)",
                       "conf": "list only classes scoring at least this (a number in [0, 1])",
                       "classes": FILTER_OPTIONS["classes"]}

    def validate_num_classes(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"classification needs num_classes >= 2, got {num_classes} (a yes/no problem is "
                             "2 classes: put each in its own folder)")

    # ---- data -----------------------------------------------------------------------------------
    def demo(self) -> DemoRecipe:
        """The ``zoo demo`` recipe (see :mod:`zoo_tasks.demos`)."""
        from .demos import CLASSIFICATION

        return CLASSIFICATION

    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> ImageFolderDataset:
        """Image folders under ``source``; labels follow ``class_names``, else the model's named
        classes when the folders use them, else the sorted folder names."""
        if class_names is None and not _placeholder_names(model.class_names):
            folders = set(folder_class_names(source, split))
            if folders and folders <= set(model.class_names):
                class_names = list(model.class_names)
        index = scan_image_folder(source, split, class_names=class_names)
        if len(index.class_names) != model.num_classes:  # a subset of the model's named classes matched above
            raise DataError(f"{index.root} has {len(index.class_names)} classes but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(index.class_names)} (or "
                            f"class_names=[...]; zoo train --num-classes {len(index.class_names)}) to give it a "
                            "matching head", index.root)
        opts = self.options(model)
        transform = classification_transform(model.preprocess, image_size, opts, train=train)  # .augment
        if use_device_decode(str(opts["decode"])):
            return EncodedFolderDataset(index, transform, train=train)
        return ImageFolderDataset(index, transform, train=train)

    def source_class_names(self, source: Any, *, split: str) -> list[str]:
        """The class folder names of ``source``'s ``split``, sorted (what a fresh head is named after)."""
        return sorted(folder_class_names(source, split))

    # ---- other data: a user's Dataset, zoo data check (zoo_tasks.formats) ----------------------------
    data_formats = ("imagefolder",)

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """``(image, class index)`` datasets (torchvision's CIFAR10, ImageFolder...) with this task's
        transforms; class names from ``class_names``, the dataset's ``classes``, or the model's."""
        from .formats.adapt import AdaptedDataset, adapt, classification_sample, dataset_label, dataset_names

        if isinstance(dataset, (ImageFolderDataset, AdaptedDataset)):
            return dataset
        names = dataset_names(dataset, class_names, model)
        if len(names) != model.num_classes:
            raise DataError(f"{dataset_label(dataset)} has {len(names)} classes but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(names)} (or class_names=[...])")
        transform = classification_transform(model.preprocess, image_size, self.options(model), train=train)
        return adapt(dataset, classification_sample, names, transform, model.num_classes, dataset_label(dataset))

    def check_data(self, source: Any, *, split: str | None = None, format: str | None = None) -> Any:
        """``zoo data check`` of class folders (:mod:`.formats.check`)."""
        from .formats.check import check_classification

        return check_classification(source, split)

    def collate(self, samples: list[Any]) -> Batch:
        images, labels, sources = zip(*samples)
        if isinstance(images[0], EncodedImage):  # decoded on the device by EncodedBatch.to
            return EncodedBatch(inputs=list(images), targets=torch.as_tensor(labels, dtype=torch.long),
                                meta=[{"source": s} for s in sources], decoder=images[0].decoder)
        return Batch(inputs=torch.stack([torch.as_tensor(i) for i in images]),
                     targets=torch.as_tensor(labels, dtype=torch.long),
                     meta=[{"source": s} for s in sources])

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """``n`` random normalised images at the model's input size with labels, as a dataset yields them."""
        g = torch.Generator().manual_seed(seed)
        transform = eval_transform(model.preprocess)
        h, w = model.preprocess.input_size
        return [(transform(torch.rand(3, h, w, generator=g)), int(torch.randint(model.num_classes, (1,), generator=g)),
                 f"<example {i}>") for i in range(n)]

    # ---- training and evaluation ----------------------------------------------------------------
    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        """Cross-entropy (``label_smoothing``), after mixup/cutmix when on; or the ``loss`` option's."""
        return classification_loss(self.options(model), batch, lambda x: _logits(model(x)), model.num_classes)

    def forward_eval(self, model: "ZooModel", batch: Batch) -> Tensor:
        return _logits(model(batch.inputs))

    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return ClassificationMetrics(class_names)

    # ---- inference ------------------------------------------------------------------------------
    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any
                ) -> list[Classification]:
        """Top-1 and top-k (``topk=``) for PIL images or ``(C, H, W)`` tensors in [0, 1]; ``classes=`` ranks only
        those classes, ``conf=`` lists only those scoring at least it (:mod:`.predict_filters`)."""
        k = min(self.whole_value("topk", options.get("topk", self.options(model)["topk"])), model.num_classes)
        transform = eval_transform(model.preprocess)
        device, dtype = _model_device(model)
        if all(isinstance(im, Tensor) for im in images) and len({tuple(im.shape) for im in images}) == 1:
            # one batched resize + normalise on the model's device instead of a host loop per image
            # a plain tensor: a tv_tensors.Image would route every op of the network through __torch_function__
            x = transform(torch.stack(images).to(device, non_blocking=True)).as_subclass(Tensor).to(dtype)
        else:
            x = torch.stack([transform(img).as_subclass(Tensor) for img in images]).to(device=device, dtype=dtype)
        probs = _logits(model(x)).float().softmax(dim=-1).cpu()
        return [Classification(source=src, label=best[0], name=best[1], score=best[2], topk=topk)  # conf=, classes=
                for src, (best, topk) in zip(sources, ranked_classes(model.class_names, probs, k, options))]

    def plots(self, model: "ZooModel", dataset: torch.utils.data.Dataset, report: Mapping[str, Any],
              out_dir: Path) -> list[Path]:
        """``confusion_matrix.png`` from an evaluation report."""
        from .plots import confusion_matrix_png

        matrix = report.get("confusion_matrix")
        if not matrix:
            return []
        names = getattr(dataset, "class_names", None) or model.class_names
        if len(names) != len(matrix):
            names = model.class_names
        return [confusion_matrix_png(matrix, names, Path(out_dir) / "confusion_matrix.png")]
