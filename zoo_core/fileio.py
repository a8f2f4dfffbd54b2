"""Writing files the way every zoo writer does: atomically, with the user's permissions, errors named.

- :func:`create_temp` makes the temp file a write goes to before it is renamed into place. Unlike
  ``tempfile.mkstemp`` (always mode 0600) it creates the file with mode ``0666`` and lets the
  kernel apply the umask, so a checkpoint, a saved model or a ``zoo pull`` mirror is readable by
  whoever the user's umask allows (0644 under the usual 022), exactly like a file ``open`` writes.
- :func:`atomic_write_bytes`: temp file, flush, fsync, rename; the old file survives any failure.
- :func:`write_error` turns a failed write (an ``OSError``, or torch's ``RuntimeError`` from
  ``inline_container.cc`` when the disk fills during ``torch.save``) into a :class:`WriteError`
  naming the file, what was kept, the free space left and what to do.
- :func:`check_folder_target` / :func:`check_file_target`: a path that cannot be written because
  it, or one of its parents, is a file (or a folder where a file goes) is refused before any work.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

from .errors import ZooError


class WriteError(ZooError, OSError):
    """A file the zoo could not write (full disk, read-only folder...): names the file and what was kept.

    It is an ``OSError`` too (``errno`` is the cause's), so ``except OSError`` still catches it.
    """

    def __str__(self) -> str:  # the message, without OSError's "[Errno 28]" prefix
        return str(self.strerror if self.strerror is not None else super().__str__())


class PathError(ZooError, ValueError):
    """A path the zoo was asked to write that cannot be: a file where a folder goes, or the reverse."""


#: torch's messages when ``torch.save`` cannot write (it raises RuntimeError, not OSError, on a full disk)
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter failed|file write failed|inline_container\.cc|"
                                 r"unexpected pos \d+")


def create_temp(folder: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new empty file in ``folder`` created exclusively: ``(fd, path)``, mode ``0666 & ~umask``."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary file name in {folder}")  # pragma: no cover


def create_temp_dir(folder: Path, prefix: str) -> Path:
    """A new empty folder in ``folder`` created exclusively, mode ``0777 & ~umask`` (mkdtemp's is 0700)."""
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary folder name in {folder}")  # pragma: no cover


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


def atomic_write_bytes(path: Path, data: bytes, *, what: str = "file", elsewhere: str = "write to another folder",
                       record_in: Path | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file + rename; the old file survives any failure.

    ``record_in``: a folder whose manifest (:mod:`zoo_core.run_files`) lists ``path`` as the zoo's,
    recorded before the rename so a kill in between never leaves a file of the zoo's unlisted.
    """
    path = Path(path)
    ensure_folder(path.parent, what=f"the folder for {path.name}")
    try:
        fd, tmp = create_temp(path.parent, f".{path.name}.")
    except OSError as exc:
        raise write_error(exc, path, what=what, elsewhere=elsewhere) from exc  # type: ignore[misc]
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if record_in is not None:
            from .run_files import record

            record(record_in, path, size=len(data), data=data)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        translated = write_error(exc, path, what=what, elsewhere=elsewhere)
        if translated is not None:
            raise translated from exc
        raise


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
