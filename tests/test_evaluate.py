"""zoo.evaluate: the Trainer's validation loop alone, on a toy task and on the real classification task."""

from __future__ import annotations

import pytest
import torch

import trainer_toy as T
from trainer_toy import toy  # noqa: F401  (fixture)
import zoo_core as zoo
from zoo_core.errors import DataError
from zoo_core.evaluate import Report


def test_report_is_a_mapping_with_timings_plots_and_sets_last_metrics(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain").train()
    report = zoo.evaluate(model, "toy:n=10", batch_size=4, out_dir=tmp_path, num_workers=0)
    assert isinstance(report, Report) and set(report) == {"accuracy", "val_loss", "num_samples", "per_class"}
    assert report["num_samples"] == 10 and report.num_images == 10 and report.batch_size == 4
    assert report.images_per_s > 0 and report.latency_ms > 0 and report.seconds > 0
    assert report.plots == [tmp_path / "toy_accuracy.png"] and report.plots[0].is_file()
    assert model.last_metrics == report.scalars() and "per_class" not in model.last_metrics
    assert model.training  # the caller's mode is restored
    model.eval()
    model.net.fc.train()  # a submodule deliberately in train mode keeps it after the evaluation
    zoo.evaluate(model, "toy:n=10", batch_size=4, plots=False, num_workers=0)
    assert model.net.fc.training and not model.training
    assert "accuracy" in str(report) and "images/s" in str(report)


def test_datasets_and_dataloaders_give_the_same_metrics_as_paths(toy):
    model = zoo.load("toynet", task="toytrain")
    by_path = zoo.evaluate(model, "toy:n=12", batch_size=4, plots=False)
    dataset = T.ToyData(12, train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=model.task_impl.collate)
    assert zoo.evaluate(model, dataset, batch_size=4, plots=False).metrics == by_path.metrics
    assert zoo.evaluate(model, loader, plots=False).metrics == by_path.metrics


def test_evaluate_is_the_trainers_validation_loop(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    result = zoo.Trainer(max_epochs=1, batch_size=4, out_dir=tmp_path, num_workers=0, verbose=False,
                         tensorboard=False).fit(model, "toy:n=16", "toy:n=10")
    assert zoo.evaluate(model, "toy:n=10", batch_size=4, plots=False).scalars() == result.metrics


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_evaluation_image_fails_naming_it(toy, workers):
    model = zoo.load("toynet", task="toytrain")
    with pytest.raises(DataError, match="toy/val/003.png: unreadable"):
        zoo.evaluate(model, "toy:n=8,bad_at=3", batch_size=4, plots=False, num_workers=workers)


def test_classification_on_digits_reports_accuracy_and_draws_a_confusion_matrix(tmp_path):
    from zoo_core.data.digits import make_digits

    root = make_digits(tmp_path / "digits", image_size=16, limit=40)
    model = zoo.load("resnet18", task="cls", num_classes=10)
    model.set_image_size(16)
    report = zoo.evaluate(model, root, batch_size=8, out_dir=tmp_path / "eval", num_workers=0)
    assert report["num_samples"] == report.num_images == len(list((root / "val").rglob("*.png")))
    assert 0.0 <= report["accuracy"] <= 1.0 and len(report["confusion_matrix"]) == 10
    assert [p.name for p in report.plots] == ["confusion_matrix.png"] and report.plots[0].stat().st_size > 0

    bad = sorted((root / "val").rglob("*.png"))[0]
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=bad.name):
        zoo.evaluate(model, root, batch_size=8, plots=False, num_workers=0)
    with pytest.raises(DataError) as err:  # from a worker process: the message, not the worker's traceback
        zoo.evaluate(model, root, batch_size=8, plots=False, num_workers=1)
    assert str(err.value).startswith(str(bad)) and str(err.value).endswith("(raised in DataLoader worker process 0)")
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 500
