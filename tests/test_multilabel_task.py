"""Multi-label classification as a built-in task, on every classification backbone.

Its label files (three layouts, every problem named with file and line), its metrics against
scikit-learn on the same outputs, a real training run whose reported mAP is recomputed from the
model's outputs with sklearn's average_precision_score, predictions, saving, and the CLI.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

import zoo_core as zoo
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import DataError
from zoo_core.registry import get_registry
from zoo_core.task import Batch
from zoo_tasks.cls_metrics import MultiLabelMetrics
from zoo_tasks.multilabel import LabelSet, MultiLabelClassificationTask

NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def tags(tmp_path_factory):
    """Shapes images with their label sets (the shapes each image's mask holds) in labels.csv."""
    src = make_shapes(tmp_path_factory.mktemp("src") / "shapes", layout="masks", n_train=24, n_val=12, image_size=32)
    root = tmp_path_factory.mktemp("tags") / "tags"
    for split in ("train", "val"):
        shutil.copytree(src / split / "images", root / split / "images")
        with open(root / split / "labels.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["image", "labels"])
            for mask in sorted((src / split / "masks").iterdir()):
                present = np.unique(np.array(Image.open(mask)))
                out.writerow([f"images/{mask.name}", ";".join(NAMES[v - 1] for v in present if 0 < v < 255)])
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return root


def test_registered_and_declared_by_every_builtin_classifier():
    task = zoo.get_task("mlcls")
    assert isinstance(task, MultiLabelClassificationTask) and zoo.get_task("multilabel-cls") is task
    assert task.default_metric == "map" and "multilabel_classification" in zoo.list_tasks()
    classifiers = [s for s in get_registry().specs("model") if s.plugin in ("torchvision", "timm")
                   and "classification" in s.tasks]
    assert len(classifiers) > 500 and all("multilabel_classification" in s.tasks for s in classifiers)
    for name in ("torchvision:resnet18", "timm:test_resnet"):
        model = zoo.load(name, task="mlcls", class_names=NAMES, seed=0)
        assert model.task == "multilabel_classification" and model(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def write_folder(root, label_file, text, images=("a.png", "b.png")):
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / name)
    (root / label_file).write_text(text)
    return root


def test_three_layouts_give_the_same_targets(tmp_path):
    model = zoo.load("timm:test_resnet", task="mlcls", num_classes=3, seed=0)
    task = model.task_impl
    layouts = {
        "list": ("labels.csv", "image,labels\nimages/a.png,square;circle\nimages/b.png,\n"),
        "onehot": ("labels.csv", "image,circle,square,triangle\nimages/a.png,1,1,0\nimages/b.png,0,0,0\n"),
        "json": ("labels.json", json.dumps({"images/a.png": ["circle", "square"], "images/b.png": []})),
    }
    for name, (file, text) in layouts.items():
        root = write_folder(tmp_path / name, file, text)
        if name != "onehot":
            (root / "classes.txt").write_text("circle\nsquare\ntriangle\n")
        assert task.source_class_names(root, split="val") == NAMES
        ds = task.read_dataset(root, split="val", train=False, model=model, image_size=16)
        assert ds.class_names == NAMES and [ds[i][1].tolist() for i in range(2)] == [[1, 1, 0], [0, 0, 0]]
        assert ds[0][0].shape == (3, 16, 16)
    batch = task.collate([ds[0], ds[1]])
    assert batch.targets.dtype == torch.float32 and batch.targets.shape == (2, 3)


@pytest.mark.parametrize("file, text, message", [
    ("labels.csv", "image,labels\nimages/a.png,cat\n",
     r"labels.csv, line 2 \(images/a.png\): unknown label\(s\) \['cat'\]"),
    ("labels.csv", "image,circle,square\nimages/a.png,1,yes\n", r"line 2, column 'square': 'yes' is not 0 or 1"),
    ("labels.csv", "image,labels\nimages/a.png\n", r"line 2: 1 columns, the header has 2"),
    ("labels.csv", "image,labels\nimages/zzz.png,circle\n", r"line 2: image .*zzz.png does not exist"),
    ("labels.csv", "image,labels\n,circle\n", r"line 2: empty image path"),
    ("labels.csv", "image\n", r"the header must be 'image,labels'"),
    ("labels.json", '{"images/a.png": "circle"}', r"must map each image path to a list of label names"),
])
def test_bad_label_files_name_file_and_line(tmp_path, file, text, message):
    root = write_folder(tmp_path / "d", file, text)
    (root / "classes.txt").write_text("circle\nsquare\n")
    model = zoo.load("timm:test_resnet", task="mlcls", num_classes=2, seed=0)
    with pytest.raises(DataError, match=message):
        model.task_impl.read_dataset(root, split="val", train=False, model=model)


def test_a_folder_without_labels_and_a_head_of_another_size_are_named(tmp_path, tags):
    model = zoo.load("timm:test_resnet", task="mlcls", num_classes=5, seed=0)
    with pytest.raises(DataError, match=r"has 3 labels .* but the model predicts 5; load it with class_names="):
        model.task_impl.read_dataset(tags, split="val", train=False, model=model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no labels.csv or labels.json"):
        model.task_impl.read_dataset(tmp_path / "empty", split="val", train=False, model=model)


def test_metrics_match_sklearn_and_merge_exactly():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 4, generator=g) < 0.4).long()
    y[0] = 1  # every label has a positive
    logits = torch.randn(40, 4, generator=g) + 1.5 * y
    metrics = MultiLabelMetrics(["a", "b", "c", "d"], threshold=0.4)
    metrics.update(logits, Batch(torch.zeros(40), y.float()))
    out = metrics.compute()
    probs = logits.sigmoid().numpy()
    ap = average_precision_score(y.numpy(), probs, average=None)
    assert [out["per_label_ap"][n] for n in "abcd"] == pytest.approx(list(ap), abs=1e-5)
    assert out["map"] == pytest.approx(average_precision_score(y.numpy(), probs, average="macro"), abs=1e-5)
    pred = (probs >= 0.4).astype(int)
    assert out["f1_macro"] == pytest.approx(f1_score(y.numpy(), pred, average="macro"), abs=1e-5)
    assert out["f1_micro"] == pytest.approx(f1_score(y.numpy(), pred, average="micro"), abs=1e-5)
    assert out["exact_match"] == pytest.approx(accuracy_score(y.numpy(), pred), abs=1e-6)
    halves = MultiLabelMetrics(["a", "b", "c", "d"], threshold=0.4), MultiLabelMetrics(["a", "b", "c", "d"], 0.4)
    halves[0].update(logits[:15], Batch(torch.zeros(15), y[:15].float()))
    halves[1].update(logits[15:], Batch(torch.zeros(25), y[15:].float()))
    halves[0].merge(halves[1])
    assert halves[0].compute() == out
    none = MultiLabelMetrics(["a", "b"])
    none.update(torch.tensor([[2.0, -1.0], [-1.0, 1.0]]), Batch(torch.zeros(2), torch.tensor([[1.0, 0], [0, 0]])))
    assert none.compute()["per_label_ap"] == {"a": 1.0, "b": None} and none.compute()["map"] == 1.0


def test_trains_and_its_map_is_sklearns_on_the_same_outputs(tags, tmp_path):
    model = zoo.load("timm:test_resnet", task="mlcls", class_names=NAMES, seed=0,
                     task_options={"threshold": 0.45, "mixup": 0.2})
    fit = zoo.Trainer(max_epochs=2, batch_size=8, lr=5e-3, image_size=32, out_dir=tmp_path / "run", num_workers=0,
                      seed=0, plots=False, verbose=False).fit(model, tags)
    assert fit.monitor == "map" and 0.0 <= fit.metrics["map"] <= 1.0
    report = zoo.evaluate(model, tags, plots=False, progress=False)
    val = model.task_impl.read_dataset(tags, split="val", train=False, model=model)
    with torch.no_grad():
        model.eval()
        x = torch.stack([val[i][0] for i in range(len(val))])
        probs = model(x).sigmoid().numpy()
    y = torch.stack([val[i][1] for i in range(len(val))]).numpy().astype(int)
    keep = y.sum(0) > 0
    expected = average_precision_score(y[:, keep], probs[:, keep], average="macro")
    assert report["map"] == pytest.approx(expected, abs=1e-4)
    assert report["f1_micro"] == pytest.approx(f1_score(y, (probs >= 0.45).astype(int), average="micro"), abs=1e-4)
    pred = model.predict(str(tags / "val" / "images" / "00000.png"), threshold=0.0)[0]
    assert isinstance(pred, LabelSet) and pred.names == sorted(NAMES, key=lambda n: -pred.scores[n])
    again = zoo.load(fit.model_dir)
    assert again.task == "multilabel_classification" and again.config["task_options"]["threshold"] == 0.45
    assert again.predict(str(tags / "val" / "images" / "00000.png"))[0].scores == pytest.approx(
        model.predict(str(tags / "val" / "images" / "00000.png"))[0].scores, abs=1e-5)


def test_zoo_train_sizes_the_head_from_the_labels(tags, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo_core", "train", "--model", "timm:test_resnet", "--task",
                           "mlcls", "--data", str(tags), "--max-epochs", "1", "--batch-size", "8", "--image-size",
                           "32", "--out-dir", str(tmp_path / "cli"), "--num-workers", "0", "--no-plots"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    model = zoo.load(tmp_path / "cli" / "model")
    assert model.task == "multilabel_classification" and model.class_names == NAMES


class Tagged(torch.utils.data.Dataset):
    """A user's dataset: (PIL image, label names) or (tensor, 0/1 vector)."""

    classes = NAMES

    def __init__(self, form: str) -> None:
        self.form = form

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i):
        on = [NAMES[i % 3], NAMES[(i + 1) % 3]] if i % 2 else [NAMES[i % 3]]
        if self.form == "names":
            return Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)), on
        return torch.full((3, 20, 20), i / 6), torch.tensor([float(n in on) for n in NAMES])


