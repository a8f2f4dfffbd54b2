"""segmentation-models-pytorch in the zoo: U-Net, U-Net++, FPN, DeepLabV3+ (and more) on any encoder.

Reading this module imports neither torch nor smp. Every architecture is a row of :data:`MODELS`
built by one builder, :func:`zoo_smp.models.build`; the encoder is a builder option
(``zoo.load("unet", task="seg", backbone="resnet34", num_classes=5)``): any smp encoder name, or any
timm model as ``"tu-<name>"`` / ``"timm:<name>"``. Encoders always start random
(``encoder_weights=None``): nothing is downloaded. The ``unet`` head (:mod:`zoo_smp.heads`) puts a
U-Net decoder on any zoo backbone, ViT included (``zoo.build("seg", backbone=..., head="unet")``).
"""

from __future__ import annotations

from zoo_core import hookimpl
from zoo_core.specs import EXPORT_FORMATS

PRIORITY = 20
BUILDER = "zoo_smp.models:build"
HEAD_BUILDER = "zoo_smp.heads:build_unet_head"
DEFAULT_BACKBONE = "resnet34"
INPUT_SIZE = (3, 256, 256)

BACKBONES_FIT = ("backbone=: any smp encoder (default resnet34; e.g. resnet18/50, resnext50_32x4d, "
                 "efficientnet-b0..b7, mobilenet_v2, mit_b0..b5; list: "
                 "segmentation_models_pytorch.encoders.get_encoder_names()) or any timm CNN with "
                 "features_only as 'tu-<name>' or 'timm:<name>' (e.g. 'tu-convnext_tiny'). Plain ViTs have one "
                 "stride-16 map: use zoo.build('seg', backbone='timm:vit_...', head='unet') instead. "
                 "Input sides must be divisible by 32")

#: (name, smp architecture, default loss of the segmentation task, description)
MODELS: tuple[tuple[str, str, str, str], ...] = (
    ("unet", "Unet", "dice_ce", "U-Net (Ronneberger et al.); default loss Dice + cross-entropy"),
    ("unetplusplus", "UnetPlusPlus", "dice_ce", "U-Net++ (nested skip pathways); default loss Dice + cross-entropy"),
    ("fpn", "FPN", "ce", "Feature Pyramid Network segmentation head (Kirillov et al.)"),
    ("deeplabv3plus", "DeepLabV3Plus", "ce", "DeepLabV3+ (ASPP + low-level decoder)"),
    ("linknet", "Linknet", "ce", "LinkNet (light U-Net with additive skips)"),
    ("manet", "MAnet", "dice_ce", "MA-Net (multi-scale attention U-Net); default loss Dice + cross-entropy"),
    ("pan", "PAN", "ce", "Pyramid Attention Network"),
    ("pspnet", "PSPNet", "ce", "PSPNet (pyramid pooling)"),
    ("upernet", "UPerNet", "ce", "UPerNet (PPM + FPN)"),
)

#: the options a saved config (config.json, a checkpoint) may set when a model is rebuilt from it: the
#: encoder name and smp's plain architecture settings (a path-like encoder name is refused anyway)
SAVED_OPTIONS = ("backbone", "image_size", "encoder_depth", "encoder_output_stride", "in_channels", "activation",
                 "aux_params", "upsampling", "decoder_channels", "decoder_use_norm", "decoder_use_batchnorm",
                 "decoder_attention_type", "decoder_interpolation", "decoder_pyramid_channels",
                 "decoder_segmentation_channels", "decoder_merge_policy", "decoder_dropout", "decoder_atrous_rates",
                 "decoder_aspp_separable", "decoder_aspp_dropout", "decoder_pab_channels", "psp_out_channels",
                 "psp_dropout", "drop_rate", "drop_path_rate")  # the last two reach a timm (tu-) encoder

#: the unet head needs a pyramid (a single ViT map gets the simple feature pyramid in front)
UNET_REQUIRES = {"min_levels": 2, "single_level_ok": False}


@hookimpl
def register_models(register):
    for name, arch, loss, description in MODELS:
        register(name, BUILDER, tasks=("segmentation",), priority=PRIORITY, input_size=INPUT_SIZE,
                 kwargs={"arch": arch, "loss": loss, "backbone": DEFAULT_BACKBONE}, export_formats=EXPORT_FORMATS,
                 description=f"{description} (smp). {BACKBONES_FIT}", saved_options=SAVED_OPTIONS)


@hookimpl
def register_heads(register):
    register("unet", HEAD_BUILDER, task="segmentation", requires=UNET_REQUIRES, priority=PRIORITY,
             kwargs={"loss": "dice_ce"}, saved_options=("decoder_channels",),
             description="U-Net decoder (smp blocks) over any backbone's pyramid, shallowest map to the input size")
