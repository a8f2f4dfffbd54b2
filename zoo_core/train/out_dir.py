"""A run's ``out_dir``: one run at a time, and it never loses a file the zoo did not write.

:func:`claim` (first thing ``Trainer.fit`` does) refuses an ``out_dir`` that is a file, creates
it, and takes its lock (:class:`~zoo_core.run_files.DirLock`, rank 0 only). :func:`prepare` then
looks at every path a run writes (:data:`RUN_OUTPUTS`: ``last.pt``, ``best.pt``, ``config.yaml``,
``metrics.csv``, and everything in ``model/``, ``tensorboard/``, ``plots/``):

- a file there that the zoo did not write is an error naming it, with or without ``overwrite``:
  it is never replaced, deleted or mixed with the run's own (someone's ``config.yaml``, a package
  in ``model/``, another tool's events in ``tensorboard/``). "Written by the zoo" means listed in
  ``out_dir/.zoo-manifest.json`` and, where its sha256 is recorded (``config.yaml``,
  ``metrics.csv``), unchanged since: a file edited after the zoo wrote it is the user's now
  (``model/``: a previous ``model.save()``, unchanged, see :func:`zoo_core.saving.foreign_files`).
  Hidden entries (``.DS_Store``, ``.ipynb_checkpoints/``) in ``tensorboard/`` and ``plots/`` that the
  zoo did not write are left alone and block nothing; ``model/`` is replaced whole, so there they count;
- a new run in a folder holding a run's checkpoints or saved model is refused unless
  ``overwrite``; with it, and for the leftovers of a run that never wrote a checkpoint, exactly
  the listed files are deleted (and the folders they leave empty). A run resumed from a checkpoint
  that is not this out_dir's own ``last.pt``/``best.pt`` is a new run here;
- a run resumed from its own ``last.pt``/``best.pt`` keeps everything and extends the manifest.

An ``out_dir`` written by a zoo older than the manifest has none. When its ``last.pt`` or
``best.pt`` is a zoo training checkpoint, the files a zoo run writes there are taken as the zoo's
(``last.pt``/``best.pt`` that are zoo checkpoints, ``config.yaml``, ``metrics.csv``,
``tensorboard/events.out.tfevents.*``, ``plots/*.png``, and a saved model in ``model/``) and
listed in a new manifest; anything else, or everything in a folder without such a checkpoint, is
not the zoo's.

Only rank 0 looks and writes; under DDP its refusal is raised on every rank.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import WeightsError, ZooError
from ..fileio import make_folder, remove_stale_temps
from ..run_files import (DirLock, ForeignFileError, Manifest, files_under, name_by_reason, record,
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
                except OSError:  # not empty: the run wrote there, or another one has started there since
                    pass


def claim(out_dir: Path, env: "D.DistEnv") -> OutDirClaim:
    """Create ``out_dir`` and lock it for this run (before anything else happens in it)."""
    def take() -> OutDirClaim:
        created = make_folder(out_dir, what="out_dir")  # True only when this process's own mkdir made it
        lock = DirLock(out_dir)
        try:
            lock.acquire()
        except BaseException:
            if created:
                try:
                    out_dir.rmdir()
                except OSError:  # the run that holds the lock has written there: its folder now
                    pass
            raise
        return OutDirClaim(out_dir, lock, created)

    return _on_rank0(env, take) or OutDirClaim(out_dir, None, False)


def release(claimed: OutDirClaim | None) -> None:
    """:meth:`OutDirClaim.release`, for a claim that may not have happened."""
    if claimed is not None:
        claimed.release()


def prepare(out_dir: Path, env: "D.DistEnv", *, resume_from: Path | None, overwrite: bool) -> list[str]:
    """Check the paths this run writes and clear a previous run's files (see the module doc).

    ``resume_from``: the checkpoint the run resumes from (None: a new run); only this out_dir's own
    ``last.pt``/``best.pt`` continues the run here. Returns what was removed (relative paths). Call it
    holding the lock (:func:`claim`).
    """
    return _on_rank0(env, lambda: _prepare(out_dir, resume_from=resume_from, overwrite=overwrite)) or []


def resumes_this_run(out_dir: Path, checkpoint: Path | None) -> bool:
    """Whether ``checkpoint`` is ``out_dir``'s own ``last.pt`` or ``best.pt`` (a link to it counts)."""
    if checkpoint is None:
        return False
    for name in CHECKPOINTS:
        own = Path(out_dir) / name
        try:
            if os.path.samefile(checkpoint, own):
                return True
        except OSError:
            if Path(checkpoint).absolute() == own.absolute():
                return True
    return False


