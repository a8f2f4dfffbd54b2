"""The multilabel plugin's own tests; `pytest` here also runs the zoo conformance suite on it."""

from __future__ import annotations

import json

import pytest
import torch

import zoo_core as zoo
from zoo_core.errors import DataError
from zoo_core.task import Batch
from zoo_multilabel.metrics import MultiLabelMetrics
from zoo_multilabel.synthetic import SHAPES, make_shapes

NAMES = list(SHAPES)


def batch_of(targets: list[list[int]]) -> Batch:
    t = torch.tensor(targets, dtype=torch.float32)
    return Batch(torch.zeros(len(t), 3, 8, 8), t)


def test_metrics_perfect_and_merged_and_unseen_labels():
    targets = [[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]]  # "cross" never occurs
    logits = (torch.tensor(targets, dtype=torch.float32) * 2 - 1) * 5
    whole = MultiLabelMetrics(NAMES)
    whole.update(logits, batch_of(targets))
    out = whole.compute()
    assert out["mAP"] == pytest.approx(1.0) and out["f1_micro"] == pytest.approx(1.0)
    assert out["exact_match"] == pytest.approx(1.0) and out["per_label_ap"]["cross"] is None
    halves = MultiLabelMetrics(NAMES), MultiLabelMetrics(NAMES)
    halves[0].update(logits[:1], batch_of(targets[:1]))
    halves[1].update(logits[1:], batch_of(targets[1:]))
    halves[0].merge(halves[1])
    assert halves[0].compute() == out


def test_metrics_rank_errors():
    targets = [[1, 0, 0, 0], [0, 0, 0, 0]]
    logits = torch.tensor([[-1.0, 0, 0, 0], [1.0, 0, 0, 0]])  # the negative ranks above the positive
    m = MultiLabelMetrics(NAMES)
    m.update(logits, batch_of(targets))
    assert m.compute()["per_label_ap"]["circle"] == pytest.approx(0.5)


@pytest.fixture
def model():
    return zoo.load("mlcnn_small", task="multilabel", class_names=NAMES)


def test_dataset_csv_json_and_named_errors(tmp_path, model):
    root = make_shapes(tmp_path / "data", n_train=4, n_val=3)
    task = model.task_impl
    ds = task.read_dataset(root, split="val", train=False, model=model)
    assert len(ds) == 3 and ds.class_names == NAMES
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.png").write_bytes((root / "val" / "images" / "00000.png").read_bytes())
    (tmp_path / "j" / "labels.json").write_text(json.dumps({"a.png": ["square", "cross"]}))
    image, target, _ = task.read_dataset(tmp_path / "j", split="val", train=False, model=model)[0]
    assert target.tolist() == [0.0, 1.0, 0.0, 1.0] and image.shape == (3, 64, 64)
    (tmp_path / "j" / "labels.json").write_text(json.dumps({"a.png": ["hexagon"]}))
    with pytest.raises(DataError, match=r"labels.json, entry 1 \(a.png\): unknown label\(s\) \['hexagon'\]"):
        task.read_dataset(tmp_path / "j", split="val", train=False, model=model)
    (tmp_path / "j" / "labels.json").write_text(json.dumps({"missing.png": []}))
    with pytest.raises(DataError, match="missing.png does not exist"):
        task.read_dataset(tmp_path / "j", split="val", train=False, model=model)


def test_train_evaluate_save_load(tmp_path, model):
    root = make_shapes(tmp_path / "data", n_train=32, n_val=16)
    before = zoo.evaluate(model, root)["mAP"]
    result = zoo.Trainer(max_epochs=2, batch_size=8, lr=5e-3, out_dir=tmp_path / "run").fit(model, root, root)
    assert result.monitor == "mAP" and 0.0 <= result.metrics["mAP"] <= 1.0
    report = zoo.evaluate(model, root)
    assert report["mAP"] != before and set(report["per_label_ap"]) == set(NAMES)
    again = zoo.load(result.model_dir)
    assert again.task == "multilabel" and again.class_names == NAMES
    image = root / "val" / "images" / "00001.png"
    assert again.predict([image])[0].scores == pytest.approx(model.predict([image])[0].scores)
