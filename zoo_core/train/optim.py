"""Optimizers with sensible parameter groups, and freezing, for any model.

The zoo knows no architecture, so "backbone" is what the model declares: the parameters under
``ZooModel.backbone_prefixes`` (``BuiltModel.backbone``: the pretrained feature extractor, e.g.
ResNet's ``conv1``..``layer4``, U-Net's ``encoder``, a detector's ``backbone.body``, the trunk of a
composed model). Everything else (a new decoder, FPN, RPN, the classifier) is "head" here and
always trains at the full learning rate; the head prefixes (the tensors a new ``num_classes``
re-initialises) are never backbone, whatever a plugin declares. A model whose plugin declares no
backbone falls back to the old rule, every parameter outside the head prefixes (which also freezes
a new decoder), with a warning when a setting depends on it. Groups:

- weight decay only on weights of dimension >= 2 that are not in a normalisation layer
  (biases, norm scales/shifts, 1-d parameters and names the network lists in ``no_weight_decay()``,
  a timm convention for position embeddings and tokens, get none);
- the backbone's learning rate is ``lr x backbone_lr_mult``;
- frozen parameters (``freeze_backbone``, ``freeze_blocks``) are left out, and frozen norm layers
  are kept in eval mode so their running statistics do not drift (:func:`frozen_norm_modules`).

Each group carries ``base_lr`` (its peak lr), a ``name`` and ``param_names`` (torch's key: a
checkpoint's groups are matched by name on resume, see :func:`groups_mismatch`); the schedules
scale ``base_lr``. Groups that end up with equal settings are merged (:func:`merge_equal_groups`):
one kernel per group a step.
"""

from __future__ import annotations

import re
import weakref
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..errors import warn
from ..model import under
from .config import TrainConfig

if TYPE_CHECKING:
    from ..model import ZooModel

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                          nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    NORM_TYPES += (nn.RMSNorm,)

#: models already warned that they declare no backbone (once per model object)
_WARNED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


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


def declared_backbone(model: "ZooModel") -> tuple[str, ...]:
    """The model's backbone prefixes (``()`` for a model built before they existed, or a plain module)."""
    return tuple(getattr(model, "backbone_prefixes", ()) or ())


def backbone_test(model: "ZooModel", *, legacy: bool = False) -> Callable[[str], bool]:
    """``name -> is this parameter the backbone's`` (names relative to ``model.net``).

    Declared prefixes minus the head prefixes; without a declaration (or ``legacy``: the rule before
    models declared their backbone), every parameter outside the head prefixes.
    """
    head = tuple(model.head_prefixes)
    declared = () if legacy else declared_backbone(model)
    if declared:
        return lambda name: under(name, declared) and not under(name, head)
    return lambda name: not under(name, head)


def _warn_undeclared(model: "ZooModel", setting: str) -> None:
    """Warn once per model that ``setting`` falls back to "everything but the head" for its backbone."""
    if declared_backbone(model) or model in _WARNED:
        return
    _WARNED.add(model)
    label = getattr(model, "label", None) or type(model).__name__
    warn(f"{setting}: model {label} declares no backbone, so every parameter outside its head prefixes "
         f"{list(model.head_prefixes)} counts as backbone (a randomly initialised decoder or neck is frozen "
         "or slowed with it). Its plugin declares the pretrained part with "
         "BuiltModel(..., backbone=('<state-dict prefix>', ...)) (for a classifier: "
         "zoo_core.model.prefixes_except(net, head))")


def _check_declared(model: "ZooModel", setting: str) -> None:
    """Refuse declared backbone prefixes that cover no parameter: the setting would silently do nothing."""
    declared = declared_backbone(model)
    if declared and not any(backbone_test(model)(n) for n, _ in model.net.named_parameters()):
        label = getattr(model, "label", None) or type(model).__name__
        raise ValueError(f"{setting}: model {label} declares backbone prefixes {list(declared)} (BuiltModel."
                         "backbone) that match no parameter outside its head; its plugin must list state-dict "
                         "prefixes of the pretrained feature extractor")


