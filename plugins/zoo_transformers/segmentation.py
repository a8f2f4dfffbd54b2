"""SegFormer and Mask2Former from transformers' model classes, as zoo segmentation models.

Both are built from configs (:mod:`.seg_catalog` holds each variant's) with random weights: building never
downloads. A weights tag is described (:func:`weights_info`, the Hub repository's ``model.safetensors``) for
the zoo to fetch offline-first; the file's keys are renamed as transformers renames them when it loads
(:func:`zoo_transformers.hf.hub_keys`), so a Hub file, a ``save_pretrained`` file and a zoo-saved model
all load exactly. The transformers model sits under ``hf`` in the zoo network.

- **SegFormer** (:class:`SegFormerNet`): the Mix Transformer encoder (``hf.segformer``, the backbone) and
  the all-MLP decode head (``hf.decode_head``); logits at 1/4 resolution are upsampled to the input size,
  and the segmentation task's loss (cross-entropy by default) trains it.
- **Mask2Former** (:class:`Mask2FormerNet`): mask classification. It trains with its own loss (Hungarian
  matching of queries to the classes present, mask BCE + Dice on sampled points, class cross-entropy), so
  it declares the segmentation task's ``loss="model"``: the task calls ``net(images, masks)`` and uses the
  loss dict it returns; the semantic masks are turned into one binary mask per class present (255 pixels
  belong to none, as in Mask2Former's own semantic recipe). In eval it returns ``log`` of the semantic
  scores ``sum_q p_q(class) * sigmoid(mask_q)`` at the input size: their argmax is Mask2Former's semantic
  prediction and their softmax the scores normalised over classes.

Export (checked against eager by ``zoo.export``): SegFormer to ONNX and TorchScript; Mask2Former to ONNX
(the dynamo exporter: its deformable attention is ``grid_sample``), TorchScript and ``torch.export``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_core.model import IMAGENET_MEAN, IMAGENET_STD, BuiltModel, Preprocess, PretrainedWeights
from zoo_core.specs import ModelSpec, check_options

from .hf import hub_keys, hub_weights, require_transformers
from .seg_catalog import MASK2FORMER, SEGFORMER, segformer_tags

PREFIX = "hf."
#: classes when neither num_classes nor a tag says (ADE20K's 150, the default tag's)
DEFAULT_NUM_CLASSES = 150
#: the smallest semantic score before the log (a pixel no query covers)
SCORE_FLOOR = 1e-6
#: Mask2Former's multi-scale deformable attention is grid_sample: the dynamo ONNX exporter handles it
#: (opset >= 16; the TorchScript-based one writes a GridSample ONNX Runtime cannot run)
MASK2FORMER_EXPORT = {"onnx_exporter": "dynamo"}


def _tags(spec: ModelSpec) -> dict[str, dict[str, Any]]:
    family, variant = spec.kwargs["family"], spec.kwargs["variant"]
    return segformer_tags(variant) if family == "segformer" else MASK2FORMER[variant]["tags"]


def describe(spec: ModelSpec, tag: str, preprocess: Preprocess | None = None) -> PretrainedWeights:
    """Tag ``tag`` of ``spec``: its Hub ``model.safetensors``, class count, input size and licence."""
    row = _tags(spec)[tag]
    pre = preprocess or Preprocess(input_size=(row["side"], row["side"]))
    return hub_weights(row["repo"], tag, license=row["license"], num_classes=row["num_classes"], preprocess=pre)


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every tag of a SegFormer/Mask2Former spec, described (``zoo.list_weights``, ``zoo pull``)."""
    return [describe(spec, tag) for tag in spec.weights]


# ---- the networks ---------------------------------------------------------------------------------
class SegFormerNet(nn.Module):
    """transformers' ``SegformerForSemanticSegmentation``; logits ``(B, K, H, W)`` at the input size."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, x: Tensor) -> Tensor:
        logits = self.hf(pixel_values=x, return_dict=True).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class Mask2FormerNet(nn.Module):
    """transformers' ``Mask2FormerForUniversalSegmentation`` speaking the segmentation task's language.

    ``forward(x)``: log semantic scores ``(B, K, H, W)`` at the input size. ``forward(x, masks)`` with
    index masks ``(B, H, W)`` (255 = ignore): ``{"loss": Mask2Former's own loss}`` (see the module doc).
    """

    def __init__(self, hf: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.hf = hf
        self.num_classes = num_classes

    @contextlib.contextmanager
    def export_mode(self) -> Iterator[None]:
        """Plain (``eager``) attention while :func:`zoo_core.export` traces and verifies: the dynamo exporter
        cannot decompose the Swin trunk's SDPA path at full size (it turns a reshape of a transposed tensor
        into a view). Same function, other kernels; the model's own setting comes back afterwards."""
        before = getattr(self.hf.config, "_attn_implementation", None)
        self.hf.set_attn_implementation("eager")
        try:
            yield
        finally:
            if before:
                self.hf.set_attn_implementation(before)

    def forward(self, x: Tensor, targets: Tensor | None = None) -> Any:
        if targets is not None:
            mask_labels, class_labels = per_class_masks(targets, self.num_classes, dtype=x.dtype)
            out = self.hf(pixel_values=x, mask_labels=mask_labels, class_labels=class_labels, return_dict=True)
            return {"loss": out.loss}
        out = self.hf(pixel_values=x, return_dict=True)
        return semantic_log_scores(out.class_queries_logits, out.masks_queries_logits, x.shape[-2:])


