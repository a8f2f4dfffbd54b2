"""NaN/Inf weights, outputs and metrics are refused by name, never scored (zoo_core.finite).

Before: a model with NaN weights was scored (accuracy 0.5, mIoU 0.23) and ``predict`` returned a
score of ``nan``; a detector with NaN features returned no boxes and scored mAP 0.
"""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.errors import NonFiniteMetricError, NonFiniteOutputError
from zoo_core.finite import check_finite_metrics, nonfinite_counts
from zoo_core.model import Preprocess, ZooModel

QUIET = {"num_workers": 0, "verbose": False, "tensorboard": False, "progress_bar": False}


class Overflowing(nn.Module):
    """Finite weights, but a gain buffer of +inf (as float16 overflow would give) on images whose first
    pixel is above 0.99: their logits are Inf/NaN, the others' are finite."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(3, k)
        self.register_buffer("gain", torch.tensor(float("inf")))  # a buffer may hold inf (masks): allowed

    def forward(self, x):
        flag = (x[:, 0, 0, 0] > 0.99).float()[:, None]
        return self.fc(x.mean((2, 3))) * torch.where(flag > 0, self.gain, torch.ones(()))


def overflowing_classifier() -> ZooModel:
    return ZooModel(Overflowing(), task="classification", class_names=["a", "b", "c"],
                    preprocess=Preprocess(input_size=(8, 8)), config={"model": "test:overflow"})


def test_nan_weights_are_refused_by_evaluate_and_predict_naming_the_tensor(toy):
    model = zoo.load("toynet", task="toytrain")
    assert 0.0 <= zoo.evaluate(model, "toy:n=8", batch_size=4, plots=False)["accuracy"] <= 1.0
    model.predict(torch.rand(2, 3, 8, 8))  # finite: fine, and the check is now cached
    with torch.no_grad():
        model.net.fc.weight[0, 1] = float("nan")  # in place: the cache must notice
    with pytest.raises(NonFiniteOutputError, match=r"evaluation: .*net\.fc\.weight: 1 of its 16 values"):
        zoo.evaluate(model, "toy:n=8", batch_size=4, plots=False)
    with pytest.raises(NonFiniteOutputError, match=r"predict: .*net\.fc\.weight") as err:
        model.predict(torch.rand(2, 3, 8, 8))
    assert isinstance(err.value, FloatingPointError) and "precision" in str(err.value)
    assert not model.net._forward_hooks  # nothing left hooked after the error


def test_nonfinite_outputs_with_finite_weights_name_count_batch_and_sources(toy):
    model = zoo.load("toynet", task="toytrain")
    with pytest.raises(NonFiniteOutputError) as err:  # image 5 of the validation set holds a NaN pixel
        zoo.evaluate(model, "toy:n=8,nan_at=5", batch_size=4, plots=False)
    msg = str(err.value)
    assert "2 NaN/Inf value(s) in 1 of 8 image(s)" in msg and "batch 1: toy/val/005.png" in msg
    assert "toy/val/004.png" not in msg and "weights are finite" in msg
    assert not model.net._forward_hooks


def test_predict_names_only_the_images_whose_outputs_are_not_finite():
    model = overflowing_classifier()
    good, bad = torch.rand(3, 8, 8) * 0.5, torch.rand(3, 8, 8) * 0.5
    bad[0, 0, 0] = 1.0
    assert [p.score == p.score for p in model.predict([good, good])] == [True, True]  # finite: predictions
    with pytest.raises(NonFiniteOutputError, match=r"in 1 of 3 image\(s\) \(first in batch 1: <tensor 2>\)"):
        model.predict([good, good, bad], batch_size=2)


def test_the_trainers_validation_refuses_nonfinite_outputs(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    with pytest.raises(NonFiniteOutputError, match="validation|evaluation"):
        zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path, **QUIET).fit(model, "toy:n=8", "toy:n=8,nan_at=2")
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv"))) if (tmp_path / "metrics.csv").exists() else []
    assert not any("accuracy" in r for r in rows)  # nothing was scored


def test_a_refused_validation_keeps_the_epochs_training_for_a_resume(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    with pytest.raises(NonFiniteOutputError, match=r"This epoch's training is kept in .*last\.pt"):
        zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path, **QUIET).fit(model, "toy:n=8", "toy:n=8,nan_at=2")
    progress = torch.load(tmp_path / "last.pt", weights_only=True)["progress"]
    assert (progress["epoch"], progress["step"], progress["batch_in_epoch"]) == (0, 2, 2)  # trained, not validated
    result = zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path, **QUIET).fit(
        zoo.load("toynet", task="toytrain"), "toy:n=8", "toy:n=8", resume="last")  # the cause fixed
    assert result.steps == 2 and "accuracy" in result.metrics  # validated again, no step retrained


def test_a_detector_that_drops_nan_boxes_is_still_caught():
    torch.manual_seed(0)
    model = zoo.build("det", backbone="torchvision:resnet18", head="faster_rcnn", class_names=["a", "b"],
                      min_size=64, max_size=64, fpn_channels=16, representation_size=32, max_levels=3).eval()
    x = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    bn = next(m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn.running_var[0] = -1.0  # finite weights, NaN features
        raw = model.net(x)
    assert all(torch.isfinite(d["scores"]).all() and torch.isfinite(d["boxes"]).all() for d in raw)  # dropped
    with pytest.raises(NonFiniteOutputError, match=r"in 2 of 2 image\(s\).*<tensor 0>, <tensor 1>"):
        model.predict(x)
    with torch.no_grad():
        bn.running_var[0] = 1.0
        model.net.detector.roi_heads.box_predictor.cls_score.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteOutputError, match=r"box_predictor\.cls_score\.weight: 1 of its"):
        model.predict(x)


def test_nonfinite_metrics_are_refused_by_evaluate_and_the_trainer(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(T.ToyMetrics, "compute", lambda self: {"accuracy": float("nan"), "num_samples": self.total,
                                                               "per_class": {"dark": None, "light": float("inf")}})
    model = zoo.load("toynet", task="toytrain")
    with pytest.raises(NonFiniteMetricError, match=r"accuracy=nan, per_class\['light'\]=inf"):
        zoo.evaluate(model, "toy:n=8", batch_size=4, plots=False)
    with pytest.raises(NonFiniteMetricError, match="validation"):
        zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path, **QUIET).fit(model, "toy:n=8", "toy:n=8")
    assert check_finite_metrics({"a": 1.0, "b": None, "c": [0, 1.5], "d": "text"}, "x")["a"] == 1.0


def test_counts_follow_images_through_nested_outputs():
    nan, inf = float("nan"), float("inf")
    out = {"out": torch.tensor([[0.0, nan], [inf, inf], [0.0, 0.0]]), "aux": (torch.tensor([nan]),),
           "labels": torch.tensor([1, 2, 3])}
    assert nonfinite_counts(out, 3).tolist() == [1, 2, 0, 1]  # per image, then what belongs to no image
    per_image = [{"boxes": torch.tensor([[nan, 0, 1, 1]]), "scores": torch.tensor([nan])},
                 {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}]
    assert nonfinite_counts(per_image, 2).tolist() == [2, 0, 0]
    assert nonfinite_counts([torch.ones(2)], 2).tolist() == [0, 0, 0] and nonfinite_counts([1, "a"], 2) is None
