"""The one builder behind every smp architecture spec (see ``zoo_smp.plugin.MODELS``).

``build`` calls ``segmentation_models_pytorch.create_model(arch, encoder_name=..., encoder_weights=None,
classes=num_classes)``: the encoder is random (smp would otherwise download ImageNet weights; the
zoo never downloads silently), so a pretrained model comes from ``zoo.load(..., weights=<file or
saved dir>)``. The architecture's default loss (``"dice_ce"`` for U-Net) is declared in
``BuiltModel.extra["task_options"]``, which the zoo copies into ``model.config["task_options"]``
where the segmentation task reads it.
"""

from __future__ import annotations

from typing import Any

from zoo_core.errors import OptionError, UnknownNameError
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.specs import ModelSpec, check_options

HEAD_PREFIX = "segmentation_head"
#: the encoder is the backbone (freeze_backbone, backbone_lr_mult); the decoder is new and trains
ENCODER_PREFIX = "encoder"
DEFAULT_NUM_CLASSES = 2


def encoder_name(backbone: str) -> str:
    """A zoo backbone name as smp's encoder name: ``"timm:convnext_tiny"`` -> ``"tu-convnext_tiny"``."""
    name = str(backbone)
    for prefix in ("timm:", "tu-"):
        if name.startswith(prefix):
            return "tu-" + name[len(prefix):]
    return name[len("smp:"):] if name.startswith("smp:") else name


def check_encoder(name: str) -> None:
    """Refuse an unknown smp encoder with close names (``tu-`` names are checked by timm when built)."""
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            raise UnknownNameError("timm encoder", name[3:], timm.list_models(),
                                   hint="a timm encoder is 'tu-<timm model name>'")
        return
    from segmentation_models_pytorch.encoders import get_encoder_names

    names = get_encoder_names()
    if name not in names:
        raise UnknownNameError("smp encoder", name, names,
                               hint="any timm model also works as backbone='tu-<name>' (or 'timm:<name>')")


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          backbone: str | None = None, image_size: int | None = None, **options: Any) -> BuiltModel:
    """Build smp architecture ``spec.kwargs["arch"]`` on encoder ``backbone`` for ``num_classes`` classes.

    ``backbone``: an smp encoder (default ``spec.kwargs["backbone"]``) or ``"tu-<timm name>"`` /
    ``"timm:<timm name>"``. ``image_size`` sets the preprocessing size (default 256; sides must be
    divisible by the encoder's output stride, 32). Other ``options`` go to smp's constructor
    (``decoder_channels``, ``encoder_depth``...); ``encoder_weights`` other than None is refused.
    """
    import segmentation_models_pytorch as smp

    if pretrained is not None:
        raise ValueError(f"{spec.qualified_name} has no named pretrained weights; pass weights=<file or saved "
                         "model directory> to zoo.load")
    if options.pop("encoder_weights", None) is not None:
        raise ValueError(f"{spec.qualified_name}: encoder_weights would make smp download; the zoo never "
                         "downloads silently. Load trained weights with zoo.load(..., weights=PATH)")
    encoder = encoder_name(backbone or spec.kwargs["backbone"])
    check_encoder(encoder)
    n = int(num_classes or DEFAULT_NUM_CLASSES)
    if not encoder.startswith("tu-"):  # smp hands extra keywords to timm for tu- encoders, else drops them
        check_options(getattr(smp, spec.kwargs["arch"]).__init__, options, what=spec.qualified_name,
                      passed=("encoder_name", "encoder_weights", "classes"))
    try:
        net = smp.create_model(spec.kwargs["arch"], encoder_name=encoder, encoder_weights=None, classes=n, **options)
    except TypeError as exc:
        raise OptionError(f"{spec.qualified_name} does not accept option(s) {sorted(options)}: {exc}") from exc
    side = int(image_size or (spec.input_size[-1] if spec.input_size else 256))
    preprocess = Preprocess(input_size=(side, side))
    return BuiltModel(net=net, preprocess=preprocess, num_classes=n, head=(HEAD_PREFIX,),
                      backbone=(ENCODER_PREFIX,), extra={"task_options": {"loss": spec.kwargs.get("loss", "ce")}})
