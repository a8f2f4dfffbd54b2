"""Which options a torchvision builder takes, checked before it runs.

torchvision's builders end in ``**kwargs`` and hand them to the model class: some classes raise a raw
``TypeError`` deep inside, others drop what they do not know (``ConvNeXt``, ``MobileNetV3``, and every
detector's ``GeneralizedRCNNTransform``), so a misspelt option would build the default model without
a word. Here an option is refused up front, listing the model's own options, when nothing on the
builder's path names it (the builder, the model class, a helper of the builder's module).
"""

from __future__ import annotations

import sys
import typing
from typing import Any, Callable, Mapping

from zoo_core.specs import accepted_options, init_options, module_options, refuse_unknown_options

#: what the zoo's builders give torchvision themselves
PASSED = ("weights", "progress", "num_classes", "weights_backbone")


def _model_class(builder: Callable[..., Any]) -> type | None:
    """The class a torchvision builder returns (its return annotation)."""
    try:
        cls = typing.get_type_hints(builder).get("return")
    except Exception:  # an annotation that does not resolve: only the builder's names are known
        return None
    return cls if isinstance(cls, type) else None


def _transform_init() -> Callable[..., Any]:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    return GeneralizedRCNNTransform.__init__


def check_model_options(name: str, options: Mapping[str, Any], *, what: str, zoo_options: tuple[str, ...] = (),
                        detector: bool = False) -> None:
    """Refuse options torchvision's builder ``name`` (and what it builds) does not name.

    ``zoo_options``: options the zoo's builder handles itself (listed as accepted). ``detector``: the
    model's ``**kwargs`` end in ``GeneralizedRCNNTransform`` (``size_divisible``, ``fixed_size``).
    """
    if not options:
        return
    from torchvision.models import get_model_builder

    builder = get_model_builder(name)
    cls = _model_class(builder)
    listed = accepted_options(builder) | (init_options(cls) if cls is not None else set()) | set(zoo_options)
    if detector and cls is not None and "size" not in init_options(cls):  # SSD fixes its own transform
        listed |= accepted_options(_transform_init(), passed=("min_size", "max_size", "image_mean", "image_std"))
    listed -= set(PASSED)
    also = module_options(sys.modules.get(builder.__module__))
    refuse_unknown_options(options, listed, what=what, also_known=also)


def check_head_options(head_builder: Callable[..., Any], options: Mapping[str, Any], *, what: str,
                       detector: type | None = None, built: tuple[str, ...] = ()) -> None:
    """Refuse options a detection head would hand to torchvision's ``detector`` class (default
    ``FasterRCNN``) without it naming them (its transform drops unknown ones). ``built``: the
    constructor arguments the head builds itself (anchor generator, head modules), never options."""
    if not options:
        return
    from torchvision.models.detection import FasterRCNN

    own = accepted_options(head_builder, passed=("spec", "backbone", "num_classes"))
    fixed = ("backbone", "num_classes", "min_size", "max_size", "image_mean", "image_std", "rpn_anchor_generator",
             "box_roi_pool", "box_head", "box_predictor") + built
    listed = own | accepted_options((detector or FasterRCNN).__init__, _transform_init(), passed=fixed)
    refuse_unknown_options(options, listed, what=what)
