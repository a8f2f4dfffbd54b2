"""Image-folder reading (zoo_core.data.folders) and the built-in digits dataset (zoo_core.data.digits)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_core.data.digits import make_digits
from zoo_core.data.folders import ImageFolderDataset, folder_class_names, scan_image_folder, split_root
from zoo_core.errors import DataError


def _png(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _truncated(path: Path) -> Path:
    _png(path, size=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("dog", "cat", "bird"):
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png", 40 * i)
    _png(tmp_path / "train" / "cat" / "nested" / "deep.png")  # images may sit below the class folder
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_root_with_train_and_val_is_split_and_classes_are_sorted(tree: Path) -> None:
    train = scan_image_folder(tree, "train")
    assert train.root == tree / "train"
    assert train.class_names == ["bird", "cat", "dog"]
    assert train.counts() == {"bird": 3, "cat": 4, "dog": 3}
    assert any(p.name == "deep.png" for p, _ in train.samples)
    val = scan_image_folder(tree, "val", class_names=train.class_names)
    assert len(val.samples) == 3 and val.root == tree / "val"
    # a split folder passed directly is its own dataset
    assert scan_image_folder(tree / "val", "val").class_names == ["bird", "cat", "dog"]
    assert folder_class_names(tree, "val") == ["bird", "cat", "dog"]


def test_labels_follow_given_class_names(tree: Path) -> None:
    val = scan_image_folder(tree, "val", class_names=["dog", "cat", "bird", "fish"])
    labels = {p.parent.name: label for p, label in val.samples}
    assert labels == {"dog": 0, "cat": 1, "bird": 2}


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        scan_image_folder(tmp_path / "nope")
    assert "nope" in str(err.value) and "root/<class_name>" in str(err.value)


def test_missing_split_is_named(tree: Path) -> None:
    with pytest.raises(DataError, match="no test/ folder"):
        split_root(tree, "test")


def test_no_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images found") as err:
        scan_image_folder(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_single_class_is_an_error(tmp_path: Path) -> None:
    _png(tmp_path / "only" / "1.png")
    with pytest.raises(DataError, match="only 1 class") as err:
        scan_image_folder(tmp_path)
    assert "'only'" in str(err.value) and "at least 2" in str(err.value)


def test_images_directly_in_root_are_an_error(tmp_path: Path) -> None:
    _png(tmp_path / "1.png")
    with pytest.raises(DataError, match="lie directly in it"):
        scan_image_folder(tmp_path)


def test_empty_class_folder_in_training_data_is_named(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "b" / "1.png")
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="without images") as err:
        scan_image_folder(tmp_path)
    assert err.value.path == tmp_path / "c"


def test_unknown_validation_class_is_named(tree: Path) -> None:
    _png(tree / "val" / "zebra" / "0.png")
    with pytest.raises(DataError, match="'zebra'") as err:
        scan_image_folder(tree, "val", class_names=["bird", "cat", "dog"])
    assert "training data" in str(err.value)


def test_unreadable_image_fails_evaluation_naming_the_file(tree: Path) -> None:
    bad = _truncated(tree / "val" / "cat" / "broken.png")
    ds = ImageFolderDataset(scan_image_folder(tree, "val", class_names=["bird", "cat", "dog"]), train=False)
    idx = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.raises(DataError, match="broken.png"):
        ds[idx]


def test_unreadable_image_is_skipped_in_training_with_a_warning(tree: Path) -> None:
    bad = _truncated(tree / "train" / "cat" / "broken.png")
    ds = ImageFolderDataset(scan_image_folder(tree, "train"), train=True, max_bad_fraction=0.5)
    idx = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.warns(UserWarning, match="broken.png"):
        image, label, source = ds[idx]
    assert source != str(bad) and isinstance(image, Image.Image)
    assert ds.tracker.bad and str(bad) in ds.tracker.bad


def test_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((6, 6), 30000, np.uint16)).save(tmp_path / "a" / "g16.png")
    Image.new("RGBA", (6, 6), (255, 0, 0, 128)).save(tmp_path / "a" / "rgba.png")
    Image.new("L", (6, 6), 200).save(tmp_path / "a" / "gray.png")
    _png(tmp_path / "b" / "rgb.png")
    ds = ImageFolderDataset(scan_image_folder(tmp_path), train=False)
    modes = {Path(src).name: img.mode for img, _, src in (ds[i] for i in range(len(ds)))}
    assert modes == {"g16.png": "RGB", "rgba.png": "RGB", "gray.png": "RGB", "rgb.png": "RGB"}
    g16 = next(img for img, _, src in (ds[i] for i in range(len(ds))) if src.endswith("g16.png"))
    assert abs(int(np.asarray(g16)[0, 0, 0]) - round(30000 / 65535 * 255)) <= 1  # 16-bit rescaled


# ---- digits -----------------------------------------------------------------------------------------
def test_digits_layout_classes_and_determinism(tmp_path: Path) -> None:
    a = make_digits(tmp_path / "a", image_size=16, limit=100, seed=3)
    b = make_digits(tmp_path / "b", image_size=16, limit=100, seed=3)
    train, val = scan_image_folder(a, "train"), scan_image_folder(a, "val", class_names=[str(i) for i in range(10)])
    assert train.class_names == [str(i) for i in range(10)]
    assert len(train.samples) + len(val.samples) == 100
    assert all(n >= 1 for n in val.counts().values())
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a[:20])
    with Image.open(a / files_a[0]) as im:
        assert im.size == (16, 16) and im.mode == "RGB"
    c = make_digits(tmp_path / "c", image_size=16, limit=100, seed=4)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files_a if (c / f).exists())


def test_digits_full_set_and_reuse(tmp_path: Path) -> None:
    out = make_digits(tmp_path / "d")
    meta = json.loads((out / "digits.json").read_text())
    assert meta["counts"]["train"] + meta["counts"]["val"] == 1797
    first = next(out.rglob("*.png"))
    stamp = first.stat().st_mtime_ns
    assert make_digits(tmp_path / "d") == out and first.stat().st_mtime_ns == stamp  # reused, not rewritten


def test_digits_never_overwrites_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(DataError, match="holds other files"):
        make_digits(tmp_path / "mine", limit=20)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_digits(tmp_path / "fresh", limit=20)  # an empty target is fine and quiet


def test_every_jpeg_suffix_counts_as_an_image_so_no_file_silently_leaves_an_eval_set(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    for i, suffix in enumerate((".jpg", ".JPEG", ".jpe", ".jfif")):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / "a" / f"{i}{suffix}", format="JPEG")
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "0.png")
    index = scan_image_folder(tmp_path)
    assert sorted(p.suffix for p, _ in index.samples if p.parent.name == "a") == [".JPEG", ".jfif", ".jpe", ".jpg"]


def test_the_bad_image_limit_is_a_fraction_of_what_each_loader_worker_reads(monkeypatch) -> None:
    from types import SimpleNamespace

    import torch.utils.data

    from zoo_core.data.robust import SkipTracker

    tracker = SkipTracker(400, train=True, max_bad_fraction=0.05)
    assert tracker.limit == 20  # the main process reads the whole set
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(num_workers=4, id=1))
    assert tracker.limit == 5  # one of 4 workers reads ~100 images: 4 x 5 = 5% of the set in all
    with pytest.warns(UserWarning, match=r"\(1 so far in this loader worker\)"):
        tracker.record("a.png", DataError("a.png: truncated"))
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"6 of the 100 training images read in this "
                                                                   r"loader worker are unreadable \(more than 5%\)"):
        for i in range(5):
            tracker.record(f"b{i}.png", DataError("truncated"))
    tracker.seen.update(range(300))  # a persistent worker that has met 300 distinct images over the epochs
    assert tracker.limit == 15  # so bad files met again in later epochs do not trip a limit meant for 100
