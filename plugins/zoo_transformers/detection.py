"""RT-DETR and the DETR family from Hugging Face transformers, speaking the zoo's detection contract.

:class:`HFDetector` wraps a transformers ``*ForObjectDetection`` model: it takes a list of ``(3, H, W)``
images in [0, 1] (or a batch tensor), resizes and normalises them inside (as torchvision's detectors do),
and returns in training mode the model's own Hungarian-matching losses (``targets``: zoo boxes, xyxy in
input pixels, become Hugging Face's ``labels``: normalised cxcywh), in eval mode one dict per image
(boxes xyxy in that image's pixels, scores, labels 0..K-1). The network is built from a config with
random weights and no pretrained trunk, so building never downloads; the ``coco`` weights are the hub
repository's ``model.safetensors``, which the zoo fetches offline-first (:func:`weights_info`) and loads
with transformers' own key renamings (:func:`zoo_transformers.hf.hub_keys`). Loss and outputs:
:mod:`.det_outputs`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_core.errors import OptionError, ZooError
from zoo_core.model import BuiltModel, Preprocess, PretrainedWeights
from zoo_core.saved_options import path_like
from zoo_core.specs import ModelSpec

from .det_catalog import FAMILIES, LICENSE
from .det_outputs import detections, hf_labels, loss_terms
from .hf import EXTRA, hub_keys, hub_weights, require_transformers

PREFIX = "hf."
#: config fields that would load or fetch a pretrained trunk, name a file, or that the builder sets itself
REFUSED_FIELDS = ("use_pretrained_backbone", "backbone_kwargs", "use_timm_backbone", "_name_or_path",
                  "name_or_path", "num_labels", "id2label", "label2id", "transformers_version", "architectures")
#: torch.export and TorchScript of a Hugging Face detector: refused with the reason
EXPORT_REASONS = {"torchscript": "transformers' models take keyword arguments and return dataclasses, which "
                                 "TorchScript cannot script or trace; export to ONNX",
                  "torch_export": "not verified for transformers' detectors; export to ONNX"}
#: ONNX at a fixed batch (the exported graph loops over the images of the sample) with the TorchScript-based
#: exporter (the same file as dynamo's, several times sooner). RT-DETR picks its decoder's queries with a
#: top-k over encoder proposals: an untrained model's equal scores may be broken otherwise by ONNX Runtime
EXPORT_HINTS = {"dynamic_batch": False, "onnx_exporter": "torchscript", "reasons": EXPORT_REASONS}


class HFDetector(nn.Module):
    """A transformers detection model speaking the zoo's labels, boxes and inputs (see the module docstring).

    ``resize``: ``"fixed"`` (every image to ``input_size``, RT-DETR's 640x640) or ``"shortest"`` (short
    side to ``min(input_size)``, long side capped at ``max_size/size`` times it, batch padded bottom-right
    with a pixel mask: DETR's). ``scores``: ``"sigmoid"`` (focal-loss models: top ``top_k`` of every
    query x class) or ``"softmax"`` (DETR: each query's best class, the last logit being "no object").
    """

    def __init__(self, hf_model: nn.Module, *, resize: str, input_size: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], scores: str, top_k: int | None, long_ratio: float = 1.0) -> None:
        super().__init__()
        self.hf = hf_model
        self.resize = resize
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.long_ratio = float(long_ratio)
        self.scores = scores
        self.top_k = top_k
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def set_input_size(self, size: Sequence[int]) -> None:
        """The size the Trainer / ``model.preprocess`` asks for: ``(H, W)`` (fixed) or the short side (shortest)."""
        self.input_size = (int(size[0]), int(size[1]))

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        if self.resize == "fixed":
            return self.input_size
        short = min(self.input_size)
        scale = short / min(h, w)
        if max(h, w) * scale > short * self.long_ratio:
            scale = short * self.long_ratio / max(h, w)
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))

    def prepare(self, images: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor | None]:
        """Resized, normalised pixels ``(B, 3, H, W)`` and, for padded batches, the mask of real pixels."""
        if isinstance(images, Tensor) and images.dim() == 4:  # one size (export, benchmarks): no padding
            h, w = self._target_size(int(images.shape[-2]), int(images.shape[-1]))
            x = F.interpolate(images.float(), size=(h, w), mode="bilinear", align_corners=False)
            return (x - self.mean) / self.std, None
        resized = [F.interpolate(img[None].float(), size=self._target_size(*img.shape[-2:]), mode="bilinear",
                                 align_corners=False)[0] for img in images]
        resized = [(r - self.mean) / self.std for r in resized]
        hs, ws = [r.shape[-2] for r in resized], [r.shape[-1] for r in resized]
        if len(set(hs)) == 1 and len(set(ws)) == 1:
            return torch.stack(resized), None
        batch = resized[0].new_zeros(len(resized), 3, max(hs), max(ws))
        mask = torch.zeros(len(resized), max(hs), max(ws), dtype=torch.long, device=batch.device)
        for i, r in enumerate(resized):
            batch[i, :, : r.shape[-2], : r.shape[-1]] = r
            mask[i, : r.shape[-2], : r.shape[-1]] = 1
        return batch, mask

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[Mapping[str, Tensor]] | None = None
                ) -> Any:
        pixels, mask = self.prepare(images)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        kwargs: dict[str, Any] = {} if mask is None else {"pixel_mask": mask}
        if self.training:
            if targets is None:
                raise ValueError("a detection network in training mode needs targets (boxes and labels per image)")
            out = self.hf(pixel_values=pixels, labels=hf_labels(targets, sizes), **kwargs)
            return loss_terms(out, self.hf.config)
        out = self.hf(pixel_values=pixels, **kwargs)
        return detections(out.logits, out.pred_boxes, sizes, scores=self.scores, top_k=self.top_k)


# ---- whole models by name -----------------------------------------------------------------------
def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          config: Mapping[str, Any] | None = None, backbone_config: Mapping[str, Any] | None = None
          ) -> BuiltModel:
    """Build ``spec.name`` with ``num_classes`` zoo classes (default: its COCO checkpoint's 80 or 91 slots).

    ``config``: Hugging Face config fields over the catalog's (``d_model``, ``num_queries``,
    ``decoder_layers``, loss weights...); ``backbone_config``: fields of its CNN trunk's config
    (``depths``, ``hidden_sizes``; ``model_type`` picks another trunk type, e.g. ``"resnet"``). A field the
    config class lacks, or one that would load a pretrained trunk or a file, is an :class:`OptionError`.
    """
    T = require_transformers(f"zoo_transformers:{spec.name}")
    fam = FAMILIES[spec.kwargs["family"]]
    n = num_classes if num_classes is not None else len(fam["coco"])
    cfg = make_config(T, spec, fam, n, config, backbone_config)
    hf_model = _hf_class(T, fam["model"], spec.name)(cfg)
    if fam.get("reset_batchnorm"):
        reset_batchnorm(hf_model, skip="model.backbone")
    size = (fam["size"], fam["size"])
    pre = Preprocess(input_size=size, mean=tuple(fam["mean"]), std=tuple(fam["std"]), interpolation="bilinear")
    top_k = fam["top_k"] or int(cfg.num_queries)
    net = HFDetector(hf_model, resize=fam["resize"], input_size=size, mean=fam["mean"], std=fam["std"],
                     scores=fam["scores"], top_k=top_k, long_ratio=fam.get("max_size", fam["size"]) / fam["size"])
    return BuiltModel(net=net, preprocess=pre, num_classes=n, head=tuple(PREFIX + h for h in fam["head"]),
                      backbone=tuple(PREFIX + b for b in fam["backbone"]),
                      pretrained=describe(spec, pretrained) if pretrained else None,
                      map_state_dict=with_tied(net, hub_keys(hf_model, PREFIX)),
                      export_formats=() if fam.get("no_onnx") else ("onnx",),
                      extra={"export": {**EXPORT_HINTS, "reasons": {**EXPORT_REASONS, "onnx": fam["no_onnx"]}}
                             if fam.get("no_onnx") else EXPORT_HINTS})


def reset_batchnorm(hf_model: nn.Module, skip: str) -> None:
    """Give every BatchNorm outside ``skip`` PyTorch's initial state (scale 1, shift 0).

    transformers initialises RT-DETR's encoder BatchNorm scales from N(0, 0.01) (its generic
    ``_init_weights``), where the reference implementation keeps PyTorch's 1: every conv-BN block then
    shrinks its input a hundredfold, the untrained encoder's output is ~1e-10 and all 8,400 anchors score
    exactly alike, so its query selection is arbitrary (and PyTorch and ONNX Runtime pick differently).
    Pretrained weights overwrite these values; this only fixes a model trained from scratch.
    """
    for name, module in hf_model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not (name == skip or name.startswith(skip + ".")):
            module.reset_parameters()


def make_config(T: ModuleType, spec: ModelSpec, fam: Mapping[str, Any], num_labels: int,
                config: Mapping[str, Any] | None, backbone_config: Mapping[str, Any] | None) -> Any:
    """The Hugging Face config: the class's defaults, the catalog's overrides, then the user's; no pretrained trunk."""
    cls = _hf_class(T, fam["config"], spec.name)
    default = cls()
    fields = {**dict(spec.kwargs.get("config") or {}), **dict(config or {})}
    _check_fields(fields, default.to_dict(), f"{spec.qualified_name} config", skip=("backbone_config",))
    if "backbone_config" in fields:
        raise OptionError(f"{spec.qualified_name}: pass the trunk's fields as backbone_config=..., not inside config=")
    trunk = {**dict(spec.kwargs.get("backbone_config") or {}), **dict(backbone_config or {})}
    if trunk:
        fields["backbone_config"] = _trunk_config(T, default, trunk, spec)
    labels = {i: f"class_{i}" for i in range(num_labels)}
    cfg = cls(**_lists(fields), num_labels=num_labels, id2label=labels, label2id={v: k for k, v in labels.items()})
    trunk_cfg = getattr(cfg, "backbone_config", None)
    if getattr(trunk_cfg, "use_pretrained_backbone", False) or getattr(cfg, "use_pretrained_backbone", False):
        raise ZooError(f"{spec.qualified_name}: the config asks transformers to download a pretrained trunk; "
                       "the zoo never downloads while building (load weights with weights='coco' or a file)")
    return cfg


