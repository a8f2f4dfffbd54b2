"""Shared by the detection tests: a small synthetic COCO dataset and a JSON-editing helper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from zoo_core.data.shapes import make_shapes


@pytest.fixture(scope="session")
def det_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/{train,val}/annotations.json`` + images: 96 px coloured shapes (circle, square, triangle)."""
    return make_shapes(tmp_path_factory.mktemp("shapes") / "det", layout="coco", n_train=6, n_val=6, image_size=96)


def edited_copy(det_data: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], split: str = "train") -> Path:
    """A directory with an edited copy of ``split``'s annotations.json and a link to its images."""
    coco = json.loads((det_data / split / "annotations.json").read_text())
    edit(coco)
    out = tmp_path / f"edited_{split}"
    out.mkdir()
    (out / "images").symlink_to(det_data / split / "images")
    (out / "annotations.json").write_text(json.dumps(coco))
    return out


def fit_steps(model: Any, batch: Any, steps: int, *, lr: float = 1e-3, watch: str | None = None) -> list[float]:
    """``steps`` AdamW steps of ``model``'s task loss on one ``batch`` (one CPU thread: on a busy shared CPU two
    spinning OpenMP threads run ~10x slower than one); returns the ``watch`` loss term per step, if asked.
    The model is left in eval mode."""
    import torch

    task = model.task_impl
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    watched = []
    try:
        model.train()
        for _ in range(steps):
            loss = task.loss(model, batch)
            if watch is not None:
                watched.append(float(loss[watch]))
            opt.zero_grad()
            loss["loss"].backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return watched
