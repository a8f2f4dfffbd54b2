"""Peak memory of a block of work.

On CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (the tensors alive at the peak,
weights and optimizer state included; the caching allocator's reserve is not counted). Elsewhere
there is no per-block allocator statistic, so the process's peak resident set (``VmHWM`` in
``/proc/self/status``, reset through ``/proc/self/clear_refs`` where Linux allows it) is reported and
labelled ``"RSS"``: it includes the interpreter and every library, so compare it only between runs
of the same process kind. Where neither exists the value is ``None`` (printed "n/a").
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 1024.0 * 1024.0


@dataclass
class MemoryReading:
    """``bytes`` at the peak (None when unknown) and what was measured (``"cuda"``, ``"RSS"``)."""

    bytes: int | None
    kind: str

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / MIB

    def per_image(self, batch_size: int) -> float | None:
        """MiB per image of the batch (None when unknown)."""
        return None if self.bytes is None else self.bytes / MIB / max(1, batch_size)

    def format(self, batch_size: int | None = None) -> str:
        if self.bytes is None:
            return "n/a"
        label = "" if self.kind == "cuda" else f" {self.kind}"
        text = f"{self.mib:.0f} MiB{label}"
        if batch_size:
            text += f" ({self.per_image(batch_size):.1f}/img)"
        return text


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """``with PeakMemory(device) as peak: work()`` then ``peak.reading`` (a :class:`MemoryReading`).

    Entering frees what the garbage collector can and resets the peak, so consecutive blocks (the
    plain loop, then the zoo) are measured separately.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.reading = MemoryReading(None, "n/a")

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # "5" resets the peak RSS (Linux >= 4.0); without it the peak is the process's lifetime one
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.reading = MemoryReading(int(torch.cuda.max_memory_allocated(self.device)), "cuda")
        else:
            kib = _status_kib("VmHWM")
            self.reading = MemoryReading(None if kib is None else kib * 1024, "RSS" if kib else "n/a")
