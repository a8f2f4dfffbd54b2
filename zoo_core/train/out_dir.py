"""A run's ``out_dir``: one run at a time, and it never loses a file the zoo did not write.

:func:`claim` (first thing ``Trainer.fit`` does) refuses an ``out_dir`` that is a file, creates
it, and takes its lock (:class:`~zoo_core.run_files.DirLock`, rank 0 only). :func:`prepare` then
looks at every path a run writes (:data:`RUN_OUTPUTS`: ``last.pt``, ``best.pt``, ``config.yaml``,
``metrics.csv``, and everything in ``model/``, ``tensorboard/``, ``plots/``):

- a file there that the zoo did not write is an error naming it, with or without ``overwrite``:
  it is never replaced, deleted or mixed with the run's own (someone's ``config.yaml``, a package
  in ``model/``, another tool's events in ``tensorboard/``). "Written by the zoo" means listed in
  ``out_dir/.zoo-manifest.json`` (``model/``: a previous ``model.save()``, see
  :func:`zoo_core.saving.foreign_files`);
- a new run (no resume) in a folder holding a run's checkpoints or saved model is refused unless
  ``overwrite``; with it, and for the leftovers of a run that never wrote a checkpoint, exactly
  the listed files are deleted (and the folders they leave empty);
- a resumed run keeps everything and extends the manifest.

An ``out_dir`` written by a zoo older than the manifest has none. When its ``last.pt`` or
``best.pt`` is a zoo training checkpoint, the files a zoo run writes there are taken as the zoo's
(``last.pt``/``best.pt`` that are zoo checkpoints, ``config.yaml``, ``metrics.csv``,
``tensorboard/events.out.tfevents.*``, ``plots/*.png``, and a saved model in ``model/``) and
listed in a new manifest; anything else, or everything in a folder without such a checkpoint, is
not the zoo's.

Only rank 0 looks and writes; under DDP its refusal is raised on every rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ..errors import WeightsError, ZooError
from ..fileio import check_folder_target, ensure_folder
from ..run_files import (MANIFEST_NAME, DirLock, ForeignFileError, Manifest, files_under, name_files, record,
                         remove_empty_dirs)
from ..saving import foreign_files
from . import checkpoint as C
from . import distributed as D

CHECKPOINTS = ("last.pt", "best.pt")
RUN_FILES = (*CHECKPOINTS, "config.yaml", "metrics.csv")
MODEL_DIR = "model"
RUN_FOLDERS = ("tensorboard", "plots")
#: what a run writes in its out_dir (files, then folders): a later run could mistake any of it for its own
RUN_OUTPUTS = (*RUN_FILES, MODEL_DIR, *RUN_FOLDERS)

T = TypeVar("T")


def _on_rank0(env: "D.DistEnv", fn: Callable[[], T]) -> T | None:
    """``fn()`` on rank 0; under DDP its error (if any) is raised on every rank, so none waits forever."""
    result, problem = None, None
    if env.is_main:
        try:
            result = fn()
        except BaseException as exc:  # KeyboardInterrupt included: the other ranks must not wait for it
            problem = exc
    if env.distributed:
        message = D.broadcast_object(None if problem is None else str(problem), env)
        if message is not None and problem is None:
            raise ZooError(f"rank 0 refused the run: {message}")
    if problem is not None:
        raise problem
    return result


class OutDirClaim:
    """The lock on a run's out_dir (rank 0), and whether :func:`claim` created the folder."""

    def __init__(self, out_dir: Path, lock: DirLock | None, created: bool) -> None:
        self.out_dir, self.lock, self.created = out_dir, lock, created

    def release(self) -> None:
        """Drop the lock; remove the out_dir again if this run created it and wrote nothing there."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            if self.created:
                try:
                    self.out_dir.rmdir()
                except OSError:
                    pass


def claim(out_dir: Path, env: "D.DistEnv") -> OutDirClaim:
    """Create ``out_dir`` and lock it for this run (before anything else happens in it)."""
    def take() -> OutDirClaim:
        check_folder_target(out_dir, "out_dir")
        created = not out_dir.exists()
        ensure_folder(out_dir, what="out_dir")
        lock = DirLock(out_dir)
        try:
            lock.acquire()
        except BaseException:
            if created:
                out_dir.rmdir()
            raise
        return OutDirClaim(out_dir, lock, created)

    return _on_rank0(env, take) or OutDirClaim(out_dir, None, False)


def release(claimed: OutDirClaim | None) -> None:
    """:meth:`OutDirClaim.release`, for a claim that may not have happened."""
    if claimed is not None:
        claimed.release()


def prepare(out_dir: Path, env: "D.DistEnv", *, resuming: bool, overwrite: bool) -> list[str]:
    """Check the paths this run writes and clear a previous run's files (see the module doc).

    Returns what was removed (relative paths). Call it holding the lock (:func:`claim`).
    """
    return _on_rank0(env, lambda: _prepare(out_dir, resuming=resuming, overwrite=overwrite)) or []


def _is_zoo_checkpoint(path: Path) -> bool:
    try:
        C.load_checkpoint(path, mmap=True)
    except (WeightsError, OSError, RuntimeError, ValueError):
        return False
    return True


def outputs(out_dir: Path) -> list[Path]:
    """Every file at a path a run writes (a folder where a run writes a file counts, as in the way)."""
    found: list[Path] = []
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if name in RUN_FILES and path.is_dir() and not path.is_symlink():
            found.append(path)
        else:
            found += files_under(path)
    return found


def _legacy_owned(out_dir: Path, path: Path) -> bool:
    """Whether ``path`` is a run output of a zoo run written before manifests (see the module doc)."""
    parts = path.relative_to(out_dir).parts
    if path.is_dir() or path.is_symlink():
        return False
    if len(parts) == 1:
        return parts[0] not in CHECKPOINTS or _is_zoo_checkpoint(path)
    if parts[0] == "tensorboard":
        return path.name.startswith("events.out.tfevents.")
    return parts[0] == "plots" and len(parts) == 2 and path.suffix == ".png"


def _prepare(out_dir: Path, *, resuming: bool, overwrite: bool) -> list[str]:
    C.remove_stale_temps(out_dir, also=(*RUN_FILES, MANIFEST_NAME))
    manifest = Manifest.read(out_dir)
    found = outputs(out_dir)
    legacy = not manifest.found and any(_is_zoo_checkpoint(out_dir / n) for n in CHECKPOINTS
                                        if (out_dir / n).is_file())
    model_dir = out_dir / MODEL_DIR
    not_saved = set(foreign_files(model_dir))  # model/ holds a model.save() or nothing

    def owned(path: Path) -> bool:
        if path == model_dir or model_dir in path.parents:
            return path not in not_saved
        return manifest.owns(path) or (legacy and _legacy_owned(out_dir, path))

    theirs = [p for p in found if not owned(p)]
    if theirs:
        why = ("it has no manifest and no zoo checkpoint, so none of them can be the zoo's" if not manifest.found
               and not legacy else f"they are not listed in {manifest.path.name} as files the zoo wrote")
        raise ForeignFileError(
            f"out_dir {out_dir} holds files the zoo did not write where this run writes its own: "
            f"{name_files(theirs, out_dir)} ({why}). The zoo never replaces or deletes them, overwrite=True "
            "included: move them away, or pick another out_dir (--out-dir)")
    if legacy:  # adopt the old run's files, so they stay recognisably the zoo's once a manifest exists
        for p in found:
            if model_dir not in p.parents:
                manifest.add(p)
        manifest.save()
    if resuming:
        return []
    held = [n for n in CHECKPOINTS if (out_dir / n).exists()] or \
        ([f"{MODEL_DIR}/"] if any(model_dir in p.parents for p in found) else [])
    if held and not overwrite:
        raise ZooError(f"{out_dir} already holds a run ({', '.join(held)}); a new run would replace it. "
                       "Continue it with resume='last' (zoo train --resume last), pick another out_dir "
                       "(--out-dir), or replace it with overwrite=True (--overwrite)")
    return clear(out_dir, manifest, found)


def clear(out_dir: Path, manifest: Manifest, files: Iterable[Path]) -> list[str]:
    """Delete ``files`` (checked to be the zoo's), unlist them, and remove the run folders left empty.

    Left in place they would pass for the new run's: a NaN reset to the old weights, the old best.pt
    reported when this run saves none, two runs' curves in one TensorBoard.
    """
    removed = []
    for path in files:
        path.unlink(missing_ok=True)
        manifest.drop(path)
        removed.append(path.relative_to(out_dir).as_posix())
    for name in (MODEL_DIR, *RUN_FOLDERS):
        remove_empty_dirs(out_dir / name)
    manifest.save()
    return removed


def record_outputs(out_dir: Path, paths: Iterable[Any]) -> None:
    """List files this run wrote through someone else's code (the task's plots) in the manifest."""
    inside = [Path(p) for p in paths if Path(p).is_file() and Path(out_dir).absolute() in Path(p).absolute().parents]
    if inside:
        record(out_dir, *inside)
