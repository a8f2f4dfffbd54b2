"""Any ``torch.utils.data.Dataset`` of ``(image, target)`` in a common form, in the form a task collates.

:meth:`zoo_core.task.Task.adapt_dataset` of the built-in tasks wraps a user's dataset in
:class:`AdaptedDataset`, which converts each sample when it is read:

- classification: ``(image, label)`` with an int label (torchvision's ``CIFAR10``, ``ImageFolder``,
  ``MNIST``...) -> ``(transformed image, label, "<CIFAR10[i]>")``;
- detection: ``(image, target)`` with the target torchvision's ``VOCDetection`` gives (the parsed xml
  dict: objects named by class, ``difficult`` ones kept out of training and ignored by COCOeval), a
  ``CocoDetection`` list of COCO annotation dicts (category ids mapped through the dataset's ``.coco``
  categories), or ``{"boxes": (N, 4) xyxy, "labels": (N,)}`` (torchvision's detection references) ->
  the sample :class:`~..det_data.CocoDetection` yields, boxes cleaned as COCO boxes are;
- segmentation: ``(image, mask)`` with a PIL mask (``VOCSegmentation``'s palette PNG: 255 = ignore), a
  ``(H, W)`` integer array or tensor -> ``(image, mask, "<VOCSegmentation[i]>")``, the mask checked as a
  mask file is (:func:`~..seg_data.mask_array`).

Images may be PIL images, ``(C, H, W)`` tensors (uint8 0-255, or float in [0, 1]) or ``(H, W, C)`` uint8
arrays. A sample already in the task's own form (a zoo dataset, or a user's that yields it) passes
unchanged; any other form is a :class:`DataError` naming the dataset, the index and the forms accepted.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from zoo_core.data.images import pil_to_tensor, prepare_image
from zoo_core.errors import DataError, ZooError, warn

from ..det_data import ImageRecord, _label_order, add_box, record_sample
from ..seg_data import mask_array, mask_sample


class AdaptedDataset(torch.utils.data.Dataset):
    """``base`` whose samples go through ``convert(sample, index)``; attributes of ``base`` show through."""

    def __init__(self, base: torch.utils.data.Dataset, convert: Callable[[Any, int], Any],
                 class_names: Sequence[str]) -> None:
        self.base, self.convert, self.class_names = base, convert, list(class_names)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.convert(self.base[index], index)

    def __getattr__(self, name: str) -> Any:  # the wrapped dataset's own attributes (targets, root...)
        if name in ("base", "convert", "class_names"):
            raise AttributeError(name)
        return getattr(self.base, name)


def dataset_names(dataset: Any, class_names: Sequence[str] | None, model: Any) -> list[str]:
    """Class names for a user's dataset: ``class_names``, else its ``class_names``/``classes``, else the
    categories of its ``.coco``, else the model's."""
    if class_names is not None:
        return [str(n) for n in class_names]
    for attr in ("class_names", "classes"):
        names = getattr(dataset, attr, None)
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return list(names)
    coco = getattr(dataset, "coco", None)
    if coco is not None and getattr(coco, "cats", None):
        return [str(c.get("name", c["id"])) for c in sorted(coco.cats.values(), key=lambda c: c["id"])]
    return list(model.class_names)


def dataset_label(dataset: Any) -> str:
    """How messages and sample sources name a user's dataset: its class name (``VOCDetection``)."""
    return type(dataset).__name__


def _bad(dataset_name: str, index: int, sample: Any, expected: str) -> DataError:
    shape = type(sample).__name__ + (f" of {len(sample)}" if isinstance(sample, (tuple, list)) else "")
    kinds = ", ".join(type(v).__name__ for v in sample) if isinstance(sample, (tuple, list)) else ""
    return DataError(f"{dataset_name}[{index}] is a {shape} ({kinds}); expected {expected}")


