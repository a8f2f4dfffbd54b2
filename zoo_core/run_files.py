"""Which files in a folder the zoo wrote (the manifest), and one run at a time per folder (the lock).

The guarantee these two give: **a folder the zoo writes into never loses a file the zoo did not
write**, and two runs never share an ``out_dir`` silently.

- :class:`Manifest`: ``<folder>/.zoo-manifest.json`` lists, by path relative to the folder, every
  file the zoo wrote there (with its size, and its sha256 when the writer had the bytes at hand).
  Writers record a file *before* renaming it into place, so a kill never leaves a file of the
  zoo's unlisted; the entry it replaces is kept (``was``), so the previous file, still there after
  a kill between the two steps, stays the zoo's too. Replacing or removing is allowed for listed
  files only; anything else in the way is an error naming it. A listed file whose size or hash no
  longer matches was edited by hand (:meth:`Manifest.edited`): where its sha256 is recorded, it is
  no longer the zoo's.
- :class:`DirLock`: ``<folder>/.zoo-lock`` holds the pid, host, start time and command line of the
  run that claimed the folder, under an exclusive ``flock`` held for the whole run. A second run
  is refused naming the first; a lock left by a process that died is detected (the kernel drops a
  dead process's ``flock``) and taken over with a warning. A lock written on another host is never
  taken over silently: whether that run still lives cannot be told from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .errors import ZooError, warn
from .fileio import host_name, pid_alive, write_error

MANIFEST_NAME = ".zoo-manifest.json"
MANIFEST_FORMAT = "zoo.manifest"
LOCK_NAME = ".zoo-lock"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ForeignFileError(ZooError, FileExistsError):
    """Files the zoo did not write are where it would write (or delete): it touches none of them."""


@dataclass
class Manifest:
    """The files the zoo wrote in ``folder`` (``files``: relative POSIX path -> {"size", "sha256"?}).

    ``found``: whether ``folder`` had a manifest (a folder written by an older zoo has none).
    """

    folder: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    found: bool = False

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        """The manifest of ``folder`` (empty, ``found=False``, when it has none); a damaged one is an error."""
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            return cls(folder)
        try:
            data = json.loads(path.read_text())
            files = data["files"] if data.get("format") == MANIFEST_FORMAT else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            files = None
        if not isinstance(files, dict):
            raise ZooError(f"{path} is damaged (not a zoo manifest): the zoo cannot tell which files in {folder} "
                           "it wrote, so it replaces none. Delete that file (the zoo then treats every file there "
                           "as not its own) or pick another folder")
        return cls(folder, {str(k): dict(v) for k, v in files.items() if isinstance(v, dict)}, True)

    def key(self, path: str | Path) -> str:
        """``path`` (in the folder, or relative to it) as stored: relative, POSIX (``plots/pr_curve.png``);
        a ValueError for a path outside the folder."""
        p = Path(path)
        for inner, outer in ((p, self.folder), (p.absolute(), self.folder.absolute())):
            try:
                return inner.relative_to(outer).as_posix()
            except ValueError:
                continue
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"{p} is not in {self.folder}")
        return p.as_posix()

    def owns(self, path: str | Path) -> bool:
        """Whether the zoo wrote ``path`` (a file in the folder, or a path relative to it)."""
        return self.key(path) in self.files

    def hashed(self, path: str | Path) -> bool:
        """Whether the zoo recorded ``path``'s sha256 (a file it wrote from bytes it had: config, logs, saves)."""
        return bool(self.files.get(self.key(path), {}).get("sha256"))

    def _matching(self, path: str | Path) -> dict[str, Any] | None:
        """The entry (the last one, or the one before: ``was``) that the file at ``path`` matches; None if
        it matches neither or is missing."""
        entry = self.files.get(self.key(path))
        full = self.folder / self.key(path)
        if entry is None or not full.is_file():
            return None
        size, digest = full.stat().st_size, None
        for candidate in (entry, entry.get("was")):
            if not isinstance(candidate, dict) or candidate.get("size") != size:
                continue
            if candidate.get("sha256"):
                digest = digest or sha256_file(full)
                if digest != candidate["sha256"]:
                    continue
            return candidate
        return None

    def edited(self, path: str | Path) -> bool:
        """Whether a listed file differs from what the zoo wrote there last (or the time before, which a
        kill between recording and renaming leaves): by size, and by sha256 where recorded."""
        full = self.folder / self.key(path)
        return self.owns(path) and full.is_file() and self._matching(path) is None

    def add(self, path: str | Path, *, size: int | None = None, sha256: str | None = None,
            incoming: bool = False) -> None:
        """List ``path`` as the zoo's: the file there (default), or with ``incoming`` the one about to be
        renamed there (``size`` and ``sha256``: its bytes'), keeping the entry of the file still there
        as ``was``."""
        key = self.key(path)
        entry: dict[str, Any] = {"size": size if size is not None else (self.folder / key).stat().st_size}
        if sha256 is not None:
            entry["sha256"] = sha256
        previous = self._matching(path) if incoming else None
        if previous is not None:
            entry["was"] = {k: v for k, v in previous.items() if k != "was"}
        self.files[key] = entry

    def drop(self, path: str | Path) -> None:
        self.files.pop(self.key(path), None)

    def to_bytes(self) -> bytes:
        """The manifest file's content."""
        body = {"format": MANIFEST_FORMAT, "version": 1,
                "about": "files the zoo wrote in this folder; it replaces or deletes only these",
                "files": dict(sorted(self.files.items()))}
        return (json.dumps(body, indent=1) + "\n").encode()

    def save(self) -> None:
        """Write the manifest atomically (removed when it lists nothing)."""
        from .fileio import atomic_write_bytes

        if not self.files:
            self.path.unlink(missing_ok=True)
            self.found = False
            return
        atomic_write_bytes(self.path, self.to_bytes(), what="manifest")
        self.found = True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(folder: str | Path, *paths: str | Path) -> None:
    """Add the files at ``paths`` to ``folder``'s manifest as files the zoo wrote (their current sizes)."""
    manifest = Manifest.read(folder)
    for p in paths:
        manifest.add(p)
    manifest.save()


