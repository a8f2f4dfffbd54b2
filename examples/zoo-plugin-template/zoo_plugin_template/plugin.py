"""The hooks the zoo calls. Keep this module free of heavy imports (no torch): ``zoo list`` reads it.

Each hook receives ``register`` and calls it once per thing it adds. A builder is named as a
``"module:function"`` string, so the zoo imports ``models.py`` only when someone builds a model.
"""

from zoo_core import hookimpl

#: the zoo versions this plugin supports; outside them it is reported, not loaded
zoo_requires = ">=0.1,<1"

#: variants as data: one builder, one row per model (name, channel widths, description)
VARIANTS = [
    ("tinycnn", (8, 16), "a two-stage CNN for small images (about 2k parameters)"),
    ("tinycnn_wide", (16, 32), "the same with twice the channels"),
]


@hookimpl
def register_models(register):
    for name, widths, description in VARIANTS:
        register(name, "zoo_plugin_template.models:build_tinycnn", tasks=("classification",),
                 kwargs={"widths": widths}, input_size=(3, 32, 32), export_formats=("onnx",),
                 description=description)


@hookimpl
def register_heads(register):
    # requires: the head needs one map at stride 4 to 16 (keys: min_levels, strides, min_stride, max_stride,
    # single_level_ok); saved_options: the builder options a saved model's config may set when rebuilt
    register("liteseg", "zoo_plugin_template.heads:build_liteseg", task="segmentation",
             requires={"min_levels": 1, "min_stride": 4, "max_stride": 16}, saved_options=("channels",),
             description="a light segmentation head on the backbone's deepest map at stride 4-16")
