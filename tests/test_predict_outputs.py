"""What zoo predict writes and the filters it takes (issue 13): --save, --json, --conf/--iou/--max-det/--classes.

Before: `zoo predict` printed dataclass fields (a mask as "<tensor (H, W)>", boxes cut at 64 numbers),
wrote no images, and had no filters; model.predict took only score_threshold (detection) and topk.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from zoo_core.cli import main
from zoo_core.errors import OptionError
from zoo_core.model import Preprocess, ZooModel
from zoo_core.predict_outputs import colour

BOXES = torch.tensor([[2.0, 2.0, 20.0, 20.0],    # a, 0.9
                      [3.0, 3.0, 21.0, 21.0],    # a, 0.8: overlaps the first (IoU ~0.81)
                      [30.0, 5.0, 44.0, 15.0],   # b, 0.6
                      [4.0, 30.0, 14.0, 40.0],   # c, 0.3
                      [30.0, 25.0, 40.0, 35.0]])  # b, 0.1
SCORES = torch.tensor([0.9, 0.8, 0.6, 0.3, 0.1])
LABELS = torch.tensor([0, 0, 1, 2, 1])


class FakeDetector(nn.Module):
    """The detection contract with fixed boxes (scaled by a parameter, so NaN weights would show)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 1, 1)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images):
        return [{"boxes": BOXES * self.scale + 0 * self.backbone(img[None]).mean(), "scores": SCORES.clone(),
                 "labels": LABELS.clone()} for img in images]


