"""What model.predict / predict_iter read (issue 13): every input kind, streaming, videos, URLs, run folders.

Before: predict took paths, PIL images and tensors only (a folder was "unreadable image", a numpy
array a TypeError, a URL or a video "not found"), read every input before predicting the first, and
zoo.load("runs/x") / zoo.load("runs/x/best.pt") failed although `zoo eval runs/x` worked.
"""

from __future__ import annotations

import http.server
import sys
import threading
import weakref
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
import zoo_core.predict_sources as sources_module
from zoo_core.errors import InputError, NonFiniteOutputError, OptionError
from zoo_core.model import Preprocess, ZooModel
from zoo_core.predict_outputs import AnnotatedFolder
from zoo_core.run_files import Manifest


class LiveImages:
    """Counts the images load_image returned that are still alive (PIL images are unhashable: no WeakSet)."""

    def __init__(self, real) -> None:
        self.real, self.alive, self.most, self.loaded = real, 0, 0, 0

    def __call__(self, path):
        image = self.real(path)
        self.alive += 1
        self.loaded += 1
        self.most = max(self.most, self.alive)
        weakref.finalize(image, self._gone)
        return image

    def _gone(self) -> None:
        self.alive -= 1


class TinyCls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def cls_model() -> ZooModel:
    return ZooModel(TinyCls(), task="classification", class_names=["a", "b", "c"],
                    preprocess=Preprocess(input_size=(16, 16)), config={"model": "test:tiny"})


