"""The ``instance`` task (alias ``inst``): instance segmentation on COCO json, COCO ``segm`` and ``bbox`` AP.

Detection with one mask per object, so the task is :class:`~.detection.DetectionTask` with masks added
where they matter: data (:mod:`.inst_data`: polygons or RLE read with pycocotools, masks following the
boxes through the flip and the augmentation), metrics (:mod:`.inst_metrics`: COCOeval ``segm`` and
``bbox``, default ``segm_map``), predictions (:class:`~zoo_core.task.Instances`: boxes, scores, labels and
``(N, H, W)`` bool masks at the input image's size). Everything else (the network's own loss dict,
``set_input_size``, the probes, the options) is detection's.

Contract with instance networks (``model.net``): as detection's (:mod:`.detection`), and in training mode
targets carry ``masks`` ``(N, H, W)`` uint8 in step with ``boxes``; in eval mode each image's dict also
holds ``masks`` ``(N, 1, H, W)``, probabilities at that input image's size (torchvision's Mask R-CNN).
The ``mosaic`` option is refused: its four-image cut carries no masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from zoo_core.demo import DemoRecipe
from zoo_core.errors import DataError, OptionError
from zoo_core.task import Instances, Metrics

from .classification import _placeholder_names
from .det_augment import augment_detection
from .detection import DEFAULT_OPTIONS, OPTION_CHECKS, DetectionTask
from .inst_data import CocoInstances, read_instances
from .inst_metrics import MASK_THRESHOLD, binary_masks, instance_metrics

if TYPE_CHECKING:
    from zoo_core.model import ZooModel


def _no_mosaic(key: str, value: Any) -> None:
    if value:  # 0 / 0.0 / None: off
        raise OptionError(f"task option {key}={value!r}: instance segmentation cannot use mosaic (its four-image "
                          "cut carries boxes, not masks); leave it at 0, or use scale_jitter / iou_crop, which "
                          "move the masks with the boxes")


INSTANCE_OPTIONS: dict[str, Any] = {**DEFAULT_OPTIONS, "mask_threshold": MASK_THRESHOLD}
INSTANCE_CHECKS = {**OPTION_CHECKS, "mosaic": _no_mosaic}


class InstanceSegmentationTask(DetectionTask):
    """Instance segmentation on COCO json (polygons or RLE), scored by COCOeval ``segm`` and ``bbox``.

    Options: detection's (:class:`~.detection.DetectionTask`) but ``mosaic``, plus ``mask_threshold``
    (predict: a pixel is in an object when its mask probability is above this; metrics binarise at
    :data:`~.inst_metrics.MASK_THRESHOLD`, as torchvision's references do).
    """

    name = "instance"
    default_metric = "segm_map"
    unit_interval_options = (*DetectionTask.unit_interval_options, "mask_threshold")
    option_defaults = INSTANCE_OPTIONS
    option_checks = INSTANCE_CHECKS
    data_formats = ("coco",)
    predict_options = {**DetectionTask.predict_options,
                       "mask_threshold": "a pixel is in an object when its mask probability is above this (in [0, 1])"}

    def demo(self) -> DemoRecipe:
        """The ``zoo demo`` recipe (see :mod:`zoo_tasks.demos`)."""
        from .demos import INSTANCE

        return INSTANCE

    # ---- data -----------------------------------------------------------------------------------
    def check_data(self, source: Any, *, split: str | None = None, format: str | None = None) -> Any:
        """``zoo data check``: detection's report (boxes, classes, images) plus every annotation's mask read
        as training reads it, so a bad polygon or RLE is named here and not first by ``fit``."""
        from .formats.check import _captured, check_detection

        report = check_detection(source, split, format)
        report.task = self.name
        for part in report.splits:
            _captured(lambda: read_instances(source, part.split, train=False, fmt=format), part)
        return report

    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> CocoInstances:
        """COCO data with masks from ``source`` (any form detection's COCO reader takes; see :mod:`.inst_data`).
        Labels follow ``class_names``, else the model's named classes, else the data's categories in order."""
        if class_names is None and not _placeholder_names(model.class_names):
            class_names = model.class_names
        opts = self.options(model)
        index, rles = read_instances(source, split, class_names=class_names, train=train, fmt=opts["format"],
                                     filter_empty=bool(opts["filter_empty"]) and train)
        if len(index.class_names) > model.num_classes:
            raise DataError(f"{index.json_path} has {len(index.class_names)} categories but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(index.class_names)} (or "
                            "class_names=[...]) for a matching head", index.json_path)
        dataset = CocoInstances(index, rles, self._sample_transform(opts, train), train=train)
        return augment_detection(dataset, opts, train=train)  # type: ignore[return-value]

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """This task's own datasets pass unchanged; another Dataset object is refused (its masks have no
        agreed form): pass the COCO folder or json instead."""
        base = getattr(dataset, "base", dataset)
        if isinstance(base, CocoInstances):
            return dataset
        raise DataError(f"instance segmentation reads COCO json with masks; a {type(dataset).__name__} object "
                        "cannot be adapted (its masks have no agreed form). Pass the COCO folder or "
                        "(images_dir, annotations.json) instead")

    def convert_data(self, source: Any, out_dir: Path, *, src_format: str, dst_format: str) -> Path:
        """Refused: detection's converters write boxes only, so masks would be lost."""
        raise DataError(f"instance-segmentation data is COCO json only; converting {src_format} -> {dst_format} "
                        "would drop the masks (use `zoo data convert --task det` for the boxes alone)")

    # ---- metrics and inference -------------------------------------------------------------------
    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return instance_metrics(class_names, backend=str(self.defaults["coco_backend"]))

    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any) -> list[Instances]:
        """Boxes and masks in each input image's pixels; ``score_threshold=`` (or ``conf=``), ``iou=``,
        ``max_det=`` and ``classes=`` filter the objects, masks kept in step (:mod:`.predict_filters`);
        ``mask_threshold=`` binarises the mask probabilities."""
        mask_thresh = self.unit_value("mask_threshold", options.get("mask_threshold",
                                                                    self.options(model)["mask_threshold"]))
        keep, tensors, outputs = self.filtered_forward(model, images, options)
        result = []
        for src, image, out in zip(sources, tensors, outputs):
            idx = keep.indices(out["boxes"], out["scores"], out["labels"])
            masks = binary_masks(out["masks"][idx], mask_thresh).cpu()
            if masks.shape[-2:] != image.shape[-2:]:
                raise RuntimeError(f"the network returned masks of size {tuple(masks.shape[-2:])} for an image of "
                                   f"{tuple(image.shape[-2:])}; instance networks paste masks at the input size")
            labels = out["labels"][idx].cpu()
            result.append(Instances(source=src, boxes=out["boxes"][idx].cpu(), scores=out["scores"][idx].cpu(),
                                    labels=labels, names=[model.class_names[int(i)] for i in labels], masks=masks))
        return result

    def predictions_plot(self, model: "ZooModel", dataset: torch.utils.data.Dataset, path: Path) -> Path:
        """A few images with their predicted boxes, names and tinted masks (``pr_curve.png`` is segm's)."""
        from .det_plots import annotated_sheet

        return annotated_sheet(model, dataset, path)

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """Detection's noise samples with a mask per box (the box itself) and its RLE in ``meta``."""
        from .inst_data import encode_masks

        samples = []
        for image, target, meta in super().example_samples(model, n=n, seed=seed):
            masks = torch.zeros(len(target["boxes"]), *image.shape[-2:], dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(target["boxes"].round().int().tolist()):
                masks[k, y0:y1, x0:x1] = 1
            samples.append((image, {**target, "masks": masks}, {**meta, "gt_rles": encode_masks(masks)}))
        return samples
