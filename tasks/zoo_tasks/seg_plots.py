"""Segmentation plots: sample images with predicted (and true) masks overlaid, as one PNG.

Drawn with ``matplotlib.figure.Figure`` on an Agg canvas (no global backend, no display), like
:mod:`.plots`. Class colours are fixed per index (a qualitative colour map); 255 ("ignore") is drawn
uncoloured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .losses import IGNORE_INDEX

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

ALPHA = 0.6


def class_colours(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` RGB colours in [0, 1]; class 0 (usually background) is black."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    colours = np.array([cmap(i % cmap.N)[:3] for i in range(max(num_classes, 1))], dtype=np.float32)
    colours[0] = 0.0
    return colours


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 1] with each labelled pixel tinted by its class colour (255 untouched)."""
    out = image.copy()
    labelled = (mask != IGNORE_INDEX) & (mask > 0) & (mask < len(colours))
    out[labelled] = (1 - alpha) * out[labelled] + alpha * colours[mask[labelled]]
    return np.clip(out, 0.0, 1.0)


def colourize(mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A class-index mask as an RGB picture: each class its colour, 255 ("ignore") white."""
    out = colours[np.clip(mask, 0, len(colours) - 1)]
    out[mask == IGNORE_INDEX] = 1.0
    return out


def overlay_grid_png(images: Sequence[np.ndarray], preds: Sequence[np.ndarray], path: str | Path,
                     class_names: Sequence[str], targets: Sequence[np.ndarray] | None = None,
                     titles: Sequence[str] | None = None) -> Path:
    """One row per image: the prediction overlaid on the image, the predicted mask, and the true
    mask when ``targets`` is given (masks in class colours, ignore in white)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours = class_colours(len(class_names))
    cols = 3 if targets is not None else 2
    rows = len(images)
    fig = Figure(figsize=(3.0 * cols + 1.5, 3.0 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for r, (img, pred) in enumerate(zip(images, preds)):
        panels = [("overlay", overlay(img, pred, colours)), ("predicted", colourize(pred, colours))]
        if targets is not None:
            panels.append(("true", colourize(targets[r], colours)))
        for c, (label, picture) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{label}" + (f": {titles[r]}" if titles and c == 0 else ""), fontsize=8)
    handles = [Patch(color=colours[i], label=str(n)) for i, n in enumerate(class_names) if i > 0][:20]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.85 if handles else 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


@torch.inference_mode()
def prediction_grid_png(model: "ZooModel", dataset: torch.utils.data.Dataset, path: str | Path, n: int = 6) -> Path:
    """Predict the first ``n`` samples of a segmentation dataset and draw them with their true masks."""
    from .classification import _model_device
    from .segmentation import resize_logits, split_outputs

    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    device, dtype = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        x = torch.stack([s[0] for s in samples]).to(device=device, dtype=dtype)
        logits, _ = split_outputs(model(x))
        preds = resize_logits(logits.float(), x.shape[-2:]).argmax(1).cpu().numpy()
    finally:
        model.train(was_training)
    mean = np.asarray(model.preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(model.preprocess.std, dtype=np.float32)[:, None, None]
    images = [np.clip(s[0].numpy()[:3] * std[:3] + mean[:3], 0, 1).transpose(1, 2, 0) for s in samples]
    names = list(getattr(dataset, "class_names", None) or model.class_names)
    return overlay_grid_png(images, list(preds), path, names, targets=[s[1].numpy() for s in samples],
                            titles=[Path(s[2]).name for s in samples])
