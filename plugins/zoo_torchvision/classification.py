"""The one builder behind every torchvision classification spec (see ``classification_specs.MODELS``).

``build`` makes the network with random weights (``weights=None``: torchvision never downloads
here), sized for ``num_classes``, and describes the pretrained weights of the requested tag so the
zoo can fetch and load them itself. Keys are torchvision's own, so a ``state_dict`` saved from a
torchvision model loads unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torchvision.models import get_model

from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel, Preprocess, prefixes_except
from zoo_core.specs import ModelSpec

from .options import check_model_options
from .tv_weights import describe, entry, preprocess_of

#: GoogLeNet and Inception v3 are built without their training-only auxiliary classifiers (so a
#: forward always returns plain logits) and with torchvision's ``transform_input=True`` (what their
#: ImageNet weights expect); the auxiliary tensors of a checkpoint are dropped on load.
AUX_PREFIXES = {"googlenet": ("aux1.", "aux2."), "inception": ("AuxLogits.",)}


def drop_aux_googlenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop GoogLeNet's auxiliary-classifier tensors from a checkpoint."""
    return {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES["googlenet"])}


def drop_aux_inception(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop Inception v3's auxiliary-classifier tensors from a checkpoint."""
    return {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES["inception"])}


MAP_STATE = {"googlenet": drop_aux_googlenet, "inception": drop_aux_inception}


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          **options: Any) -> BuiltModel:
    """Build torchvision model ``spec.name`` for classification.

    ``num_classes`` defaults to the classes of the weights (1000 for ImageNet). ``options`` go to
    torchvision's constructor (e.g. ``dropout=0.2``), except ``image_size``, which sets the input
    size (ViT and MaxViT are built for it; other families only change their preprocessing).
    """
    name, family, head = spec.name, spec.kwargs["family"], spec.kwargs["head"]
    info = describe(name, pretrained) if pretrained else None
    preprocess_tag = pretrained or (spec.weights[0] if spec.weights else None)
    preprocess = preprocess_of(entry(name, preprocess_tag)) if preprocess_tag else Preprocess()
    n = int(num_classes or (info.num_classes if info else None) or 1000)

    kwargs = dict(options)
    image_size = kwargs.pop("image_size", None)
    check_model_options(name, kwargs, what=f"torchvision:{name}", zoo_options=("image_size",))  # OptionError
    if image_size is not None:
        preprocess = preprocess.with_size(image_size)
    if family == "vit":  # position embeddings are sized for one input size
        kwargs["image_size"] = preprocess.input_size[0]
    elif family == "maxvit" and image_size is not None:
        kwargs["input_size"] = preprocess.input_size
    if family in AUX_PREFIXES:
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("transform_input", True)
        kwargs.setdefault("init_weights", True)
    try:
        net = get_model(name, weights=None, num_classes=n, **kwargs)
    except TypeError as exc:
        raise OptionError(f"torchvision:{name} does not accept option(s) {sorted(options)}: {exc}") from exc
    if info is not None:
        info = replace(info, preprocess=preprocess)
    return BuiltModel(net=net, preprocess=preprocess, num_classes=n, head=(head,), pretrained=info,
                      map_state_dict=MAP_STATE.get(family), backbone=prefixes_except(net, (head,)))
