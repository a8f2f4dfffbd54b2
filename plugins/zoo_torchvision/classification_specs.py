"""Every torchvision classification model, as data: name, family, input size, weights tags.

Reading this module imports neither torch nor torchvision (``zoo list`` stays fast). The table is
checked against ``torchvision.models.list_models`` and the Weights enums by
``tests/test_plugin_torchvision_cls.py``, so a torchvision upgrade that adds or renames models
fails the tests instead of drifting silently. To regenerate it after an upgrade run
``python -m zoo_torchvision.tv_weights``.
"""

from __future__ import annotations

from typing import Any, Callable

from zoo_core.specs import EXPORT_FORMATS

BUILDER = "zoo_torchvision.classification:build"
WEIGHTS_INFO = "zoo_torchvision.tv_weights:weights_info"
PRIORITY = 30
#: a classifier's network serves both tasks unchanged (logits (B, K)): the builder never reads the task name
TASKS = ("classification", "multilabel_classification")
#: the options a saved config (config.json, a checkpoint) may set when a classifier or trunk is rebuilt
#: from it: plain numbers and flags of torchvision's constructors
SAVED_OPTIONS = ("image_size", "dropout", "attention_dropout", "mlp_dropout", "dropout_aux", "drop_rate",
                 "stochastic_depth_prob", "layer_scale", "zero_init_residual", "replace_stride_with_dilation",
                 "transform_input", "aux_logits", "init_weights", "memory_efficient", "width_mult",
                 "round_nearest", "last_channel", "representation_size", "reduced_tail", "dilated")

#: state-dict key prefix of the final classifier layer, per family (replaced for ``num_classes``)
HEADS: dict[str, str] = {
    "alexnet": "classifier.6", "convnext": "classifier.2", "densenet": "classifier",
    "efficientnet": "classifier.1", "googlenet": "fc", "inception": "fc", "maxvit": "classifier.5",
    "mnasnet": "classifier.1", "mobilenet_v2": "classifier.1", "mobilenet_v3": "classifier.3",
    "regnet": "fc", "resnet": "fc", "resnext": "fc", "wide_resnet": "fc", "shufflenet": "fc",
    "squeezenet": "classifier.1", "swin": "head", "vgg": "classifier.6", "vit": "heads.head",
}

#: Weights-enum members left out: features-only weights whose classifier holds NaNs (for SSD)
EXCLUDED_TAGS = ("IMAGENET1K_FEATURES",)

