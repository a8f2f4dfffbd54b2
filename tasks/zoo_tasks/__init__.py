"""The built-in tasks: classification, detection, segmentation (each implements zoo_core.task.Task)."""
