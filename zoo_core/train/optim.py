"""Optimizers with sensible parameter groups, and freezing, for any model.

The zoo knows no architecture, so "backbone" is defined generically: every parameter of
``model.net`` that is not under one of the model's head prefixes (``ZooModel.head_prefixes``, the
tensors a new ``num_classes`` re-initialises). Groups:

- weight decay only on weights of dimension >= 2 that are not in a normalisation layer
  (biases, norm scales/shifts, 1-d parameters and names the network lists in ``no_weight_decay()``,
  a timm convention for position embeddings and tokens, get none);
- the backbone's learning rate is ``lr x backbone_lr_mult``;
- frozen parameters (``freeze_backbone``, ``freeze_blocks``) are left out, and frozen norm layers
  are kept in eval mode so their running statistics do not drift (:func:`frozen_norm_modules`).

Each group carries ``base_lr`` (its peak lr) and a ``name``; the schedules scale ``base_lr``. Groups
that end up with equal settings are merged (:func:`merge_equal_groups`): one kernel per group a step.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from .config import TrainConfig

if TYPE_CHECKING:
    from ..model import ZooModel

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                          nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    NORM_TYPES += (nn.RMSNorm,)


def in_head(name: str, head: Iterable[str]) -> bool:
    """Is parameter ``name`` (relative to ``model.net``) under one of the head prefixes?"""
    return any(name == h or name.startswith(h + ".") for h in head)


def block_of(name: str) -> str:
    """The block a parameter belongs to: its path up to the first numbered entry, else its top module.

    ``layer1.0.conv1.weight`` -> ``layer1.0``; ``blocks.3.attn.qkv.weight`` -> ``blocks.3``;
    ``conv1.weight`` -> ``conv1``; ``cls_token`` -> ``cls_token``.
    """
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0] if len(parts) > 1 else name


def backbone_blocks(model: "ZooModel") -> list[str]:
    """The backbone's blocks in registration order (what ``freeze_blocks`` counts)."""
    seen: dict[str, None] = {}
    for name, _ in model.net.named_parameters():
        if not in_head(name, model.head_prefixes):
            seen.setdefault(block_of(name))
    return list(seen)


def apply_freezing(model: "ZooModel", config: TrainConfig) -> list[str]:
    """Set ``requires_grad=False`` on the frozen part; return the frozen parameter names."""
    if not (config.freeze_backbone or config.freeze_blocks):
        return []
    if not model.head_prefixes and config.freeze_backbone:
        raise ValueError(f"freeze_backbone: model {model.config.get('model')!r} declares no head prefixes, "
                         "so the zoo cannot tell its head from its backbone; use freeze_blocks=N instead")
    blocks = set(backbone_blocks(model)[: config.freeze_blocks]) if config.freeze_blocks else set()
    frozen = []
    for name, p in model.net.named_parameters():
        if in_head(name, model.head_prefixes):
            continue
        if config.freeze_backbone or block_of(name) in blocks:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_norm_modules(net: nn.Module) -> list[nn.Module]:
    """Norm layers whose parameters are all frozen: the Trainer keeps them in eval mode."""
    out = []
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                out.append(module)
    return out


def _no_decay_names(net: nn.Module) -> set[str]:
    names: set[str] = set()
    for mod_name, module in net.named_modules():
        if isinstance(module, NORM_TYPES):
            names.update(f"{mod_name}.{p}" if mod_name else p for p, _ in module.named_parameters(recurse=False))
    patterns: set[str] = set()
    for mod_name, module in net.named_modules():  # timm's no_weight_decay(), also on a nested trunk
        skip = getattr(module, "no_weight_decay", None)
        if callable(skip):
            patterns |= {f"{mod_name}.{n}" if mod_name else n for n in skip()}
    for name, p in net.named_parameters():
        if p.ndim <= 1 or name.endswith(".bias") or name in patterns or \
                any(re.fullmatch(pat.replace("*", ".*"), name) for pat in patterns if "*" in pat):
            names.add(name)
    return names


