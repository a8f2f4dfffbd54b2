"""Classification metrics, computed by torchmetrics and mergeable across ranks.

Reported (see :meth:`ClassificationMetrics.compute`):

- ``accuracy``: top-1 accuracy over all samples (micro average);
- ``top5``: top-5 accuracy, only when there are more than 5 classes (with 5 or fewer every label is
  in the top 5, so the number would always be 1.0 and say nothing);
- ``f1_macro``: F1 averaged with equal weight over the classes that occur in the targets or the
  predictions (torchmetrics' and scikit-learn's convention);
- ``per_class_accuracy``: ``{class name: recall of that class}``; ``None`` for a class with no
  sample in the evaluated set (0.0 would read as "always wrong");
- ``confusion_matrix``: ``[[count]]``, rows = true class, columns = predicted class;
- ``num_samples``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from zoo_core.errors import DataError
from zoo_core.task import Batch, Metrics

TOPK = 5


class ClassificationMetrics(Metrics):
    """Accumulates logits and labels batch by batch; ``merge`` folds in another rank's state."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = [str(c) for c in class_names]
        n = len(self.class_names)
        if n < 1:
            raise ValueError("ClassificationMetrics needs at least one class name")
        metrics: dict[str, Any] = {
            "accuracy": MulticlassAccuracy(num_classes=n, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=n, average="macro"),
            "per_class_accuracy": MulticlassAccuracy(num_classes=n, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes=n),
        }
        if n > TOPK:
            metrics["top5"] = MulticlassAccuracy(num_classes=n, top_k=TOPK, average="micro")
        self.collection = MetricCollection(metrics, compute_groups=False)
        self.num_samples = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def names(self) -> list[str]:
        return ["accuracy", *(["top5"] if "top5" in self.collection else []), "f1_macro", "num_samples"]

    def update(self, outputs: Any, batch: Batch) -> None:
        """``outputs``: logits ``(B, num_classes)``; ``batch.targets``: labels ``(B,)``."""
        logits = outputs.detach().float().cpu()
        targets = torch.as_tensor(batch.targets).long().cpu()
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"classification metrics expect logits (B, {self.num_classes}); got "
                             f"{tuple(logits.shape)}: the model's head and the dataset's classes disagree: "
                             f"load the model with num_classes={self.num_classes} (zoo.load(name, "
                             f"num_classes={self.num_classes}) or zoo train --num-classes)")
        bad = (targets < 0) | (targets >= self.num_classes)
        if bool(bad.any()):
            sources = [m.get("source", "?") for m, b in zip(batch.meta, bad.tolist()) if b]
            raise DataError(f"label(s) {targets[bad].tolist()[:5]} outside 0..{self.num_classes - 1} for "
                            f"{', '.join(map(str, sources[:3]))}; the dataset has more classes than the model")
        self.collection.update(logits, targets)
        self.num_samples += int(targets.numel())

    def merge(self, other: Metrics) -> None:
        """Add another accumulator's counts (same classes) into this one."""
        if not isinstance(other, ClassificationMetrics) or other.class_names != self.class_names:
            raise ValueError("can only merge ClassificationMetrics over the same class names")
        for name, metric in self.collection.items():
            metric.merge_state(other.collection[name])
        self.num_samples += other.num_samples

    def compute(self) -> dict[str, Any]:
        if self.num_samples == 0:
            raise DataError("no samples were evaluated: the evaluation set is empty")
        raw = self.collection.compute()
        confusion = raw["confusion_matrix"].long()
        support = confusion.sum(dim=1).tolist()
        per_class = raw["per_class_accuracy"].tolist()
        out: dict[str, Any] = {"accuracy": float(raw["accuracy"])}
        if "top5" in raw:
            out["top5"] = float(raw["top5"])
        out["f1_macro"] = float(raw["f1_macro"])
        out["per_class_accuracy"] = {name: (float(acc) if n else None)
                                     for name, acc, n in zip(self.class_names, per_class, support)}
        out["confusion_matrix"] = confusion.tolist()
        out["num_samples"] = self.num_samples
        return out
