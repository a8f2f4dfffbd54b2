"""Every timm model as a classifier. Reading this module imports neither torch nor timm.

The names, pretrained tags and input sizes come from :mod:`zoo_timm.catalog` (a JSON cache per
installed timm version). One builder, :func:`zoo_timm.classification.build`, makes all of them.
"""

from __future__ import annotations

from typing import Any, Callable

from zoo_core.specs import EXPORT_FORMATS

from .catalog import load_catalog

BUILDER = "zoo_timm.classification:build"
WEIGHTS_INFO = "zoo_timm.classification:weights_info"
PRIORITY = 10
#: a classifier's network serves both tasks unchanged (logits (B, K)): the builder never reads the task name
TASKS = ("classification", "multilabel_classification")
#: the options a saved config (config.json, a checkpoint) may set when a model is rebuilt from it:
#: shapes and regularisation, plain numbers and flags (never timm's checkpoint_path or pretrained_cfg*)
SAVED_OPTIONS = ("img_size", "in_chans", "patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio",
                 "drop_rate", "drop_path_rate", "drop_block_rate", "proj_drop_rate", "attn_drop_rate",
                 "pos_drop_rate", "patch_drop_rate", "global_pool", "output_stride", "dynamic_img_size",
                 "dynamic_img_pad", "class_token", "reg_tokens", "no_embed_class", "qkv_bias", "init_values")


def register_models(register: Callable[..., Any]) -> None:
    """Register every model of the installed timm for classification."""
    for name, entry in load_catalog().items():
        size = entry.get("input_size")
        register(name, BUILDER, tasks=TASKS, priority=PRIORITY,
                 input_size=tuple(size) if size else None, weights=tuple(entry.get("weights") or ()),
                 weights_info=WEIGHTS_INFO, export_formats=EXPORT_FORMATS, description=f"timm {name} classifier",
                 saved_options=SAVED_OPTIONS)
