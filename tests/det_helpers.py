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