def _block_root(model: "ZooModel", legacy: bool = False) -> str:
    """The module path blocks are counted under: the declared prefix, or the prefixes' common parent."""
    declared = () if legacy else declared_backbone(model)
    if len(declared) == 1:
        return declared[0]
    common: list[str] = []
    for parts in zip(*(p.split(".")[:-1] for p in declared)):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)


def backbone_blocks(model: "ZooModel", *, legacy: bool = False) -> list[str]:
    """The backbone's blocks in registration order (what ``freeze_blocks`` counts).

    A block is :func:`block_of` the name below the backbone's root (U-Net's ``encoder``:
    ``encoder.conv1``, ``encoder.layer1.0``, ...; a ResNet classifier: ``conv1``, ``layer1.0``, ...).
    """
    is_backbone, root = backbone_test(model, legacy=legacy), _block_root(model, legacy)
    seen: dict[str, None] = {}
    for name, _ in model.net.named_parameters():
        if is_backbone(name):
            seen.setdefault(_block_name(name, root))
    return list(seen)


def _block_name(name: str, root: str) -> str:
    """:func:`block_of` below ``root``; a tensor of the root module itself belongs to the root."""
    if root and name.startswith(root + "."):
        rel = name[len(root) + 1:]
        return f"{root}.{block_of(rel)}" if "." in rel else root
    return block_of(name)


def frozen_names(model: "ZooModel", config: TrainConfig, *, legacy: bool = False) -> list[str]:
    """The parameter names ``freeze_backbone`` / ``freeze_blocks`` freeze (nothing is changed)."""
    if not (config.freeze_backbone or config.freeze_blocks):
        return []
    if config.freeze_backbone and not model.head_prefixes and (legacy or not declared_backbone(model)):
        raise ValueError(f"freeze_backbone: model {model.config.get('model')!r} declares neither its backbone "
                         "nor its head prefixes, so the zoo cannot tell them apart; use freeze_blocks=N instead")
    is_backbone, root = backbone_test(model, legacy=legacy), _block_root(model, legacy)
    blocks = set(backbone_blocks(model, legacy=legacy)[: config.freeze_blocks]) if config.freeze_blocks else set()
    return [name for name, _ in model.net.named_parameters()
            if is_backbone(name) and (config.freeze_backbone or _block_name(name, root) in blocks)]