def per_class_masks(targets: Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32
                    ) -> tuple[list[Tensor], list[Tensor]]:
    """One binary mask per class present in each index mask (255 and other values >= ``num_classes`` in none):
    Mask2Former's ``mask_labels`` ``[(N_i, H, W)]`` and ``class_labels`` ``[(N_i,)]``."""
    masks, labels = [], []
    for target in targets:
        present = torch.unique(target)
        present = present[present < num_classes]
        masks.append((target[None] == present[:, None, None]).to(dtype))
        labels.append(present.long())
    return masks, labels


def semantic_log_scores(class_logits: Tensor, mask_logits: Tensor, size: Sequence[int]) -> Tensor:
    """``log(sum_q softmax(class_q)[:K] * sigmoid(mask_q))`` at ``size`` (the no-object class dropped)."""
    masks = F.interpolate(mask_logits, size=tuple(size), mode="bilinear", align_corners=False).sigmoid()
    probs = class_logits.softmax(dim=-1)[..., :-1]
    scores = torch.einsum("bqc,bqhw->bchw", probs, masks)
    return scores.clamp_min(SCORE_FLOOR).log()


# ---- the builder ----------------------------------------------------------------------------------
def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          image_size: int | Sequence[int] | None = None, **options: Any) -> BuiltModel:
    """Build ``spec`` (SegFormer or Mask2Former) with ``num_classes`` classes and random weights.

    ``num_classes`` defaults to the tag's (150 for ADE20K, 19 for Cityscapes) or 150. ``image_size``: the
    preprocessing size (default: the tag's, else 512). ``options`` are fields of the transformers config
    (``SegformerConfig``: ``hidden_sizes``, ``depths``, ``decoder_hidden_size``...; ``Mask2FormerConfig``:
    ``hidden_dim``, ``num_queries``, ``decoder_layers``..., and ``backbone_config={...}`` for the Swin
    backbone's ``SwinConfig`` fields); an unknown field is an OptionError (configs would swallow it).
    """
    tr = require_transformers(spec.qualified_name)
    family, variant = spec.kwargs["family"], spec.kwargs["variant"]
    tags = _tags(spec)
    row = tags[pretrained] if pretrained else None
    n = int(num_classes or (row and row["num_classes"]) or DEFAULT_NUM_CLASSES)
    side = row["side"] if row else spec.input_size[-1] if spec.input_size else 512
    preprocess = Preprocess(input_size=(side, side), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")
    if image_size is not None:
        preprocess = preprocess.with_size(image_size)  # type: ignore[arg-type]
    drop = tuple(d for t in tags.values() for d in t.get("drop", ()))
    if family == "segformer":
        net: nn.Module = SegFormerNet(_segformer(tr, spec, variant, n, options))
        head, backbone, extra = ("hf.decode_head",), ("hf.segformer",), {}
    else:
        if n < 2:
            raise ValueError(f"{spec.qualified_name} classifies masks into num_classes >= 2 classes (binary: 2, "
                             f"background and foreground), got num_classes={n}")
        net = Mask2FormerNet(_mask2former(tr, spec, variant, n, options), n)
        head = ("hf.class_predictor", "hf.criterion")
        backbone = ("hf.model.pixel_level_module.encoder",)
        extra = {"task_options": {"loss": "model"}, "export": dict(MASK2FORMER_EXPORT)}
    return BuiltModel(net=net, preprocess=preprocess, num_classes=n, head=head, backbone=backbone,
                      pretrained=describe(spec, pretrained, preprocess) if pretrained else None,
                      map_state_dict=hub_keys(net.hf, PREFIX, drop=drop), extra=extra,  # type: ignore[arg-type]
                      export_formats=tuple(spec.export_formats))


def _config(cls: type, base: dict[str, Any], options: dict[str, Any], what: str, passed: Sequence[str]) -> Any:
    check_options(cls.__init__, options, what=what, passed=tuple(passed))
    return cls(**{**base, **options})


def _segformer(tr: Any, spec: ModelSpec, variant: str, n: int, options: dict[str, Any]) -> nn.Module:
    hidden, depths, decoder = SEGFORMER[variant]
    base = {"hidden_sizes": list(hidden), "depths": list(depths), "decoder_hidden_size": decoder,
            "num_attention_heads": [1, 2, 5, 8], "sr_ratios": [8, 4, 2, 1], "num_labels": n}
    config = _config(tr.SegformerConfig, base, options, spec.qualified_name, ("num_labels", "id2label", "label2id"))
    return tr.SegformerForSemanticSegmentation(config)


def _mask2former(tr: Any, spec: ModelSpec, variant: str, n: int, options: dict[str, Any]) -> nn.Module:
    options = dict(options)
    swin_options = dict(options.pop("backbone_config", None) or {})
    swin = _config(tr.SwinConfig, {**MASK2FORMER[variant]["swin"],
                                   "out_features": ["stage1", "stage2", "stage3", "stage4"]},
                   swin_options, f"{spec.qualified_name} backbone_config", ())
    config = _config(tr.Mask2FormerConfig, {"backbone_config": swin, "num_labels": n}, options, spec.qualified_name,
                     ("num_labels", "id2label", "label2id", "backbone_config"))
    return tr.Mask2FormerForUniversalSegmentation(config)
