"""Weight files: safe reading, sha256, an offline-first cache, and loading with a report.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with safetensors and
``.pt``/``.pth``/``.bin`` files with ``torch.load(weights_only=True)``; a pickle that tries to run
code, or hides behind a ``.safetensors`` name, is refused. Downloads go to ``$ZOO_HOME/weights``
(default ``~/.cache/zoo``), fail within seconds when there is no network, and end by one deadline
(``ZOO_DOWNLOAD_TIMEOUT``, see :mod:`zoo_core.transfer`). A download is checked against the expected
sha256 when one is known: the provider's (torchvision's table, the plugin's) or else the one the
server publishes (``X-Linked-Etag``, on Hugging Face's redirect or the response, for timm weights);
with neither, its length, and without a length the file's own structure (it must be whole). The
sha256 of the downloaded file is recorded beside it (``<file>.sha256``) and checked on every later
load, so a cached file corrupted later is named.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .errors import WeightsError
from .model import PretrainedWeights, under
from .paths import offline, zoo_home  # noqa: F401  (re-exported: torch-free home of both)
from .transfer import Deadline, download_timeout, incomplete, read_body  # noqa: F401  (download_timeout: re-export)

STRIP_PREFIXES = ("module.", "_orig_mod.")
NESTED_KEYS = ("state_dict", "model", "model_state", "module", "net")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The full sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- reading files --------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors or torch file, safely, unwrapping common containers."""
    path = Path(path)
    if path.is_dir():
        cand = path / "model.safetensors"
        if not cand.exists():
            raise WeightsError(f"{path} is a directory without model.safetensors; pass the weights "
                               "file itself or a directory written by model.save()")
        path = cand
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    kind = sniff_format(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file ({exc}); it may be truncated "
                               "or corrupt: download or save it again") from exc
    if kind == "unknown":
        raise WeightsError(f"{path} is not a checkpoint: it is neither safetensors nor a PyTorch file "
                           f"({path.stat().st_size} bytes, starts with {_head(path)!r}). Pass a "
                           ".safetensors/.pt/.pth weights file or a directory written by model.save()")
    if path.suffix.lower() == ".safetensors":  # a pickle behind a name that promises none
        raise WeightsError(f"{path} is named .safetensors but is really a PyTorch checkpoint (a pickle, as "
                           "torch.save writes), which safetensors cannot read. If you trust it, rename it to .pt (the "
                           "zoo reads it with torch.load(weights_only=True)) or convert it to safetensors")
    refuse_old_torch(path)
    try:
        with open(path, "rb") as f:  # a file object: torch.load then never picks a reader by the suffix
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise unsafe_pickle_error(path, exc) from exc
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
                           "it may be truncated, or not a weights file") from exc
    return unwrap_state_dict(obj, str(path))


def refuse_old_torch(path: Path) -> None:
    """Refuse to unpickle ``path`` under torch < 2.6, whose ``weights_only=True`` has known bypasses."""
    if _torch_version() < (2, 6):
        raise WeightsError(f"refused to load {path}: torch {torch.__version__} has known bypasses of "
                           "torch.load(weights_only=True); upgrade torch to >= 2.6 or convert the file "
                           "to safetensors on a trusted machine")


def unsafe_pickle_error(path: Path, exc: Exception) -> WeightsError:
    """The refusal of a file ``torch.load(weights_only=True)`` would not unpickle.

    Only the line naming the blocked object is kept: torch's message goes on to suggest
    ``weights_only=False``, which is exactly how such a file runs its code.
    """
    blocked = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
    return WeightsError(f"refused to load {path}: it contains Python objects beyond tensors, which could run "
                        f"code when unpickled ({blocked[0] if blocked else 'not a plain state dict'}). The zoo "
                        "never unpickles such files; if you trust it, convert it to safetensors yourself")


def sniff_format(path: Path) -> str:
    """``"safetensors"``, ``"torch"`` (zip or legacy pickle) or ``"unknown"``, from the first bytes.

    The content decides, not the suffix: a renamed file is still read with the right (safe) reader.
    """
    head = _head(path, 16)
    if len(head) >= 9:  # first: a safetensors header length may well start with byte 0x80 (a pickle's opcode)
        n = int.from_bytes(head[:8], "little")
        if 0 < n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if path.suffix == ".safetensors":
        return "safetensors"  # let safetensors say what is wrong (e.g. truncated header)
    return "unknown"


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _torch_version() -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", torch.__version__).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def unwrap_state_dict(obj: object, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor mapping inside a checkpoint dict (``state_dict``/``model``... keys)."""
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    raise WeightsError(f"{where} holds no state dict (a mapping of names to tensors); found "
                       f"{type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, Mapping) else '-'}")


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: Iterable[str] = STRIP_PREFIXES
                   ) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes (also nested)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key, changed = key[len(p):], True
            key = key.replace("._orig_mod.", ".")
        out[key] = value
    return out


