"""torchvision's models in the zoo. Reading this module imports neither torch nor torchvision.

The catalog is data: ``classification_specs`` (every classification model) and ``dense_specs``
(detection, segmentation, backbones, heads) hold tables; builders live in the modules they name.
"""

from zoo_core import hookimpl

from . import classification_specs, dense_specs

PRIORITY = 30  # torchvision wins a short name it shares with timm (see zoo_core.registry)


@hookimpl
def register_models(register):
    classification_specs.register_models(register)
    dense_specs.register_models(register)


@hookimpl
def register_backbones(register):
    dense_specs.register_backbones(register)


@hookimpl
def register_heads(register):
    dense_specs.register_heads(register)