def rgb(seed: int = 0, size: tuple[int, int] = (16, 20)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def score(pred) -> tuple[int, float]:
    return pred.label, round(pred.score, 5)


def test_every_input_kind_gives_the_prediction_of_the_same_pixels(tmp_path):
    m = cls_model()
    arr = rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    expected = score(m.predict(torch.from_numpy(arr).permute(2, 0, 1))[0])  # a uint8 (C, H, W) tensor
    same = {"path": m.predict(str(tmp_path / "a.png"))[0],
            "PIL": m.predict(Image.fromarray(arr))[0],
            "numpy uint8 HWC": m.predict(arr)[0],
            "numpy BGR, bgr=True": m.predict(np.ascontiguousarray(arr[..., ::-1]), bgr=True)[0],
            "numpy float HWC": m.predict(arr.astype(np.float32) / 255)[0],
            "numpy batch": m.predict(arr[None])[0],
            "a generator": next(m.predict_iter(x for x in [arr]))}
    for kind, pred in same.items():
        assert score(pred) == pytest.approx(expected, abs=1e-5), kind
    assert m.predict(arr)[0].source == "<array 0>"
    # BGR read as RGB is another picture: bgr= really swaps the channels
    bgr = np.ascontiguousarray(arr[..., ::-1])
    assert m.predict(bgr)[0].score != pytest.approx(m.predict(bgr, bgr=True)[0].score, abs=1e-6)
    grey = arr[..., 0]  # (H, W) uint8, as cv2.imread(..., IMREAD_GRAYSCALE) gives
    assert score(m.predict(grey)[0]) == pytest.approx(score(m.predict(Image.fromarray(grey))[0]), abs=1e-5)


def test_folders_are_read_recursively_in_sorted_order_and_globs_expand(tmp_path):
    m = cls_model()
    for name in ("b.png", "a.jpg", "sub/c.png", "sub/deeper/d.png", ".hidden/e.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb(len(name))).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    got = [p.source for p in m.predict(tmp_path)]
    assert got == [str(tmp_path / n) for n in ("a.jpg", "b.png", "sub/c.png", "sub/deeper/d.png")]
    assert [p.source for p in m.predict(str(tmp_path / "**" / "*.png"))] == \
        [str(tmp_path / n) for n in ("b.png", "sub/c.png", "sub/deeper/d.png")]
    mixed = m.predict([str(tmp_path / "a.jpg"), tmp_path / "sub", rgb(1)])
    assert [p.source for p in mixed] == [str(tmp_path / "a.jpg"), str(tmp_path / "sub/c.png"),
                                         str(tmp_path / "sub/deeper/d.png"), "<array 3>"]


@pytest.mark.parametrize("given, match", [
    (lambda tmp: str(tmp / "missing.png"), r"input 0: .*missing\.png does not exist"),
    (lambda tmp: str(tmp / "*.webp"), r"matches no image or video file"),
    (lambda tmp: tmp / "empty", r"empty holds no image files"),
    (lambda tmp: np.zeros((3, 16, 16), np.uint8), r"looks like \(C, H, W\).*arr\.transpose\(1, 2, 0\)"),
    (lambda tmp: np.zeros((16, 16, 5), np.uint8), r"5 channels"),
    (lambda tmp: np.zeros((16, 16, 3), np.complex64), r"not an image dtype"),
    (lambda tmp: np.full((16, 16, 3), 300, np.int32), r"input 0 .*integer values 300..300"),
])
def test_inputs_that_cannot_be_read_are_named(tmp_path, given, match):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=match):
        cls_model().predict(given(tmp_path))


def test_predict_iter_streams_a_folder_of_1000_images_one_batch_at_a_time(tmp_path, monkeypatch):
    for i in range(1000):
        Image.new("RGB", (4, 4), (i % 256, 7, 9)).save(tmp_path / f"{i:04d}.png")
    live = LiveImages(sources_module.load_image)
    monkeypatch.setattr(sources_module, "load_image", live)
    m = cls_model()
    stream = m.predict_iter(tmp_path, batch_size=8)
    assert live.loaded == 0  # nothing is read before the first result is asked for
    for n, pred in enumerate(stream, 1):
        if n == 1:
            assert live.loaded == 8  # the first result came after reading one batch, not the folder
        assert live.loaded <= n + 8
    assert n == 1000 and pred.source == str(tmp_path / "0999.png")
    assert live.most <= 8 + 1  # one batch, and the result the loop still holds


def test_zoo_predict_streams_too(tmp_path, monkeypatch, capsys):
    from zoo_core.cli import main

    (tmp_path / "images").mkdir()
    for i in range(40):
        Image.new("RGB", (6, 6), (i, 0, 0)).save(tmp_path / "images" / f"{i:02d}.png")
    live = LiveImages(sources_module.load_image)
    monkeypatch.setattr(sources_module, "load_image", live)
    monkeypatch.setattr("zoo_core.commands.train.open_model", lambda *a, **k: cls_model())
    monkeypatch.setattr(AnnotatedFolder, "FLUSH", 8)  # annotated images move into place 8 at a time
    assert main(["predict", "x", str(tmp_path / "images"), "--batch-size", "4", "--json",
                 "--save", str(tmp_path / "out")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 40
    assert live.most <= 4 + 1 and len(list((tmp_path / "out").glob("*.png"))) == 40
    assert len(Manifest.read(tmp_path / "out").files) == 40 and not (tmp_path / "out" / ".zoo-lock").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_a_stream_yields_clean_batches_and_stops_at_a_nonfinite_one_naming_it():
    m = cls_model()
    with torch.no_grad():
        m.net.fc.bias.fill_(3e38)  # finite weights; an image with a bright pixel overflows to inf
        m.net.fc.weight.zero_()
        m.net.fc.weight[0, 0] = 1e38
    good, bad = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    bad[0, 0, 0] = 1.0
    m.net.conv.weight.data.zero_()
    m.net.conv.weight.data[0, 0, 1, 1] = 1e3
    got = []
    with pytest.raises(NonFiniteOutputError, match=r"in 1 of 3 image\(s\) \(first in batch 1: <tensor 2>\)"):
        for pred in m.predict_iter([good, good, bad], batch_size=2):
            got.append(pred.source)
    assert got == ["<tensor 0>", "<tensor 1>"]  # the clean batch came out before the bad one was read


def test_a_training_model_is_in_train_mode_whenever_the_caller_holds_a_result():
    m = cls_model().train()
    modes = [m.training and m.net.training for _ in m.predict_iter([rgb(i) for i in range(5)], batch_size=2)]
    assert modes == [True] * 5


def test_options_and_batch_size_are_checked_when_predict_iter_is_called():
    m = cls_model()
    with pytest.raises(OptionError, match=r"classification task takes no option 'iou'; its options: topk"):
        m.predict_iter(rgb(), iou=0.5)
    with pytest.raises(OptionError, match=r"batch_size=0 must be a whole number >= 1"):
        m.predict_iter(rgb(), batch_size=0)


# ---- videos ---------------------------------------------------------------------------------------
def write_video(path, frames: int = 30) -> None:
    av = pytest.importorskip("av", reason="PyAV is not installed: pip install av (the zoo reads videos through it)")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 8, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_30_frame_video_gives_30_results_in_frame_order(tmp_path):
    write_video(tmp_path / "clip.mp4")
    m = cls_model()
    preds = list(m.predict_iter(tmp_path / "clip.mp4", batch_size=4))
    assert len(preds) == 30
    assert [p.source for p in preds] == [f"{tmp_path / 'clip.mp4'}#frame={i}" for i in range(30)]
    items = list(sources_module.iter_sources(str(tmp_path / "clip.mp4")))
    brightness = [float(np.asarray(item.load()).mean()) for item in items]
    assert brightness == pytest.approx([i * 8 for i in range(30)], abs=4)  # the frames, decoded in order
    assert [item.save_name for item in items[:2]] == ["clip/000000.jpg", "clip/000001.jpg"]


def test_without_pyav_a_video_is_refused_naming_the_package(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(InputError, match=r"clip\.mp4 is a video; reading video needs PyAV.*pip install av"):
        cls_model().predict(tmp_path / "clip.mp4")


# ---- URLs -----------------------------------------------------------------------------------------
def test_urls_are_refused_offline_and_fetched_online(tmp_path, monkeypatch):
    m = cls_model()
    arr = rgb(3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/a.png"
    try:
        with pytest.raises(InputError, match=f"image URL {url} refused: ZOO_OFFLINE=1"):  # conftest: offline
            m.predict(url)
        monkeypatch.delenv("ZOO_OFFLINE")
        pred = m.predict(url)[0]
        assert pred.source == url and score(pred) == pytest.approx(score(m.predict(arr)[0]), abs=1e-5)
        with pytest.raises(InputError, match=r"image URL .*/missing\.png: the server answered 404"):
            m.predict(url.replace("a.png", "missing.png"))
    finally:
        server.shutdown()
        server.server_close()


# ---- zoo.load of a run folder and a checkpoint ------------------------------------------------------
def test_zoo_load_opens_a_run_folder_and_its_checkpoints(toy, tmp_path):  # noqa: F811
    import shutil

    run = tmp_path / "run"
    zoo.Trainer(max_epochs=1, batch_size=4, out_dir=run, num_workers=0, verbose=False, tensorboard=False,
                progress_bar=False, seed=0).fit(zoo.load("toynet", task="toytrain", seed=0), "toy:n=8", "toy:n=8")
    x = torch.rand(2, 3, 8, 8)
    final = zoo.load(run / "model")
    for given in (run, str(run), run / "best.pt", str(run / "last.pt")):
        model = zoo.load(given)
        assert model.class_names == T.CLASSES and model.task == "toytrain", given
        assert torch.allclose(model.eval()(x), final.eval()(x), atol=1e-6), given  # one epoch: best == last == final
    shutil.rmtree(run / "model")
    from_best = zoo.load(run)
    assert from_best.provenance["weights"] == str(run / "best.pt")
    assert zoo.load(run / "last.pt", class_names=["x", "y"]).class_names == ["x", "y"]
    with pytest.raises(OptionError, match=r"last\.pt is a training checkpoint with a 2-class head.*num_classes=5"):
        zoo.load(run / "last.pt", num_classes=5)
    with pytest.raises(OptionError, match=r"cannot apply"):
        zoo.load(run / "last.pt", weights="default")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither a saved model .* nor a run folder"):
        zoo.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        zoo.load(tmp_path / "nowhere")
