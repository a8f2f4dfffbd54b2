"""timm's models in the zoo: every timm model as a classifier and as a feature backbone.

Reading this module imports neither torch nor timm: the model names come from a cached catalog.
"""

from zoo_core import hookimpl

from . import backbone_specs, classification_specs

PRIORITY = 10


@hookimpl
def register_models(register):
    classification_specs.register_models(register)


@hookimpl
def register_backbones(register):
    backbone_specs.register_backbones(register)


@hookimpl
def register_heads(register):
    backbone_specs.register_heads(register)