# ---- loading into a network -----------------------------------------------------------------------
@dataclass
class LoadReport:
    """What happened when weights were loaded: which tensors were loaded and which re-initialised."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    sha256: str | None = None

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.reinitialized:
            parts.append(f"re-initialised {len(self.reinitialized)} (new head): {_short(self.reinitialized)}")
        if self.missing:
            parts.append(f"missing {len(self.missing)}: {_short(self.missing)}")
        if self.unexpected:
            parts.append(f"ignored {len(self.unexpected)} unexpected: {_short(self.unexpected)}")
        if self.mismatched:
            parts.append(f"skipped {len(self.mismatched)} of another shape: {_short(self.mismatched, 3)}")
        return "; ".join(parts)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n})" if len(keys) > n else "")


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
              head: Iterable[str] = (), strict: bool = True, map_state_dict=None,
              advice: str | None = None) -> LoadReport:
    """Copy ``state`` into ``net``: prefixes stripped (``module.``, ``_orig_mod.``, and a ZooModel's
    ``net.``), head tensors of another shape re-initialised.

    In strict mode any other missing key, unexpected key or shape mismatch raises
    :class:`WeightsError` naming the keys (a file for another architecture); with ``strict=False``
    they are skipped and listed in the report. ``advice`` replaces the default fix in that error.
    """
    state = strip_prefixes(state)
    own = net.state_dict()
    if state and not state.keys() & own.keys() and all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}  # a ZooModel's own state_dict(): net.<key>
    if map_state_dict is not None:
        state = map_state_dict(state)
    head = tuple(head)
    report = LoadReport(source=source)
    to_load: dict[str, torch.Tensor] = {}
    mismatched = []
    for key, target in own.items():
        in_head = under(key, head)
        if key not in state:
            (report.reinitialized if in_head else report.missing).append(key)
            continue
        value = state[key]
        if tuple(value.shape) != tuple(target.shape):
            if in_head:
                report.reinitialized.append(key)
                continue
            mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target.shape)}")
            continue
        to_load[key] = value
    report.unexpected = sorted(k for k in state if k not in own and not
                               any(k == h or k.startswith(h + ".") for h in head))
    report.mismatched = mismatched
    problems = []
    if strict and mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_short(mismatched, 4)}")
    if strict and report.missing:
        problems.append(f"{len(report.missing)} missing key(s): {_short(report.missing, 4)}")
    if strict and report.unexpected:
        problems.append(f"{len(report.unexpected)} unexpected key(s): {_short(report.unexpected, 4)}")
    if problems:
        raise WeightsError(f"weights from {source} do not fit this model ({'; '.join(problems)}). " + (
            advice or "They are probably for another architecture or task; pass num_classes= to replace only "
                      "the head, or strict=False to load what fits"))
    net.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    return report


# ---- the offline-first cache ----------------------------------------------------------------------
def cache_path(weights: PretrainedWeights, plugin: str) -> Path:
    """``$ZOO_HOME/weights/<plugin>/<filename>``; a file name with a directory part is refused."""
    name = weights.filename
    if not name or Path(name).name != name or name in {".", ".."}:
        raise WeightsError(f"plugin {plugin!r} gave weights {weights.tag!r} the file name {name!r}; "
                           "it must be a plain file name (no directories)")
    return zoo_home() / "weights" / plugin / name


def pull_command(model: str, tag: str) -> str:
    return f"zoo pull {model}.{tag} --to DIR"


def fetch(weights: PretrainedWeights, *, plugin: str, model: str, progress: bool = True) -> Path:
    """Return a verified local file for ``weights``: from the cache, else downloaded (unless offline).

    A cached file is re-hashed on every call and compared with the expected sha256 (or the one
    recorded next to it at download time), so a corrupted cache is detected and named.
    """
    path = cache_path(weights, plugin)
    if path.exists():
        verify(path, weights)
        return path
    where = (f"Download {weights.url} on a machine with network (or run `{pull_command(model, weights.tag)}` "
             f"there) and copy it to {path}, point ZOO_HOME at a mirror holding it, or pass "
             f"weights='/path/to/{weights.filename}'")
    if offline():
        raise WeightsError(f"weights {model}.{weights.tag} are not in the cache ({path}) and ZOO_OFFLINE=1 "
                           f"forbids downloading. {where}")
    if not weights.url:
        raise WeightsError(f"weights {model}.{weights.tag} have no download source. {where}")
    download(weights.url, path, weights, progress=progress, hint=where)
    return path


def verify(path: Path, weights: PretrainedWeights) -> str:
    """Check a file's sha256 against the expected (or recorded) hash; raise naming both."""
    actual = sha256_file(path)
    recorded = path.with_name(path.name + ".sha256")
    expected = weights.sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    if expected and actual != expected:
        raise WeightsError(f"cached weights {path} are corrupt: sha256 {actual} but expected {expected}. "
                           "Delete the file and fetch it again")
    if weights.hash_prefix and not actual.startswith(weights.hash_prefix):
        raise WeightsError(f"cached weights {path} are corrupt: sha256 {actual} does not start with "
                           f"{weights.hash_prefix}. Delete the file and fetch it again")
    return actual


