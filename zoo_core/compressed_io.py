"""Saving and loading pruned and int8 models as data: safetensors + JSON, never a pickle or code.

A **pruned** model has another architecture than its builder makes. ``model.config["pruned"]["structure"]``
records the change as data: the shape of every tensor pruning changed and every integer attribute of a
module it changed (``out_channels``, ``in_features``, ``num_features``, an attention's ``num_heads``...),
each as ``[before, after]``. Loading builds the original network through the registry, cuts each listed
tensor to its recorded shape (only ever smaller: a dimension that differs from ``before`` was changed by
the loader itself, a new head's class count, and is kept) and sets the listed attributes, then loads the
weights strictly. Nothing from the file is executed: names resolve to existing modules and tensors, and
only existing integer attributes of existing modules are set.

An **int8** model's packed kernels are not plain tensors, so ``model.save`` writes each quantized tensor as
its integer values plus its scales and zero points (plain tensors in ``model.safetensors``), and a JSON
layout in the file's metadata says how to reassemble them (per-tensor or per-channel, which axis, which
entries are tuples or dtypes). ``config["quantized"]`` is the recipe (method, backend). Loading builds the
float architecture, applies the same recipe to get the same module structure, and loads the saved int8
state into it: the reloaded model's outputs equal the saved one's exactly.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from .errors import WeightsError

if TYPE_CHECKING:
    from .model import ZooModel

#: safetensors metadata key holding the JSON layout of an int8 state dict
LAYOUT_KEY = "zoo.int8_layout"
_QDTYPES = {"qint8": (torch.qint8, torch.int8), "quint8": (torch.quint8, torch.uint8),
            "qint32": (torch.qint32, torch.int32)}
_DTYPES = {name: getattr(torch, name) for name in ("qint8", "quint8", "qint32", "float32", "float16",
                                                   "bfloat16", "int8", "uint8", "int32", "int64")}
_QSCHEMES = {"per_tensor_affine": torch.per_tensor_affine, "per_channel_affine": torch.per_channel_affine}


# ---- pruned structure ---------------------------------------------------------------------------
def _int_like(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool)
                                                               for x in v)


def snapshot(net: nn.Module) -> dict[str, Any]:
    """Every tensor's shape and every module's integer attributes (what pruning may change)."""
    attrs = {path: {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in vars(m).items()
                    if not k.startswith("_") and k != "training" and _int_like(v)}
             for path, m in net.named_modules()}
    return {"attributes": {p: a for p, a in attrs.items() if a},
            "shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}


def structure_change(before: Mapping[str, Any], after: Mapping[str, Any],
                     previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"shapes": {key: [before, after]}, "attributes": {module: {name: [before, after]}}}`` for what
    differs between two :func:`snapshot` s; ``previous`` (a model pruned before) is folded in, so that
    ``before`` is always what the builder makes."""
    if before["shapes"].keys() != after["shapes"].keys():
        raise WeightsError("pruning added or removed state-dict entries "
                           f"({sorted(before['shapes'].keys() ^ after['shapes'].keys())[:4]}); only shapes may change")
    old = previous or {}
    shapes = {k: [list(v[0]), list(v[1])] for k, v in (old.get("shapes") or {}).items()}
    for key, shape in after["shapes"].items():
        if shape != before["shapes"][key]:
            first = shapes[key][0] if key in shapes else before["shapes"][key]
            shapes[key] = [first, shape]
    attributes = {p: {a: list(v) for a, v in d.items()} for p, d in (old.get("attributes") or {}).items()}
    for path, values in after["attributes"].items():
        for name, value in values.items():
            was = before["attributes"].get(path, {}).get(name)
            if was is not None and value != was:
                entry = attributes.setdefault(path, {})
                entry[name] = [entry[name][0] if name in entry else was, value]
    return {"shapes": shapes, "attributes": attributes}


def apply_structure(net: nn.Module, structure: Mapping[str, Any], *, source: str) -> None:
    """Cut ``net`` (as its builder made it) to a recorded :func:`structure_change`, in place."""
    if not isinstance(structure, Mapping):
        raise WeightsError(f"{source}: pruned.structure must be a JSON object; the file is damaged")
    tensors = {**dict(net.named_parameters(remove_duplicate=False)), **dict(net.named_buffers())}
    for key, pair in (structure.get("shapes") or {}).items():
        before, after = _pair(pair, f"{source}: pruned.structure.shapes[{key!r}]", shape=True)
        if key not in tensors:
            raise WeightsError(f"{source}: pruned.structure.shapes names {key!r}, which this model does not have; "
                               "the file is for another architecture or damaged")
        _cut(net, key, tensors[key], before, after, source)
    for path, attrs in (structure.get("attributes") or {}).items():
        try:
            module = net.get_submodule(str(path))
        except AttributeError:
            raise WeightsError(f"{source}: pruned.structure.attributes names module {path!r}, which this model "
                               "does not have; the file is for another architecture or damaged") from None
        for name, pair in dict(attrs).items():
            where = f"{source}: pruned.structure.attributes[{path!r}][{name!r}]"
            before, after = _pair(pair, where, shape=False)
            current = vars(module).get(name)
            if str(name).startswith("_") or not _int_like(current):
                raise WeightsError(f"{where}: {type(module).__name__} has no integer attribute {name!r} to set")
            if isinstance(current, int):
                new: Any = after if current == before else current
            else:
                new = type(current)(a if c == b else c for c, b, a in zip(current, before, after))
            setattr(module, name, new)


