"""Multi-label metrics from torchmetrics: mAP over labels, F1 (macro and micro), exact match."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torchmetrics.functional.classification import (multilabel_average_precision, multilabel_exact_match,
                                                    multilabel_f1_score)

from zoo_core.task import Batch, Metrics


class MultiLabelMetrics(Metrics):
    """Keeps every sample's label probabilities and targets; ``compute`` scores them all at once.

    Average precision needs the whole ranking, so scores are kept rather than running sums;
    ``merge`` concatenates another accumulator's (from another rank), which keeps DDP exact.
    Labels without a single positive sample have no AP and are left out of ``mAP`` (listed as None).
    """

    def __init__(self, class_names: Sequence[str], threshold: float = 0.5) -> None:
        self.class_names = list(class_names)
        self.threshold = threshold
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, outputs: Any, batch: Batch) -> None:
        logits = outputs.detach().float().cpu()
        if logits.dim() != 2 or logits.shape[1] != len(self.class_names):
            raise ValueError(f"multilabel metrics expect logits of shape (B, {len(self.class_names)}), got "
                             f"{tuple(logits.shape)}")
        self.scores.append(logits.sigmoid())
        self.targets.append(batch.targets.detach().cpu().round().long())

    def merge(self, other: "Metrics") -> None:
        assert isinstance(other, MultiLabelMetrics)
        self.scores += other.scores
        self.targets += other.targets

    def compute(self) -> dict[str, Any]:
        n = len(self.class_names)
        if not self.scores:
            return {"mAP": 0.0, "f1_macro": 0.0, "f1_micro": 0.0, "exact_match": 0.0, "num_samples": 0}
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        per_label = multilabel_average_precision(scores, targets, num_labels=n, average="none")
        has_pos = targets.sum(0) > 0
        ap = {name: (float(per_label[i]) if bool(has_pos[i]) else None) for i, name in enumerate(self.class_names)}
        known = [v for v in ap.values() if v is not None and not math.isnan(v)]
        f1 = {avg: float(multilabel_f1_score(scores, targets, num_labels=n, threshold=self.threshold, average=avg))
              for avg in ("macro", "micro")}
        exact = float(multilabel_exact_match(scores, targets, num_labels=n, threshold=self.threshold))
        return {"mAP": sum(known) / len(known) if known else 0.0, "f1_macro": f1["macro"],
                "f1_micro": f1["micro"], "exact_match": exact, "num_samples": int(scores.shape[0]),
                "per_label_ap": ap}
