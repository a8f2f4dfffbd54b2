"""model.predict on tensors: integer images are 0-255, anything a model cannot take is refused by name.

Before: a long/int tensor in 0-255 went through as if it were [0, 1] floats (torchvision's
``ToDtype(scale=True)`` divided it by 2**63 - 1, so every image looked black), bool/complex tensors,
HWC layouts and wrong channel counts failed deep in the network or not at all, and 0-255 floats
were used silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import zoo_core as zoo
import zoo_core.api
from zoo_core.errors import InputError
from zoo_core.model import Preprocess, ZooModel


class TinyCls(nn.Module):
    def __init__(self, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, k)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class TinySeg(nn.Module):
    def __init__(self, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def model(task: str = "classification") -> ZooModel:
    net = TinyCls() if task == "classification" else TinySeg()
    return ZooModel(net, task=task, class_names=["a", "b", "c"], preprocess=Preprocess(input_size=(16, 16)),
                    config={"model": "test:tiny"})


def image(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16])
def test_integer_tensors_are_0_255_images(dtype):
    m = model()
    img = image()
    expected = m.predict(img.float() / 255)[0]
    for given in (img.to(dtype), img.to(dtype)[None], [img.to(dtype)]):  # one image, a batch, a list
        got = m.predict(given)[0]
        assert got.label == expected.label and got.score == pytest.approx(expected.score, abs=1e-6), dtype


def test_segmentation_reads_integer_tensors_as_0_255_too():
    m = model("segmentation")
    img = image(1)
    expected = m.predict(img.float() / 255)[0]
    got = m.predict(img.long())[0]
    assert torch.equal(got.mask, expected.mask) and torch.allclose(got.scores, expected.scores, atol=1e-6)


@pytest.mark.parametrize("given, match", [
    (torch.full((3, 16, 16), 300, dtype=torch.int64), r"input 0 \(shape \(3, 16, 16\), dtype torch.int64\): integer "
                                                       r"values 300..300; integer images must hold 0..255"),
    (torch.ones(3, 16, 16, dtype=torch.bool), r"input 0 .*torch.bool.*not an image dtype"),
    (torch.ones(3, 16, 16, dtype=torch.complex64), r"torch.complex64.*not an image dtype"),
    (torch.rand(16, 16, 3), r"3 channels|looks like HWC .*x\.permute\(2, 0, 1\)"),
    (torch.rand(2, 16, 16, 3), r"the input batch .*looks like HWC .*x\.permute\(0, 3, 1, 2\)"),
    (torch.rand(2, 16, 16), r"2 channels, but the model takes 3 \(RGB\) or 1 \(grey"),
    (torch.rand(5, 16, 16), r"input 0 \(shape \(5, 16, 16\), dtype torch.float32\): 5 channels"),
    (torch.rand(4, 16, 16), r"RGBA: drop alpha"),
    (torch.rand(16, 16), r"\(H, W\) grayscale image needs its channel dimension, x\[None\]"),
    (torch.full((3, 16, 16), float("nan")), r"input 0 .*768 NaN/Inf value"),
])
def test_what_a_model_cannot_take_is_refused_naming_the_input(given, match):
    with pytest.raises(InputError, match=match) as err:
        model().predict(given)
    assert isinstance(err.value, ValueError)


def test_hwc_is_named_and_the_index_of_a_list_item_too():
    with pytest.raises(InputError, match=r"input 1 \(shape \(16, 16, 3\).*looks like HWC"):
        model().predict([torch.rand(3, 16, 16), torch.rand(16, 16, 3)])


def test_float_images_that_look_like_0_255_or_normalised_are_warned_about():
    m = model()
    with pytest.warns(UserWarning, match=r"input 0 has values up to 2[0-9.]*: it looks like 0-255 pixel values; "
                                         r"divide by 255"):
        m.predict([image().float()])
    with pytest.warns(UserWarning, match=r"looks already normalised"):
        m.predict([(torch.rand(3, 16, 16) - 0.5) / 0.22])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # [0, 1] and a slight overshoot (resampling) are fine
        m.predict([torch.rand(3, 16, 16), torch.rand(3, 16, 16) * 1.05 - 0.02])


def test_grey_images_are_repeated_to_three_channels():
    m = model()
    grey = torch.rand(1, 16, 16)
    expected = m.predict(grey.expand(3, -1, -1).clone())[0]
    assert m.predict(grey)[0].score == pytest.approx(expected.score, abs=1e-6)
    grey_long = (grey * 255).long()  # an integer grey batch: 0-255, then repeated
    assert m.predict(grey_long[None])[0].score == pytest.approx(
        m.predict((grey_long.float() / 255).expand(3, -1, -1))[0].score, abs=1e-6)


def test_a_one_channel_model_gets_grey_images_from_files_and_pil_and_refuses_rgb_tensors(tmp_path):
    from PIL import Image

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    m = ZooModel(net, task="classification", class_names=["a", "b", "c"], config={"model": "test:grey"},
                 preprocess=Preprocess(input_size=(16, 16), mean=(0.5,), std=(0.25,), in_chans=1))
    rgb = Image.fromarray(image(2).permute(1, 2, 0).numpy())
    rgb.save(tmp_path / "x.png")
    grey = torch.from_numpy(np.asarray(rgb.convert("L")).copy())[None]
    expected = m.predict(grey)[0].score  # a uint8 (1, H, W) tensor
    assert m.predict(rgb)[0].score == pytest.approx(expected, abs=1e-6)
    assert m.predict(tmp_path / "x.png")[0].score == pytest.approx(expected, abs=1e-6)
    with pytest.raises(InputError, match=r"3 channels, but the model takes 1 \(grey\) channels"):
        m.predict(torch.rand(3, 16, 16))


@pytest.mark.parametrize("bad", [5, -1, float("nan"), "abc"])
def test_a_detection_score_threshold_outside_0_1_is_refused_by_name(bad):
    from zoo_core.errors import OptionError

    model = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=["a", "b"],
                      min_size=64, max_size=64, fpn_channels=16, representation_size=32, max_levels=3, seed=0)
    with pytest.raises(OptionError, match=r"score_threshold=.*must be a number in \[0, 1\]"):
        model.predict(torch.rand(3, 64, 64), score_threshold=bad)
    with pytest.raises(OptionError, match=r"score_threshold="):
        zoo.api.set_task_options(model, {"score_threshold": bad})
        model.predict(torch.rand(3, 64, 64))