def _is_zoo_checkpoint(path: Path) -> bool:
    try:
        C.load_checkpoint(path, mmap=True)
    except (WeightsError, OSError, RuntimeError, ValueError):
        return False
    return True


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def outputs(out_dir: Path, manifest: Manifest | None = None) -> list[Path]:
    """Every file at a path a run writes (a folder where a run writes a file counts, as in the way),
    except hidden entries in ``tensorboard/`` and ``plots/`` that ``manifest`` does not list."""
    found: list[Path] = []
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if name in RUN_FILES and path.is_dir() and not path.is_symlink():
            found.append(path)
        elif name in RUN_FOLDERS:
            found += [p for p in files_under(path) if not _hidden(p, path) or (manifest and manifest.owns(p))]
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


def _prepare(out_dir: Path, *, resume_from: Path | None, overwrite: bool) -> list[str]:
    remove_stale_temps(out_dir)
    manifest = Manifest.read(out_dir)
    found = outputs(out_dir, manifest)
    legacy = not manifest.found and any(_is_zoo_checkpoint(out_dir / n) for n in CHECKPOINTS
                                        if (out_dir / n).is_file())
    model_dir = out_dir / MODEL_DIR
    theirs = foreign_files(model_dir)  # model/ holds a model.save() (unchanged) or nothing
    unlisted = ("not listed in .zoo-manifest.json as written by the zoo" if manifest.found else "this out_dir has "
                "no manifest and no zoo checkpoint, so none of its files can be the zoo's" if not legacy else
                "not a file a zoo run writes")
    for p in found:
        if p == model_dir or model_dir in p.parents:
            continue
        if manifest.owns(p):
            if manifest.hashed(p) and manifest.edited(p):
                theirs[p] = ("changed after the zoo wrote it: no longer what .zoo-manifest.json records, so it is "
                             "yours now")
        elif not (legacy and _legacy_owned(out_dir, p)):
            theirs[p] = unlisted
    if theirs:
        raise ForeignFileError(
            f"out_dir {out_dir} holds files that are not the zoo's at the paths a run writes ({', '.join(RUN_FILES)}, "
            f"{', '.join(n + '/' for n in (MODEL_DIR, *RUN_FOLDERS))}): {name_by_reason(theirs, out_dir)}. The zoo "
            "never replaces, deletes or mixes its run with files it did not write, overwrite=True included: move "
            "them away, or pick another out_dir (--out-dir)")
    if legacy:  # adopt the old run's files, so they stay recognisably the zoo's once a manifest exists
        for p in found:
            if model_dir not in p.parents:
                manifest.add(p)
        manifest.save()
    if resumes_this_run(out_dir, resume_from):
        return []
    held = [n for n in CHECKPOINTS if (out_dir / n).exists()] or \
        ([f"{MODEL_DIR}/"] if any(model_dir in p.parents for p in found) else [])
    if held and not overwrite:
        elsewhere = (f" {resume_from} is not this out_dir's own checkpoint, so a run continued from it is a new "
                     "run here." if resume_from is not None else "")
        raise ZooError(f"{out_dir} already holds a run ({', '.join(held)}); a new run would replace it.{elsewhere} "
                       "Continue that run with resume='last' (zoo train --resume last), pick another out_dir "
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


@contextmanager
def recording(out_dir: Path, folder: str) -> Iterator[None]:
    """List in the manifest, as this run's, the files that appear (or that the zoo wrote and that
    change) in ``out_dir/folder`` during the block (the task's plots), even when the block raises:
    a plot written before a Ctrl-C stays recognisably the zoo's. The run holds the lock, so no one
    else writes there."""
    where = Path(out_dir) / folder

    def stamps() -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in files_under(where) if p.is_file()}

    before = stamps()
    try:
        yield
    finally:
        owned = Manifest.read(out_dir)
        written = [p for p, stamp in stamps().items()
                   if p not in before or (stamp != before[p] and owned.owns(p))]
        if written:
            record(out_dir, *written)
