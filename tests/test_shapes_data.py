"""The built-in shapes dataset: valid COCO / mask folders, deterministic, and the `zoo data synth` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zoo_core.cli import main
from zoo_core.data.shapes import SEG_CLASS_NAMES, SHAPES, make_shapes
from zoo_core.errors import DataError


@pytest.fixture(scope="module")
def det_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes") / "det", layout="coco", n_train=12, n_val=4, image_size=64)


def test_det_layout_is_valid_coco_whose_polygons_match_boxes_and_areas(det_root):
    from pycocotools.coco import COCO

    for split, n in (("train", 12), ("val", 4)):
        coco = COCO(str(det_root / split / "annotations.json"))
        assert [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))] == list(SHAPES)
        assert sorted(coco.getCatIds()) == [1, 2, 3]
        assert len(coco.getImgIds()) == n
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= n  # at least one shape per image
        assert len({a["id"] for a in anns}) == len(anns)
        for img in coco.loadImgs(coco.getImgIds()):
            with Image.open(det_root / split / "images" / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"]) == (64, 64) and im.mode == "RGB"
        for a in anns:
            assert a["iscrowd"] == 0 and a["category_id"] in (1, 2, 3)
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
            mask = coco.annToMask(a)
            ys, xs = np.nonzero(mask)
            assert abs(int(mask.sum()) - a["area"]) <= 0.1 * a["area"] + 2  # polygon and painted pixels agree
            assert xs.min() >= int(x) - 1 and xs.max() <= x + w + 1 and ys.min() >= int(y) - 1 and ys.max() <= y + h + 1


def test_seg_layout_masks_hold_class_indices_and_optional_ignore_ring(tmp_path):
    root = make_shapes(tmp_path / "seg", layout="masks", n_train=6, n_val=2, image_size=64)
    ringed = make_shapes(tmp_path / "ring", layout="masks", n_train=6, n_val=2, image_size=64, ignore_border=1)
    assert (root / "classes.txt").read_text().split() == list(SEG_CLASS_NAMES)
    for split in ("train", "val"):
        images = sorted(p.stem for p in (root / split / "images").iterdir())
        assert images == sorted(p.stem for p in (root / split / "masks").iterdir())
    values, ring_values = set(), set()
    for mask_path in sorted((root / "train" / "masks").iterdir()):
        with Image.open(mask_path) as m:
            assert m.mode == "L" and m.size == (64, 64)
            plain = np.asarray(m)
        values |= set(np.unique(plain).tolist())
        ring = np.asarray(Image.open(ringed / "train" / "masks" / mask_path.name))
        ring_values |= set(np.unique(ring).tolist())
        # same images and shapes (same seed); the ring only replaces pixels at shape edges by 255
        assert ((ring == plain) | (ring == 255)).all()
        if (plain > 0).any():
            assert (ring == 255).any()
    assert values <= {0, 1, 2, 3} and len(values) >= 3
    assert ring_values <= {0, 1, 2, 3, 255} and 255 in ring_values


def test_deterministic_by_seed_reused_and_never_overwrites_foreign_folders(tmp_path):
    a = make_shapes(tmp_path / "a", layout="masks", n_train=3, n_val=1, image_size=48, seed=5)
    b = make_shapes(tmp_path / "b", layout="masks", n_train=3, n_val=1, image_size=48, seed=5)
    c = make_shapes(tmp_path / "c", layout="masks", n_train=3, n_val=1, image_size=48, seed=6)
    for sub in ("train/images/00000.png", "train/masks/00002.png", "val/images/00000.png"):
        assert (a / sub).read_bytes() == (b / sub).read_bytes()
    assert (a / "train/images/00000.png").read_bytes() != (c / "train/images/00000.png").read_bytes()
    stamp = (a / "train/images/00000.png").stat().st_mtime_ns
    make_shapes(tmp_path / "a", layout="masks", n_train=3, n_val=1, image_size=48, seed=5)  # same params: reused
    assert (a / "train/images/00000.png").stat().st_mtime_ns == stamp
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other files"):
        make_shapes(foreign, layout="coco")
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="layout='cls'"):
        make_shapes(tmp_path / "x", layout="cls")
    with pytest.raises(ValueError, match="ignore_border"):
        make_shapes(tmp_path / "x", layout="coco", ignore_border=2)


def test_cli_synth_writes_each_layout(tmp_path, capsys):
    assert main(["data", "synth", "--task", "det", str(tmp_path / "det"), "--n-train", "3", "--n-val", "2",
                 "--size", "48"]) == 0
    coco = json.loads((tmp_path / "det/val/annotations.json").read_text())
    assert len(coco["images"]) == 2 and coco["images"][0]["width"] == 48
    assert main(["data", "synth", "--task", "seg", str(tmp_path / "seg"), "--n-train", "2", "--n-val", "1",
                 "--ignore-border", "1"]) == 0
    assert len(list((tmp_path / "seg/train/masks").glob("*.png"))) == 2
    assert main(["data", "synth", "--task", "cls", str(tmp_path / "cls"), "--limit", "20", "--size", "16"]) == 0
    assert sorted(p.name for p in (tmp_path / "cls/train").iterdir()) == [str(d) for d in range(10)]
    assert "wrote" in capsys.readouterr().out
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("x")
    assert main(["data", "synth", "--task", "seg", str(tmp_path / "busy")]) == 1
    assert "holds other files" in capsys.readouterr().err
    assert main(["data", "synth", "--task", "det", str(tmp_path / "d2"), "--limit", "5"]) == 1  # a cls-only flag
    assert "takes no ['limit']" in capsys.readouterr().err
    assert main(["data", "synth", "--task", "nope", str(tmp_path / "d3")]) == 1
    assert "unknown task 'nope'" in capsys.readouterr().err
