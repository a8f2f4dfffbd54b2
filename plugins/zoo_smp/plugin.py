"""segmentation-models-pytorch in the zoo (filled in by the segmentation work)."""

from zoo_core import hookimpl


@hookimpl
def register_models(register):
    pass
