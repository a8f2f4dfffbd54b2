"""Counting host synchronisations, on any device.

A GPU training step is fast only if the host never waits for the device inside it. The operations
that make it wait are the ones whose result the host must read: a tensor turned into a Python number
(``.item()``, ``float(t)``, ``bool(t)``, ``if t:``) and the ops whose output shape depends on the data
(``nonzero``, ``masked_select``, boolean indexing, ``unique``...). :class:`HostSyncCounter` counts them
as they pass through the dispatcher, so the check runs on the CPU too (where nothing actually waits).
``Tensor.tolist()`` and ``.cpu()`` copies are not seen (they read memory below the dispatcher);
``torch.cuda.set_sync_debug_mode`` is the GPU-only, complete equivalent.

>>> with HostSyncCounter() as syncs:
...     step()
>>> syncs.count, syncs.ops        # 0, Counter()
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: aten ops (overload packets) that read device data back to the host
SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim",
                      "unique_consecutive", "is_nonzero", "equal", "repeat_interleave", "bincount",
                      "histc", "_assert_async"})
#: ops that synchronise when indexed by a boolean mask (``x[mask]``, ``x[mask] = v``)
MASK_INDEX_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


def _on(args: tuple, device_type: str) -> bool:
    return any(isinstance(a, torch.Tensor) and a.device.type == device_type for a in args)


def _has_mask(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class HostSyncCounter(TorchDispatchMode):
    """Counts ops that synchronise the host with the device (see the module docstring).

    ``ops``: a Counter of op name -> calls; ``count``: their total. ``enabled`` can be toggled to
    leave parts of the block out. ``device`` (e.g. ``"cuda"``) counts only ops reading tensors of
    that device type: host-resident tensors (Adam's step counters unless fused, a DataLoader's seed)
    are read without waiting for the GPU. On the CPU everything is host-resident, so a CPU check
    counts those too (use SGD, or compare steps, to see the Trainer's own).
    """

    def __init__(self, device: str | None = None) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.enabled = True
        self.device = device

    @property
    def count(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func.overloadpacket.__name__
        if self.enabled and (name in SYNC_OPS or (name in MASK_INDEX_OPS and _has_mask(args))) and \
                (self.device is None or _on(args, self.device)):
            self.ops[name if name in SYNC_OPS else f"{name}(bool mask)"] += 1
        return func(*args, **(kwargs or {}))
