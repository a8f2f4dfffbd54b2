"""The task options that choose how data is read: ``format`` (detection, segmentation) and ``label_map``.

``format``: ``"auto"`` (the default) detects the format from the folder's layout
(:func:`zoo_core.data.layouts.detect_format`); a name picks one where a folder holds two (it is saved
with the model like every option: pass ``"auto"`` again to read other data). ``label_map``
(segmentation): ``{stored mask value: class index or 255}``, replacing the Cityscapes id -> train id
mapping ``*_labelIds.png`` masks get by default (:mod:`.masks`).
"""

from __future__ import annotations

from typing import Any

from zoo_core.errors import OptionError

from ..option_checks import choice
from .masks import label_map_option

DETECTION_FORMATS = ("coco", "yolo", "voc")
SEGMENTATION_FORMATS = ("masks", "voc", "cityscapes")

DETECTION_FORMAT_DEFAULTS: dict[str, Any] = {"format": "auto"}
DETECTION_FORMAT_CHECKS = {"format": choice("auto", *DETECTION_FORMATS)}


def _label_map(key: str, value: Any) -> None:
    try:
        label_map_option(value)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


SEGMENTATION_FORMAT_DEFAULTS: dict[str, Any] = {"format": "auto", "label_map": None}
SEGMENTATION_FORMAT_CHECKS = {"format": choice("auto", *SEGMENTATION_FORMATS), "label_map": _label_map}