def record_incoming(folder: str | Path, path: str | Path, *, size: int, sha256: str | None = None) -> None:
    """List ``path`` in ``folder``'s manifest before the file of ``size`` bytes (``sha256``) is renamed there."""
    manifest = Manifest.read(folder)
    manifest.add(path, size=size, sha256=sha256, incoming=True)
    manifest.save()


def name_files(paths: list[Path], root: Path, limit: int = 8) -> str:
    """``a, b/c (and 3 more)``: paths relative to ``root`` for an error message."""
    names = []
    for p in paths[:limit]:
        try:
            names.append(Path(p).relative_to(root).as_posix() + ("/" if Path(p).is_dir() else ""))
        except ValueError:
            names.append(str(p))
    more = f" (and {len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(names) + more


def name_by_reason(found: dict[Path, str], root: Path) -> str:
    """``a, b (why); c (another why)``: files that are not the zoo's, grouped by why, for an error message."""
    groups: dict[str, list[Path]] = {}
    for path, why in sorted(found.items()):
        groups.setdefault(why, []).append(path)
    return "; ".join(f"{name_files(paths, root)} ({why})" for why, paths in groups.items())


def files_under(path: Path) -> list[Path]:
    """Every file (and symlink, and other non-folder) at or under ``path``, sorted; [] if absent."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_symlink() or not p.is_dir())


def remove_empty_dirs(path: Path) -> None:
    """Remove ``path`` and its sub-folders when they hold nothing (deepest first); keeps anything non-empty."""
    if not path.is_dir() or path.is_symlink():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir() and not p.is_symlink()),
                      key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


# ---- the lock --------------------------------------------------------------------------------------
def _read_info(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 1 << 16, 0) if hasattr(os, "pread") else b""
        info = json.loads(raw.decode() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {"pid": "?", "host": "?", "since": "?", "command": "(unreadable lock file)"}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('since', '?')} "
            f"({info.get('command') or 'command not recorded'})")


class DirLock:
    """An exclusive claim on ``folder`` for one run (``with DirLock(out_dir): ...`` or acquire/release).

    ``what`` names the folder in messages (``"out_dir"``).
    """

    def __init__(self, folder: str | Path, *, what: str = "out_dir") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _busy(self, info: dict[str, Any], extra: str = "") -> ZooError:
        return ZooError(f"{self.what} {self.folder} is in use by another run: {_describe(info)}. Two runs in one "
                        f"{self.what} would mix their checkpoints and logs: wait for that run to end, or pick "
                        f"another {self.what} (--out-dir).{extra}")

    def acquire(self) -> "DirLock":
        """Take the lock, or raise a :class:`ZooError` naming the run that holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: the lock file's content is all there is
            fcntl = None  # type: ignore[assignment]
        host = host_name()
        for _ in range(20):
            fd = None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
                if self._take(fd, fcntl, host):
                    self.fd = fd
                    return self
            except BaseException as exc:  # closed on any failure: this process must not keep the lock
                if fd is not None:
                    os.close(fd)
                error = write_error(exc, self.path, what="lock file", kept=False,
                                    elsewhere=f"pick another {self.what}")
                if error is not None:
                    raise error from exc
                raise
            os.close(fd)
        raise ZooError(f"could not lock {self.what} {self.folder}: {self.path} keeps changing; another run is "
                       "starting there")  # pragma: no cover

    def _take(self, fd: int, fcntl: Any, host: str) -> bool:
        """Lock the open lock file ``fd`` and write this run's info in it: True; False when the file was
        replaced meanwhile (try again). A busy lock raises; the caller closes ``fd`` unless True."""
        locked: bool | None = None  # None: this file system has no flock
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                locked = False
            except OSError:
                locked = None
        if locked is False:
            info = _read_info(fd)
            pid = info.get("pid")
            gone = info.get("host") == host and isinstance(pid, int) and not pid_alive(pid)
            raise self._busy(info, " That process has ended but its lock is still held, most likely by its "
                                   "DataLoader worker processes: wait until they exit" if gone else "")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and removed) it between our open and our flock: again
            return False
        previous = _read_info(fd)
        if previous:
            pid = previous.get("pid")
            if previous.get("host") != host:
                raise self._busy(previous, f" The lock was taken on another host, so whether that run still "
                                           f"lives cannot be told from here; if it has ended, delete {self.path}")
            alive = isinstance(pid, int) and pid != os.getpid() and pid_alive(pid)
            if locked is None and alive:
                raise self._busy(previous, f" If that process is not a zoo run, delete {self.path}")
            state = "holds no lock on it (that pid now belongs to another process)" if alive else \
                "is no longer running"
            warn(f"{self.what} {self.folder}: taking over the lock left by {_describe(previous)}, which {state}")
        info = {"pid": os.getpid(), "host": host,
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:500]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:  # a half-written lock file must not outlive the failed claim (we hold it)
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    self.path.unlink()
            except OSError:
                pass
            raise
        return True

    def release(self) -> None:
        """Remove the lock file (if still ours) and drop the lock; safe to call twice."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)


def check_replaceable(folder: Path, names: list[Path], *, overwrite: bool, what: str, elsewhere: str) -> Manifest:
    """``folder``'s manifest, after refusing (:class:`ForeignFileError`) to replace any file among ``names``
    (relative paths) that the zoo did not write there or that changed since; ``overwrite`` skips the check."""
    manifest = Manifest.read(folder)
    if overwrite:
        return manifest
    theirs = {folder / r: ("changed since the zoo wrote it" if manifest.edited(r) else "not written by the zoo")
              for r in names if (folder / r).exists() and (not manifest.owns(r) or manifest.edited(r))}
    if theirs:
        raise ForeignFileError(f"{folder} already holds {name_by_reason(theirs, folder)}, where this {what} would "
                               f"write: the zoo never replaces a file it did not write. Move it away, {elsewhere}, "
                               "or pass overwrite=True (--overwrite) to replace it")
    return manifest


@contextlib.contextmanager
def publishing(folder: str | Path, *, overwrite: bool = False, what: str = "output",
               elsewhere: str = "write to another folder") -> Iterator[Path]:
    """A temp folder for the body to write into; its files then move into ``folder`` and are listed in its
    manifest as the zoo's (an export, an evaluation's plots).

    A file already in ``folder`` under one of those names is replaced only when the zoo wrote it and it
    is unchanged since (or with ``overwrite``, the caller's explicit consent); otherwise nothing moves and
    a :class:`ForeignFileError` names it. Each file moves atomically (not the set); on any error the
    temp folder is deleted and ``folder`` is left as it was.
    """
    from .fileio import staged

    folder = Path(folder)
    with staged(folder, merge=True, what=what, elsewhere=elsewhere) as tmp:
        yield tmp
        produced = sorted(p.relative_to(tmp) for p in files_under(tmp) if p.is_file())
        manifest = check_replaceable(folder, produced, overwrite=overwrite, what=what, elsewhere=elsewhere)
        for r in produced:
            manifest.add(r, size=(tmp / r).stat().st_size, sha256=sha256_file(tmp / r), incoming=True)
        manifest.save()
