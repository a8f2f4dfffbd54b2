"""A model on disk, as ``zoo.load`` and every ``zoo`` command take it: a saved folder, a run folder, a checkpoint.

- a saved model folder (``model.save``: ``config.json`` + ``model.safetensors``);
- a training run folder (a Trainer's ``out_dir``): its final ``model/``, or, when the run stopped
  before writing it, its ``best.pt``, else its ``last.pt``;
- a training checkpoint file (``.pt``, ``.pth``, ``.ckpt``), read with ``weights_only=True`` and rebuilt
  under :mod:`zoo_core.saved_options`' rules (:func:`zoo_core.train.checkpoint.model_from_checkpoint`):
  loading never runs code or reads a file the checkpoint names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import ModelFolderError, OptionError

if TYPE_CHECKING:
    from .model import ZooModel

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
#: what a run folder is loaded from, first found first
RUN_FOLDER_MODELS = ("model", "best.pt", "last.pt")


def is_checkpoint_file(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES


def model_on_disk(path: str | Path) -> Path | None:
    """The saved model folder or checkpoint file ``path`` designates (itself, or a run folder's
    ``model/``, ``best.pt`` or ``last.pt``); None when it is none of these (or does not exist)."""
    from .saving import is_saved_model

    p = Path(path)
    if is_saved_model(p) or is_checkpoint_file(p):
        return p
    if p.is_dir():
        for name in RUN_FOLDER_MODELS:
            if is_saved_model(p / name) or is_checkpoint_file(p / name):
                return p / name
    return None


def not_a_model_error(path: Path) -> Exception:
    """Why an existing ``path`` that is no model on disk cannot be loaded, and what to pass instead."""
    if path.is_file():
        return OptionError(f"{path} is a file but not a saved model folder or a .pt/.pth/.ckpt training checkpoint; "
                           "for a weights file pass a model name and weights=FILE (zoo ... --weights FILE)")
    return ModelFolderError(f"{path} is a folder but neither a saved model (it has no config.json + weights) nor a "
                            f"run folder ({', '.join(RUN_FOLDER_MODELS)}): pass one of those, or a model name")


def load_checkpoint_model(path: Path, *, task: str | None = None, num_classes: int | None = None,
                          class_names: Sequence[str] | None = None) -> "ZooModel":
    """The model a training checkpoint holds (its EMA weights when it has them), with its own head.

    ``class_names`` of the head's size rename its classes; another size, or a ``num_classes`` other than
    the head's, is an :class:`~zoo_core.errors.OptionError`: a checkpoint loads as it was trained (load
    the run's saved ``model/`` with ``num_classes=`` to re-head it). ``task`` must be the checkpoint's.
    """
    from .api import check_task
    from .train.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(path)
    check_task(model, task)
    n = model.num_classes
    wanted = len(class_names) if class_names is not None else num_classes
    if wanted is not None and wanted != n:
        raise OptionError(f"{path} is a training checkpoint with a {n}-class head, which it loads as it was trained; "
                          f"{wanted} classes were asked for. To fine-tune with a new head, load the run's saved "
                          f"model folder with num_classes={wanted}, or zoo.load(<model name>, num_classes={wanted}, "
                          f"weights={str(path)!r})")
    if class_names is not None:
        model.class_names = [str(c) for c in class_names]
    return model