#: (name, family, input size of the default weights, weights tags with the default first)
MODELS: tuple[tuple[str, str, int, str], ...] = (
    ('alexnet', 'alexnet', 224, 'IMAGENET1K_V1'),
    ('convnext_base', 'convnext', 224, 'IMAGENET1K_V1'),
    ('convnext_large', 'convnext', 224, 'IMAGENET1K_V1'),
    ('convnext_small', 'convnext', 224, 'IMAGENET1K_V1'),
    ('convnext_tiny', 'convnext', 224, 'IMAGENET1K_V1'),
    ('densenet121', 'densenet', 224, 'IMAGENET1K_V1'),
    ('densenet161', 'densenet', 224, 'IMAGENET1K_V1'),
    ('densenet169', 'densenet', 224, 'IMAGENET1K_V1'),
    ('densenet201', 'densenet', 224, 'IMAGENET1K_V1'),
    ('efficientnet_b0', 'efficientnet', 224, 'IMAGENET1K_V1'),
    ('efficientnet_b1', 'efficientnet', 240, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('efficientnet_b2', 'efficientnet', 288, 'IMAGENET1K_V1'),
    ('efficientnet_b3', 'efficientnet', 300, 'IMAGENET1K_V1'),
    ('efficientnet_b4', 'efficientnet', 380, 'IMAGENET1K_V1'),
    ('efficientnet_b5', 'efficientnet', 456, 'IMAGENET1K_V1'),
    ('efficientnet_b6', 'efficientnet', 528, 'IMAGENET1K_V1'),
    ('efficientnet_b7', 'efficientnet', 600, 'IMAGENET1K_V1'),
    ('efficientnet_v2_l', 'efficientnet', 480, 'IMAGENET1K_V1'),
    ('efficientnet_v2_m', 'efficientnet', 480, 'IMAGENET1K_V1'),
    ('efficientnet_v2_s', 'efficientnet', 384, 'IMAGENET1K_V1'),
    ('googlenet', 'googlenet', 224, 'IMAGENET1K_V1'),
    ('inception_v3', 'inception', 299, 'IMAGENET1K_V1'),
    ('maxvit_t', 'maxvit', 224, 'IMAGENET1K_V1'),
    ('mnasnet0_5', 'mnasnet', 224, 'IMAGENET1K_V1'),
    ('mnasnet0_75', 'mnasnet', 224, 'IMAGENET1K_V1'),
    ('mnasnet1_0', 'mnasnet', 224, 'IMAGENET1K_V1'),
    ('mnasnet1_3', 'mnasnet', 224, 'IMAGENET1K_V1'),
    ('mobilenet_v2', 'mobilenet_v2', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('mobilenet_v3_large', 'mobilenet_v3', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('mobilenet_v3_small', 'mobilenet_v3', 224, 'IMAGENET1K_V1'),
    ('regnet_x_16gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_1_6gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_32gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_3_2gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_400mf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_800mf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_x_8gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_y_128gf', 'regnet', 384, 'IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('regnet_y_16gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1 IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('regnet_y_1_6gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_y_32gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1 IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('regnet_y_3_2gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_y_400mf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_y_800mf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('regnet_y_8gf', 'regnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('resnet101', 'resnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('resnet152', 'resnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('resnet18', 'resnet', 224, 'IMAGENET1K_V1'),
    ('resnet34', 'resnet', 224, 'IMAGENET1K_V1'),
    ('resnet50', 'resnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('resnext101_32x8d', 'resnext', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('resnext101_64x4d', 'resnext', 224, 'IMAGENET1K_V1'),
    ('resnext50_32x4d', 'resnext', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('shufflenet_v2_x0_5', 'shufflenet', 224, 'IMAGENET1K_V1'),
    ('shufflenet_v2_x1_0', 'shufflenet', 224, 'IMAGENET1K_V1'),
    ('shufflenet_v2_x1_5', 'shufflenet', 224, 'IMAGENET1K_V1'),
    ('shufflenet_v2_x2_0', 'shufflenet', 224, 'IMAGENET1K_V1'),
    ('squeezenet1_0', 'squeezenet', 224, 'IMAGENET1K_V1'),
    ('squeezenet1_1', 'squeezenet', 224, 'IMAGENET1K_V1'),
    ('swin_b', 'swin', 224, 'IMAGENET1K_V1'),
    ('swin_s', 'swin', 224, 'IMAGENET1K_V1'),
    ('swin_t', 'swin', 224, 'IMAGENET1K_V1'),
    ('swin_v2_b', 'swin', 256, 'IMAGENET1K_V1'),
    ('swin_v2_s', 'swin', 256, 'IMAGENET1K_V1'),
    ('swin_v2_t', 'swin', 256, 'IMAGENET1K_V1'),
    ('vgg11', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg11_bn', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg13', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg13_bn', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg16', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg16_bn', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg19', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vgg19_bn', 'vgg', 224, 'IMAGENET1K_V1'),
    ('vit_b_16', 'vit', 224, 'IMAGENET1K_V1 IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('vit_b_32', 'vit', 224, 'IMAGENET1K_V1'),
    ('vit_h_14', 'vit', 518, 'IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('vit_l_16', 'vit', 224, 'IMAGENET1K_V1 IMAGENET1K_SWAG_E2E_V1 IMAGENET1K_SWAG_LINEAR_V1'),
    ('vit_l_32', 'vit', 224, 'IMAGENET1K_V1'),
    ('wide_resnet101_2', 'wide_resnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
    ('wide_resnet50_2', 'wide_resnet', 224, 'IMAGENET1K_V2 IMAGENET1K_V1'),
)


def register_models(register: Callable[..., Any]) -> None:
    """Register one spec per row of :data:`MODELS`, all built by :data:`BUILDER`."""
    for name, family, size, tags in MODELS:
        register(name, BUILDER, tasks=TASKS, priority=PRIORITY, input_size=(3, size, size),
                 weights=tuple(tags.split()), weights_info=WEIGHTS_INFO,
                 kwargs={"family": family, "head": HEADS[family]}, export_formats=EXPORT_FORMATS,
                 description=f"torchvision {name} ImageNet classifier ({family} family)",
                 saved_options=SAVED_OPTIONS)
