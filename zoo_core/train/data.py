"""Data loading for the Trainer and the evaluator: a resumable order and per-sample seeding.

Exact resume and DDP equivalence need two things no stock sampler gives together:

- :class:`EpochSampler`: the permutation of epoch ``e`` is ``randperm(n)`` seeded with ``seed + e``
  (as ``DistributedSampler`` does), rank ``r`` of ``w`` takes every ``w``-th index (the list padded
  to a multiple of ``w`` in training), and it can start ``skip`` samples into the epoch (mid-epoch
  resume). It yields ``(epoch, index)`` keys so the epoch reaches persistent workers.
- :class:`SeededDataset`: seeds Python, NumPy and torch's global generators from
  ``(seed, epoch, index)`` before reading a sample, so a sample's augmentation does not depend on
  which worker, rank or resume point read it. In the main process torch's generator is restored
  afterwards (the model's dropout never sees the data pipeline's draws); Python's and NumPy's are
  left seeded by the last sample (restoring NumPy's state costs ~100 us a sample; the training step
  does not draw from them, and they are checkpointed).
"""

from __future__ import annotations

import math
import os
import random
import signal
from typing import Any, Callable, Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info


def _mix(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729 + 0x9E3779B9) % (2**63 - 1)


class SeededDataset(Dataset):
    """Wraps a dataset; ``ds[(epoch, i)]`` reads ``base[i]`` with generators seeded by (seed, epoch, i)."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # class_names etc. of the wrapped dataset
        if name in ("base", "seed"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getitem__(self, key: Any) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        s = _mix(self.seed, int(epoch), int(index))
        random.seed(s)
        np.random.seed(s % 2**32)
        saved = torch.get_rng_state() if get_worker_info() is None else None
        torch.default_generator.manual_seed(s)
        try:
            return self.base[index]
        finally:
            if saved is not None:
                torch.set_rng_state(saved)


class EpochSampler(Sampler):
    """A seeded, rank-sharded, resumable sample order (see the module docstring)."""

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        self.n, self.shuffle, self.seed = int(n), shuffle, int(seed)
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The next iteration yields epoch ``epoch``'s order, starting ``skip`` samples in."""
        self.epoch, self.skip = int(epoch), int(skip)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.world_size > 1 and order:
            total = math.ceil(self.n / self.world_size) * self.world_size
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in self.indices()[self.skip:]:
            yield (epoch, i)

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.skip)


class _Keyed(Dataset):
    """Drops the epoch from :class:`EpochSampler` keys for datasets that are not seeded (evaluation)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.base[key[1]]


def default_workers(world_size: int = 1) -> int:
    """Worker processes per rank: the CPUs this process may use, shared among local ranks, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    return max(0, min(8, cpus // max(1, local) - 1))


def _seed_worker(worker_id: int) -> None:
    """Seed a worker's Python and NumPy generators; make it ignore Ctrl-C (the terminal sends SIGINT to the
    whole process group: the main process finishes its step and saves, then shuts the workers down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(dataset: Dataset, collate: Callable[[list[Any]], Any], *, batch_size: int, train: bool,
                seed: int, rank: int = 0, world_size: int = 1, num_workers: int | None = None,
                prefetch_factor: int = 2, pin_memory: bool = False, seed_per_sample: bool = True) -> DataLoader:
    """A DataLoader over :class:`EpochSampler` (sharded, seeded; training samples seeded per sample)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"the Trainer needs a map-style dataset with __len__, got {type(dataset).__name__}")
    workers = default_workers(world_size) if num_workers is None else int(num_workers)
    sampler = EpochSampler(len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size,
                           pad=train)
    wrapped = SeededDataset(dataset, seed) if train and seed_per_sample else _Keyed(dataset)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=_seed_worker)
    # a last training batch of ONE sample breaks BatchNorm in train mode ("Expected more than 1 value
    # per channel"): drop exactly that case; any other remainder is trained on
    drop_last = train and batch_size > 1 and len(sampler) % batch_size == 1
    return DataLoader(wrapped, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=pin_memory, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), **kwargs)


def base_dataset(loader: DataLoader) -> Dataset:
    """The user's dataset behind a loader made by :func:`make_loader` (or any loader)."""
    ds = loader.dataset
    while isinstance(ds, (SeededDataset, _Keyed)):
        ds = ds.base
    return ds


def set_loader_epoch(loader: DataLoader, epoch: int, skip_samples: int = 0) -> bool:
    """Position a loader's sampler at ``epoch`` (``skip_samples`` in); False if it cannot skip."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, skip_samples)
        if loader.generator is not None:
            loader.generator.manual_seed(sampler.seed * 1000 + epoch)
        return True
    batch_sampler = getattr(loader, "batch_sampler", None)
    for s in (sampler, getattr(batch_sampler, "sampler", None)):
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
    return skip_samples == 0


def read_data(data: Any, task: Any, model: Any, *, split: str, train: bool,
              image_size: int | tuple[int, int] | None = None,
              class_names: list[str] | None = None) -> Dataset | DataLoader:
    """The dataset the Trainer or evaluator reads ``data`` as.

    - a path, or a pair of paths (``(images_dir, annotations.json)``, ``(images_dir, masks_dir)``), goes
      through ``task.read_dataset``, which reads the formats it knows;
    - a ``Dataset`` goes through ``task.adapt_dataset``: samples in the task's own form pass unchanged,
      samples in a common form (torchvision's ``(image, target)``) get the task's transforms and target
      conversion, with ``class_names`` naming the labels where the dataset has none;
    - a ``DataLoader`` is used as given (its batches must already be what ``task.collate`` makes).
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        return task.adapt_dataset(data, model=model, train=train, image_size=image_size, class_names=class_names)
    pair = isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(p, (str, os.PathLike)) for p in data)
    if isinstance(data, (str, os.PathLike)) or pair:
        return task.read_dataset(tuple(data) if pair else data, split=split, train=train, model=model,
                                 image_size=image_size, class_names=class_names)
    raise TypeError(f"{split} data must be a path, a pair of paths (images_dir, annotations), a torch Dataset or a "
                    f"DataLoader; got {type(data).__name__}")
