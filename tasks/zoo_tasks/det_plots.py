"""Detection plots: the precision/recall curve per class and predictions drawn on sample images.

Drawn with matplotlib's Agg canvas (no global backend switch) and torchvision's box drawing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

MAX_CURVES = 20


def pr_curve_png(curve: Mapping[str, Any], path: str | Path) -> Path:
    """Precision against recall at IoU ``curve["iou"]``, one line per class (AP in the legend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    recall = curve["recall"]
    items = sorted(curve["precision"].items(), key=lambda kv: -sum(kv[1]))[:MAX_CURVES]
    for name, precision in items:
        ax.plot(recall, precision, label=f"{name} (AP50 {sum(precision) / max(len(precision), 1):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall, IoU={curve.get('iou', 0.5)}")
    if items:
        ax.legend(loc="lower left", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


@torch.inference_mode()
def predictions_png(model: "ZooModel", dataset: Any, path: str | Path, *, n: int = 4,
                    score_threshold: float = 0.3) -> Path:
    """The first ``n`` images of ``dataset``: ground truth in green, predictions (score >= threshold) in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from torchvision.utils import draw_bounding_boxes

    count = min(n, len(dataset))
    fig = Figure(figsize=(4 * count, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    was_training = model.training
    model.eval()
    try:
        for i in range(count):
            image, target, meta = dataset[i]
            pred = model.predict(image, score_threshold=score_threshold)[0]
            canvas = (image.clamp(0, 1) * 255).to(torch.uint8)
            if len(target["boxes"]):  # torchvision warns on an empty box list; an empty image is normal here
                canvas = draw_bounding_boxes(canvas, target["boxes"], colors="lime", width=1)
            if len(pred):
                labels = [f"{name} {s:.2f}" for name, s in zip(pred.names, pred.scores.tolist())]
                canvas = draw_bounding_boxes(canvas, pred.boxes, labels=labels, colors="red", width=2)
            ax = fig.add_subplot(1, count, i + 1)
            ax.imshow(canvas.permute(1, 2, 0).numpy())
            ax.set_title(Path(str(meta.get("source", i))).name, fontsize="small")
            ax.axis("off")
    finally:
        model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
