"""Multi-label image classification for zoo: a task, its dataset format and metrics, and a model.

Each image carries any number of labels (none, one or several). The network outputs one logit
per label; the loss is binary cross-entropy with logits; the metrics are mean average precision
over labels (``mAP``, the default), macro/micro F1 at a threshold, and the exact-match ratio.
"""

__version__ = "0.1.0"