def download(url: str, dest: Path, weights: PretrainedWeights, *, progress: bool = True,
             hint: str = "") -> None:
    """Download to a temp file beside ``dest``, verify, then rename; the temp file never survives."""
    hint = hint or f"Download {url} by hand and copy it to {dest}."
    deadline = Deadline(url, hint)  # ZOO_DOWNLOAD_TIMEOUT: the whole download, not each read
    dest.parent.mkdir(parents=True, exist_ok=True)
    from .fileio import create_temp  # mode 0666 & ~umask: a mirror's files are readable by others (not 0600)

    fd, tmp = create_temp(dest.parent, dest.name + ".", ".part")
    h = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            total = None
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "zoo"})
                linked = _LinkedEtag()
                with urllib.request.build_opener(linked).open(req, timeout=deadline.wait()) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    published = linked.sha256 or published_sha256(resp.headers)
                    bar = _progress(total, dest.name) if progress else None

                    def write(block: bytes) -> None:
                        out.write(block)
                        h.update(block)
                        if bar is not None:
                            bar.update(len(block))

                    try:
                        received = read_body(resp, write, deadline, total)
                    finally:
                        if bar is not None:
                            bar.close()
            except http.client.IncompleteRead as exc:  # a chunked body cut off before its last chunk
                raise WeightsError(f"download of {url} is truncated: the connection closed before the end of the "
                                   f"body (got {out.tell()} bytes). The partial file was deleted; try again") from exc
            except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
                if deadline.spent():
                    raise deadline.error(out.tell(), total) from exc
                raise WeightsError(f"could not download {url}: {getattr(exc, 'reason', exc)}. {hint}") from exc
        if total is not None and received != total:
            raise WeightsError(f"download of {url} is truncated: got {received} of {total} bytes. The "
                               "partial file was deleted; try again")
        if not (published or weights.sha256 or weights.hash_prefix):
            why = incomplete(tmp)  # without a hash only the file's own structure tells a weights file (whole)
            if why is not None:  # from a cut-off body, or from a proxy's HTML page served with a length
                sent = "no hash" if total is not None else "no Content-Length and no hash"
                raise WeightsError(f"download of {url} was not cached: {why}. The server sent {sent}. The partial "
                                   f"file was deleted; try again. {hint}")
        actual = h.hexdigest()
        if published and not weights.sha256 and actual != published:
            raise WeightsError(f"download of {url} is corrupt or truncated: sha256 {actual}, but the server "
                               f"publishes {published}. The partial file was deleted; try again")
        if weights.sha256 and actual != weights.sha256:
            raise WeightsError(f"download of {url} is corrupt or truncated: sha256 {actual}, expected "
                               f"{weights.sha256}. The partial file was deleted; try again")
        if weights.hash_prefix and not actual.startswith(weights.hash_prefix):
            raise WeightsError(f"download of {url} is corrupt or truncated: sha256 {actual} does not "
                               f"start with {weights.hash_prefix}. The partial file was deleted; try again")
        os.replace(tmp, dest)
        dest.with_name(dest.name + ".sha256").write_text(actual + "\n")
    finally:
        tmp.unlink(missing_ok=True)


def published_sha256(headers: Any) -> str | None:
    """The sha256 a server publishes for the file in ``X-Linked-Etag``, when it does.

    Hugging Face answers a ``resolve`` URL of an LFS file with a redirect to its CDN whose
    ``X-Linked-Etag`` is the file's sha256 (64 hex digits, maybe quoted). A plain ``ETag`` is never
    trusted as a content hash: CDNs put other 64-hex values there.
    """
    value = str(headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"').lower()
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


class _LinkedEtag(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib's default, remembering the first ``X-Linked-Etag`` seen on one."""

    def __init__(self) -> None:
        self.sha256: str | None = None

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        self.sha256 = self.sha256 or published_sha256(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _progress(total: int | None, name: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}")


def is_weights_path(value: str) -> bool:
    """Does ``weights=`` look like a path rather than a pretrained tag?"""
    return bool(re.search(r"[\\/]|\.(safetensors|pt|pth|bin)$", value)) or Path(value).exists()
