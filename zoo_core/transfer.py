"""A download's body read under one deadline, and whether what arrived is a whole weights file.

``ZOO_DOWNLOAD_TIMEOUT`` is the time a whole download may take, not a per-read limit: a server that
trickles one byte a second would otherwise keep every read alive for hours. Connecting, and every
read, also give up after :data:`STALL_SECONDS` (or sooner, when less of the deadline is left), and a
body arriving slower than :data:`MIN_RATE` over any :data:`SLOW_WINDOW` seconds is abandoned (what
curl's ``--speed-limit``/``--speed-time`` do), so a trickle fails in seconds whatever the deadline.

A body that ends early is caught by its framing where HTTP gives one (``Content-Length``; a chunked
body raises ``IncompleteRead``). A body without either, from a source that publishes no hash, can
still be cut short silently: :func:`incomplete` then reads the file's own structure (a safetensors
header whose tensors must end exactly at the end of the file; a zip whose central directory, at the
very end, must read) and anything that cannot be verified is not cached.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from .errors import WeightsError

#: seconds a connection attempt or a single read may wait for data (capped by the time left)
STALL_SECONDS = 10.0
#: the default of ``ZOO_DOWNLOAD_TIMEOUT``: the whole download, however large the file
DEFAULT_DEADLINE = 3600.0
#: a download slower than this many bytes a second over a :data:`SLOW_WINDOW` gives up (a trickling server
#: fails in half a minute, not at the deadline); a healthy link, however slow, is far above it
MIN_RATE = 16 * 1024
SLOW_WINDOW = 30.0
BLOCK = 1 << 20


def min_rate() -> float:
    """Bytes a second below which a download is abandoned: ``$ZOO_DOWNLOAD_MIN_RATE`` (default
    :data:`MIN_RATE`; 0 turns the rule off, for a link that really is that slow)."""
    raw = os.environ.get("ZOO_DOWNLOAD_MIN_RATE")
    if not raw:
        return float(MIN_RATE)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise WeightsError(f"ZOO_DOWNLOAD_MIN_RATE={raw!r} must be a number of bytes a second >= 0 (0: no minimum)")
    return value


def download_timeout() -> float:
    """Seconds a whole download may take: ``$ZOO_DOWNLOAD_TIMEOUT`` (default 3600)."""
    raw = os.environ.get("ZOO_DOWNLOAD_TIMEOUT")
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        raise WeightsError(f"ZOO_DOWNLOAD_TIMEOUT={raw!r} is not a number of seconds; set e.g. "
                           "ZOO_DOWNLOAD_TIMEOUT=600") from None
    if not value > 0:
        raise WeightsError(f"ZOO_DOWNLOAD_TIMEOUT={raw!r} must be a positive number of seconds")
    return value


class Deadline:
    """The end of a download's time budget: how long the next wait may be, and the error when spent."""

    def __init__(self, url: str, hint: str, seconds: float | None = None) -> None:
        self.url, self.hint = url, hint
        self.seconds = download_timeout() if seconds is None else seconds
        self.end = time.monotonic() + self.seconds

    def wait(self) -> float:
        """Seconds the next connect or read may block: :data:`STALL_SECONDS`, or what is left."""
        return max(min(STALL_SECONDS, self.end - time.monotonic()), 0.001)

    def spent(self) -> bool:
        return time.monotonic() >= self.end

    def too_slow(self, received: int, total: int | None, rate: float, seconds: float, floor: float
                 ) -> WeightsError:
        got = f"{received} of {total} bytes" if total else f"{received} bytes"
        return WeightsError(f"download of {self.url} gave up: {rate:.0f} bytes/s over the last {seconds:.0f} s "
                            f"(got {got}), below the {floor:.0f} bytes/s the zoo waits for "
                            f"(ZOO_DOWNLOAD_MIN_RATE; 0 waits for any speed). The partial file was deleted. {self.hint}")

    def error(self, received: int, total: int | None) -> WeightsError:
        got = f"{received} of {total} bytes" if total else f"{received} bytes"
        return WeightsError(f"download of {self.url} did not finish within ZOO_DOWNLOAD_TIMEOUT={self.seconds:g} s "
                            f"(got {got}): the server is too slow or stalled. The partial file was deleted. "
                            f"{self.hint} Or allow more time with ZOO_DOWNLOAD_TIMEOUT=<seconds>")


def read_body(resp: Any, write: Callable[[bytes], None], deadline: Deadline, total: int | None) -> int:
    """Copy ``resp``'s body to ``write`` block by block until it ends; returns the bytes read.

    Each read takes what has arrived (``read1``), waits at most :meth:`Deadline.wait`, and the
    deadline is checked between reads, so a trickling server fails on time. Raises the deadline's
    :class:`WeightsError`; ``IncompleteRead`` and socket errors pass to the caller.
    """
    read = getattr(resp, "read1", None) or resp.read
    received = 0
    window = (time.monotonic(), 0)  # (start, bytes received then) of the current speed window
    slowest = min_rate()
    while True:
        if deadline.spent():
            raise deadline.error(received, total)
        elapsed = time.monotonic() - window[0]
        if elapsed >= SLOW_WINDOW:
            if (received - window[1]) / elapsed < slowest:
                raise deadline.too_slow(received, total, (received - window[1]) / elapsed, elapsed, slowest)
            window = (time.monotonic(), received)
        _set_timeout(resp, deadline.wait())
        try:
            block = read(BLOCK)
        except TimeoutError:
            if deadline.spent():
                raise deadline.error(received, total) from None
            raise
        if not block:
            return received
        write(block)
        received += len(block)


def _set_timeout(resp: Any, seconds: float) -> None:
    """Bound the next socket read of an HTTP(S) response (file:// responses have no socket)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None and hasattr(sock, "settimeout"):
        sock.settimeout(seconds)


def incomplete(path: Path) -> str | None:
    """Why ``path`` cannot be verified as a whole weights file from its own structure; None when it can.

    safetensors: the 8-byte header length, the JSON header, and tensors whose byte ranges end exactly
    at the end of the file. PyTorch zip (and npz): the central directory, written last, must read.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(f) as archive:
                    archive.infolist()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                return f"it is a zip (PyTorch) file whose central directory does not read ({exc}): it was cut short"
            return None
        if len(head) == 8:
            n = int.from_bytes(head, "little")
            if 0 < n < 100_000_000:
                if 8 + n > size:
                    return f"its safetensors header claims {n} bytes but only {size - 8} follow: it was cut short"
                try:
                    header = json.loads(f.read(n))
                    end = max([int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"] or [0])
                except (ValueError, KeyError, TypeError, IndexError, AttributeError):
                    header = None
                if header is not None:
                    if 8 + n + end == size:
                        return None
                    return (f"its safetensors header describes {8 + n + end} bytes but {size} arrived: it was "
                            "cut short")
    return ("it is neither a safetensors file whose tensors fit its size nor a zip (PyTorch) file whose central "
            "directory reads, and the server gave neither its length nor a hash, so the zoo cannot tell whether "
            "it arrived whole")
