"""The ``unet`` head: a U-Net decoder (smp's decoder blocks) over any zoo backbone's feature pyramid.

smp's own U-Net assumes an encoder whose maps halve in size at every step; this head takes any
:class:`~zoo_core.backbone.FeatureInfo` instead. Starting from the deepest map, each smp
``UnetDecoderBlock`` upsamples to the next shallower map's exact size, concatenates it (the skip
connection) and applies two conv-norm-ReLU layers; a last block without a skip upsamples to the
input size, and smp's ``SegmentationHead`` (3x3 conv) gives the logits. A plain ViT reaches this
head through the simple feature pyramid (strides 4-32) that ``zoo.build`` puts in front.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from zoo_core.backbone import Backbone
from zoo_core.errors import OptionError
from zoo_core.model import BuiltModel
from zoo_core.specs import HeadSpec

HEAD_PREFIX = "segmentation_head"
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class UNetOnBackbone(nn.Module):
    """``backbone -> maps (shallow..deep) -> U-Net decoder -> logits at the input size``."""

    def __init__(self, backbone: Backbone, num_classes: int,
                 decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS) -> None:
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

        super().__init__()
        self.backbone = backbone
        channels = list(backbone.feature_info.channels())[::-1]  # deepest first
        self.full_res_block = int(backbone.feature_info.reduction(0)) > 1  # type: ignore[arg-type]
        n_blocks = len(channels) - 1 + int(self.full_res_block)
        if len(decoder_channels) < n_blocks:
            raise ValueError(f"the unet head needs {n_blocks} decoder_channels for this backbone "
                             f"({backbone.feature_info}), got {list(decoder_channels)}")
        outs = list(decoder_channels)[:n_blocks]
        ins = [channels[0]] + outs[:-1]
        skips = channels[1:] + [0] * int(self.full_res_block)
        self.blocks = nn.ModuleList(UnetDecoderBlock(i, s, o) for i, s, o in zip(ins, skips, outs))
        self.segmentation_head = SegmentationHead(outs[-1], num_classes, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        maps = list(self.backbone(x))[::-1]  # deepest first
        sizes = [tuple(m.shape[-2:]) for m in maps[1:]] + ([tuple(x.shape[-2:])] if self.full_res_block else [])
        y = maps[0]
        for i, (block, (h, w)) in enumerate(zip(self.blocks, sizes)):
            y = block(y, h, w, skip_connection=maps[i + 1] if i + 1 < len(maps) else None)
        return self.segmentation_head(y)


def build_unet_head(spec: HeadSpec, *, backbone: Backbone, num_classes: int,
                    decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS, **options: Any) -> BuiltModel:
    """A U-Net decoder over every map of ``backbone``; default loss Dice + CE (``spec.kwargs["loss"]``)."""
    if options:
        raise OptionError(f"head {spec.qualified_name} got unknown option(s) {sorted(options)}; known: decoder_channels")
    net = UNetOnBackbone(backbone, num_classes, decoder_channels)
    pre = backbone.preprocess
    if backbone.fixed_input_size is not None:
        pre = pre.with_size(backbone.fixed_input_size)
    return BuiltModel(net=net, preprocess=pre, num_classes=num_classes, head=(HEAD_PREFIX,),
                      extra={"task_options": {"loss": spec.kwargs.get("loss", "dice_ce")}})
