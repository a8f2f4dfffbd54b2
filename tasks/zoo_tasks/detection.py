"""The ``detection`` task (aliases ``det``, ``detect``): COCO json data, the model's own losses, COCO mAP.

Contract with detection networks (``model.net``): ``net(images, targets)`` in training mode returns
a dict of losses; ``net(images)`` in eval mode returns one dict per image with ``boxes`` (xyxy, in
the pixels of that input image), ``scores`` and ``labels`` (0..K-1, indexing ``model.class_names``).
``images`` is a list of ``(3, H, W)`` float tensors in [0, 1] of any sizes: the network resizes and
normalises inside (as torchvision's detectors do) and maps boxes back. A network with
``set_input_size((H, W))`` is told the model's ``preprocess.input_size`` before each forward, so the
Trainer's ``image_size`` reaches it. Data, labels and bad-annotation handling: :mod:`.det_data`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from zoo_core.data.images import pil_to_tensor
from zoo_core.errors import DataError
from zoo_core.demo import DemoRecipe
from zoo_core.task import Batch, Detections, Metrics, Task

from .augment import check_transform_conflict
from .det_augment import DETECTION_CHECKS, DETECTION_DEFAULTS, AugmentedDetection, augment_detection
from .det_data import CocoDetection, eval_transform, train_transform
from .formats.detection import detection_class_names, read_detection
from .formats.options import DETECTION_FORMAT_CHECKS, DETECTION_FORMAT_DEFAULTS
from .classification import _placeholder_names
from .det_metrics import DetectionMetrics
from .predict_filters import FILTER_OPTIONS, DetectionFilter
from .hooks import HOOK_CHECKS, HOOK_DEFAULTS, LOSS_CHECK, HooksMixin, custom_loss
from .option_checks import choice
from .task_options import OptionsMixin

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

DEFAULT_OPTIONS: dict[str, Any] = {"hflip": 0.5, "filter_empty": False, "score_threshold": 0.0,
                                   "coco_backend": "auto", "loss": None, **HOOK_DEFAULTS, **DETECTION_DEFAULTS,
                                   **DETECTION_FORMAT_DEFAULTS}
OPTION_CHECKS = {"coco_backend": choice("auto", "faster", "pycocotools"), "loss": LOSS_CHECK, **HOOK_CHECKS,
                 **DETECTION_CHECKS, **DETECTION_FORMAT_CHECKS}


def _device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _sync_size(model: "ZooModel") -> None:
    setter = getattr(model.net, "set_input_size", None)
    if callable(setter):
        setter(model.preprocess.input_size)


class DetectionTask(HooksMixin, OptionsMixin, Task):
    """Object detection on COCO-format data, scored by pycocotools' COCOeval.

    Options (constructor, or per model in ``model.config["task_options"]``): ``hflip`` (training flip
    probability), ``filter_empty`` (drop training images without boxes), ``score_threshold`` (predict),
    ``coco_backend`` (``"auto"``/``"faster"``/``"pycocotools"``: which COCOeval computes mAP; the same
    numbers, faster-coco-eval's much sooner — see :mod:`.coco_eval`). ``coco_backend`` is read from the
    task's constructor options only (metrics are created without a model):
    ``DetectionTask(coco_backend="pycocotools")``. ``loss`` (a callable combining the network's loss
    dict) and ``metrics``: :mod:`.hooks`; ``color_jitter``, ``scale_jitter``, ``iou_crop``, ``mosaic`` and
    ``train_transform``: :mod:`.det_augment`.
    """

    name = "detection"
    default_metric = "map"
    unit_interval_options = (*OptionsMixin.unit_interval_options, "score_threshold")
    default_metric_mode = "max"
    option_defaults = DEFAULT_OPTIONS
    option_checks = OPTION_CHECKS
    option_rules = (check_transform_conflict,)
    data_options = ("format",)
    predict_options = {"score_threshold": "drop detections scoring below this (a number in [0, 1])",
                       **FILTER_OPTIONS}

    # ---- data -----------------------------------------------------------------------------------
    def demo(self) -> DemoRecipe:
        """The ``zoo demo`` recipe (see :mod:`zoo_tasks.demos`)."""
        from .demos import DETECTION

        return DETECTION

    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> CocoDetection:
        """Detection data from ``source``: COCO (a folder with annotations.json, a root with train/ and val/,
        a .json path, or an (images_dir, json) pair), YOLO txt or Pascal VOC (:mod:`.formats.detection`;
        the option ``format`` picks one where a folder holds two). Labels follow ``class_names``, else the
        model's named classes, else the data's categories in order. ``image_size`` is applied by the
        model (its internal resize), not here."""
        if class_names is None and not _placeholder_names(model.class_names):
            class_names = model.class_names
        opts = self.options(model)
        index = read_detection(source, split, fmt=opts["format"], class_names=class_names, train=train,
                               filter_empty=bool(opts["filter_empty"]) and train)
        json_path = index.json_path
        if len(index.class_names) > model.num_classes:
            raise DataError(f"{json_path} has {len(index.class_names)} categories but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(index.class_names)} (or "
                            f"class_names=[...]; zoo train --num-classes {len(index.class_names)}) for a "
                            "matching head", json_path)
        return augment_detection(CocoDetection(index, self._sample_transform(opts, train), train=train), opts,
                                 train=train)  # .det_augment

    def _sample_transform(self, opts: Mapping[str, Any], train: bool) -> Any:
        own_flip = train and opts["train_transform"] is None  # a train_transform replaces the flip
        return train_transform(float(opts["hflip"])) if own_flip else eval_transform()

    def source_class_names(self, source: Any, *, split: str) -> list[str]:
        """The category names of ``split``'s COCO json, in label order (ascending category id).

        The reader's own checks and label order (:func:`~.det_data.category_names`), without indexing
        the images, so a head sized from these names labels exactly as :meth:`read_dataset` will. No
        background name: zoo labels are 0..K-1 and a torchvision detector adds its background slot
        inside its wrapper (K+1 outputs), so K names give the right head. A file the reader refuses
        (no categories, bad ids) fails here, before a model is built; the reader's warnings are left to
        :meth:`read_dataset`, which reads the file again for training.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return detection_class_names(source, split, self.defaults["format"])  # COCO, YOLO or VOC

    # ---- other data: a user's Dataset, zoo data check / convert (zoo_tasks.formats) ---------------------
    data_formats = ("coco", "yolo", "voc")

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """``(image, target)`` datasets (torchvision's VOCDetection, CocoDetection, ``{"boxes", "labels"}``)
        as :class:`~.det_data.CocoDetection` samples, boxes cleaned alike (:mod:`.formats.adapt`)."""
        from .formats.adapt import AdaptedDataset, DetectionTargets, dataset_names

        if isinstance(dataset, (CocoDetection, AdaptedDataset, AugmentedDetection)):
            return dataset  # already the zoo's samples (read_dataset's, augmentations included): never twice
        opts = self.options(model)
        names = dataset_names(dataset, class_names, model)
        convert = DetectionTargets(dataset, names, self._sample_transform(opts, train))
        return augment_detection(AdaptedDataset(dataset, convert, names), opts, train=train)

    def check_data(self, source: Any, *, split: str | None = None, format: str | None = None) -> Any:
        """``zoo data check`` of detection data (:mod:`.formats.check`)."""
        from .formats.check import check_detection

        return check_detection(source, split, format)

    def convert_data(self, source: Any, out_dir: Path, *, src_format: str, dst_format: str) -> Path:
        """``zoo data convert``: COCO -> YOLO, YOLO -> COCO, VOC -> COCO (:mod:`.formats.convert`)."""
        from .formats.convert import convert_detection

        return convert_detection(source, out_dir, src_format=src_format, dst_format=dst_format)

    def collate(self, samples: list[Any]) -> Batch:
        images, targets, meta = zip(*samples)
        return Batch(inputs=list(images), targets=list(targets), meta=list(meta))

    # ---- training and evaluation ----------------------------------------------------------------
    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        """The network's own loss dict, with their sum under ``"loss"``."""
        _sync_size(model)
        losses = model(batch.inputs, batch.targets)
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError(f"a detection network must return a dict of losses in training mode, got "
                            f"{type(losses).__name__} (is the model in train mode?)")
        custom = self.options(model)["loss"]
        if custom is not None:  # the user's combination of the network's own losses
            return custom_loss(custom, dict(losses), batch.targets)
        out = {k: v for k, v in losses.items()}
        out["loss"] = sum(losses.values())  # type: ignore[assignment]
        return out

    def forward_eval(self, model: "ZooModel", batch: Batch) -> list[dict[str, Tensor]]:
        _sync_size(model)
        return model(batch.inputs)

    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return DetectionMetrics(class_names, backend=str(self.defaults["coco_backend"]))

    def output_probes(self, model: "ZooModel") -> list[torch.nn.Module]:
        """The network's feature trunk (its shallowest submodule named ``backbone``), checked for NaN/Inf.

        A detector's post-processing drops boxes whose score is NaN (torchvision keeps ``score >
        threshold`` and boxes of positive size, both False for NaN), so NaN features would only show
        as missing boxes; every box is computed from the trunk's maps, which carry them. NaN/Inf
        weights anywhere are caught before the forward (:func:`zoo_core.finite.check_weights`).
        """
        named = [(n, m) for n, m in model.net.named_modules() if n.rsplit(".", 1)[-1] == "backbone"]
        return [min(named, key=lambda item: item[0].count("."))[1]] if named else []

    # ---- inference ------------------------------------------------------------------------------
    def filtered_forward(self, model: "ZooModel", images: list[Any], options: Mapping[str, Any]
                         ) -> tuple[DetectionFilter, list[Tensor], list[dict[str, Tensor]]]:
        """The network's raw outputs for ``images`` (PIL or tensors, on the model's device, at the model's
        input size) and the filter the predict options ask for (``score_threshold``/``conf``, ``iou``,
        ``max_det``, ``classes``); also the image tensors. Shared by every detection-style task's predict."""
        thresh = self.unit_value("score_threshold", options.get("score_threshold",
                                                                self.options(model)["score_threshold"]))
        keep = DetectionFilter.from_options(model, options, thresh)  # conf=, iou=, max_det=, classes=
        device = _device(model)
        tensors = [(img if isinstance(img, Tensor) else pil_to_tensor(img)).to(device) for img in images]
        _sync_size(model)
        return keep, tensors, model(tensors)

    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any
                ) -> list[Detections]:
        """Boxes in each input image's pixels; ``score_threshold=`` (or ``conf=``) drops weaker detections,
        ``iou=``, ``max_det=`` and ``classes=`` filter further (:mod:`.predict_filters`)."""
        keep, _, outputs = self.filtered_forward(model, images, options)
        result = []
        for src, out in zip(sources, outputs):
            boxes, scores, labels = (t.cpu() for t in keep.apply(out["boxes"], out["scores"], out["labels"]))
            result.append(Detections(source=src, boxes=boxes, scores=scores, labels=labels,
                                     names=[model.class_names[int(i)] for i in labels]))
        return result

    def plots(self, model: "ZooModel", dataset: torch.utils.data.Dataset, report: Mapping[str, Any],
              out_dir: Path) -> list[Path]:
        """``pr_curve.png`` (IoU .50, per class) and ``predictions.png`` (a few images,
        :meth:`predictions_plot`)."""
        from .det_plots import pr_curve_png

        out_dir = Path(out_dir)
        paths = []
        if report.get("pr_curve"):
            paths.append(pr_curve_png(report["pr_curve"], out_dir / "pr_curve.png"))
        if len(dataset):  # type: ignore[arg-type]
            paths.append(self.predictions_plot(model, dataset, out_dir / "predictions.png"))
        return paths

    def predictions_plot(self, model: "ZooModel", dataset: torch.utils.data.Dataset, path: Path) -> Path:
        """A few images with ground-truth boxes dashed and predicted ones drawn (subclasses draw more)."""
        from .det_plots import predictions_png

        return predictions_png(model, dataset, path)

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """``n`` 64x64 noise images with one box each, shaped like :class:`CocoDetection` samples."""
        g = torch.Generator().manual_seed(seed)
        samples = []
        for i in range(n):
            box = torch.tensor([[8.0, 10.0, 40.0, 50.0]]) + torch.rand(1, 4, generator=g) * 4
            label = torch.randint(0, model.num_classes, (1,), generator=g)
            meta = {"image_id": i + 1, "source": f"<example {i}>", "orig_size": (64, 64),
                    "gt_boxes": torch.cat([box[:, :2], box[:, 2:] - box[:, :2]], 1), "gt_labels": label,
                    "gt_areas": ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).double(),
                    "gt_crowd": torch.zeros(1, dtype=torch.bool)}
            samples.append((torch.rand(3, 64, 64, generator=g), {"boxes": box, "labels": label}, meta))
        return samples