class HalfSeg(nn.Module):
    """Class 1 on the left half, class 2 on the right (logits from the image, so the weights count)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        out = self.conv(x)
        w = x.shape[-1]
        out[:, 1, :, : w // 2] += 5.0
        out[:, 2, :, w // 2:] += 5.0
        return out


class TinyCls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([3.0, 2.0, 1.0, 0.0]))  # softmax ~ 0.64, 0.24, 0.09, 0.03

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def det_model() -> ZooModel:
    return ZooModel(FakeDetector(), task="detection", class_names=["a", "b", "c"], config={"model": "test:det"},
                    preprocess=Preprocess(input_size=(48, 48)))


def seg_model() -> ZooModel:
    return ZooModel(HalfSeg(), task="segmentation", class_names=["bg", "left", "right"], config={"model": "test:seg"},
                    preprocess=Preprocess(input_size=(16, 16)))


def cls_model() -> ZooModel:
    return ZooModel(TinyCls(), task="classification", class_names=["w", "x", "y", "z"], config={"model": "test:cls"},
                    preprocess=Preprocess(input_size=(8, 8)))


def image(size=(48, 48)) -> torch.Tensor:
    return torch.full((3, *size), 0.5)


def kept(pred) -> list[tuple[list[float], float, int]]:
    return [(b, round(s, 4), lab) for b, s, lab in zip(pred.boxes.tolist(), pred.scores.tolist(), pred.labels.tolist())]


def expected(*rows: int) -> list[tuple[list[float], float, int]]:
    return [(BOXES[i].tolist(), round(float(SCORES[i]), 4), int(LABELS[i])) for i in rows]


# ---- filters ----------------------------------------------------------------------------------------
def test_detection_filters_keep_what_an_independent_computation_keeps():
    m = det_model()
    assert kept(m.predict(image())[0]) == expected(0, 1, 2, 3, 4)
    assert kept(m.predict(image(), conf=0.5)[0]) == expected(0, 1, 2)
    assert kept(m.predict(image(), iou=0.5)[0]) == expected(0, 2, 3, 4)  # box 1 overlaps box 0 (IoU 0.81)
    assert kept(m.predict(image(), iou=0.9)[0]) == expected(0, 1, 2, 3, 4)
    assert kept(m.predict(image(), max_det=2)[0]) == expected(0, 1)
    assert kept(m.predict(image(), classes=["b"])[0]) == expected(2, 4)
    assert kept(m.predict(image(), classes=[2, "a"])[0]) == expected(0, 1, 3)
    both = m.predict(image(), conf=0.2, iou=0.5, max_det=2, classes=["a", "c"])[0]
    assert kept(both) == expected(0, 3) and both.names == ["a", "c"]
    assert kept(m.predict(image(), score_threshold=0.7, conf=0.7)[0]) == expected(0, 1)


def test_classification_classes_and_conf():
    m = cls_model()
    pred = m.predict(image((8, 8)), topk=3)[0]
    assert [t[1] for t in pred.topk] == ["w", "x", "y"]
    pred = m.predict(image((8, 8)), topk=3, classes=["y", "x"])[0]
    assert (pred.name, [t[1] for t in pred.topk]) == ("x", ["x", "y"])
    assert pred.score == pytest.approx(torch.tensor([3.0, 2.0, 1.0, 0.0]).softmax(0)[1].item(), abs=1e-5)
    pred = m.predict(image((8, 8)), conf=0.2)[0]
    assert (pred.name, [t[1] for t in pred.topk]) == ("w", ["w", "x"])


@pytest.mark.parametrize("options, match", [
    ({"conf": 1.5}, r"conf=1\.5: must be a number in \[0, 1\]"),
    ({"conf": "abc"}, r"conf='abc': must be a number"),
    ({"conf": float("nan")}, r"conf=nan: must be a number"),
    ({"iou": -0.1}, r"iou=-0\.1: must be a number in \[0, 1\]"),
    ({"max_det": 0}, r"max_det=0: must be a whole number >= 1"),
    ({"max_det": 2.5}, r"max_det=2\.5: must be a whole number"),
    ({"classes": ["aa"]}, r"'aa' is not a class of this model; did you mean 'a'\?.*its classes: a, b, c"),
    ({"classes": [7]}, r"id 7 is not a class of this model \(ids 0\.\.2"),
    ({"classes": []}, r"classes=\[\]: keeps no class"),
    ({"score_threshold": 0.2, "conf": 0.5}, r"conf=0\.5 and score_threshold=0\.2 are the same threshold"),
    ({"topk": 2}, r"detection task takes no option 'topk'"),
])
def test_bad_filter_values_are_named(options, match):
    with pytest.raises(OptionError, match=match):
        det_model().predict(image(), **options)


def test_a_task_without_a_filter_refuses_it_by_name():
    with pytest.raises(OptionError, match=r"segmentation task takes no option 'conf'; its options: image_size"):
        seg_model().predict(image((16, 16)), conf=0.5)


# ---- the command line -------------------------------------------------------------------------------
@pytest.fixture
def use_model(monkeypatch):
    def use(model: ZooModel) -> None:
        monkeypatch.setattr("zoo_core.commands.train.open_model", lambda *a, **k: model)
    return use


def save_images(folder, n=2, size=(48, 48)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.new("RGB", size[::-1], (128, 128, 128)).save(paths[-1])
    return paths


def test_json_lines_hold_real_boxes_and_filters_apply(tmp_path, use_model, capsys):
    use_model(det_model())
    save_images(tmp_path / "in")
    assert main(["predict", "m", str(tmp_path / "in"), "--json", "--conf", "0.2", "--iou", "0.5",
                 "--max-det", "2", "--classes", "a,c"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in lines] == [str(tmp_path / "in" / "0.png"), str(tmp_path / "in" / "1.png")]
    for r in lines:
        assert r["boxes"] == [BOXES[0].tolist(), BOXES[3].tolist()] and r["labels"] == [0, 2]
        assert r["names"] == ["a", "c"] and r["scores"] == pytest.approx([0.9, 0.3])
    assert main(["predict", "m", str(tmp_path / "in"), "--conf", "2"]) == 1
    err = capsys.readouterr().err
    assert "conf=2.0: must be a number in [0, 1]" in err and "Traceback" not in err
    assert main(["predict", "m", str(tmp_path / "in"), "--classes", "zebra"]) == 1
    assert "'zebra' is not a class of this model" in capsys.readouterr().err


def test_json_masks_are_rle_that_decodes_to_the_predicted_mask(tmp_path, use_model, capsys):
    from pycocotools import mask as mask_util

    model = seg_model()
    use_model(model)
    (path,) = save_images(tmp_path / "in", n=1, size=(12, 20))
    assert main(["predict", "m", str(path), "--json"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    predicted = model.predict(path)[0].mask.numpy()
    assert line["size"] == [12, 20] and {s["name"] for s in line["segments"]} == {"left", "right"}
    rebuilt = np.zeros((12, 20), dtype=np.int64)
    for seg in line["segments"]:
        rle = {"size": seg["rle"]["size"], "counts": seg["rle"]["counts"].encode()}
        rebuilt[mask_util.decode(rle) == 1] = seg["label"]
        assert seg["area"] == int((predicted == seg["label"]).sum())
    assert (rebuilt == predicted).all() and (predicted[:, :10] == 1).all() and (predicted[:, 10:] == 2).all()


def test_save_draws_each_image_and_never_replaces_a_file_it_did_not_write(tmp_path, use_model, capsys):
    use_model(det_model())
    inputs = save_images(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", "m", str(tmp_path / "in"), "--save", str(out), "--conf", "0.5"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["0.png", "1.png"]
    drawn = np.asarray(Image.open(out / "0.png"))
    assert drawn.shape == (48, 48, 3)
    assert tuple(drawn[12, 2]) == colour(0)            # box 0's left edge, in class a's colour
    assert tuple(drawn[10, 43]) == colour(1)           # box 2's right edge (class b)
    assert tuple(drawn[36, 4]) == (128, 128, 128)      # box 3 (0.3) was filtered out: untouched
    assert main(["predict", "m", str(tmp_path / "in"), "--save", str(out)]) == 0  # its own files: replaced
    capsys.readouterr()
    Image.new("RGB", (5, 5)).save(out / "0.png")  # a user's file where the zoo would write
    before = (out / "0.png").read_bytes()
    assert main(["predict", "m", str(inputs[0]), "--save", str(out)]) == 1
    err = capsys.readouterr().err
    assert "0.png (changed since the zoo wrote it)" in err and "--overwrite" in err
    assert (out / "0.png").read_bytes() == before
    (out / "mine.png").write_bytes(b"user data")
    Image.new("RGB", (5, 5)).save(tmp_path / "in2.png")
    (tmp_path / "in2.png").rename(tmp_path / "mine.png")
    assert main(["predict", "m", str(tmp_path / "mine.png"), "--save", str(out)]) == 1
    assert "mine.png (not written by the zoo)" in capsys.readouterr().err
    assert (out / "mine.png").read_bytes() == b"user data"
    assert main(["predict", "m", str(inputs[0]), "--save", str(out), "--overwrite"]) == 0
    assert Image.open(out / "0.png").size == (48, 48)


def test_save_draws_masks_and_topk_and_keeps_repeated_names_apart(tmp_path, use_model, capsys):
    use_model(seg_model())
    (path,) = save_images(tmp_path / "in", n=1, size=(64, 64))
    assert main(["predict", "m", str(path), str(path), "--save", str(tmp_path / "seg")]) == 0
    assert sorted(p.name for p in (tmp_path / "seg").glob("*.png")) == ["0-2.png", "0.png"]  # the same name twice
    overlay = np.asarray(Image.open(tmp_path / "seg" / "0.png")).astype(int)
    left, right = overlay[60, 4], overlay[60, 60]  # below the legend
    assert tuple(left) == tuple(int(64 + 0.5 * c + 0.5) for c in colour(1))  # class 1 tinted half and half
    assert tuple(right) == tuple(int(64 + 0.5 * c + 0.5) for c in colour(2))
    use_model(cls_model())
    assert main(["predict", "m", str(path), "--save", str(tmp_path / "cls"), "--topk", "2"]) == 0
    text = np.asarray(Image.open(tmp_path / "cls" / "0.png")).astype(int)
    assert (text[:8, :8] == colour(0)).all(axis=-1).any()  # the best class's label, top left, in its colour
    assert (text[-20:, -20:] == 128).all()  # the picture itself untouched
