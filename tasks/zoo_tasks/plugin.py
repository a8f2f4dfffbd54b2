"""Registers the built-in tasks with the zoo, exactly as a third-party plugin would."""

from zoo_core import hookimpl


@hookimpl
def register_tasks(register):
    register("classification", "zoo_tasks.classification:ClassificationTask", aliases=("cls", "classify"),
             description="single-label image classification (image folders; accuracy, top-5, F1)")
    register("detection", "zoo_tasks.detection:DetectionTask", aliases=("det", "detect"),
             description="object detection (COCO json; COCO mAP via pycocotools)")
    register("instance", "zoo_tasks.instance:InstanceSegmentationTask", aliases=("inst", "instance-seg"),
             description="instance segmentation (COCO json, polygons/RLE; COCO segm and bbox AP via pycocotools)")
    register("keypoints", "zoo_tasks.keypoints:KeypointsTask", aliases=("kp", "keypoint"),
             description="keypoint detection (COCO keypoints json; COCO OKS AP via pycocotools)")
    register("segmentation", "zoo_tasks.segmentation:SegmentationTask", aliases=("seg", "segment"),
             description="semantic segmentation (image + mask folders; mIoU, Dice; num_classes=1: binary)")
    # every built-in classifier declares this task too (zoo_torchvision/zoo_timm classification_specs)
    register("multilabel_classification", "zoo_tasks.multilabel:MultiLabelClassificationTask",
             aliases=("mlcls", "multilabel-cls"),
             description="multi-label classification (labels.csv/labels.json; BCE; mAP, F1 at a threshold)")