def test_a_users_dataset_of_names_or_vectors_trains_and_evaluates(tmp_path):
    model = zoo.load("timm:test_resnet", task="mlcls", class_names=NAMES, seed=0)
    for form in ("names", "vectors"):
        ds = model.task_impl.adapt_dataset(Tagged(form), model=model, train=False, image_size=16)
        image, target, source = ds[3]
        assert image.shape == (3, 16, 16) and target.tolist() == [1.0, 1.0, 0.0] and source == "<Tagged[3]>"
    report = zoo.evaluate(model, Tagged("names"), plots=False, progress=False, batch_size=3)
    assert report["num_samples"] == 6 and 0.0 <= report["map"] <= 1.0

    class Bad(Tagged):
        def __getitem__(self, i):
            return Image.fromarray(np.zeros((8, 8, 3), np.uint8)), ["hexagon"]

    with pytest.raises(DataError, match=r"Bad\[0\]: label 'hexagon' is not one of the 3 classes"):
        zoo.evaluate(model, Bad("names"), plots=False, progress=False)


def test_a_zero_one_list_as_a_csv_row_gives_it_is_a_multi_hot_vector_and_an_ambiguous_one_is_refused():
    from zoo_tasks.multilabel_data import multi_hot

    # a list the way a Dataset builds it from a CSV row ([int(v) for v in row]): classes a and d, not "0 and 1"
    assert multi_hot([1, 0, 0, 1], list("abcd"), "row").tolist() == [1.0, 0.0, 0.0, 1.0]
    assert multi_hot([0, 0, 1], list("abc"), "row").tolist() == [0.0, 0.0, 1.0]
    assert multi_hot([1.0, 0.0], list("ab"), "row").tolist() == [1.0, 0.0]  # floats are never indices
    assert multi_hot([2, 0], list("abc"), "row").tolist() == [1.0, 0.0, 1.0]  # indices stay indices
    with pytest.raises(DataError, match=r"row: the target \[0, 1\] is ambiguous with 2 classes"):
        multi_hot([0, 1], list("ab"), "row")  # both classes, or class b only?
