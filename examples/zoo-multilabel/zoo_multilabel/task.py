"""The ``multilabel`` task: dataset format, loss, metrics and typed predictions.

Dataset layout (``root`` may hold ``train/`` and ``val/``, each laid out like this)::

    root/labels.csv      header "image,labels"; labels separated by ";" (empty: no label)
    root/labels.json     or: {"images/a.png": ["cat", "dog"], ...}
    root/classes.txt     optional: the label names in order, one per line (here or one level up)

Image paths are relative to the folder holding the label file. Label order: ``class_names=``,
else the model's own named labels, else ``classes.txt``, else the sorted labels found. A label
outside that list is an error naming the file, the entry and the label.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo_core.data.folders import split_root
from zoo_core.data.images import load_image
from zoo_core.data.robust import SkipTracker, load_or_skip
from zoo_core.errors import DataError
from zoo_core.task import Batch, Metrics, Prediction, Task
from zoo_tasks.transforms import eval_transform, train_transform

from .metrics import MultiLabelMetrics

if TYPE_CHECKING:
    from zoo_core.model import ZooModel

LABEL_FILES = ("labels.csv", "labels.json")
LAYOUT = "a folder with labels.csv (image,labels with labels separated by ';') or labels.json"


@dataclass
class LabelSet(Prediction):
    """The labels whose probability reaches ``threshold``, best first, and every label's probability."""

    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5


def read_label_file(folder: Path) -> tuple[Path, list[tuple[str, list[str]]]]:
    """``(label file, [(relative image path, [label, ...]), ...])`` from ``folder``'s label file."""
    found = [folder / n for n in LABEL_FILES if (folder / n).is_file()]
    if not found:
        raise DataError(f"{folder} has no {' or '.join(LABEL_FILES)}; pass {LAYOUT}", folder)
    path = found[0]
    rows: list[tuple[str, list[str]]] = []
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image", "labels"} <= set(reader.fieldnames):
                raise DataError(f"{path}: the header must be 'image,labels', got {reader.fieldnames}", path)
            for line, row in enumerate(reader, start=2):
                if not row["image"]:
                    raise DataError(f"{path}, line {line}: empty image path", path)
                rows.append((row["image"], [s.strip() for s in (row["labels"] or "").split(";") if s.strip()]))
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc})", path) from exc
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise DataError(f"{path} must map each image path to a list of labels", path)
        rows = [(str(k), [str(x) for x in v]) for k, v in data.items()]
    if not rows:
        raise DataError(f"{path} lists no images", path)
    return path, rows


def _class_file(root: Path, folder: Path) -> list[str] | None:
    for candidate in (folder / "classes.txt", root / "classes.txt"):
        if candidate.is_file():
            return [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
    return None


class MultiLabelDataset(torch.utils.data.Dataset):
    """Samples ``(image tensor, multi-hot float tensor, path)``; unreadable images as in ``zoo_core.data``."""

    def __init__(self, items: list[tuple[Path, list[int]]], class_names: Sequence[str], transform: Any,
                 *, train: bool) -> None:
        self.items, self.class_names, self.transform = items, list(class_names), transform
        self.tracker = SkipTracker(len(items), train=train)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int) -> tuple[Tensor, Tensor, str]:
        path, labels = self.items[i]
        target = torch.zeros(len(self.class_names))
        target[labels] = 1.0
        return self.transform(load_image(path)), target, str(path)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, str]:
        return load_or_skip(i, len(self.items), self._load, self.tracker)


class MultiLabelTask(Task):
    """Multi-label classification: one sigmoid per label, BCE-with-logits, mAP/F1/exact match."""

    name = "multilabel"
    default_metric = "mAP"
    default_metric_mode = "max"
    threshold = 0.5

    def demo(self) -> Any:
        """``zoo demo --tasks multilabel`` and ``zoo data synth --task multilabel``: mlcnn on shapes."""
        from zoo_core.demo import DemoRecipe

        from .synthetic import SHAPES

        return DemoRecipe(dataset="multi-label shapes (4 labels)", make="zoo_multilabel.synthetic:make_shapes",
                          data={"n_train": 64, "n_val": 32, "size": 64}, model="mlcnn",
                          load={"class_names": list(SHAPES)},
                          train={"max_epochs": 3, "batch_size": 16, "lr": 5e-3},
                          quick_data={"n_train": 16, "n_val": 8})

    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> MultiLabelDataset:
        root = Path(source).expanduser()
        folder = split_root(root, split)
        label_file, rows = read_label_file(folder)
        found = sorted({lab for _, labels in rows for lab in labels})
        named = not all(n == f"class_{i}" for i, n in enumerate(model.class_names))
        if class_names is None and named:
            class_names = model.class_names  # labels outside the model's are reported below
        names = list(class_names or _class_file(root, folder) or found)
        if len(names) > model.num_classes:
            raise DataError(f"{label_file} uses {len(names)} labels but the model predicts {model.num_classes}; "
                            f"load it with class_names={names}", label_file)
        index = {n: i for i, n in enumerate(names)}
        items = []
        for line, (rel, labels) in enumerate(rows, start=2):
            unknown = [lab for lab in labels if lab not in index]
            if unknown:
                raise DataError(f"{label_file}, entry {line - 1} ({rel}): unknown label(s) {unknown}; "
                                f"known: {names} (list every label in classes.txt, or load the model "
                                "with class_names=[...] to give it a head for these labels)", label_file)
            image = folder / rel
            if not image.is_file():
                raise DataError(f"{label_file}, entry {line - 1}: image {image} does not exist", image)
            items.append((image, [index[lab] for lab in labels]))
        transform = (train_transform(model.preprocess, image_size, scale=(0.7, 1.0)) if train
                     else eval_transform(model.preprocess, image_size))
        return MultiLabelDataset(items, names, transform, train=train)

    def collate(self, samples: list[Any]) -> Batch:
        images, targets, sources = zip(*samples)
        return Batch(torch.stack(list(images)), torch.stack(list(targets)).float(), [{"source": s} for s in sources])

    def loss(self, model: "ZooModel", batch: Batch) -> dict[str, Tensor]:
        logits = model(batch.inputs)
        return {"loss": F.binary_cross_entropy_with_logits(logits.float(), batch.targets.float())}

    def forward_eval(self, model: "ZooModel", batch: Batch) -> Tensor:
        return model(batch.inputs)

    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return MultiLabelMetrics(class_names, self.threshold)

    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any) -> list[LabelSet]:
        """One :class:`LabelSet` per image; ``threshold=`` (default 0.5) decides which labels are on."""
        threshold = float(options.get("threshold", self.threshold))
        transform = eval_transform(model.preprocess)
        param = next(model.parameters())
        x = torch.stack([transform(img) for img in images]).to(param.device, param.dtype)
        probs = model(x).float().sigmoid().cpu()
        out = []
        for src, row in zip(sources, probs.tolist()):
            on = sorted((i for i, p in enumerate(row) if p >= threshold), key=lambda i: -row[i])
            out.append(LabelSet(source=src, labels=on, names=[model.class_names[i] for i in on],
                                scores=dict(zip(model.class_names, row)), threshold=threshold))
        return out

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """Random images at the model's input size with random label sets (for the conformance suite)."""
        g = torch.Generator().manual_seed(seed)
        transform = eval_transform(model.preprocess)
        h, w = model.preprocess.input_size
        return [(transform(torch.rand(3, h, w, generator=g)),
                 (torch.rand(model.num_classes, generator=g) < 0.5).float(), f"<example {i}>") for i in range(n)]
