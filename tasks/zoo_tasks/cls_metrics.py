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

Multi-label classification: :class:`MultiLabelMetrics` (mAP, F1 at a threshold, exact match).
"""

from __future__ import annotations

import warnings
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


class MultiLabelMetrics(Metrics):
    """Multi-label metrics: every sample's label probabilities and targets kept, scored at the end.

    Average precision needs the whole ranking, so scores are kept rather than running sums (``N x K``
    floats); ``merge`` concatenates another rank's, which keeps DDP exact. Reported:

    - ``map``: the mean over labels of average precision (the area under the step-wise precision-recall
      curve, as scikit-learn's ``average_precision_score``), over the labels with at least one positive
      sample (a label with none has no AP: None in ``per_label_ap``, left out of the mean);
    - ``f1_macro`` / ``f1_micro``, ``precision_micro``, ``recall_micro``: at ``threshold`` on the sigmoid
      (a label is predicted when its probability reaches it);
    - ``exact_match``: the fraction of samples whose predicted label set is exactly right;
    - ``per_label_ap``, ``per_label_f1``, ``num_samples``.
    """

    def __init__(self, class_names: Sequence[str], threshold: float = 0.5) -> None:
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise ValueError("MultiLabelMetrics needs at least one class name")
        self.threshold = float(threshold)
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def names(self) -> list[str]:
        return ["map", "f1_macro", "f1_micro", "precision_micro", "recall_micro", "exact_match", "num_samples"]

    def update(self, outputs: Any, batch: Batch) -> None:
        """``outputs``: logits ``(B, K)``; ``batch.targets``: multi-hot ``(B, K)``."""
        logits = outputs.detach().float().cpu()
        targets = torch.as_tensor(batch.targets).detach().cpu()
        k = len(self.class_names)
        if logits.dim() != 2 or logits.shape[1] != k:
            raise ValueError(f"multi-label metrics expect logits (B, {k}); got {tuple(logits.shape)}: the model's "
                             f"head and the data's labels disagree (load the model with num_classes={k})")
        if targets.shape != logits.shape or bool(((targets != 0) & (targets != 1)).any()):
            raise DataError(f"multi-label targets must be 0/1 of shape (B, {k}), got shape {tuple(targets.shape)}")
        self.scores.append(logits.sigmoid())
        self.targets.append(targets.long())

    def merge(self, other: Metrics) -> None:
        if not isinstance(other, MultiLabelMetrics) or other.class_names != self.class_names:
            raise ValueError("can only merge MultiLabelMetrics over the same class names")
        self.scores += other.scores
        self.targets += other.targets

    def compute(self) -> dict[str, Any]:
        from torchmetrics.functional.classification import (multilabel_average_precision, multilabel_exact_match,
                                                            multilabel_f1_score, multilabel_precision,
                                                            multilabel_recall)

        if not self.scores:
            raise DataError("no samples were evaluated: the evaluation set is empty")
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        k, t = len(self.class_names), self.threshold
        has_pos = (targets.sum(0) > 0).tolist()
        with warnings.catch_warnings():  # a label without positives has no AP: None below, not torchmetrics' 0
            warnings.simplefilter("ignore", UserWarning)
            ap = multilabel_average_precision(scores, targets, num_labels=k, average="none").tolist()
        per_ap = {n: (float(v) if pos else None) for n, v, pos in zip(self.class_names, ap, has_pos)}
        known = [v for v in per_ap.values() if v is not None]
        f1 = multilabel_f1_score(scores, targets, num_labels=k, threshold=t, average="none").tolist()
        kw = {"num_labels": k, "threshold": t}
        return {"map": sum(known) / len(known) if known else 0.0,
                "f1_macro": float(multilabel_f1_score(scores, targets, average="macro", **kw)),
                "f1_micro": float(multilabel_f1_score(scores, targets, average="micro", **kw)),
                "precision_micro": float(multilabel_precision(scores, targets, average="micro", **kw)),
                "recall_micro": float(multilabel_recall(scores, targets, average="micro", **kw)),
                "exact_match": float(multilabel_exact_match(scores, targets, **kw)),
                "num_samples": int(scores.shape[0]), "per_label_ap": per_ap,
                "per_label_f1": dict(zip(self.class_names, (float(v) for v in f1)))}