def apply_freezing(model: "ZooModel", config: TrainConfig) -> list[str]:
    """Set ``requires_grad=False`` on the frozen part (:func:`frozen_names`); return the frozen names."""
    if not (config.freeze_backbone or config.freeze_blocks):
        return []
    setting = "freeze_backbone" if config.freeze_backbone else f"freeze_blocks={config.freeze_blocks}"
    frozen = frozen_names(model, config)
    _check_declared(model, setting)
    _warn_undeclared(model, setting)
    params = dict(model.net.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
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
    if config.backbone_lr_mult != 1:
        _warn_undeclared(model, f"backbone_lr_mult={config.backbone_lr_mult}")
        _check_declared(model, f"backbone_lr_mult={config.backbone_lr_mult}")
    groups = _groups(model, config, backbone_test(model), lambda name, p: p.requires_grad,
                     split=bool(model.head_prefixes or declared_backbone(model)))
    if not groups:
        raise ValueError("no trainable parameter left: everything is frozen (freeze_backbone on a model "
                         "whose head is empty, or freeze_blocks too large)")
    return groups


def _groups(model: "ZooModel", config: TrainConfig, is_backbone: Callable[[str], bool],
            trainable: Callable[[str, nn.Parameter], bool], *, split: bool) -> list[dict]:
    """Groups by backbone/head x decay/no_decay over the ``trainable`` parameters, merged when equal.

    ``split`` False puts every parameter in the head (a model that declares neither part).
    """
    no_decay = _no_decay_names(model.net)
    groups: dict[str, dict] = {}
    for name, p in model.net.named_parameters():
        if not trainable(name, p):
            continue
        part = "backbone" if split and is_backbone(name) else "head"
        decay = name not in no_decay
        key = f"{part}_{'decay' if decay else 'no_decay'}"
        lr = config.lr * (config.backbone_lr_mult if part == "backbone" else 1.0)
        group = groups.setdefault(key, {"params": [], "param_names": [], "name": key, "base_lr": lr, "lr": lr,
                                        "weight_decay": config.weight_decay if decay else 0.0})
        group["params"].append(p)
        group["param_names"].append(name)
    order = ("backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay")
    return merge_equal_groups([groups[k] for k in order if k in groups])


def legacy_group_names(model: "ZooModel", config: TrainConfig) -> list[list[str]]:
    """The parameter names of each optimizer group as the zoo made them before models declared their
    backbone (backbone = everything outside the head prefixes, freezing included): what a checkpoint
    without ``param_names`` holds, index by index (``[]`` when that zoo refused these settings)."""
    try:
        frozen = set(frozen_names(model, config, legacy=True))
    except ValueError:  # freeze_backbone on a model without head prefixes: the old zoo never trained it
        return []
    ours = set(frozen_names(model, config))  # frozen by this run's settings; others the user froze by hand

    def trainable(name: str, p: nn.Parameter) -> bool:
        return (p.requires_grad or name in ours) and name not in frozen

    groups = _groups(model, config, backbone_test(model, legacy=True), trainable, split=bool(model.head_prefixes))
    return [g["param_names"] for g in groups]


def groups_mismatch(saved: list[dict], ours: list[dict],
                    legacy: Callable[[], list[list[str]]] | None = None) -> str | None:
    """Why a checkpoint's optimizer groups (named as this run's) do not hold this run's parameters.

    ``saved``: the checkpoint's ``param_groups`` (indices, and ``param_names`` since the zoo records
    them); ``ours``: the optimizer's. Named groups must list the same parameters in the same order
    (the state is matched by position). A checkpoint without names is checked against
    ``legacy()`` (:func:`legacy_group_names`), the grouping its zoo made. None: they fit.
    """
    if legacy is not None and not any("param_names" in g for g in saved):
        if legacy() != [list(g.get("param_names", [])) for g in ours]:
            return ("the checkpoint was written before models declared their backbone, when every parameter "
                    "outside the head counted as backbone; this model's backbone is now only its pretrained "
                    "feature extractor, so its optimizer groups hold other parameters than this run's")
    for theirs, mine in zip(saved, ours):
        name = mine.get("name", "?")
        if "param_names" in theirs and list(theirs["param_names"]) != list(mine.get("param_names", [])):
            a, b = list(theirs["param_names"]), list(mine.get("param_names", []))
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            first = (a[i] if i < len(a) else "nothing"), (b[i] if i < len(b) else "nothing")
            return (f"group {name!r} holds other parameters ({len(a)} in the checkpoint, {len(b)} in this run; "
                    f"parameter {i} is {first[0]} there and {first[1]} here)")
        if len(theirs["params"]) != len(mine["params"]):
            return (f"group {name!r} holds {len(theirs['params'])} parameters in the checkpoint, "
                    f"{len(mine['params'])} here")
    return None


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
            if "param_names" in merged[key]:
                merged[key]["param_names"] += list(group.get("param_names", ()))
        else:
            merged[key] = {**group, "params": list(group["params"])}
            if "param_names" in group:
                merged[key]["param_names"] = list(group["param_names"])
    for key, group in merged.items():
        if len(group.get("param_names", group["params"])) != len(group["params"]):
            del group["param_names"]  # some of the merged groups had no names (an old checkpoint's)
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