def param_groups(model: "ZooModel", config: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups (see the module docstring); empty groups are dropped."""
    no_decay = _no_decay_names(model.net)
    groups: dict[str, dict] = {}
    for name, p in model.net.named_parameters():
        if not p.requires_grad:
            continue
        part = "head" if in_head(name, model.head_prefixes) or not model.head_prefixes else "backbone"
        decay = name not in no_decay
        key = f"{part}_{'decay' if decay else 'no_decay'}"
        lr = config.lr * (config.backbone_lr_mult if part == "backbone" else 1.0)
        group = groups.setdefault(key, {"params": [], "name": key, "base_lr": lr, "lr": lr,
                                        "weight_decay": config.weight_decay if decay else 0.0})
        group["params"].append(p)
    if not groups:
        raise ValueError("no trainable parameter left: everything is frozen (freeze_backbone on a model "
                         "whose head is empty, or freeze_blocks too large)")
    order = ("backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay")
    return merge_equal_groups([groups[k] for k in order if k in groups])


def merge_equal_groups(groups: list[dict]) -> list[dict]:
    """Merge groups whose lr and weight decay are equal, naming them by what they still separate.

    Each group costs one optimizer kernel launch per step (fused) or one Python loop (foreach), so
    four groups that differ in nothing cost a tiny model ~3% of its step. With the defaults
    (``backbone_lr_mult`` 1) backbone and head merge into ``decay`` / ``no_decay``; with weight decay
    0 as well, everything is ``all``; with ``backbone_lr_mult`` != 1 the four groups stay.
    """
    merged: dict[tuple[float, float], dict] = {}
    labels: dict[tuple[float, float], list[tuple[str, str]]] = {}
    for group in groups:
        key = (group["base_lr"], group["weight_decay"])
        part, _, decay = group["name"].partition("_")
        labels.setdefault(key, []).append((part, decay))
        if key in merged:
            merged[key]["params"] += group["params"]
        else:
            merged[key] = {**group, "params": list(group["params"])}
    for key, group in merged.items():
        parts = {p for p, _ in labels[key]}
        decays = {d for _, d in labels[key]}
        name = "_".join(([parts.pop()] if len(parts) == 1 else []) + ([decays.pop()] if len(decays) == 1 else []))
        group["name"] = name or "all"
    return list(merged.values())


FUSED_KINDS = ("sgd", "adam", "adamw")


def fused_devices() -> tuple[str, ...]:
    """Device types torch has fused SGD/Adam/AdamW kernels for."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return tuple(_get_fused_kernels_supported_devices())
    except ImportError:  # pragma: no cover - older torch
        return ("cuda",)


def use_fused(kind: str, params: list[torch.Tensor], setting: bool | None) -> bool:
    """The ``fused_optimizer`` setting resolved: auto = wherever torch has the kernels for these tensors.

    One fused kernel updates every parameter of a group (instead of a Python loop of small ops per
    parameter), several times faster on GPUs and CPUs alike; on CUDA it also takes GradScaler's
    inf check on the device, so fp16 steps need no host sync. Results equal the per-parameter
    update up to float rounding.
    """
    supported = kind in FUSED_KINDS and all(p.device.type in fused_devices() and p.is_floating_point()
                                            for p in params)
    if setting and not supported:
        raise ValueError(f"fused_optimizer=True: torch has no fused {kind} for these parameters (fused kernels: "
                         f"{', '.join(FUSED_KINDS)} on {', '.join(fused_devices())}); leave it unset (auto)")
    return supported if setting is None else bool(setting)


def build_optimizer(model: "ZooModel", config: TrainConfig) -> torch.optim.Optimizer:
    """SGD / AdamW / Adam / RMSprop over :func:`param_groups`; fused kernels where torch has them."""
    groups = param_groups(model, config)
    params = [p for g in groups for p in g["params"]]
    on_cuda = all(p.is_cuda for p in params)
    kind = config.optimizer.lower()
    fast: dict = {"fused": True} if use_fused(kind, params, config.fused_optimizer) else {}
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, **fast)
        if fast and config.momentum:
            # Fused SGD allocates its momentum buffers uninitialised (empty_like) on its first call and
            # fills them only if that step is applied; GradScaler's first fp16 steps are often skipped
            # (scale 65536 overflows), so the first real step would read garbage. Zeros give exactly
            # the first step's update (buffer = 0 * momentum + grad), skipped or not.
            for p in params:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return opt
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999), **fast)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=(config.momentum, 0.999), **fast)
    if kind == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, momentum=config.momentum,
                                   foreach=True if on_cuda else None)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of sgd, adamw, adam, rmsprop")
