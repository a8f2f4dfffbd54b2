"""A tiny in-process plugin for kernel tests: a toy task and a toy model family (no downloads)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo_core import hookimpl
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.task import Batch, Classification, Metrics, Task


class ToyTask(Task):
    name = "toy"
    default_metric = "accuracy"

    def read_dataset(self, source, *, split, train, model, image_size=None, class_names=None):
        g = torch.Generator().manual_seed(0 if train else 1)
        x = torch.rand(16, 3, 8, 8, generator=g)
        y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
        return torch.utils.data.TensorDataset(x, y)

    def collate(self, samples):
        xs, ys = zip(*samples)
        return Batch(torch.stack(xs), torch.stack(ys), [{"source": f"toy{i}"} for i in range(len(xs))])

    def loss(self, model, batch):
        return {"loss": nn.functional.cross_entropy(model(batch.inputs), batch.targets)}

    def forward_eval(self, model, batch):
        return model(batch.inputs)

    def new_metrics(self, class_names):
        return ToyMetrics()

    def predict(self, model, images, sources, **options):
        x = torch.stack([torch.nn.functional.interpolate(i[None], size=(8, 8))[0] for i in images])
        probs = model(x).softmax(-1)
        return [Classification(source=s, label=int(p.argmax()), name=model.class_names[int(p.argmax())],
                               score=float(p.max())) for s, p in zip(sources, probs)]


class ToyMetrics(Metrics):
    def __init__(self) -> None:
        self.correct = self.total = 0

    def update(self, outputs, batch):
        self.correct += int((outputs.argmax(-1) == batch.targets).sum())
        self.total += len(batch)

    def compute(self):
        return {"accuracy": self.correct / max(self.total, 1)}

    def merge(self, other):
        self.correct += other.correct
        self.total += other.total


def build_task() -> ToyTask:
    return ToyTask()


class TinyNet(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def build_tiny(spec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
               **options: Any) -> BuiltModel:
    torch.manual_seed(options.get("seed", 0))
    n = num_classes or 4
    return BuiltModel(net=TinyNet(spec.kwargs.get("width", 4), n), num_classes=n,
                      preprocess=Preprocess(input_size=(8, 8)), head=("fc",), backbone=("features",))


def build_wrong(spec, **kwargs):
    return nn.Linear(2, 2)


@hookimpl
def register_tasks(register):
    register("toy", "zoo_toy_plugin:build_task", aliases=("t",), description="a toy task")


@hookimpl
def register_models(register):
    for name, width in [("tiny", 4), ("tiny_wide", 8)]:
        register(name, "zoo_toy_plugin:build_tiny", tasks=("t",), kwargs={"width": width})
    register("wrong", "zoo_toy_plugin:build_wrong", tasks=("toy",))
