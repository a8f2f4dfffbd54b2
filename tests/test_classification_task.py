"""The classification task: data, transforms, loss, metrics, predictions, plots, and that it learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import f1_score

import zoo_core as zoo
from zoo_core.data.digits import make_digits
from zoo_core.errors import DataError
from zoo_core.model import Preprocess
from zoo_core.task import Batch, Classification
from zoo_tasks.classification import ClassificationTask
from zoo_tasks.cls_metrics import ClassificationMetrics
from zoo_tasks.transforms import eval_transform, train_transform

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_digits(tmp_path_factory.mktemp("digits") / "digits", image_size=32, limit=400, seed=0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.load("torchvision:resnet18", task="cls", class_names=DIGITS, image_size=32)


def test_task_is_registered_with_aliases() -> None:
    task = zoo.get_task("cls")
    assert isinstance(task, ClassificationTask) and zoo.get_task("classification") is task
    assert task.default_metric == "accuracy" and task.default_metric_mode == "max"
    with pytest.raises(ValueError, match="num_classes >= 2"):
        zoo.load("torchvision:resnet18", task="cls", num_classes=1)


def test_transforms_follow_preprocess() -> None:
    pre = Preprocess(input_size=(24, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=0.75)
    img = Image.fromarray(np.full((40, 60, 3), 191, np.uint8))
    x = eval_transform(pre)(img)
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (191 / 255 - 0.5) / 0.25), atol=1e-5)
    # the same pipeline takes [0, 1] tensors, and size= overrides the model's size
    t = eval_transform(pre, 16)(torch.full((3, 40, 60), 191 / 255))
    assert t.shape == (3, 16, 16) and torch.allclose(t, torch.full_like(t, (191 / 255 - 0.5) / 0.25), atol=1e-3)
    torch.manual_seed(0)
    assert train_transform(pre, (20, 28))(img).shape == (3, 20, 28)


def test_read_dataset_collate_and_loss(digits: Path, model) -> None:
    task = zoo.get_task("cls")
    train = task.read_dataset(digits, split="train", train=True, model=model)
    val = task.read_dataset(digits, split="val", train=False, model=model, class_names=train.class_names)
    assert train.class_names == DIGITS and len(train) + len(val) == 400
    batch = task.collate([val[i] for i in range(4)])
    assert isinstance(batch, Batch) and batch.inputs.shape == (4, 3, 32, 32)
    assert batch.targets.dtype == torch.long and batch.targets.tolist() == [val.samples[i][1] for i in range(4)]
    source = Path(batch.meta[0]["source"])
    assert source.suffix == ".png" and source.parent.name == DIGITS[batch.targets[0]]
    # eval is deterministic, train is augmented
    assert torch.equal(val[0][0], val[0][0])
    torch.manual_seed(1)
    a = train[0][0]
    assert not torch.equal(a, train[0][0])
    # cross-entropy, with label smoothing from the model's task options
    model.eval()
    with torch.no_grad():
        logits = model(batch.inputs)
        assert torch.allclose(task.loss(model, batch)["loss"], F.cross_entropy(logits, batch.targets))
        model.config["task_options"] = {"label_smoothing": 0.2}
        try:
            smoothed = task.loss(model, batch)["loss"]
        finally:
            model.config.pop("task_options")
        assert torch.allclose(smoothed, F.cross_entropy(logits, batch.targets, label_smoothing=0.2))
        assert torch.equal(task.forward_eval(model, batch), logits)


def test_example_samples_go_through_the_contract(model) -> None:
    task = zoo.get_task("cls")
    samples = task.example_samples(model, n=3, seed=5)
    batch = task.collate(samples)
    assert batch.inputs.shape == (3, 3, 32, 32) and all(0 <= t < 10 for t in batch.targets.tolist())
    assert torch.equal(task.collate(task.example_samples(model, n=3, seed=5)).inputs, batch.inputs)
    metrics = task.new_metrics(model.class_names)
    model.eval()
    with torch.no_grad():
        metrics.update(task.forward_eval(model, batch), batch)
    assert metrics.compute()["num_samples"] == 3


def test_dataset_with_more_classes_than_the_model_is_refused(digits: Path) -> None:
    small = zoo.load("torchvision:resnet18", task="cls", num_classes=3)
    with pytest.raises(DataError, match="num_classes=10"):
        zoo.get_task("cls").read_dataset(digits, split="train", train=True, model=small)


def test_folders_are_mapped_to_the_models_named_classes(tmp_path: Path, model) -> None:
    for name in ("7", "2"):  # a subset of the model's classes, in another order
        Image.new("RGB", (8, 8)).save((tmp_path / name).mkdir() or tmp_path / name / "a.png")
    ds = zoo.get_task("cls").read_dataset(tmp_path, split="val", train=False, model=model)
    assert ds.class_names == DIGITS
    assert sorted(label for _, label in ds.samples) == [2, 7]


def _batch(targets: list[int]) -> Batch:
    meta = [{"source": f"s{i}"} for i in range(len(targets))]
    return Batch(torch.zeros(len(targets), 3, 2, 2), torch.tensor(targets), meta)


def test_metrics_values_and_merge() -> None:
    names = [f"c{i}" for i in range(6)]
    logits = torch.tensor([[9., 1, 2, 3, 4, 5],   # true 0, pred 0
                           [1., 9, 2, 3, 4, 5],   # true 1, pred 1
                           [9., 8, 1, 2, 3, 0],   # true 2, pred 0; 2 is the 5th best -> top5 hit
                           [9., 1, 2, 3, 4, 0]])  # true 5, pred 0; 5 is the worst -> top5 miss
    targets = [0, 1, 2, 5]
    whole = ClassificationMetrics(names)
    whole.update(logits, _batch(targets))
    out = whole.compute()
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["top5"] == pytest.approx(0.75)
    # per-class F1: c0 0.5, c1 1, c2 0, c5 0; c3/c4 occur nowhere and are left out (as sklearn does)
    assert out["f1_macro"] == pytest.approx((0.5 + 1.0) / 4, abs=1e-6)
    assert out["f1_macro"] == pytest.approx(f1_score(targets, logits.argmax(1).tolist(), average="macro"))
    assert out["per_class_accuracy"] == {"c0": 1.0, "c1": 1.0, "c2": 0.0, "c3": None, "c4": None, "c5": 0.0}
    assert out["confusion_matrix"][2][0] == 1 and out["confusion_matrix"][5][0] == 1
    assert sum(map(sum, out["confusion_matrix"])) == 4 == out["num_samples"]
    assert all(isinstance(out[k], float) for k in ("accuracy", "top5", "f1_macro"))
    # two ranks' halves merged give exactly the whole
    a, b = ClassificationMetrics(names), ClassificationMetrics(names)
    a.update(logits[:1], _batch(targets[:1]))
    b.update(logits[1:], _batch(targets[1:]))
    a.merge(b)
    assert a.compute() == out


def test_metrics_top5_only_with_more_than_five_classes_and_bad_labels() -> None:
    m = ClassificationMetrics(["a", "b", "c"])
    m.update(torch.tensor([[1., 0, 0], [0, 1, 0]]), _batch([0, 2]))
    out = m.compute()
    assert "top5" not in out and out["accuracy"] == 0.5
    with pytest.raises(DataError, match="outside 0..2"):
        m.update(torch.zeros(1, 3), _batch([3]))
    with pytest.raises(DataError, match="empty"):
        ClassificationMetrics(["a", "b"]).compute()


def test_predict_pil_tensor_and_path(digits: Path, model) -> None:
    path = next((digits / "val" / "3").glob("*.png"))
    preds = model.predict([Image.open(path), torch.rand(3, 50, 40), str(path)], topk=3)
    assert len(preds) == 3 and all(isinstance(p, Classification) for p in preds)
    for p in preds:
        assert len(p.topk) == 3 and p.topk[0] == (p.label, p.name, p.score)
        assert [s for _, _, s in p.topk] == sorted((s for _, _, s in p.topk), reverse=True)
        assert p.name == DIGITS[p.label] and 0.0 < p.score <= 1.0
    assert preds[2].source == str(path)
    assert preds[0].label == preds[2].label and preds[0].score == pytest.approx(preds[2].score, abs=1e-6)


def test_a_batch_tensor_is_preprocessed_at_once_and_matches_image_by_image(model) -> None:
    x = torch.rand(4, 3, 50, 70)
    batch = model.predict(x, topk=2)  # one batched resize + normalise
    mixed = model.predict([*x.unbind(0), Image.new("RGB", (70, 50))], topk=2)  # per-image path
    assert [p.topk[0][0] for p in batch] == [p.topk[0][0] for p in mixed[:4]]
    assert max(abs(a.score - b.score) for a, b in zip(batch, mixed)) < 1e-5


def test_predict_runs_in_eval_mode_and_restores_the_mode(model) -> None:
    x = torch.rand(2, 3, 40, 40)
    model.eval()
    reference = [p.score for p in model.predict(x)]
    model.train()
    assert [p.score for p in model.predict(x)] == pytest.approx(reference)  # BatchNorm in eval for the call
    assert model.training and model.net.training
    model.eval()
    model.net.train()  # a half-switched model (ZooModel in eval, its net in train) still predicts in eval
    assert [p.score for p in model.predict(x)] == pytest.approx(reference)
    assert not model.training and model.net.training  # ... and every module's mode is restored
    model.eval()
    model.net.fc.train()  # deliberately in train inside an eval model (Monte-Carlo dropout): left as set
    model.predict(x)
    assert model.net.fc.training and not model.net.training


def test_confusion_matrix_plot(tmp_path: Path, model) -> None:
    report = {"accuracy": 0.5, "confusion_matrix": [[3 if i == j else (1 if j == 0 else 0) for j in range(10)]
                                                    for i in range(10)]}
    paths = zoo.get_task("cls").plots(model, object(), report, tmp_path)
    assert paths == [tmp_path / "confusion_matrix.png"]
    with Image.open(paths[0]) as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert zoo.get_task("cls").plots(model, object(), {"accuracy": 1.0}, tmp_path / "none") == []


def test_resnet18_learns_digits_in_a_few_cpu_steps(digits: Path) -> None:
    """A plain loop (not the Trainer): the loss falls and accuracy ends well above chance (0.1)."""
    torch.manual_seed(0)
    net = zoo.load("torchvision:resnet18", task="cls", class_names=DIGITS, image_size=32)
    net.config["task_options"] = {"hflip": 0.0, "scale": (0.8, 1.0)}  # digits are not mirror-symmetric
    task = zoo.get_task("cls")
    train = task.read_dataset(digits, split="train", train=True, model=net)
    val = task.read_dataset(digits, split="val", train=False, model=net, class_names=train.class_names)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, collate_fn=task.collate,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    net.train()
    for _ in range(4):  # 40 steps of 32 images
        for batch in loader:
            loss = task.loss(net, batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    net.eval()
    metrics = task.new_metrics(train.class_names)
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(val, batch_size=64, collate_fn=task.collate):
            metrics.update(task.forward_eval(net, batch), batch)
    report = metrics.compute()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert report["accuracy"] > 0.3 and report["num_samples"] == len(val)


@pytest.mark.parametrize("options, message", [({"hflip": 2}, r"hflip=2: must be a number in \[0, 1\]"),
                                              ({"label_smoothing": "a"}, r"label_smoothing='a'"),
                                              ({"hflip": -0.5}, r"hflip=-0.5")])
def test_probability_options_out_of_range_are_named(options, message) -> None:
    from zoo_core.errors import OptionError

    with pytest.raises(OptionError, match=message):  # where it enters (test_hooks_loss_metrics.py: every option)
        zoo.load("resnet18", task="cls", num_classes=3, task_options=options)
    model = zoo.load("resnet18", task="cls", num_classes=3)
    model.config["task_options"] = dict(options)  # edited by hand: refused where it is read
    with pytest.raises(OptionError, match=message):
        model.task_impl.options(model)
    assert zoo.get_task("cls").options(zoo.load("resnet18", task="cls", num_classes=3))["hflip"] == 0.5
    import numpy as np

    for fine in (False, True, np.float32(0.25)):  # YAML booleans and numpy numbers are numbers
        ok = zoo.load("resnet18", task="cls", num_classes=3, task_options={"hflip": fine})
        assert ok.task_impl.options(ok)["hflip"] == fine
