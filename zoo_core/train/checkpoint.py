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
checkpoint whole (:func:`zoo_core.fileio.atomic_write`). Temp files left by a killed process of this
host are removed by :func:`remove_stale_temps`.
Every checkpoint is listed in its folder's manifest, so a later run knows it is the zoo's to replace
(:mod:`zoo_core.train.out_dir`).
Older formats are upgraded by the functions in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .._version import __version__
from ..errors import WeightsError
from ..fileio import atomic_write, remove_stale_temps  # noqa: F401  (re-exported for C.remove_stale_temps)

if TYPE_CHECKING:
    from ..model import ZooModel

FORMAT = "zoo.checkpoint"
FORMAT_VERSION = 1

#: ``MIGRATIONS[v]`` upgrades a version-``v`` checkpoint dict to version ``v + 1``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _serialize(obj: Any, f: Any) -> None:
    """The writer (a seam for tests that simulate a full disk)."""
    torch.save(obj, f)


def atomic_save(obj: dict[str, Any], path: str | Path, *, record: bool = True) -> Path:
    """Write ``obj`` to ``path`` so that ``path`` is always either the old file or the complete new one.

    ``record``: list ``path`` in its folder's manifest (:mod:`zoo_core.run_files`) as the zoo's, before
    the rename. A full disk (torch raises RuntimeError, not OSError) or any failed write is a
    :class:`~zoo_core.fileio.WriteError` naming the file; the previous one stays whole.
    """
    path = Path(path)
    return atomic_write(path, lambda f: _serialize(obj, f), what="checkpoint", elsewhere="choose another out_dir",
                        record_in=path.parent if record else None)


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
    from ..weights import refuse_old_torch, sniff_format, unsafe_pickle_error

    refuse_old_torch(path)  # torch < 2.6's weights_only has known bypasses (the zoo requires 2.6; defence in depth)
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
    """Rebuild the model a checkpoint was trained from and load its weights (the EMA ones with EMA).

    ``model_config`` is data: its names resolve through the registry and its builder options pass
    only as far as the plugin declares them, with no path in them (:mod:`zoo_core.saved_options`).
    """
    from ..api import build_model
    from ..model import Preprocess
    from ..registry import get_registry
    from ..saved_options import check_composed_options, check_saved_options
    from ..weights import load_into

    ckpt = load_checkpoint(path)
    config, task, names = ckpt["model_config"], ckpt["task"], ckpt["class_names"]
    source = f"checkpoint {path} (model_config)"
    reg = get_registry()
    if "backbone" in config:
        from ..compose import build

        bspec, hspec = reg.resolve("backbone", config["backbone"]), reg.resolve("head", config["head"], task=task)
        options = check_composed_options(bspec, hspec, config.get("options"), source=source, fix=(
            f"model = zoo.build({task!r}, backbone={bspec.qualified_name!r}, head={hspec.qualified_name!r}, ...), "
            f"then zoo_core.api.load_weights(model, Path({str(path)!r}))"))
        model = build(task, backbone=config["backbone"], head=config["head"], class_names=names, **options)
    else:
        spec = reg.resolve("model", config["model"], task=task)
        options = check_saved_options(spec, config.get("options"), source=source, fix=(
            f"zoo.load({spec.qualified_name!r}, task={task!r}, num_classes={len(names)}, <option>=..., "
            f"weights={str(path)!r})"))
        model = build_model(spec, reg.canonical_task(task), num_classes=None, class_names=names, tag=None,
                            weights_path=None, options=options)
    from ..compressed_io import restore_structure

    restore_structure(model, config, source=source)  # a pruned model: cut to the architecture it records
    load_into(model.net, ckpt["model"], source=f"checkpoint {path}", strict=True)
    model.preprocess = Preprocess.from_dict(ckpt["preprocess"])
    model.provenance["weights"] = str(path)
    model.last_metrics = dict(ckpt.get("metrics") or {})
    return model
