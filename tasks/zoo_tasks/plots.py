"""Plots a person looks at after evaluation, drawn with matplotlib's Agg canvas.

Figures are made with ``matplotlib.figure.Figure`` and an Agg canvas directly, so no global
backend is switched and nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

MAX_LABELLED_CLASSES = 40


def confusion_matrix_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, *,
                         title: str = "Confusion matrix", normalize: bool = True) -> Path:
    """Write a confusion matrix (rows: true class, columns: predicted) as a PNG and return its path.

    ``normalize`` colours each row by its share of that class (counts are still printed for
    small matrices); tick labels are drawn up to :data:`MAX_LABELLED_CLASSES` classes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.float64)
    n = counts.shape[0]
    if counts.shape != (n, n) or n != len(class_names):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {len(class_names)} class names")
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    side = float(min(max(4.0, 0.45 * n + 2.0), 24.0))
    fig = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class" if normalize else "count")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} ({int(counts.sum())} samples)")
    if n <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), [str(c) for c in class_names])
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.5 * (shown.max() or 1) else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
