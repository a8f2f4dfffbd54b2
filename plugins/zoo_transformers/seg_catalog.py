"""SegFormer and Mask2Former (segmentation models), DINOv2 and SigLIP (backbones), as data.

Reading this module imports neither torch nor transformers: ``zoo list`` reads these tables. Every
row names its Hugging Face Hub repositories (one per weights tag, ``model.safetensors`` fetched by
the zoo's own downloader, offline-first) and their licences. Builders (:mod:`.segmentation`,
:mod:`.backbones`) construct the networks from configs with random weights (nothing is downloaded
while building) and describe a tag's weights for the zoo to fetch.
"""

from __future__ import annotations

from typing import Any, Callable

SEG_BUILDER = "zoo_transformers.segmentation:build"
SEG_WEIGHTS_INFO = "zoo_transformers.segmentation:weights_info"
BACKBONE_BUILDER = "zoo_transformers.backbones:build_backbone"
BACKBONE_WEIGHTS_INFO = "zoo_transformers.backbones:weights_info"
PRIORITY = 10  # a short name shared with torchvision/timm/smp goes to them
INPUT_SIZE = (3, 512, 512)

SEGFORMER_LICENSE = ("NVIDIA Source Code License for SegFormer (non-commercial research use: "
                     "https://github.com/NVlabs/SegFormer/blob/master/LICENSE)")
ADE = "; ADE20K terms of use apply"
CITYSCAPES = "; Cityscapes terms of use apply"
IMAGENET = "; ImageNet-1k terms of use apply"

#: SegFormer variants: (encoder hidden sizes, blocks per stage, decoder width) of the Mix Transformer
#: encoders MiT-B0..B5 (Xie et al. 2021); attention heads (1, 2, 5, 8) and reduction ratios (8, 4, 2, 1)
#: are the same for all
SEGFORMER: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3), 768),
}


def segformer_tags(variant: str) -> dict[str, dict[str, Any]]:
    """Weights of SegFormer-``variant``: tag -> Hub repository, classes, input side, licence (default first).

    ``ade`` and ``cityscapes`` are whole models fine-tuned by NVIDIA; ``imagenet`` is the ImageNet-1k
    Mix Transformer encoder alone (its decode head starts random and the load report says so).
    """
    ade_side = 640 if variant == "b5" else 512
    return {
        "ade": {"repo": f"nvidia/segformer-{variant}-finetuned-ade-{ade_side}-{ade_side}", "num_classes": 150,
                "side": ade_side, "license": SEGFORMER_LICENSE + ADE},
        "cityscapes": {"repo": f"nvidia/segformer-{variant}-finetuned-cityscapes-1024-1024", "num_classes": 19,
                       "side": 1024, "license": SEGFORMER_LICENSE + CITYSCAPES},
        "imagenet": {"repo": f"nvidia/mit-{variant}", "num_classes": None, "side": 512,
                     "license": SEGFORMER_LICENSE + IMAGENET, "drop": ("classifier.",)},
    }


MASK2FORMER_LICENSE = "MIT (facebookresearch/Mask2Former; the Hub card says 'other')"
#: Mask2Former variants: the Swin backbone's config (transformers' SwinConfig fields); the pixel decoder and
#: transformer decoder use transformers' Mask2FormerConfig defaults (256 wide, 6 + 10 layers, 100 queries)
MASK2FORMER: dict[str, dict[str, Any]] = {
    "swin_tiny": {
        "swin": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7,
                 "drop_path_rate": 0.3, "image_size": 224},
        "tags": {
            "ade": {"repo": "facebook/mask2former-swin-tiny-ade-semantic", "num_classes": 150, "side": 512,
                    "license": MASK2FORMER_LICENSE + ADE},
            "cityscapes": {"repo": "facebook/mask2former-swin-tiny-cityscapes-semantic", "num_classes": 19,
                           "side": 1024, "license": MASK2FORMER_LICENSE + CITYSCAPES},
        },
    },
}

#: options a saved config.json may set when a model is rebuilt (transformers config fields; no paths)
SEGFORMER_SAVED = ("image_size", "hidden_sizes", "depths", "decoder_hidden_size", "num_attention_heads", "sr_ratios",
                   "mlp_ratios", "patch_sizes", "strides", "num_encoder_blocks", "hidden_act", "drop_path_rate",
                   "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob", "layer_norm_eps")