def _trunk_config(T: ModuleType, default: Any, trunk: Mapping[str, Any], spec: ModelSpec) -> dict[str, Any]:
    base = default.backbone_config.to_dict() if getattr(default, "backbone_config", None) is not None else {}
    kind = trunk.get("model_type", base.get("model_type"))
    if kind != base.get("model_type"):
        try:
            base = T.AutoConfig.for_model(str(kind)).to_dict()
        except (KeyError, ValueError) as exc:
            raise OptionError(f"{spec.qualified_name}: backbone_config model_type {kind!r} is not a transformers "
                              "config type (e.g. 'resnet', 'rt_detr_resnet', 'timm_backbone')") from exc
    _check_fields(trunk, base, f"{spec.qualified_name} backbone_config")
    name = trunk.get("backbone")
    if isinstance(name, str) and path_like(name):
        raise OptionError(f"{spec.qualified_name}: backbone_config backbone={name!r} names a file or hub repository; "
                          "give a timm architecture name (e.g. 'resnet18'): the zoo builds trunks without downloading")
    drop = ["transformers_version", "_name_or_path", "architectures", "id2label", "label2id"]
    for pair in (("out_features", "out_indices"), ("out_indices", "out_features")):
        if pair[0] in trunk and pair[1] not in trunk:  # the base's other half would disagree with it
            drop.append(pair[1])
    return {**{k: v for k, v in base.items() if k not in drop}, **_lists(trunk), "model_type": kind}


