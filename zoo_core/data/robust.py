"""Bad images in a dataset: skip with a warning in training, fail in evaluation.

A training set with a few corrupt files should still train (each skip warned once, by name, and
counted); past ``max_bad_fraction`` of the set it stops, since then the data is broken. An
evaluation set never shrinks silently: the first unreadable image raises, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from PIL import Image

from ..errors import DataError, warn
from .images import load_image

T = TypeVar("T")


class SkipTracker:
    """Counts unreadable files of one dataset and enforces the threshold.

    Each DataLoader worker process holds its own copy and reads about ``1/num_workers`` of the set,
    so its limit is that share's fraction: the whole run stops near ``max_bad_fraction`` of the set
    whatever the number of workers (a per-process limit on the whole set would allow workers x more).
    """

    def __init__(self, total: int, *, train: bool, max_bad_fraction: float = 0.05) -> None:
        self.total, self.train, self.max_bad_fraction = total, train, max_bad_fraction
        self.bad: dict[str, str] = {}
        self.seen: set[int] = set()  # distinct indices this process has read (persistent workers: every epoch)

    @property
    def share(self) -> float:
        """How many of the ``total`` images this process reads: its worker share, or all it has read so far
        (persistent workers see other indices every epoch)."""
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        return max(self.total / info.num_workers, len(self.seen)) if info is not None else float(self.total)

    @property
    def limit(self) -> int:
        return max(1, int(self.max_bad_fraction * self.share))

    def record(self, path: str | Path, error: Exception) -> None:
        """Note a bad file: raise in evaluation or past the limit, else warn once and go on."""
        if not self.train:
            raise error if isinstance(error, DataError) else DataError(f"{path}: {error}")
        from torch.utils.data import get_worker_info

        key = str(path)
        where = "" if get_worker_info() is None else " in this loader worker"
        if key not in self.bad:
            self.bad[key] = str(error)
            warn(f"skipping unreadable training image ({len(self.bad)} so far{where}): {error}")
        if len(self.bad) > self.limit:
            names = ", ".join(list(self.bad)[:5])
            raise DataError(f"{len(self.bad)} of the {round(self.share)} training images read{where} are "
                            f"unreadable (more than {self.max_bad_fraction:.0%}): {names} ...; fix or remove them")


def load_or_skip(index: int, total: int, loader: Callable[[int], T], tracker: SkipTracker) -> T:
    """``loader(index)``, or in training the next readable sample after unreadable ones."""
    for attempt in range(total):
        j = (index + attempt) % total
        tracker.seen.add(j)
        try:
            return loader(j)
        except DataError as exc:
            tracker.record(getattr(exc, "path", j), exc)
    raise DataError("no readable image in the dataset")


def open_rgb(path: str | Path) -> Image.Image:
    """:func:`load_image`; a separate name so datasets read clearly."""
    return load_image(path)
