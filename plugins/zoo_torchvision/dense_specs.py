"""Dense-task catalog of the torchvision plugin: backbones, heads, and (aggregated) task models.

Reading this module imports neither torch nor torchvision. Convention (one table per task module):

- ``det_specs.py`` (detection) and ``seg_specs.py`` (segmentation) each define
  ``register_models(register)`` and ``register_heads(register)`` over their own tables; this module
  only calls them, so the two tasks never edit the same file.
- Backbones are shared by every task, so their table (:data:`BACKBONES`) lives here.
"""

from __future__ import annotations

from typing import Any, Callable

from . import classification_specs, det_specs, inst_specs, kp_specs, seg_specs

PRIORITY = 30
BACKBONE_BUILDER = "zoo_torchvision.backbones:build_backbone"
BACKBONE_WEIGHTS_INFO = "zoo_torchvision.backbones:weights_info"

#: classification families whose trunk zoo_torchvision.backbones can expose as a feature pyramid
BACKBONE_FAMILIES = ("resnet", "resnext", "wide_resnet", "mobilenet_v2", "mobilenet_v3", "efficientnet",
                     "convnext", "regnet", "mnasnet")


def backbone_rows() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(name, family, weights tags)`` of every torchvision trunk usable as a backbone."""
    return [(name, fam, tuple(tags.split())) for name, fam, _size, tags in classification_specs.MODELS
            if fam in BACKBONE_FAMILIES]


def register_models(register: Callable[..., Any]) -> None:
    det_specs.register_models(register)
    inst_specs.register_models(register)
    kp_specs.register_models(register)
    seg_specs.register_models(register)


def register_backbones(register: Callable[..., Any]) -> None:
    for name, family, tags in backbone_rows():
        register(name, BACKBONE_BUILDER, kwargs={"family": family}, weights=tags,
                 weights_info=BACKBONE_WEIGHTS_INFO, priority=PRIORITY,
                 description=f"torchvision {name} trunk: feature maps at strides 2-32",
                 saved_options=classification_specs.SAVED_OPTIONS)


def register_heads(register: Callable[..., Any]) -> None:
    det_specs.register_heads(register)
    inst_specs.register_heads(register)
    kp_specs.register_heads(register)
    seg_specs.register_heads(register)