def _pair(value: Any, where: str, *, shape: bool) -> tuple[Any, Any]:
    ok = isinstance(value, list) and len(value) == 2
    if ok:
        for side in value:
            items = side if isinstance(side, list) else [side]
            ok = ok and (isinstance(side, list) or not shape) and all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 31 for x in items)
    if not ok or (isinstance(value[0], list) != isinstance(value[1], list)) or (
            isinstance(value[0], list) and len(value[0]) != len(value[1])):
        raise WeightsError(f"{where} must be [before, after] non-negative integers (lists of the same length); "
                           f"got {str(value)[:80]}: the file is damaged")
    return value[0], value[1]


def _cut(net: nn.Module, key: str, tensor: torch.Tensor, before: list[int], after: list[int], source: str) -> None:
    if len(before) != tensor.dim():
        raise WeightsError(f"{source}: pruned.structure.shapes[{key!r}] has {len(before)} dimensions, the model's "
                           f"tensor {tuple(tensor.shape)}; the file is for another architecture")
    target = [a if c == b else c for c, b, a in zip(tensor.shape, before, after)]
    if any(t > c for t, c in zip(target, tensor.shape)):
        raise WeightsError(f"{source}: pruned.structure.shapes[{key!r}] would grow {tuple(tensor.shape)} to "
                           f"{tuple(target)}; pruning only removes: the file is damaged")
    if target == list(tensor.shape):
        return
    owner_path, _, name = key.rpartition(".")
    owner = net.get_submodule(owner_path)
    cut = tensor.detach()[tuple(slice(0, n) for n in target)].clone()
    if name in owner._parameters:
        owner._parameters[name] = nn.Parameter(cut, requires_grad=tensor.requires_grad)
    else:
        owner._buffers[name] = cut


def restore_structure(model: "ZooModel", config: Mapping[str, Any], *, source: str) -> None:
    """Give ``model`` (built from ``config``'s names) the pruned architecture ``config`` records, if any,
    and keep the record in ``model.config`` (so the next save writes it again)."""
    pruned = config.get("pruned")
    if not pruned:
        return
    if not isinstance(pruned, Mapping):
        raise WeightsError(f"{source}: 'pruned' must be a JSON object; the file is damaged")
    if pruned.get("structure"):
        apply_structure(model.net, pruned["structure"], source=source)
    model.config["pruned"] = json.loads(json.dumps(pruned))