def _image(image: Any, where: str, channels: int = 3) -> Any:
    """A PIL image (RGB, EXIF applied) or a checked float tensor in [0, 1] from a sample's image."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4)):
            image = Image.fromarray(np.ascontiguousarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1
                                                         else image))
    if not isinstance(image, (Image.Image, torch.Tensor)):
        raise DataError(f"{where}: the image is a {type(image).__name__}; expected a PIL image, a (C, H, W) tensor or "
                        "an (H, W, C) uint8 array")
    try:
        return prepare_image(image, where, channels)[0]
    except ZooError as exc:
        raise DataError(str(exc)) from exc


def _as_tensor(image: Any) -> torch.Tensor:
    return pil_to_tensor(image) if isinstance(image, Image.Image) else image


# ---- classification -----------------------------------------------------------------------------
def classification_sample(transform: Callable[[Any], Any], num_classes: int, name: str, sample: Any,
                          index: int) -> Any:
    """``(image, int label)`` -> ``(transform(image), label, "<name[index]>")``; the zoo form passes."""
    if isinstance(sample, (tuple, list)) and len(sample) == 3 and isinstance(sample[2], str):
        return sample
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise _bad(name, index, sample, "(image, class index) as torchvision's CIFAR10/ImageFolder give, or the "
                                        "zoo's (image tensor, label, source)")
    image, label = sample
    where = f"{name}[{index}]"
    if isinstance(label, torch.Tensor) and label.numel() == 1:
        label = label.item()
    if isinstance(label, (bool, float)) or not isinstance(label, (int, np.integer)):
        raise DataError(f"{where}: the label is {label!r} ({type(label).__name__}); expected a class index (int)")
    if not 0 <= int(label) < num_classes:
        raise DataError(f"{where}: label {int(label)} is not a class of a {num_classes}-class model (0.."
                        f"{num_classes - 1}); load it with num_classes= covering the data")
    return transform(_image(image, where)), int(label), f"<{where}>"


# ---- detection ----------------------------------------------------------------------------------
class DetectionTargets:
    """Turns one detection target (VOC dict, COCO annotation list, boxes/labels dict) into an :class:`ImageRecord`."""

    def __init__(self, dataset: Any, class_names: Sequence[str], transform: Callable[..., Any]) -> None:
        self.name, self.transform = dataset_label(dataset), transform
        self.class_names = list(class_names)
        self.by_name = {n: i for i, n in enumerate(self.class_names)}
        coco = getattr(dataset, "coco", None)
        self.by_category: dict[int, int] | None = None
        if coco is not None and getattr(coco, "cats", None):
            cats = sorted(coco.cats.values(), key=lambda c: c["id"])
            _, ids = _label_order(cats, self.class_names, Path(f"<{self.name}.coco>"))
            self.by_category = {cid: i for i, cid in enumerate(ids)}
        self.warned: set[int] = set()

    def __call__(self, sample: Any, index: int) -> Any:
        if isinstance(sample, (tuple, list)) and len(sample) == 3 and isinstance(sample[2], dict):
            return sample
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
            raise _bad(self.name, index, sample, "(image, target) with a VOC xml dict, a list of COCO annotations or "
                                                 "{'boxes', 'labels'}, or the zoo's (image, target, meta)")
        where = f"{self.name}[{index}]"
        image = _as_tensor(_image(sample[0], where))
        rec = ImageRecord(index + 1, Path(f"<{where}>"), int(image.shape[-1]), int(image.shape[-2]))
        problems: dict[str, list[Any]] = {"zero": [], "outside": [], "clamped": []}
        self._add(rec, sample[1], where, problems)
        if any(problems.values()) and index not in self.warned:
            self.warned.add(index)
            kinds = ", ".join(f"{len(v)} {k}" for k, v in problems.items() if v)
            warn(f"{where}: box(es) cleaned as COCO boxes are ({kinds}: zero-size and outside boxes dropped, "
                 "partly outside ones clamped)")
        return record_sample(image, rec, self.transform)

    def _add(self, rec: ImageRecord, target: Any, where: str, problems: dict[str, list[Any]]) -> None:
        if isinstance(target, dict) and "annotation" in target:  # torchvision VOCDetection
            objects = target["annotation"].get("object", [])
            for k, obj in enumerate(objects if isinstance(objects, list) else [objects]):
                label = self._name(obj.get("name"), where)
                try:
                    x0, y0, x1, y1 = (float(obj["bndbox"][t]) for t in ("xmin", "ymin", "xmax", "ymax"))
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{where}: object {k} has no numeric bndbox xmin/ymin/xmax/ymax "
                                    f"({obj.get('bndbox')!r})") from None
                add_box(rec, (x0, y0, x1 - x0, y1 - y0), label, problems, f"object {k}",
                        crowd=str(obj.get("difficult", "0")) not in ("0", "", "false"))
        elif isinstance(target, dict) and "boxes" in target and "labels" in target:  # xyxy tensors
            boxes = torch.as_tensor(target["boxes"], dtype=torch.float64).reshape(-1, 4).tolist()
            labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
            for k, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, labels)):
                if not 0 <= int(label) < len(self.class_names):
                    raise DataError(f"{where}: box {k} has label {label}, not one of {len(self.class_names)} classes")
                add_box(rec, (x0, y0, x1 - x0, y1 - y0), int(label), problems, f"box {k}")
        elif isinstance(target, list) and all(isinstance(a, dict) and "bbox" in a for a in target):  # CocoDetection
            if target and self.by_category is None:
                raise DataError(f"{where}: COCO annotations name category ids, and the dataset has no .coco "
                                "(pycocotools COCO, as torchvision's CocoDetection has) to map them to classes")
            for ann in target:
                label = (self.by_category or {}).get(ann.get("category_id"))
                if label is None:
                    raise DataError(f"{where}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r},"
                                    " which is not in the dataset's categories")
                add_box(rec, ann["bbox"], label, problems, ann.get("id"), area=ann.get("area"),
                        crowd=bool(ann.get("iscrowd", 0)))
        else:
            raise DataError(f"{where}: the target is a {type(target).__name__}; expected a VOC xml dict "
                            "({'annotation': {'object': [...]}}), a list of COCO annotation dicts or "
                            "{'boxes': (N, 4) xyxy, 'labels': (N,)}")

    def _name(self, name: Any, where: str) -> int:
        if name not in self.by_name:
            raise DataError(f"{where}: object {name!r} is not one of the classes {self.class_names[:20]}; give the "
                            "model (zoo.load(..., class_names=[...])) or the call (class_names=) the dataset's names")
        return self.by_name[name]


# ---- segmentation -------------------------------------------------------------------------------
def segmentation_sample(transform: Callable[..., Any], num_classes: int, palette: Any, value_map: Any, name: str,
                        sample: Any, index: int) -> Any:
    """``(image, mask)`` -> ``(image, mask (H, W) long, "<name[index]>")``, the mask checked; the zoo form passes."""
    if isinstance(sample, (tuple, list)) and len(sample) == 3 and isinstance(sample[2], str):
        return sample
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise _bad(name, index, sample, "(image, mask) as torchvision's VOCSegmentation gives, or the zoo's "
                                        "(image tensor, mask tensor, source)")
    where = f"{name}[{index}]"
    image = _image(sample[0], where)
    tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) if isinstance(image, Image.Image) else image
    mask = sample[1]
    if isinstance(mask, torch.Tensor):
        mask = mask.squeeze(0).cpu().numpy() if mask.dim() == 3 and mask.shape[0] == 1 else mask.cpu().numpy()
    if isinstance(mask, np.ndarray):
        if mask.ndim != 2 or mask.dtype.kind not in "iub":
            raise DataError(f"{where}: the mask is an array of shape {mask.shape} and dtype {mask.dtype}; expected "
                            "(H, W) integer class indices")
        mask = Image.fromarray(mask.astype(np.int32) if mask.dtype != np.uint8 else mask)
    if not isinstance(mask, Image.Image):
        raise DataError(f"{where}: the mask is a {type(mask).__name__}; expected a PIL image, or an (H, W) array "
                        "or tensor of class indices")
    size = (int(tensor.shape[-1]), int(tensor.shape[-2]))
    arr = mask_array(mask, f"<{where}> mask", image_size=size, num_classes=num_classes, palette=palette,
                     value_map=value_map, image_path=f"<{where}>")
    return mask_sample(tensor, arr, transform, f"<{where}>")


def adapt(dataset: Any, convert: Callable[..., Any], class_names: Sequence[str], *args: Any) -> AdaptedDataset:
    """``dataset`` converted per sample by ``convert(*args, sample, index)``."""
    return AdaptedDataset(dataset, functools.partial(convert, *args), class_names)
