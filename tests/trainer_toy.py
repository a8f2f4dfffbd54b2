"""A third-party-style task and model family for the Trainer/evaluator tests (random tensors, tiny nets).

Nothing here is known to the zoo's core: it is registered like any plugin, which is the proof that
a task the zoo has never seen trains and evaluates unchanged. Data sources are strings such as
``"toy:n=32,nan_at=5"`` (the task's own "format"); samples are ``(image, label, weight, source)``.

Run as a script (``python tests/trainer_toy.py ddp OUT``) it trains under ``torchrun`` for the DDP test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from zoo_core import hookimpl
from zoo_core.errors import DataError
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.task import Batch, Classification, Metrics, Task

CLASSES = ["dark", "light"]


class ToyData(torch.utils.data.Dataset):
    """``n`` images 3x8x8; label: is the red channel's mean above the green's. Training adds a random
    flip and noise drawn from torch's global generator (so resume must restore the data seeding)."""

    def __init__(self, n: int, *, train: bool, seed: int = 0, nan_at: int = -1, huge_at: int = -1,
                 bad_at: int = -1) -> None:
        g = torch.Generator().manual_seed(seed + (0 if train else 1))
        self.x = torch.rand(n, 3, 8, 8, generator=g)
        self.y = (self.x[:, 0].mean((1, 2)) > self.x[:, 1].mean((1, 2))).long()
        self.train, self.nan_at, self.huge_at, self.bad_at = train, nan_at, huge_at, bad_at
        self.class_names = list(CLASSES)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, float, str]:
        source = f"toy/{'train' if self.train else 'val'}/{i:03d}.png"
        if i == self.bad_at:
            raise DataError(f"{source}: unreadable image (truncated); replace or remove it", source)
        x = self.x[i].clone()
        if self.train:
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            x = x + 0.05 * torch.randn(x.shape)
        if i == self.nan_at:
            x[0, 0, 0] = float("nan")
        return x, int(self.y[i]), (1e35 if i == self.huge_at else 1.0), source


class ToyTask(Task):
    name = "toytrain"
    default_metric = "accuracy"

    def read_dataset(self, source, *, split, train, model, image_size=None, class_names=None):
        spec = str(source).removeprefix("toy:")
        opts = {k: int(v) for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
        return ToyData(opts.pop("n", 32), train=train, **opts)

    def collate(self, samples):
        x, y, w, src = zip(*samples)
        return Batch(torch.stack(x), (torch.tensor(y), torch.tensor(w, dtype=torch.float32)),
                     [{"source": s} for s in src])

    def loss(self, model, batch):
        y, w = batch.targets
        ce = nn.functional.cross_entropy(model(batch.inputs).float(), y, reduction="none")
        return {"loss": (ce * w).mean(), "ce": ce.mean().detach()}

    def forward_eval(self, model, batch):
        return model(batch.inputs)

    def new_metrics(self, class_names):
        return ToyMetrics()

    def predict(self, model, images, sources, **options):
        from zoo_core.data.images import pil_to_tensor

        tensors = [i if isinstance(i, torch.Tensor) else pil_to_tensor(i) for i in images]
        x = torch.stack([nn.functional.interpolate(i[None], size=(8, 8))[0] for i in tensors])
        probs = model(x).softmax(-1)
        return [Classification(source=s, label=int(p.argmax()), name=model.class_names[int(p.argmax())],
                               score=float(p.max())) for s, p in zip(sources, probs)]

    def plots(self, model, dataset, report, out_dir):
        from PIL import Image

        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "toy_accuracy.png"
        Image.new("RGB", (8, 8), (int(255 * report["accuracy"]), 0, 0)).save(path)
        return [path]


class ToyMetrics(Metrics):
    def __init__(self) -> None:
        self.correct = self.total = 0
        self.nll = 0.0

    def update(self, outputs, batch):
        y = batch.targets[0]
        self.correct += int((outputs.argmax(-1) == y).sum())
        self.total += len(y)
        self.nll += float(nn.functional.cross_entropy(outputs.float(), y, reduction="sum"))

    def compute(self):
        return {"accuracy": self.correct / max(self.total, 1), "val_loss": self.nll / max(self.total, 1),
                "num_samples": self.total, "per_class": {"dark": 0.0}}

    def merge(self, other):
        self.correct += other.correct
        self.total += other.total
        self.nll += other.nll


class ToyNet(nn.Module):
    def __init__(self, width: int, num_classes: int, bn: bool, dropout: float) -> None:
        super().__init__()
        norm = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), norm, nn.ReLU())
        self.blocks = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2)])
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.fc(self.drop(x.mean((2, 3))))


def build_task() -> ToyTask:
    return ToyTask()


def build_net(spec, *, task, num_classes=None, pretrained=None, **options: Any) -> BuiltModel:
    torch.manual_seed(options.get("seed", 0))
    n = num_classes or 2
    k = spec.kwargs
    return BuiltModel(net=ToyNet(k["width"], n, k["bn"], k["dropout"]), num_classes=n,
                      preprocess=Preprocess(input_size=(8, 8)), head=("fc",), backbone=("stem", "blocks"))


@hookimpl
def register_tasks(register):
    register("toytrain", "trainer_toy:build_task", aliases=("tt",), description="toy task for Trainer tests")


@hookimpl
def register_models(register):
    register("toynet", "trainer_toy:build_net", tasks=("toytrain",), kwargs={"width": 8, "bn": True, "dropout": 0.2})
    register("toynet_plain", "trainer_toy:build_net", tasks=("toytrain",),
             kwargs={"width": 8, "bn": False, "dropout": 0.0})
    register("toynet_wide", "trainer_toy:build_net", tasks=("toytrain",),
             kwargs={"width": 12, "bn": True, "dropout": 0.2})


def install() -> None:
    """Register this module as a plugin in a fresh registry (tests and subprocesses)."""
    from zoo_core.registry import Registry, reset_registry

    reg = Registry()
    reg.add_plugin(sys.modules[__name__], "toytrain", distribution="zoo-toytrain", version="0.0.1")
    reset_registry(reg.finalize())


@pytest.fixture
def toy(fresh_registry):
    """This module's plugin in a fresh registry, and one torch thread (tiny nets only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    install()
    yield
    torch.set_num_threads(threads)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ddp_main(out: str, world: int) -> None:
    """Train toynet_plain for 2 epochs with global batch 8 (per-rank batch 8 / world) and save weights."""
    import zoo_core as zoo

    torch.set_num_threads(1)
    install()
    model = zoo.load("toynet_plain", task="toytrain")
    initial = weights(model.net)
    trainer = zoo.Trainer(max_epochs=2, batch_size=8 // world, lr=0.05, optimizer="sgd", seed=3,
                          deterministic=True, num_workers=0, out_dir=out, verbose=False, tensorboard=False)
    result = trainer.fit(model, "toy:n=32", "toy:n=12")
    if trainer.env.is_main:
        torch.save({"weights": weights(model.net), "initial": initial, "metrics": result.metrics}, Path(out) / "final.pt")


if __name__ == "__main__":
    if sys.argv[1] == "ddp":
        import os

        _ddp_main(sys.argv[2], int(os.environ.get("WORLD_SIZE", "1")))
