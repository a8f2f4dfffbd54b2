"""Every timm model as a feature backbone for ``zoo.build``. Reading this module imports neither
torch nor timm: the names and tags come from :mod:`zoo_timm.catalog` (the same cached list the
classifiers use).

Whether a model can really be a backbone is decided when it is built (timm's ``features_only``);
a model that cannot says so then, with the reason. Heads live with the library whose ops they use
(``faster_rcnn`` in zoo_torchvision), so this plugin registers none.
"""

from __future__ import annotations

from typing import Any, Callable

from .catalog import load_catalog
from .classification_specs import SAVED_OPTIONS

BUILDER = "zoo_timm.backbones:build_backbone"
WEIGHTS_INFO = "zoo_timm.classification:weights_info"
PRIORITY = 10
#: the options a saved composed model's backbone_options may set: the classifier's, and the feature maps
BACKBONE_SAVED_OPTIONS = SAVED_OPTIONS + ("out_indices",)


def register_backbones(register: Callable[..., Any]) -> None:
    """One backbone spec per timm model (plain ViTs give one stride-16 map; see zoo_timm.backbones)."""
    for name, entry in load_catalog().items():
        register(name, BUILDER, weights=tuple(entry.get("weights") or ()), weights_info=WEIGHTS_INFO,
                 priority=PRIORITY, description=f"timm {name} feature maps (features_only)",
                 saved_options=BACKBONE_SAVED_OPTIONS)


def register_heads(register: Callable[..., Any]) -> None:
    """timm brings no heads of its own."""