def _check_fields(fields: Mapping[str, Any], known: Mapping[str, Any], what: str, skip: Sequence[str] = ()) -> None:
    refused = sorted(k for k in fields if k in REFUSED_FIELDS)
    if refused:
        raise OptionError(f"{what}: {refused} cannot be set (the zoo sets the labels from num_classes/class_names "
                          "and never loads pretrained trunks while building)")
    unknown = sorted(k for k in fields if k not in known and k not in skip)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, list(known), n=2) for k in unknown}
        raise OptionError(f"{what}: unknown field(s) {unknown}; close names: "
                          f"{ {k: v for k, v in hints.items() if v} or 'none'} (see the transformers config class)")


def _lists(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples (the catalog's) as lists, the type transformers' strict configs declare."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def _hf_class(T: ModuleType, name: str, model: str) -> Any:
    found = getattr(T, name, None)
    if found is None:
        raise ZooError(f"zoo_transformers:{model} needs transformers' {name}, which transformers "
                       f"{getattr(T, '__version__', '?')} lacks: upgrade it ({EXTRA} --upgrade)")
    return found


# ---- weights ---------------------------------------------------------------------------------------
def with_tied(net: nn.Module, convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]
              ) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """``convert``, then every tied tensor the file stores once filled in under its other names.

    transformers ties some layers (RT-DETRv2's ``class_embed`` is ``model.decoder.class_embed``) and its
    ``save_pretrained`` writes each tied tensor once; the network's state dict lists every name.
    """
    groups: dict[tuple[int, int], list[str]] = {}
    for key, t in net.state_dict().items():
        groups.setdefault((t.data_ptr(), t.numel()), []).append(key)
    tied = [g for g in groups.values() if len(g) > 1]

    def fill(state: dict[str, Tensor]) -> dict[str, Tensor]:
        state = convert(state)
        for names in tied:
            present = next((state[n] for n in names if n in state), None)
            if present is not None:
                state.update({n: present for n in names if n not in state})
        return state

    return fill


def describe(spec: ModelSpec, tag: str) -> PretrainedWeights:
    """The ``coco`` weights of ``spec``: its hub repository's model.safetensors, COCO labels, COCO preprocessing."""
    fam = FAMILIES[spec.kwargs["family"]]
    pre = Preprocess(input_size=(fam["size"], fam["size"]), mean=tuple(fam["mean"]), std=tuple(fam["std"]),
                     interpolation="bilinear")
    weights = hub_weights(spec.kwargs["hub"], tag, license=LICENSE, num_classes=len(fam["coco"]), preprocess=pre)
    weights.class_names = list(fam["coco"])
    return weights


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every tag of a detection spec, described without transformers (for ``zoo weights`` / ``zoo pull``)."""
    return [describe(spec, tag) for tag in spec.weights]
