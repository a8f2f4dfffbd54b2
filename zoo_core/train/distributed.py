"""Multi-process training under ``torchrun``: environment, DDP wrapping, metric reduction.

``torchrun --nproc_per_node=N -m zoo_core.cli train ...`` (or any script calling ``Trainer.fit``)
sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; :func:`setup` reads them, starts the process group (NCCL
on GPUs, gloo on the CPU) and picks the device. Multi-node is the same launcher with ``--nnodes``.
Only rank 0 writes files and logs; every rank computes identical metrics from the merged
accumulators (:func:`merge_metrics`), so early stopping and "best" agree everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from ..task import Metrics


@dataclass
class DistEnv:
    """Where this process sits: rank, world size, local rank, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device this machine has; a ValueError naming it and the choices otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a device name ({exc}); use cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: this machine has no usable CUDA GPU (torch "
                             f"{torch.__version__}); use device cpu, or leave it unset to pick one")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available on this machine; use device cpu")
    return dev


def setup(device: str | None = None) -> DistEnv:
    """Detect torchrun's environment, start the process group if needed, choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local}" if world > 1 else "cuda") if torch.cuda.is_available() \
            else torch.device("cpu")
    else:
        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is None and world > 1:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    started = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
        started = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world, local, dev, started)


def teardown(env: DistEnv) -> None:
    """End the process group if :func:`setup` started it."""
    if env.started_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(net: nn.Module, env: DistEnv, *, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around ``net`` (unchanged when not distributed)."""
    if not env.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(net, device_ids=ids, find_unused_parameters=find_unused_parameters)


def convert_sync_batchnorm(net: nn.Module) -> dict[str, nn.Module]:
    """Swap BatchNorm layers for SyncBatchNorm (sharing parameters and buffers); return the originals."""
    originals = {name: m for name, m in net.named_modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)}
    for name, module in originals.items():
        sync = nn.SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean, sync.running_var = module.running_mean, module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        _set_submodule(net, name, sync)
    return originals


def restore_modules(net: nn.Module, originals: dict[str, nn.Module]) -> None:
    """Put back the modules :func:`convert_sync_batchnorm` replaced (their tensors were shared)."""
    for name, module in originals.items():
        _set_submodule(net, name, module)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def merge_metrics(metrics: "Metrics", env: DistEnv) -> "Metrics":
    """Every rank's accumulator merged in rank order (identically on every rank)."""
    if not env.distributed:
        return metrics
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, metrics)
    merged = gathered[0]
    for other in gathered[1:]:
        merged.merge(other)
    return merged


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks (in place; returned for chaining)."""
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
