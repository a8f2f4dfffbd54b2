"""Hugging Face transformers' vision models in the zoo. Reading this module imports neither torch nor transformers.

The catalog is data: ``det_catalog`` (RT-DETR, DETR family: detection) and ``seg_catalog`` (SegFormer,
Mask2Former: segmentation; DINOv2, SigLIP: backbones) hold tables; builders live in the modules they
name and import transformers (through :mod:`.hf`) only when a model is built.
"""

from zoo_core import hookimpl

from . import det_catalog, seg_catalog

PRIORITY = 10  # a short name shared with torchvision/timm/smp goes to them


@hookimpl
def register_models(register):
    det_catalog.register_models(register)
    seg_catalog.register_models(register)


@hookimpl
def register_backbones(register):
    seg_catalog.register_backbones(register)
