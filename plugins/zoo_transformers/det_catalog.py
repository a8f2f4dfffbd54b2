"""Detection models of the transformers plugin (RT-DETR, RT-DETRv2, DETR, Conditional and Deformable DETR), as data.

Reading this module imports neither torch nor transformers, so ``zoo list`` / ``zoo info`` work without
the ``zoo[transformers]`` extra. Every row builds through :func:`zoo_transformers.detection.build` from a
Hugging Face config (random init, nothing downloaded); its ``coco`` weights are the Hugging Face hub
repository's ``model.safetensors``, fetched offline-first by the zoo (never by ``huggingface_hub``).
The architecture overrides are those of each hub repository's ``config.json`` (transformers' own
conversion scripts set the same values); the rest are the config class's defaults.
"""

from __future__ import annotations

from typing import Any, Callable

BUILDER = "zoo_transformers.detection:build"
WEIGHTS_INFO = "zoo_transformers.detection:weights_info"
#: a short name shared with torchvision/timm goes to them (the plugin module's PRIORITY, repeated here)
PRIORITY = 10
#: the options a saved config may set when the model is rebuilt: Hugging Face config fields as data
#: (numbers, lists, names; :mod:`.detection` refuses the fields that would read or fetch files)
SAVED_OPTIONS = ("config", "backbone_config")
LICENSE = "Apache-2.0 (Hugging Face model card); COCO terms apply"

#: COCO's 91 category slots as DETR's checkpoints number them (id2label): "N/A" where COCO has no category
COCO_91: tuple[str, ...] = tuple((
    "N/A,person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,N/A,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,N/A,backpack,umbrella,N/A,N/A,"
    "handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,"
    "surfboard,tennis racket,bottle,N/A,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,"
    "broccoli,carrot,hot dog,pizza,donut,cake,chair,couch,potted plant,bed,N/A,dining table,N/A,N/A,toilet,N/A,"
    "tv,laptop,mouse,remote,keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,N/A,book,clock,vase,"
    "scissors,teddy bear,hair drier,toothbrush").split(","))
#: the 80 COCO categories in contiguous order (RT-DETR's checkpoints)
COCO_80: tuple[str, ...] = tuple(n for n in COCO_91 if n != "N/A")

#: per family: the transformers config and model classes, how images are resized and normalised, how
#: logits become scores, and the state-dict prefixes (inside the Hugging Face model) of the class-dependent
#: layers (``head``) and of the CNN trunk (``backbone``; what freeze_backbone freezes: the encoder and
#: decoder keep training). ``reset_batchnorm``: see :func:`zoo_transformers.detection.reset_batchnorm`
FAMILIES: dict[str, dict[str, Any]] = {
    "rt_detr": {"config": "RTDetrConfig", "model": "RTDetrForObjectDetection", "backbone_type": "rt_detr_resnet",
                "resize": "fixed", "size": 640, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
                "scores": "sigmoid", "top_k": None, "coco": COCO_80,
                "head": ("model.decoder.class_embed", "model.enc_score_head", "model.denoising_class_embed"),
                "backbone": ("model.backbone",), "reset_batchnorm": True},
    "rt_detr_v2": {"config": "RTDetrV2Config", "model": "RTDetrV2ForObjectDetection",
                   "backbone_type": "rt_detr_resnet", "resize": "fixed", "size": 640, "mean": (0.0, 0.0, 0.0),
                   "std": (1.0, 1.0, 1.0), "scores": "sigmoid", "top_k": None, "coco": COCO_80,
                   "head": ("class_embed", "model.decoder.class_embed", "model.enc_score_head",
                            "model.denoising_class_embed"),
                   "backbone": ("model.backbone",), "reset_batchnorm": True},
    "detr": {"config": "DetrConfig", "model": "DetrForObjectDetection", "backbone_type": "timm_backbone",
             "resize": "shortest", "size": 800, "max_size": 1333, "mean": (0.485, 0.456, 0.406),
             "std": (0.229, 0.224, 0.225), "scores": "softmax", "top_k": None, "coco": COCO_91,
             "head": ("class_labels_classifier",), "backbone": ("model.backbone",)},
    "conditional_detr": {"config": "ConditionalDetrConfig", "model": "ConditionalDetrForObjectDetection",
                         "backbone_type": "timm_backbone", "resize": "shortest", "size": 800, "max_size": 1333,
                         "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "scores": "sigmoid",
                         "top_k": 100, "coco": COCO_91, "head": ("class_labels_classifier",),
                         "backbone": ("model.backbone",)},
    "deformable_detr": {"config": "DeformableDetrConfig", "model": "DeformableDetrForObjectDetection",
                        "backbone_type": "timm_backbone", "resize": "shortest", "size": 800, "max_size": 1333,
                        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "scores": "sigmoid",
                        "top_k": 100, "coco": COCO_91, "head": ("class_embed",), "backbone": ("model.backbone",),
                        # its multi-scale deformable attention exports to a GridSample ONNX Runtime has no kernel for
                        "no_onnx": "its deformable attention exports to an ONNX GridSample (opset 20) that ONNX "
                                   "Runtime cannot run; use the PyTorch model"},
}

