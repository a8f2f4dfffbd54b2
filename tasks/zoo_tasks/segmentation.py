"""Semantic segmentation: image + mask folders in, per-pixel losses, ``SegmentationMask`` and mIoU out.

Data: see :mod:`.seg_data` (``images/`` + ``masks/`` with the same stems, 255 = ignore, masks
checked on the CPU). Models may return a tensor of logits ``(B, K, h, w)`` (smp, zoo heads), a dict
with ``"out"`` and optionally ``"aux"`` (torchvision's DeepLabV3/FCN/LR-ASPP), or a tuple whose first
item is the logits; logits are upsampled (bilinear) to the mask size before the loss and the
argmax, so a head may predict at a lower resolution.

Options (constructor defaults < the model's ``config["task_options"]``, which a plugin fills from
``BuiltModel.extra["task_options"]`` — U-Net declares ``{"loss": "dice_ce"}`` — and a user may edit):
``loss`` (``"ce"``, ``"dice"``, ``"focal"``, ``"dice_ce"``; see :mod:`.losses`; ``"model"``: the network
computes its own training loss, see :func:`own_loss`; Mask2Former declares it), ``aux_weight``
(0.4, weight of torchvision's auxiliary-classifier loss), ``focal_gamma`` (2.0), ``hflip`` (0.5),
``scale`` ((0.5, 1.0), random-resized-crop area range), ``palette`` (None; RGB colour of each class
for colour masks). ``loss`` may also be a callable, and ``metrics`` adds the user's (:mod:`.hooks`);
``color_jitter`` and ``train_transform``/``eval_transform`` (a v2 pipeline moving the mask with the
image): :mod:`.augment`. ``num_classes=1`` is binary segmentation, one sigmoid channel: :mod:`.binary_seg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from zoo_core.errors import DataError
from zoo_core.demo import DemoRecipe
from zoo_core.task import Batch, Metrics, SegmentationMask, Task

from .augment import SEGMENTATION_CHECKS, SEGMENTATION_DEFAULTS, check_transform_conflict, segmentation_transform
from .binary_seg import class_map, class_probs, is_binary, mask_classes, mask_names
from .classification import _model_device
from .hooks import HOOK_CHECKS, HOOK_DEFAULTS, HooksMixin, custom_loss
from .losses import IGNORE_INDEX, LOSS_NAMES, LossFn, build_loss
from .option_checks import fraction_range, name_or_code, number
from .formats.masks import mask_class_names, mask_source, palette_of
from .formats.options import SEGMENTATION_FORMAT_CHECKS, SEGMENTATION_FORMAT_DEFAULTS
from .seg_data import MaskFolderDataset, joint_transform
from .seg_metrics import BinarySegmentationMetrics, SegmentationMetrics
from .task_options import OptionsMixin

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

DEFAULT_OPTIONS: dict[str, Any] = {"loss": "ce", "aux_weight": 0.4, "focal_gamma": 2.0, "hflip": 0.5,
                                   "scale": (0.5, 1.0), "palette": None, **HOOK_DEFAULTS, **SEGMENTATION_DEFAULTS,
                                   **SEGMENTATION_FORMAT_DEFAULTS}
#: the ``loss`` option's value for networks that compute their own training loss (:func:`own_loss`)
OWN_LOSS = "model"
OPTION_CHECKS = {"loss": name_or_code((*LOSS_NAMES, OWN_LOSS), "loss(logits, masks)"), "aux_weight": number(0, None),
                 "focal_gamma": number(0, None), "scale": fraction_range, **HOOK_CHECKS, **SEGMENTATION_CHECKS,
                 **SEGMENTATION_FORMAT_CHECKS}
#: example_samples uses the model's input size up to this side, else 64 px
EXAMPLE_MAX_SIDE = 256


def split_outputs(output: Any) -> tuple[Tensor, Tensor | None]:
    """``(logits, aux logits or None)`` from a tensor, a torchvision ``{"out", "aux"}`` dict or a tuple."""
    logits, aux = None, None
    if isinstance(output, Tensor):
        logits = output
    elif isinstance(output, Mapping) and isinstance(output.get("out"), Tensor):
        logits, aux = output["out"], output.get("aux")
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        logits = output[0]
    if logits is not None and logits.dim() == 4:
        return logits, aux if isinstance(aux, Tensor) else None
    shape = f" of shape {tuple(logits.shape)}" if logits is not None else ""
    raise TypeError("a segmentation network must return logits (B, K, H, W), a dict with 'out' (and "
                    f"optionally 'aux'), or a tuple starting with the logits; got {type(output).__name__}{shape}")


def own_loss(model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
    """The loss dict a network computes itself: ``net(images, masks)`` returns ``{"loss": scalar, ...}``.

    For models whose training objective is not a per-pixel loss on logits (Mask2Former: Hungarian matching
    of mask queries). A model asks for it with the task option ``loss="model"`` (its builder's
    ``BuiltModel.extra["task_options"]``); called with images only, the same network returns logits
    ``(B, K, H, W)`` for evaluation and prediction. Going through ``forward`` keeps DDP's gradient sync.
    """
    out = model(batch.inputs, batch.targets)
    loss = out.get("loss") if isinstance(out, Mapping) else None
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError(f"the segmentation task option loss={OWN_LOSS!r} calls net(images, masks), which must return "
                        f"a dict with a scalar tensor under 'loss'; {type(model.net).__name__} returned "
                        f"{type(out).__name__}. Set another loss (e.g. 'ce') for a network that returns logits")
    return {str(k): v for k, v in out.items()}


def resize_logits(logits: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear upsampling of ``(B, K, h, w)`` logits to ``size`` (no-op when it already matches)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class SegmentationTask(HooksMixin, OptionsMixin, Task):
    """The ``segmentation`` task (aliases ``seg``, ``segment``). ``default_metric="miou"``."""

    name = "segmentation"
    default_metric = "miou"
    default_metric_mode = "max"

    option_defaults = DEFAULT_OPTIONS
    option_checks = OPTION_CHECKS
    option_rules = (check_transform_conflict,)
    data_options = ("format", "label_map")
    predict_options = {"image_size": "the size the image is resized to for the network (pixels, or [height, width])"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._losses: dict[tuple[str, float, bool], LossFn] = {}

    def validate_num_classes(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"segmentation needs num_classes >= 1, got {num_classes}: 1 is binary (one sigmoid "
                             "channel, masks of 0 and 1), 2 or more one softmax channel per class")

    def loss_fn(self, model: "ZooModel") -> LossFn:
        """The loss the options of ``model`` name (built once per name; binary for one channel), or the
        ``loss`` option's callable (its total)."""
        opts = self.options(model)
        if callable(opts["loss"]):
            return lambda logits, target: custom_loss(opts["loss"], logits, target)["loss"]
        key = (str(opts["loss"]), float(opts["focal_gamma"]), is_binary(model))
        if key not in self._losses:
            self._losses[key] = build_loss(key[0], ignore_index=IGNORE_INDEX, gamma=key[1], binary=key[2])
        return self._losses[key]

    # ---- data -----------------------------------------------------------------------------------
    def demo(self) -> DemoRecipe:
        """The ``zoo demo`` recipe (see :mod:`zoo_tasks.demos`)."""
        from .demos import SEGMENTATION

        return SEGMENTATION

    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> MaskFolderDataset:
        """Mask folders under ``source`` (or VOC ``SegmentationClass``, Cityscapes ``gtFine``: :mod:`.formats.masks`,
        the option ``format`` picks one where a folder holds two); class names from ``class_names``, the
        data's names file (``classes.txt``...) or the model."""
        opts = self.options(model)
        src = mask_source(source, split, fmt=opts["format"], label_map=opts["label_map"])
        images_dir, pairs = src.where, src.pairs
        names = list(class_names) if class_names is not None else src.class_names
        if names is not None and len(names) > mask_classes(model):
            raise DataError(f"{images_dir}: the data names {len(names)} classes but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(names)} (or class_names=[...]; "
                            f"zoo train --num-classes {len(names)})",
                            images_dir)
        names = (names or []) + model.class_names[len(names or []):]
        transform = segmentation_transform(model.preprocess, image_size, opts, train=train)  # .augment
        return MaskFolderDataset(pairs, transform, num_classes=mask_classes(model), class_names=names, train=train,
                                 palette=palette_of(src, opts["palette"]), value_map=src.value_map)

    def source_class_names(self, source: Any, *, split: str) -> list[str] | None:
        """The names ``classes.txt`` gives ``split``'s classes (index order), read as :meth:`read_dataset`
        reads them; ``None`` without that file (masks hold indices only, so the data cannot say how
        many classes there are and ``zoo train`` keeps the model's head or asks for ``--num-classes``)."""
        return mask_class_names(source, split, self.defaults["format"], self.defaults["label_map"]) or None

    # ---- other data: a user's Dataset, zoo data check (zoo_tasks.formats) ----------------------------
    data_formats = ("masks", "voc", "cityscapes")

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """``(image, mask)`` datasets (torchvision's VOCSegmentation: palette PNG masks, 255 = ignore) with
        this task's joint transforms, masks checked as mask files are (:mod:`.formats.adapt`)."""
        from .formats.adapt import AdaptedDataset, adapt, dataset_label, dataset_names, segmentation_sample
        from .formats.masks import label_map_option

        if isinstance(dataset, (MaskFolderDataset, AdaptedDataset)):
            return dataset
        opts = self.options(model)
        names = dataset_names(dataset, class_names, model)
        names = names + model.class_names[len(names):]
        transform = segmentation_transform(model.preprocess, image_size, opts, train=train)
        return adapt(dataset, segmentation_sample, names, transform, mask_classes(model), opts["palette"],
                     label_map_option(opts["label_map"]), dataset_label(dataset))

    def check_data(self, source: Any, *, split: str | None = None, format: str | None = None) -> Any:
        """``zoo data check`` of segmentation data (:mod:`.formats.check`)."""
        from .formats.check import check_segmentation

        return check_segmentation(source, split, format or self.defaults["format"], self.defaults["label_map"],
                                  self.defaults["palette"])

    def collate(self, samples: list[Any]) -> Batch:
        images, masks, sources = zip(*samples)
        return Batch(inputs=torch.stack(images), targets=torch.stack(masks).long(),
                     meta=[{"source": s} for s in sources])

    # ---- training and evaluation ----------------------------------------------------------------
    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        """The options' loss on the main logits (+ ``aux_weight`` x the same loss on aux logits), or the
        network's own (:func:`own_loss`) when the ``loss`` option is ``"model"``."""
        if str(self.options(model)["loss"]).lower() == OWN_LOSS:
            return own_loss(model, batch)
        logits, aux = split_outputs(model(batch.inputs))
        target = batch.targets
        fn = self.loss_fn(model)
        losses = {"seg": fn(resize_logits(logits, target.shape[-2:]).float(), target)}
        weight = float(self.options(model)["aux_weight"])
        if aux is not None and weight > 0:
            losses["aux"] = weight * fn(resize_logits(aux, target.shape[-2:]).float(), target)
        losses["loss"] = sum(losses.values())  # type: ignore[assignment]
        return losses

    def forward_eval(self, model: "ZooModel", batch: Batch) -> Tensor:
        """Predicted class indices ``(B, H, W)`` at the masks' size."""
        logits, _ = split_outputs(model(batch.inputs))
        size = batch.targets.shape[-2:] if isinstance(batch.targets, Tensor) else batch.inputs.shape[-2:]
        return class_map(resize_logits(logits, size))  # argmax; logit > 0 for a binary model

    def output_names(self, model: "ZooModel") -> list[str]:
        """Mask value names: the classes, or (background, the positive class) for a binary model."""
        return mask_names(model)

    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return SegmentationMetrics(class_names, ignore_index=IGNORE_INDEX)

    def base_metrics(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """A binary model's are the positive class's IoU and Dice (:mod:`.binary_seg`)."""
        if is_binary(model):
            return BinarySegmentationMetrics(class_names[-1:] if len(class_names) != 2 else class_names,
                                             ignore_index=IGNORE_INDEX)
        return self.new_metrics(class_names)

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """``n`` random images with masks of random rectangles (classes < num_classes, a 255 strip)."""
        h, w = model.preprocess.input_size
        if max(h, w) > EXAMPLE_MAX_SIDE:
            h = w = 64
        g = torch.Generator().manual_seed(seed)
        out = []
        for i in range(n):
            image = torch.randn(model.preprocess.in_chans, h, w, generator=g)
            mask = torch.zeros(h, w, dtype=torch.long)
            for _ in range(3):
                y, x = (int(v) for v in torch.randint(0, max(1, h // 2), (2,), generator=g))
                mask[y:y + h // 3, x:x + w // 3] = int(torch.randint(0, mask_classes(model), (1,), generator=g))
            mask[:, :2] = IGNORE_INDEX
            out.append((image, mask, f"<example {i}>"))
        return out

    # ---- inference ------------------------------------------------------------------------------
    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any
                ) -> list[SegmentationMask]:
        """Per-pixel classes at each input image's own size, with the winning class's probability."""
        size = options.get("image_size")
        transform = joint_transform(model.preprocess, None if size is None else self.size_value("image_size", size),
                                    train=False)
        device, dtype = _model_device(model)
        sizes, batch = [], []
        for img in images:
            t = v2.functional.pil_to_tensor(img) if not isinstance(img, Tensor) else img
            sizes.append(tuple(t.shape[-2:]))
            batch.append(transform(v2.functional.to_image(t)).as_subclass(Tensor))
        logits, _ = split_outputs(model(torch.stack(batch).to(device=device, dtype=dtype)))
        out = []
        for src, size, row in zip(sources, sizes, logits):
            probs = class_probs(resize_logits(row[None].float(), size)[0])  # (1 - p, p) for a binary model
            scores, mask = probs.max(dim=0)
            present = torch.unique(mask).tolist()
            out.append(SegmentationMask(source=src, mask=mask.cpu(), scores=scores.cpu(),
                                        names=[mask_names(model)[i] for i in present]))
        return out

    def plots(self, model: "ZooModel", dataset: torch.utils.data.Dataset, report: Mapping[str, Any],
              out_dir: Path) -> list[Path]:
        """``predictions.png``: a few images with their predicted and true masks overlaid."""
        from .seg_plots import prediction_grid_png

        return [prediction_grid_png(model, dataset, Path(out_dir) / "predictions.png")]
