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
                    score_threshold: float = 0.5, max_boxes: int = 20) -> Path:
    """The first ``n`` images of ``dataset``: ground truth dashed green, predictions red with name and score.

    Only predictions scoring ``score_threshold`` or more are drawn, at most ``max_boxes`` per image
    (the best): a detector's low-score tail would bury the picture. Boxes are vector outlines over
    the image, so they stay readable on small images.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    count = min(n, len(dataset))
    fig = Figure(figsize=(4 * count, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    was_training = model.training
    model.eval()
    try:
        for i in range(count):
            image, target, meta = dataset[i]
            pred = model.predict(image, score_threshold=score_threshold)[0]
            ax = fig.add_subplot(1, count, i + 1)
            ax.imshow(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            for x0, y0, x1, y1 in target["boxes"].tolist():
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.2,
                                       linestyle="--"))
            order = pred.scores.argsort(descending=True)[:max_boxes].tolist()
            for j in order:
                x0, y0, x1, y1 = pred.boxes[j].tolist()
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.5))
                ax.text(x0, y0, f"{pred.names[j]} {float(pred.scores[j]):.2f}", color="white", fontsize=7,
                        va="bottom", bbox={"facecolor": "red", "alpha": 0.7, "pad": 1, "linewidth": 0})
            total = len(pred.scores)
            shown = f"{total} prediction(s) >= {score_threshold:g}" + (f", best {len(order)} drawn"
                                                                        if len(order) < total else "")
            ax.set_title(f"{Path(str(meta.get('source', i))).name}: {shown}", fontsize="small")
            ax.axis("off")
    finally:
        model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


@torch.inference_mode()
def annotated_sheet(model: "ZooModel", dataset: Any, path: str | Path, *, n: int = 4, score_threshold: float = 0.5,
                    max_det: int = 20) -> Path:
    """The first ``n`` images of ``dataset`` side by side, each with its predictions scoring ``score_threshold``
    or more (the best ``max_det``) drawn as ``zoo predict --save`` draws them
    (:func:`zoo_core.predict_outputs.annotate`: boxes, names, tinted masks, keypoints and skeletons)."""
    from PIL import Image

    from zoo_core.predict_outputs import annotate

    was_training = model.training
    model.eval()
    try:
        tiles = [annotate(image, model.predict(image, score_threshold=score_threshold, max_det=max_det)[0],
                          model.class_names)
                 for image, _, _ in (dataset[i] for i in range(min(n, len(dataset))))]
    finally:
        model.train(was_training)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), max(t.height for t in tiles)),
                      (255, 255, 255))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
