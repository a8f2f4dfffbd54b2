"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (RNG states are turned
into tensors), so loading one never runs code. Layout (format version :data:`FORMAT_VERSION`)::

    format, format_version, zoo_version, versions      what wrote it (torch, zoo, every plugin dist)
    task, model_config, class_names, preprocess        which model it is for
    model          the weights to use: the EMA weights when EMA is on, else the trained weights
    train_model    the raw trained weights (only with EMA; resume continues from them)
    ema            {"updates": n} (with EMA)
    optimizer, scheduler, scaler                       their state_dicts
    progress       epoch, step, batch_in_epoch, epoch_finished, world_size, batch_size
    rng            python, numpy, torch, cuda (tensors)
    data           {"seed", "epoch", "batches_done"}: the sampler's position
    callbacks      each callback's state (early stopping counters, best value...)
    config         the resolved TrainConfig; metrics: the last validation's scalars

Writing goes to a temp file in the same folder, is flushed and fsynced, then renamed over the old
file (and the folder fsynced): a crash, a full disk or a SIGKILL mid-save leaves the previous
checkpoint whole. Temp files left by a killed process are removed by :func:`remove_stale_temps`.
Older formats are upgraded by the functions in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .._version import __version__
from ..errors import WeightsError, ZooError

if TYPE_CHECKING:
    from ..model import ZooModel

FORMAT = "zoo.checkpoint"
FORMAT_VERSION = 1
TEMP_PREFIX = ".zoo-ckpt-"

#: ``MIGRATIONS[v]`` upgrades a version-``v`` checkpoint dict to version ``v + 1``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _serialize(obj: Any, f: Any) -> None:
    """The writer (a seam for tests that simulate a full disk)."""
    torch.save(obj, f)


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` to ``path`` so that ``path`` is always either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _serialize(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write checkpoint {path} ({exc.strerror or exc}); the "
                          "previous checkpoint was kept. Free disk space or choose another out_dir") from exc
        raise
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files a killed save left behind in ``folder``; return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(f"{TEMP_PREFIX}*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


#: what a run leaves in its out_dir that a later run could mistake for its own
RUN_OUTPUTS = ("last.pt", "best.pt", "model", "tensorboard")


def refuse_to_overwrite(out_dir: Path) -> None:
    """Refuse a new run in a folder that holds another run's checkpoints (they would be replaced)."""
    found = [p.name for p in (out_dir / "last.pt", out_dir / "best.pt") if p.exists()]
    if found:
        raise ZooError(f"{out_dir} already holds a run ({', '.join(found)}); a new run would replace it. "
                       "Continue it with resume='last' (zoo train --resume last), pick another out_dir "
                       "(--out-dir), or replace it with overwrite=True (--overwrite)")


def clear_previous_run(out_dir: Path) -> list[str]:
    """Delete another run's checkpoints, final model and TensorBoard events (``overwrite=True``).

    Left in place they would pass for the new run's: a NaN reset to the old weights, the old best.pt
    reported when this run saves none, two runs' curves in one TensorBoard. Returns what was removed.
    """
    import shutil

    removed = []
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def resume_path(resume: str | Path | bool | None, last: Path) -> Path | None:
    """The checkpoint a ``resume`` argument names: ``"last"``/True -> ``last``, a path -> itself, None/False -> None."""
    if resume is None or resume is False:
        return None
    return last if resume is True or str(resume) in ("last", "True") else Path(resume)


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint safely and upgrade it to the current format; errors name the file.

    ``mmap``: map the tensors instead of reading them (cheap when only the metadata is wanted).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; pass a .pt file written by the Trainer "
                           "or resume='last' with the run's out_dir")
    from ..weights import sniff_format, unsafe_pickle_error

    if sniff_format(path) != "torch":
        raise WeightsError(f"{path} is not a zoo training checkpoint: it is not a PyTorch file at all "
                           f"({path.stat().st_size} bytes). Pass a last.pt/best.pt written by the Trainer; "
                           "for plain weights use zoo.load(name, weights=path)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise unsafe_pickle_error(path, exc) from exc
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"checkpoint {path} is unreadable ({exc}); it is truncated or not a "
                           "checkpoint. Use another one (best.pt / last.pt)") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a zoo training checkpoint (no format={FORMAT!r} entry); for "
                           "plain weights use zoo.load(name, weights=path)")
    return migrate(ckpt, str(path))


def migrate(ckpt: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """Upgrade ``ckpt`` step by step to :data:`FORMAT_VERSION`; a newer one is a clear error."""
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(f"{where} was written by a newer zoo (checkpoint format {version}, zoo "
                           f"{ckpt.get('zoo_version')}); this zoo {__version__} reads up to "
                           f"{FORMAT_VERSION}. Upgrade: pip install -U zoo")
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise WeightsError(f"{where} has checkpoint format {version}, which this zoo cannot upgrade "
                               f"(no migration from {version}); resume with the zoo that wrote it")
        ckpt = MIGRATIONS[version](ckpt)
        version = ckpt["format_version"] = version + 1
    return ckpt


# ---- RNG states as tensors (weights_only-loadable) ------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, as tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def cpu_state(obj: Any) -> Any:
    """A copy of a (nested) state with every tensor detached on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_state(v) for v in obj)
    return obj


def plain(obj: Any) -> Any:
    """Keep only what ``weights_only`` loading accepts: tensors, numbers, strings, containers."""
    if isinstance(obj, (torch.Tensor, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch's TorchVersion) are not weights_only-loadable
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items() if _ok(v)}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj if _ok(v)]
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _ok(v: Any) -> bool:
    return not callable(v) or isinstance(v, torch.Tensor)


def model_from_checkpoint(path: str | Path) -> "ZooModel":
    """Rebuild the model a checkpoint was trained from and load its weights (the EMA ones with EMA)."""
    from ..api import load
    from ..model import Preprocess
    from ..weights import load_into

    ckpt = load_checkpoint(path)
    config, task, names = ckpt["model_config"], ckpt["task"], ckpt["class_names"]
    options = dict(config.get("options") or {})
    if "backbone" in config:
        from ..compose import build

        model = build(task, backbone=config["backbone"], head=config["head"], class_names=names, **options)
    else:
        model = load(config["model"], task=task, class_names=names, **options)
    load_into(model.net, ckpt["model"], source=f"checkpoint {path}", strict=True)
    model.preprocess = Preprocess.from_dict(ckpt["preprocess"])
    model.provenance["weights"] = str(path)
    model.last_metrics = dict(ckpt.get("metrics") or {})
    return model
