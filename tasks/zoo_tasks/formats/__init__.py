"""Dataset formats beyond the COCO json and image + mask folders, read into the same records.

- :mod:`.names`: class names from ``data.yaml`` / ``classes.txt`` / ``labelmap.txt`` / ``obj.names``;
- :mod:`.yolo`: YOLO txt labels (``images/`` + ``labels/`` + ``data.yaml``) -> :class:`~..det_data.CocoIndex`;
- :mod:`.voc`: Pascal VOC xml (``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main``) -> the same;
- :mod:`.detection`: which detection reader a source needs (:func:`~.detection.read_detection`);
- :mod:`.masks`: segmentation layouts (mask folders, VOC ``SegmentationClass``, Cityscapes ``labelIds``);
- :mod:`.adapt`: any ``torch.utils.data.Dataset`` of ``(image, target)`` in a common form, adapted;
- :mod:`.convert`: ``zoo data convert`` (COCO <-> YOLO, VOC -> COCO);
- :mod:`.check`: ``zoo data check`` (counts, classes, sizes, bad files).

Every detection format becomes a :class:`~..det_data.CocoIndex` of :class:`~..det_data.ImageRecord`, every
box going through :func:`~..det_data.add_box` (zero-size and wholly-outside boxes dropped, partly-outside
ones clamped, each warned with its file and line), so one dataset class, one set of transforms, COCOeval
and the plots serve them all. Which format a folder holds is decided by
:func:`zoo_core.data.layouts.detect_format` (the task option ``format`` picks one where two are present).
"""
