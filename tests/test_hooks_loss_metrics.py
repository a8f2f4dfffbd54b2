"""Hooks for fine-tuning scripts: a custom loss, extra metrics and a Task subclass, in Python, no plugin.

The custom loss is the one the Trainer optimises (a spy sees every call and its value is the step's loss),
extra metrics reach the report and metrics.csv, option values are refused where they enter, and code is
never saved into config.json (left out with a warning, named as data, never imported on load).
"""

from __future__ import annotations

import csv
import json
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

import zoo_core as zoo
from zoo_core.data.digits import make_digits
from zoo_core.errors import OptionError
from zoo_core.task import Batch
from zoo_tasks.classification import ClassificationTask
from zoo_tasks.cls_metrics import ClassificationMetrics
from zoo_tasks.hooks import ExtraMetrics

NAMES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits") / "digits", image_size=32, limit=60, seed=0)


def tiny(**task_options):
    return zoo.load("timm:test_resnet", task="cls", class_names=NAMES, seed=0, task_options=task_options or None)


def trainer(tmp_path, name="run", **kw):
    return zoo.Trainer(max_epochs=1, batch_size=8, image_size=32, out_dir=tmp_path / name, num_workers=0, seed=0,
                       plots=False, verbose=False, **kw)


class Spy:
    """A loss recording its inputs and returning a known multiple of cross-entropy."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Size, torch.Size, float]] = []

    def __call__(self, logits, targets):
        value = 3.0 * F.cross_entropy(logits, targets)
        self.calls.append((logits.shape, targets.shape, float(value.detach())))
        return value


def test_custom_loss_is_the_one_trained(digits, tmp_path):
    spy = Spy()
    model = tiny(loss=spy)
    with pytest.warns(UserWarning, match=r"not saved, code from your script: loss \(.*Spy\)"):
        fit = trainer(tmp_path, limit_train_batches=2).fit(model, digits)
    assert len(spy.calls) == 2 and spy.calls[0][:2] == (torch.Size([8, 10]), torch.Size([8]))
    rows = list(csv.DictReader(open(fit.out_dir / "metrics.csv")))
    assert float(rows[0]["train_loss"]) == pytest.approx(sum(c[2] for c in spy.calls) / 2, rel=1e-4)


def test_nn_loss_module_and_dict_results_and_bad_results(digits):
    model = tiny(loss=torch.nn.CrossEntropyLoss(weight=torch.linspace(0.5, 2, 10)))
    task = model.task_impl
    train = task.read_dataset(digits, split="train", train=True, model=model, image_size=32)
    batch = task.collate([train[i] for i in range(4)])
    logits = model(batch.inputs)
    expected = F.cross_entropy(logits, batch.targets, weight=torch.linspace(0.5, 2, 10))
    assert torch.allclose(task.loss(model, batch)["loss"], expected, atol=1e-5)
    zoo.api.set_task_options(model, {"loss": lambda out, y: {"loss": out.sum() * 0, "extra": out.mean()}})
    assert set(task.loss(model, batch)) == {"loss", "extra"}
    zoo.api.set_task_options(model, {"loss": lambda out, y: F.cross_entropy(out, y, reduction="none")})
    with pytest.raises(ValueError, match=r"returned a tensor of shape \(4,\); return a scalar"):
        task.loss(model, batch)
    zoo.api.set_task_options(model, {"loss": lambda out, y: 1.0})
    with pytest.raises(TypeError, match="returned float"):
        task.loss(model, batch)


def test_detection_and_segmentation_losses_take_the_callable():
    from zoo_tasks.detection import DetectionTask
    from zoo_tasks.segmentation import SegmentationTask

    seen = {}

    def combine(losses, targets):
        seen["keys"], seen["targets"] = sorted(losses), targets
        return 2 * losses["a"] + losses["b"]

    class FakeDet(torch.nn.Module):
        def forward(self, images, targets=None):
            return {"a": torch.tensor(1.0), "b": torch.tensor(5.0)}

    from zoo_core.model import Preprocess, ZooModel

    det = ZooModel(FakeDet(), task="detection", class_names=["x"], preprocess=Preprocess(), config={})
    zoo.api.set_task_options(det, {"loss": combine})
    out = DetectionTask().loss(det, Batch([torch.zeros(3, 8, 8)], [{"boxes": torch.zeros(0, 4)}]))
    assert float(out["loss"]) == 7.0 and seen["keys"] == ["a", "b"] and len(seen["targets"]) == 1
    seg = ZooModel(torch.nn.Conv2d(3, 2, 1), task="segmentation", class_names=["a", "b"], preprocess=Preprocess(),
                   config={})
    zoo.api.set_task_options(seg, {"loss": lambda logits, masks: logits.mean() * 0 + masks.float().mean()})
    masks = torch.ones(2, 4, 4, dtype=torch.long)
    assert float(SegmentationTask().loss(seg, Batch(torch.zeros(2, 3, 4, 4), masks))["loss"].detach()) == 1.0


def test_extra_metrics_reach_the_report_and_metrics_csv(digits, tmp_path):
    model = tiny(metrics={"acc_again": MulticlassAccuracy(num_classes=10, average="micro"),
                          "mean_conf": lambda out, batch: out.softmax(-1).max(-1).values.mean(),
                          "parts": lambda out, batch: {"pos": float((out > 0).float().mean()), "n": len(batch)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = trainer(tmp_path, limit_train_batches=1).fit(model, digits)
    header = next(csv.reader(open(fit.out_dir / "metrics.csv")))
    assert {"acc_again", "mean_conf", "parts_pos", "parts_n"} <= set(header)
    report = zoo.evaluate(model, digits, plots=False, progress=False)
    assert report["acc_again"] == pytest.approx(report["accuracy"])  # the same number, computed by the user's
    assert report["parts_n"] == pytest.approx(sum(n * n for n in _batch_sizes(report["num_samples"], 32))
                                              / report["num_samples"])  # a per-batch value, sample-weighted
    assert 0.0 < report["mean_conf"] <= 1.0


def _batch_sizes(n, b):
    return [b] * (int(n) // b) + ([int(n) % b] if int(n) % b else [])


def test_extra_metrics_merge_across_ranks_without_pickling_code():
    extra = {"acc": MulticlassAccuracy(num_classes=3, average="micro"), "first": lambda out, batch: float(out[0, 0])}
    logits = torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]])
    labels = torch.tensor([0, 1, 1, 0])
    whole = ExtraMetrics(ClassificationMetrics(["a", "b", "c"]), extra)
    whole.update(logits, Batch(torch.zeros(4), labels))
    parts = [ExtraMetrics(ClassificationMetrics(["a", "b", "c"]), extra) for _ in range(2)]
    parts[0].update(logits[:2], Batch(torch.zeros(2), labels[:2]))
    parts[1].update(logits[2:], Batch(torch.zeros(2), labels[2:]))
    other = pickle.loads(pickle.dumps(parts[1]))  # what all_gather_object sends: the lambda stays home
    assert other.fns == {}
    parts[0].merge(other)
    merged, full = parts[0].compute(), whole.compute()
    assert merged["acc"] == full["acc"] == pytest.approx(0.75) and merged["first"] == pytest.approx(1.5)
    assert full["first"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="name of one of the task's own metrics"):
        ExtraMetrics(ClassificationMetrics(["a", "b"]), {"accuracy": extra["first"]})


@pytest.mark.parametrize("options, message", [
    ({"loss": 3}, r"loss=3: must be None or a callable loss"),
    ({"metrics": [MulticlassAccuracy(num_classes=10)]}, "must be a dict naming each extra metric"),
    ({"metrics": {"a,b": lambda o, b: 1.0}}, "without commas"),
    ({"metrics": {"m": "accuracy"}}, r"metrics\['m'\]='accuracy': must be a torchmetrics Metric or a callable"),
    ({"train_transform": "flip"}, "must be a callable transform"),
    ({"auto_augment": "randaug"}, "must be one of None, 'randaugment'"),
    ({"mixup": -1}, r"mixup=-1: must be a number >= 0"),
    ({"color_jitter": 2}, r"color_jitter=2: must be a strength in \[0, 1\]"),
    ({"scale": (0.9, 0.2)}, "low <= high"),
    ({"decode": "gpu"}, "must be one of 'pil', 'device', 'auto'"),
])
def test_option_values_are_refused_where_they_enter(options, message):
    with pytest.raises(OptionError, match=message):
        tiny(**options)
    with pytest.raises(OptionError, match=message):
        ClassificationTask(**options)


def test_an_edited_option_is_refused_where_it_is_read():
    model = tiny()
    model.config["task_options"] = {"mixup_prob": 1.5}
    with pytest.raises(OptionError, match=r"mixup_prob=1.5: must be a number in \[0, 1\]"):
        model.task_impl.options(model)


def test_code_is_left_out_of_config_json_named_and_never_loaded(tmp_path):
    model = tiny(loss=Spy(), hflip=0.0, metrics={"m": MulticlassAccuracy(num_classes=10)})
    with pytest.warns(UserWarning, match=r"not saved, code from your script: loss \(test_hooks_loss_metrics:Spy\), "
                                         r"metrics \(\{'m': torchmetrics"):
        model.save(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["task_options"] == {"hflip": 0.0}
    assert config["unsaved_task_options"]["loss"] == "test_hooks_loss_metrics:Spy"
    with pytest.warns(UserWarning, match=r"saved with loss \(test_hooks_loss_metrics:Spy\).*not saved"):
        again = zoo.load(tmp_path / "saved")
    assert again.config["task_options"] == {"hflip": 0.0} and "loss" not in again.config["task_options"]
    spy = Spy()  # passed again by the user, it is used again
    with pytest.warns(UserWarning, match="not saved"):
        assert zoo.load(tmp_path / "saved", task_options={"loss": spy}).config["task_options"]["loss"] is spy


def test_a_task_subclass_in_the_script_trains_the_model(digits, tmp_path):
    class WeightedTask(ClassificationTask):
        """What a fine-tuning script writes: the task's own loss, reweighted, no plugin."""

        steps = 0

        def loss(self, model, batch):
            WeightedTask.steps += 1
            out = super().loss(model, batch)
            return {**out, "loss": 0.5 * out["loss"]}

    model = tiny()
    model.task_impl = WeightedTask()
    assert isinstance(model.task_impl, WeightedTask)
    with pytest.warns(UserWarning, match=r"task_impl \(.*WeightedTask\).*set model.task_impl again"):
        trainer(tmp_path, limit_train_batches=2).fit(model, digits)
    assert WeightedTask.steps == 2
    model.task_impl = None
    assert type(model.task_impl) is ClassificationTask

    class Other(ClassificationTask):
        name = "segmentation"

    with pytest.raises(ValueError, match="Other.name is 'segmentation', but this model is a 'classification' model"):
        model.task_impl = Other()
    with pytest.raises(TypeError, match="must be a zoo_core.task.Task"):
        model.task_impl = object()