MASK2FORMER_SAVED = ("image_size", "backbone_config", "feature_size", "mask_feature_size", "hidden_dim",
                     "encoder_feedforward_dim", "encoder_layers", "decoder_layers", "num_attention_heads",
                     "dim_feedforward", "num_queries", "no_object_weight", "class_weight", "mask_weight", "dice_weight",
                     "train_num_points", "oversample_ratio", "importance_sample_ratio", "use_auxiliary_loss",
                     "dropout", "pre_norm", "enforce_input_projection", "common_stride", "activation_function")

#: backbones: transformers model class, config fields, patch (= the single map's stride), Hub tags, preprocessing
BACKBONES: dict[str, dict[str, Any]] = {
    "dinov2_small": {
        "family": "dinov2", "config": {"hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12,
                                       "image_size": 518, "patch_size": 14},
        "tags": {"lvd142m": {"repo": "facebook/dinov2-small", "license": "Apache-2.0"}},
        "description": "DINOv2 ViT-S/14 (self-supervised, LVD-142M): one map at stride 14, 384 channels",
    },
    "dinov2_base": {
        "family": "dinov2", "config": {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
                                       "image_size": 518, "patch_size": 14},
        "tags": {"lvd142m": {"repo": "facebook/dinov2-base", "license": "Apache-2.0"}},
        "description": "DINOv2 ViT-B/14 (self-supervised, LVD-142M): one map at stride 14, 768 channels",
    },
    "siglip_base_patch16_224": {
        "family": "siglip", "config": {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
                                       "intermediate_size": 3072, "image_size": 224, "patch_size": 16},
        "tags": {"webli": {"repo": "google/siglip-base-patch16-224", "license": "Apache-2.0",
                           # the Hub file is the whole image-text model: keep the vision tower only
                           "drop": ("text_model.", "logit_scale", "logit_bias", "vision_model.head.")}},
        "description": ("SigLIP ViT-B/16 image tower (WebLI, sigmoid image-text loss): one map at stride 16, "
                        "768 channels"),
    },
}
#: what a saved composed model's backbone_options may set
BACKBONE_SAVED = ("image_size", "feature_stride", "hidden_size", "num_attention_heads", "num_hidden_layers",
                  "intermediate_size", "mlp_ratio", "drop_path_rate", "layer_norm_eps", "layerscale_value")


def register_models(register: Callable[..., Any]) -> None:
    """``segformer_b0`` .. ``segformer_b5`` and ``mask2former_swin_tiny`` (task ``segmentation``)."""
    for variant, (hidden, depths, _) in SEGFORMER.items():
        tags = segformer_tags(variant)
        register(f"segformer_{variant}", SEG_BUILDER, tasks=("segmentation",), priority=PRIORITY,
                 input_size=INPUT_SIZE, weights=tuple(tags), weights_info=SEG_WEIGHTS_INFO,
                 kwargs={"family": "segformer", "variant": variant}, export_formats=("onnx", "torchscript"),
                 saved_options=SEGFORMER_SAVED,
                 description=(f"SegFormer-{variant.upper()} (Mix Transformer encoder, widths {list(hidden)}, depths "
                              f"{list(depths)}; all-MLP decoder; transformers). Hub: "
                              + ", ".join(f"{t}={v['repo']}" for t, v in tags.items()) + f". {SEGFORMER_LICENSE}"))
    for variant, row in MASK2FORMER.items():
        tags = row["tags"]
        register(f"mask2former_{variant}", SEG_BUILDER, tasks=("segmentation",), priority=PRIORITY,
                 input_size=INPUT_SIZE, weights=tuple(tags), weights_info=SEG_WEIGHTS_INFO,
                 kwargs={"family": "mask2former", "variant": variant}, saved_options=MASK2FORMER_SAVED,
                 export_formats=("onnx", "torchscript", "torch_export"),
                 description=(f"Mask2Former, Swin-{variant.split('_')[-1]} backbone (mask classification, trained with "
                              "its own Hungarian-matched mask loss; transformers). Hub: "
                              + ", ".join(f"{t}={v['repo']}" for t, v in tags.items()) + f". {MASK2FORMER_LICENSE}"))


def register_backbones(register: Callable[..., Any]) -> None:
    """``dinov2_small``, ``dinov2_base`` (stride 14) and ``siglip_base_patch16_224`` (stride 16): one map each."""
    for name, row in BACKBONES.items():
        licences = sorted({t["license"] for t in row["tags"].values()})
        hubs = ", ".join(f"{t}={v['repo']}" for t, v in row["tags"].items())
        register(name, BACKBONE_BUILDER, weights=tuple(row["tags"]), weights_info=BACKBONE_WEIGHTS_INFO,
                 priority=PRIORITY, saved_options=BACKBONE_SAVED,
                 description=f"{row['description']} (transformers). Hub: {hubs}. {', '.join(licences)}")