#: RT-DETR's ResNet-vd trunks (``RTDetrResNetConfig`` fields; ResNet-50-vd is the config's default)
_R18 = {"hidden_sizes": (64, 128, 256, 512), "depths": (2, 2, 2, 2), "layer_type": "basic"}
_R34 = {"hidden_sizes": (64, 128, 256, 512), "depths": (3, 4, 6, 3), "layer_type": "basic"}
_R101 = {"depths": (3, 4, 23, 3)}
_SMALL = {"encoder_in_channels": (128, 256, 512), "hidden_expansion": 0.5}
_WIDE = {"encoder_ffn_dim": 2048, "encoder_hidden_dim": 384, "decoder_in_channels": (384, 384, 384)}

#: (name, family, Hugging Face hub repository of the COCO weights, config overrides, backbone config
#: overrides, description)
MODELS: tuple[tuple[str, str, str, dict[str, Any], dict[str, Any], str], ...] = (
    ("rtdetr_r18vd", "rt_detr", "PekingU/rtdetr_r18vd", {**_SMALL, "decoder_layers": 3}, _R18,
     "RT-DETR, ResNet-18-vd, real-time DETR (COCO box AP 46.5)"),
    ("rtdetr_r34vd", "rt_detr", "PekingU/rtdetr_r34vd", {**_SMALL, "decoder_layers": 4}, _R34,
     "RT-DETR, ResNet-34-vd (COCO box AP 48.9)"),
    ("rtdetr_r50vd", "rt_detr", "PekingU/rtdetr_r50vd", {}, {}, "RT-DETR, ResNet-50-vd (COCO box AP 53.1)"),
    ("rtdetr_r101vd", "rt_detr", "PekingU/rtdetr_r101vd", _WIDE, _R101, "RT-DETR, ResNet-101-vd (COCO box AP 54.3)"),
    ("rtdetr_v2_r18vd", "rt_detr_v2", "PekingU/rtdetr_v2_r18vd", {**_SMALL, "decoder_layers": 3}, _R18,
     "RT-DETRv2, ResNet-18-vd (COCO box AP 47.9)"),
    ("rtdetr_v2_r34vd", "rt_detr_v2", "PekingU/rtdetr_v2_r34vd", {**_SMALL, "decoder_layers": 4}, _R34,
     "RT-DETRv2, ResNet-34-vd (COCO box AP 49.9)"),
    ("rtdetr_v2_r50vd", "rt_detr_v2", "PekingU/rtdetr_v2_r50vd", {}, {}, "RT-DETRv2, ResNet-50-vd (COCO box AP 53.4)"),
    ("rtdetr_v2_r101vd", "rt_detr_v2", "PekingU/rtdetr_v2_r101vd", _WIDE, _R101,
     "RT-DETRv2, ResNet-101-vd (COCO box AP 54.3)"),
    ("detr_resnet50", "detr", "facebook/detr-resnet-50", {}, {}, "DETR, ResNet-50 (COCO box AP 42.0)"),
    ("conditional_detr_resnet50", "conditional_detr", "microsoft/conditional-detr-resnet-50", {}, {},
     "Conditional DETR, ResNet-50, 50 epochs (COCO box AP 40.9)"),
    ("deformable_detr", "deformable_detr", "SenseTime/deformable-detr", {}, {},
     "Deformable DETR, ResNet-50, multi-scale deformable attention in plain PyTorch (COCO box AP 43.8)"),
)


def register_models(register: Callable[..., Any]) -> None:
    """One spec per row of :data:`MODELS`; its weights tag ``coco`` is the hub repository's model.safetensors."""
    for name, family, hub, config, backbone, description in MODELS:
        size = FAMILIES[family]["size"]
        register(name, BUILDER, tasks=("detection",), priority=PRIORITY, input_size=(3, size, size),
                 weights=("coco",), weights_info=WEIGHTS_INFO,
                 export_formats=() if FAMILIES[family].get("no_onnx") else ("onnx",),
                 kwargs={"family": family, "hub": hub, "config": config, "backbone_config": backbone},
                 description=f"{description}; Hugging Face transformers, weights huggingface.co/{hub}",
                 saved_options=SAVED_OPTIONS)