# ---- int8 state ---------------------------------------------------------------------------------
def encode_int8_state(net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An int8 network's state as plain tensors, and the safetensors metadata describing the rest."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for key, value in net.state_dict().items():
        entry = _encode(key, value, tensors)
        if entry["kind"] != "tensor":
            layout[key] = entry
    return tensors, {LAYOUT_KEY: json.dumps(layout, sort_keys=True)}


def _encode(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    if value is None:
        return {"kind": "none"}
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "name": str(value).removeprefix("torch.")}
    if isinstance(value, (tuple, list)):
        return {"kind": "tuple", "items": [_encode(f"{key}.__{i}", v, tensors) for i, v in enumerate(value)]}
    if not isinstance(value, torch.Tensor):
        raise WeightsError(f"int8 state entry {key!r} is a {type(value).__name__}, which model.save() cannot store "
                           "as data; export the model with model.export('torchscript', path) instead")
    if not value.is_quantized:
        tensors[key] = value.detach().contiguous().cpu()
        return {"kind": "tensor", "key": key}
    scheme = next((n for n, s in _QSCHEMES.items() if value.qscheme() == s), None)
    if scheme is None:
        raise WeightsError(f"int8 state entry {key!r} uses {value.qscheme()}, which model.save() does not store")
    tensors[key] = value.int_repr().contiguous().cpu()
    if scheme == "per_tensor_affine":
        tensors[f"{key}.__scale"] = torch.tensor([value.q_scale()], dtype=torch.float64)
        tensors[f"{key}.__zero_point"] = torch.tensor([value.q_zero_point()], dtype=torch.int64)
        axis = None
    else:
        tensors[f"{key}.__scale"] = value.q_per_channel_scales().to(torch.float64).contiguous().cpu()
        tensors[f"{key}.__zero_point"] = value.q_per_channel_zero_points().to(torch.int64).contiguous().cpu()
        axis = int(value.q_per_channel_axis())
    return {"kind": "qtensor", "key": key, "qscheme": scheme, "dtype": str(value.dtype).removeprefix("torch."),
            "axis": axis}


def decode_int8_state(tensors: dict[str, torch.Tensor], metadata: Mapping[str, str] | None,
                      *, source: str) -> dict[str, Any]:
    """Reassemble the state dict :func:`encode_int8_state` wrote (allow-listed kinds, dtypes, schemes only)."""
    try:
        layout = json.loads((metadata or {})[LAYOUT_KEY])
        assert isinstance(layout, dict)
    except (KeyError, ValueError, AssertionError):
        raise WeightsError(f"{source} has no readable int8 layout (metadata {LAYOUT_KEY!r}) although its config.json "
                           "says the model is int8: the file is damaged or was not written by model.save()") from None
    used: set[str] = set()
    state: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces the deprecation of quantized tensors at each one
        for key, entry in layout.items():
            state[key] = _decode(entry, tensors, used, f"{source}: int8 layout of {key!r}")
    for key, value in tensors.items():
        if key not in used and key not in state:
            state[key] = value
    return state


def _decode(entry: Any, tensors: Mapping[str, torch.Tensor], used: set[str], where: str) -> Any:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "none":
        return None
    if kind == "dtype" and entry.get("name") in _DTYPES:
        return _DTYPES[entry["name"]]
    if kind == "tuple" and isinstance(entry.get("items"), list) and len(entry["items"]) <= 8:
        return tuple(_decode(e, tensors, used, where) for e in entry["items"])
    key = entry.get("key") if isinstance(entry, dict) else None
    if kind in ("tensor", "qtensor") and isinstance(key, str) and key in tensors:
        used.add(key)
        if kind == "tensor":
            return tensors[key]
        scheme, qdtype = entry.get("qscheme"), _QDTYPES.get(entry.get("dtype"))
        scale, zero = tensors.get(f"{key}.__scale"), tensors.get(f"{key}.__zero_point")
        if scheme in _QSCHEMES and qdtype and scale is not None and zero is not None \
                and tensors[key].dtype == qdtype[1]:
            used.update({f"{key}.__scale", f"{key}.__zero_point"})
            if scheme == "per_tensor_affine" and scale.numel() == 1 and zero.numel() == 1:
                return torch._make_per_tensor_quantized_tensor(tensors[key], float(scale), int(zero))
            axis = entry.get("axis")
            if scheme == "per_channel_affine" and isinstance(axis, int) and 0 <= axis < tensors[key].dim() \
                    and scale.numel() == zero.numel() == tensors[key].shape[axis]:
                return torch._make_per_channel_quantized_tensor(tensors[key], scale, zero, axis)
    raise WeightsError(f"{where}: {str(entry)[:120]} is not a valid entry (unknown kind, dtype or scheme, or a "
                       "missing tensor): the file is damaged or was not written by model.save()")


def load_int8(model: "ZooModel", weights: Path, recipe: Mapping[str, Any], *, source: str) -> "ZooModel":
    """The int8 model saved in ``weights``: ``model`` (the float architecture, pruned if it was) quantized
    with ``recipe`` again, then the saved int8 state loaded into it strictly."""
    from safetensors import safe_open

    from .quantize import int8_model, quantize_net
    from .weights import read_state_dict

    method, backend = recipe.get("method"), recipe.get("backend")
    if method not in ("dynamic", "static") or not isinstance(backend, str):
        raise WeightsError(f"{source}: quantized = {dict(recipe)} names no known int8 method ('dynamic' or "
                           "'static') and backend; the file is damaged")
    if backend not in torch.backends.quantized.supported_engines:
        raise WeightsError(f"{source}: the model was quantized for the {backend!r} int8 backend, which this torch "
                           f"does not have ({torch.backends.quantized.supported_engines}); load the float model "
                           "and quantize it here")
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    state = decode_int8_state(read_state_dict(weights), metadata, source=str(weights))
    from .export import default_sample

    net = model.net.cpu().eval()
    qnet = quantize_net(net, str(method), backend, [default_sample(model, batch=1).cpu()])
    ordered: Any = OrderedDict(state)
    ordered._metadata = getattr(qnet.state_dict(), "_metadata", None)  # module versions: this torch's own, as saved
    try:
        qnet.load_state_dict(ordered, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise WeightsError(f"{weights} does not fit the int8 {model.label} its config.json describes "
                           f"({str(exc).splitlines()[0][:300]}); the files do not belong together") from exc
    return int8_model(model, qnet, dict(recipe))


def load_reshaped(model: "ZooModel", config: Mapping[str, Any], weights: Path, *, strict: bool,
                  source: str) -> "ZooModel":
    """A saved pruned and/or int8 model: ``model`` (built from ``config``'s names, without weights) cut to
    the recorded structure, then quantized again and given the int8 state, or given the float weights."""
    from .api import load_weights

    restore_structure(model, config, source=source)
    recipe = config.get("quantized")
    if recipe:
        if not isinstance(recipe, Mapping):
            raise WeightsError(f"{source}: 'quantized' must be a JSON object; the file is damaged")
        int8 = load_int8(model, weights, recipe, source=source)
        int8.provenance.update(weights=str(weights), sha256=config.get("sha256"))
        return int8
    model.provenance["weights"] = str(weights)
    load_weights(model, weights, head=model.head_prefixes, strict=strict, label=model.label)
    return model
