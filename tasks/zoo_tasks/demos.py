"""The built-in tasks' ``zoo demo`` recipes (see :mod:`zoo_core.demo`).

Each is tuned to show learning from random weights in a minute or two on 2 CPU cores:

- classification: resnet18 on 1,797 coloured sklearn digits at 32 px (no flips: a flipped 2 is not a 2);
- detection: a narrow Faster R-CNN (torchvision resnet18 trunk + FPN of 64 channels, 128 px, small
  RPN/ROI samples) on 96 shape images. torchvision's mobilenet detectors need pretrained weights:
  from random ones they stay at mAP 0 for many CPU-minutes, so the demo composes its own;
- instance segmentation: the same narrow trunk with the ``mask_rcnn`` head (a mask branch of 2 convolutions
  of 64 channels) on the same shapes, their polygons as masks;
- keypoints: the same narrow trunk with the ``keypoint_rcnn`` head (4 convolutions of 64 channels) on 96
  "house" images whose 5 corners are named keypoints (:mod:`zoo_tasks.kp_synth`);
- segmentation: smp U-Net on resnet18 with Dice + cross-entropy on 96 shape masks at 64 px.
"""

from __future__ import annotations

from zoo_core.data.shapes import SHAPES
from zoo_core.demo import DemoRecipe

from . import kp_synth

CLASSIFICATION = DemoRecipe(
    dataset="digits (sklearn, coloured, 10 classes)", make="zoo_core.data.digits:make_digits",
    data={"image_size": 32}, model="resnet18", load={"num_classes": 10},
    train={"max_epochs": 6, "batch_size": 32, "lr": 5e-3, "image_size": 32, "warmup_epochs": 0.5},
    quick_data={"limit": 40}, quick_train={"image_size": 32},
    task_options={"hflip": 0.0, "scale": (0.7, 1.0)})

DETECTION = DemoRecipe(
    dataset="shapes (COCO json, 3 classes)", make="zoo_core.data.shapes:make_shapes",
    data={"layout": "coco", "n_train": 96, "n_val": 12, "image_size": 128},
    model="torchvision:resnet18", head="faster_rcnn",
    load={"class_names": list(SHAPES), "min_size": 128, "max_size": 128, "fpn_channels": 64,
          "representation_size": 128, "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64},
    train={"max_epochs": 12, "batch_size": 4, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4,
           "image_size": 128, "warmup_epochs": 0.5},
    quick_data={"n_train": 8, "n_val": 4, "image_size": 64}, quick_train={"image_size": 64})

INSTANCE = DemoRecipe(
    dataset="shapes (COCO json with polygons, 3 classes)", make="zoo_core.data.shapes:make_shapes",
    data={"layout": "coco", "n_train": 96, "n_val": 12, "image_size": 128},
    model="torchvision:resnet18", head="mask_rcnn",
    load={"class_names": list(SHAPES), "min_size": 128, "max_size": 128, "fpn_channels": 64,
          "representation_size": 128, "mask_channels": 64, "mask_layers": 2, "rpn_batch_size_per_image": 64,
          "box_batch_size_per_image": 64},
    train={"max_epochs": 12, "batch_size": 4, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4,
           "image_size": 128, "warmup_epochs": 0.5},
    quick_data={"n_train": 8, "n_val": 4, "image_size": 64}, quick_train={"image_size": 64},
    default=False)  # ~1.5 min on 2 cores (segm_map 0.42), doubling a plain demo: `zoo demo --tasks inst`

KEYPOINTS = DemoRecipe(
    dataset="houses (COCO keypoints json, 5 named corners)", make="zoo_tasks.kp_synth:make_keypoint_shapes",
    data={"n_train": 96, "n_val": 12, "image_size": 128},
    model="torchvision:resnet18", head="keypoint_rcnn",
    load={"class_names": [kp_synth.CATEGORY], "keypoint_names": list(kp_synth.KEYPOINT_NAMES),
          "skeleton": [list(p) for p in kp_synth.SKELETON], "min_size": 128, "max_size": 128,
          "fpn_channels": 64, "representation_size": 128, "keypoint_channels": 64, "keypoint_layers": 4,
          "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64},
    train={"max_epochs": 12, "batch_size": 4, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4,
           "image_size": 128, "warmup_epochs": 0.5},
    quick_data={"n_train": 8, "n_val": 4, "image_size": 64}, quick_train={"image_size": 64},
    default=False)  # ~2 min on 2 cores (OKS map 0.89), doubling a plain demo: `zoo demo --tasks kp`

SEGMENTATION = DemoRecipe(
    dataset="shapes (mask folders, background + 3 classes)", make="zoo_core.data.shapes:make_shapes",
    data={"layout": "masks", "n_train": 96, "n_val": 16, "image_size": 64}, model="unet",
    load={"num_classes": 4, "backbone": "resnet18"},
    train={"max_epochs": 8, "batch_size": 8, "lr": 5e-3, "image_size": 64, "warmup_epochs": 0.5},
    quick_data={"n_train": 8, "n_val": 4})
