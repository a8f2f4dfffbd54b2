"""Writing files the way every zoo writer does: atomically, with the user's permissions, errors named.

- :func:`create_temp` makes the temp file a write goes to before it is renamed into place. Unlike
  ``tempfile.mkstemp`` (always mode 0600) it creates the file with mode ``0666`` and lets the
  kernel apply the umask, so a checkpoint, a saved model or a ``zoo pull`` mirror is readable by
  whoever the user's umask allows (0644 under the usual 022), exactly like a file ``open`` writes.
- :func:`atomic_write` (and :func:`atomic_write_bytes`): temp file, flush, fsync, (record in the
  folder's manifest,) rename; the old file survives any failure.
- :func:`staged`: a folder written whole in a temp folder, then swapped in (or its files renamed in).
- Temp files and staging folders are named ``.<name>.zoo-<host>-<pid>-<random>.tmp``
  (:func:`temp_prefix`): :func:`remove_stale_temps` deletes only those of this host whose process
  has died, so on a shared filesystem another machine's write in progress is never touched.
- :func:`write_error` turns a failed write (an ``OSError``, or torch's ``RuntimeError`` from
  ``inline_container.cc`` when the disk fills during ``torch.save``) into a :class:`WriteError`
  naming the file, what was kept, the free space left and what to do.
- :func:`check_folder_target` / :func:`check_file_target`: a path that cannot be written because
  it, or one of its parents, is a file (or a folder where a file goes) is refused before any work.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import ZooError


class WriteError(ZooError, OSError):
    """A file the zoo could not write (full disk, read-only folder...): names the file and what was kept.

    It is an ``OSError`` too (``errno`` is the cause's), so ``except OSError`` still catches it.
    """

    def __str__(self) -> str:  # the message, without OSError's "[Errno 28]" prefix
        return str(self.strerror if self.strerror is not None else super().__str__())


class PathError(ZooError, ValueError):
    """A path the zoo was asked to write that cannot be: a file where a folder goes, or the reverse."""


class ParentNotWritable(WriteError):
    """:func:`staged` could not create its temp folder beside the target: the parent folder is not writable."""


#: torch's messages when ``torch.save`` cannot write (it raises RuntimeError, not OSError, on a full disk)
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter failed|file write failed|inline_container\.cc|"
                                 r"unexpected pos \d+")


@functools.lru_cache(maxsize=None)
def host_name() -> str:
    """This machine's name (what a lock file and a temp file name record)."""
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows: no os.uname
        import socket

        return socket.gethostname()


def _host_tag() -> str:
    """:func:`host_name` as it appears in file names: ``[A-Za-z0-9_.-]`` only, at most 32 characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host_name())[:32] or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a pid we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def temp_prefix(name: str) -> str:
    """``.<name>.zoo-<host>-<pid>-``: how a temp file or staging folder for ``name`` begins (see the module doc)."""
    return f".{name}.zoo-{_host_tag()}-{os.getpid()}-"


def create_temp(folder: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new empty file in ``folder`` created exclusively: ``(fd, path)``, mode ``0666 & ~umask``."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = Path(folder) / f"{prefix}{os.urandom(6).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary file name in {folder}")  # pragma: no cover


def create_temp_dir(folder: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """A new empty folder in ``folder`` created exclusively, mode ``0777 & ~umask`` (mkdtemp's is 0700)."""
    for _ in range(100):
        path = Path(folder) / f"{prefix}{os.urandom(6).hex()}{suffix}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary folder name in {folder}")  # pragma: no cover


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files and staging folders (:func:`temp_prefix`) a killed write of this host left in
    ``folder``; return them.

    Only names carrying this host and the pid of a process that has ended are touched: a write in
    progress (this process's, another live one's, another host's on a shared filesystem) is never. A
    previous folder renamed aside by a swap that died before the new one came in (``....tmp.old``)
    is renamed back instead, when its place is still empty.
    """
    folder = Path(folder)
    pattern = re.compile(rf"\.(?P<name>.+)\.zoo-{re.escape(_host_tag())}-(?P<pid>\d+)-[0-9a-f]{{12}}\.tmp"
                         r"(?P<old>\.old)?")
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    removed = []
    for path in entries:
        found = pattern.fullmatch(path.name)
        if found is None or pid_alive(int(found["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            target = folder / found["name"]
            if found["old"] and not (target.exists() or target.is_symlink()):
                os.rename(path, target)
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def free_space(path: Path) -> str:
    """``"1.2 GiB free"`` on the disk holding ``path`` (its nearest existing parent); "" if unknown."""
    for p in (Path(path), *Path(path).parents):
        if p.is_dir():
            try:
                free = shutil.disk_usage(p).free
            except OSError:
                return ""
            for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
                if free >= size:
                    return f"{free / size:.1f} {unit} free"
            return f"{free} bytes free"
    return ""


def write_error(exc: BaseException, path: Path, *, what: str = "file", kept: bool = True,
                elsewhere: str = "write to another folder") -> WriteError | None:
    """The :class:`WriteError` for a write of ``path`` that failed with ``exc``; None if ``exc`` is no write failure.

    ``kept``: whether the previous ``path`` (if any) is still there, whole; ``elsewhere``: the other
    way out (after freeing space, or making the folder writable).
    """
    if isinstance(exc, ZooError):
        return None
    if isinstance(exc, OSError):
        code, cause = exc.errno, exc.strerror or str(exc)
        full = code in (errno.ENOSPC, errno.EDQUOT)
    elif isinstance(exc, RuntimeError) and _TORCH_WRITE_FAILED.search(str(exc)):  # no errno: a full disk, mostly
        said = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", str(exc).strip()).splitlines()[0][:200]
        code, cause, full = errno.EIO, f"torch: {said}", True
    else:
        return None
    space = free_space(Path(path).parent)
    detail = f"{cause}; {space} on its disk" if space and full else cause
    previous = f"the previous {what} was kept" if Path(path).exists() and kept else f"no {what} was written"
    fix = "Free disk space" if full else f"Check that {Path(path).parent} is writable"
    return WriteError(code, f"could not write {what} {path} ({detail}); {previous}. {fix} or {elsewhere}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, what: str = "file",
                 elsewhere: str = "write to another folder", record_in: Path | None = None,
                 sha256: str | None = None) -> Path:
    """Write ``path`` with ``write(file)`` via a temp file, fsync and rename: ``path`` is always the old
    file or the complete new one. A failed write is a :class:`WriteError` naming ``path``.

    ``record_in``: a folder whose manifest (:mod:`zoo_core.run_files`) lists ``path`` as the zoo's,
    recorded (size, and ``sha256`` when given) before the rename, so a kill in between never leaves
    a file of the zoo's unlisted; the entry it replaces is kept as the one before.
    """
    path = Path(path)
    ensure_folder(path.parent, what=f"the folder for {path.name}")
    tmp: Path | None = None
    try:
        fd, tmp = create_temp(path.parent, temp_prefix(path.name))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if record_in is not None:
            from .run_files import record_incoming

            record_incoming(record_in, path, size=tmp.stat().st_size, sha256=sha256)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        translated = write_error(exc, path, what=what, elsewhere=elsewhere)
        if translated is not None:
            raise translated from exc
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes, *, what: str = "file", elsewhere: str = "write to another folder",
                       record_in: Path | None = None) -> Path:
    """:func:`atomic_write` of ``data`` (recorded with its sha256 when ``record_in`` is given)."""
    sha256 = None
    if record_in is not None:
        import hashlib

        sha256 = hashlib.sha256(data).hexdigest()
    return atomic_write(path, lambda f: f.write(data), what=what, elsewhere=elsewhere, record_in=record_in,
                        sha256=sha256)


def blocking_file(path: Path) -> Path | None:
    """The file (or other non-folder) at ``path`` or its nearest existing parent, which keeps ``path``
    from being a folder; None when ``path`` is a folder or can be created as one."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def check_folder_target(path: Path, what: str) -> None:
    """Refuse ``path`` as a folder to write in when it, or a parent, is a file (before any work)."""
    path = Path(path)
    blocker = blocking_file(path)
    if blocker == path:
        raise PathError(f"{what} {path} is a file, not a folder: pick a folder (it is created if missing), "
                        "or move the file away")
    if blocker is not None:
        raise PathError(f"{what} {path} cannot be created: {blocker} is a file, not a folder. Pick another "
                        "path, or move the file away")


def check_file_target(path: Path, what: str) -> None:
    """Refuse ``path`` as a file to write when it is a folder or one of its parents is a file."""
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{what} {path} is a folder; {what} is the file to write: name one inside it, e.g. "
                        f"{path / ('model' + (path.suffix or '.onnx'))}, or another path")
    blocker = blocking_file(path.parent)
    if blocker is not None:
        raise PathError(f"{what} {path} cannot be created: {blocker} is a file, not a folder. Pick another "
                        "path, or move the file away")


def ensure_folder(path: Path, *, what: str = "folder") -> Path:
    """``mkdir -p path``; a file in the way is a :class:`PathError` naming it, a full disk a WriteError."""
    path = Path(path)
    if path.is_dir():
        return path
    check_folder_target(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path, what=what, kept=False) from exc  # type: ignore[misc]
    return path


def make_folder(path: Path, *, what: str = "folder") -> bool:
    """:func:`ensure_folder`, saying whether this call created ``path`` itself: False when it existed, or
    when another process made it between our look and our ``mkdir`` (only the creator may remove it)."""
    path = Path(path)
    if path.is_dir():
        return False
    check_folder_target(path, what)
    ensure_folder(path.parent, what=f"the folder for {what} {path.name}")
    try:
        os.mkdir(path, 0o777)
        return True
    except FileExistsError:
        check_folder_target(path, what)  # another process's folder (fine), or a file that appeared there
        return False
    except OSError as exc:
        raise write_error(exc, path, what=what, kept=False) from exc  # type: ignore[misc]


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows."""
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


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the system or the filesystem cannot (other platforms, old kernels, some network
    filesystems): the caller falls back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here, not at the top: ``zoo list`` imports this module and never swaps folders

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_folder(staged: Path, path: Path) -> None:
    """Move the complete folder ``staged`` to ``path`` (a sibling): any crash leaves the old or the new whole.

    A new ``path`` is one rename. An existing one is swapped with the new one atomically where Linux can
    (:func:`exchange_paths`), else renamed aside (``<staged>.old``), the new one renamed in, the old one
    deleted; a failure of the second rename puts the old one back. Check before calling
    that ``path`` holds nothing that is not yours: all of it is deleted.
    """
    staged, path = Path(staged), Path(path)
    if not path.exists():
        os.rename(staged, path)
    elif exchange_paths(staged, path):  # one atomic swap: ``path`` is never missing, not even for an instant
        shutil.rmtree(staged, ignore_errors=True)
    else:
        old = staged.with_name(staged.name + ".old")
        os.rename(path, old)
        try:
            os.rename(staged, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(path.parent)


@contextmanager
def staged(path: Path, *, merge: bool = False, what: str = "folder", elsewhere: str = "write to another folder",
           target: Path | None = None) -> Iterator[Path]:
    """An empty temp folder (:func:`temp_prefix`) whose content becomes the folder ``path`` when the block
    ends without an error; on any error it is deleted and ``path`` is left as it was.

    - default: the temp folder is a sibling of ``path`` and replaces it whole (:func:`replace_folder`:
      a crash leaves the old folder or the new one, complete). Check before that ``path`` holds nothing
      that is not yours. A parent where no temp folder can be made is a :class:`ParentNotWritable`;
    - ``merge``: the temp folder is inside ``path`` and each file in it is renamed into ``path`` (each
      file atomically, not the set), replacing the files of the same name and leaving the others.

    Failed writes (a full disk...) are :class:`WriteError` naming ``target`` (default ``path``) as ``what``.
    """
    path = Path(path)
    where = path if merge else path.parent
    target = Path(target) if target is not None else path
    ensure_folder(where, what=f"the folder for {target.name}")
    try:
        tmp = create_temp_dir(where, temp_prefix(target.name))
    except OSError as exc:
        error = write_error(exc, target, what=what, elsewhere=elsewhere)
        if not merge and exc.errno in (errno.EACCES, errno.EPERM):
            raise ParentNotWritable(exc.errno, str(error)) from exc
        raise error from exc  # type: ignore[misc]
    try:
        yield tmp
        if merge:
            for item in sorted(tmp.iterdir()):
                os.replace(item, path / item.name)
            fsync_dir(path)
        else:
            replace_folder(tmp, path)
    except BaseException as exc:
        error = write_error(exc, target, what=what, elsewhere=elsewhere)
        if error is not None:
            raise error from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
