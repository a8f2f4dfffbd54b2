"""Builder options read from a file are data: only the keys the plugin declared, and never a path.

A saved model's ``config.json`` and a training checkpoint's ``model_config`` record the options the
model was built with, and rebuilding it hands them to the plugin's builder again. Some library
options name a file the library then reads (timm's ``checkpoint_path`` and
``pretrained_cfg_overlay={"file": ...}`` end in ``torch.load``), so a config written by someone else
would make *loading* read any file they chose. Options typed in Python are the user's own choice and
are never limited here; options read from a file are checked before any builder runs:

- a key is let through only when the spec declares it in ``saved_options`` (a field of
  :class:`~zoo_core.specs.ModelSpec`, :class:`~zoo_core.specs.BackboneSpec` and
  :class:`~zoo_core.specs.HeadSpec`); a composed model's ``backbone_options`` are checked against
  its backbone's declaration and its other options against its head's;
- a value that looks like a file path or URL, at any depth (dict keys and list items included), is
  refused even under a declared key;
- the error names the config file, the key and why, and how to pass the option yourself.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from .errors import OptionError
from .specs import Spec

#: options ``zoo.build`` records for itself (not the head's): checked here, not declared by plugins
COMPOSE_OPTIONS = ("backbone_options", "adapter_channels")

#: a URL scheme or a loader prefix anywhere a name could hide it (``tu-local-dir:x`` for an smp encoder)
_SCHEME = re.compile(r"(^|[^a-z0-9])(file|https?|ftps?|s3|gs|az|hf[-_]hub|local[-_]dir|data):", re.IGNORECASE)
_FILE_SUFFIX = re.compile(r"\.(pt|pth|bin|ckpt|safetensors|npz|npy|pkl|pickle|h5|onnx|json|ya?ml|zip|tar|gz)$",
                          re.IGNORECASE)


def path_like(value: str) -> bool:
    """Does a string look like a file path or URL (``/x``, ``a/b``, ``C:\\x``, ``~``, ``..``, ``https:``,
    ``hf-hub:``, ``local-dir:``, ``w.pth``)? Model and encoder names (``resnet34``, ``tu-convnext_tiny``,
    ``timm:convnext_tiny``) do not."""
    text = value.strip()
    return bool(text) and ("/" in text or "\\" in text or text.startswith(("~", "."))
                           or bool(_SCHEME.search(text)) or bool(_FILE_SUFFIX.search(text)))


def path_like_values(value: Any, trail: str = "") -> Iterator[tuple[str, str]]:
    """``(where, string)`` for every path-like string inside ``value`` (dict keys, values, list items)."""
    if isinstance(value, str):
        if path_like(value):
            yield trail, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from path_like_values(key, f"{trail} (a key)")
            yield from path_like_values(item, f"{trail}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from path_like_values(item, f"{trail}[{i}]")


def _short(value: Any, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def check_saved_options(spec: Spec, options: Any, *, source: str, fix: str, key_prefix: str = "") -> dict[str, Any]:
    """``options`` read from ``source`` for ``spec``'s builder, refused unless every key is one of
    ``spec.saved_options`` and no value is path-like. ``fix`` says how to pass them in Python instead."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise OptionError(f"{source}: {key_prefix or 'options'} must be a JSON object of option names to values, "
                          f"got {_short(options)}; the file is damaged or was not written by the zoo")
    declared = tuple(getattr(spec, "saved_options", ()) or ())
    for key, value in options.items():
        name = f"{key_prefix}[{key!r}]" if key_prefix else repr(key)
        if key not in declared:
            raise OptionError(
                f"{source}: option {name} = {_short(value)} is refused: {spec.qualified_name} (plugin "
                f"{spec.plugin!r}) does not declare it as an option a saved config may set (it declares "
                f"{', '.join(declared) or 'none'}). Options read from a file are data: loading never runs code "
                f"or reads files named in a saved config. If you trust this option, pass it yourself: {fix}")
        refuse_paths(value, source=source, name=name, fix=fix)
    return dict(options)


def refuse_paths(value: Any, *, source: str, name: str, fix: str) -> None:
    """Refuse a value read from ``source`` that holds a file path or URL anywhere inside it."""
    for where, text in path_like_values(value):
        raise OptionError(
            f"{source}: option {name}{where} = {_short(text)} looks like a file path or URL and is refused: "
            "loading never reads files named in a saved config (a builder could hand it to torch.load). "
            f"If you trust it, pass the option yourself: {fix}")


def check_composed_options(backbone: Spec, head: Spec, options: Any, *, source: str, fix: str) -> dict[str, Any]:
    """A saved composed model's options: ``backbone_options`` against the backbone's declaration,
    ``adapter_channels`` (zoo.build's own, an integer), everything else against the head's."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OptionError(f"{source}: options must be a JSON object, got {_short(options)}; the file is damaged")
    checked: dict[str, Any] = check_saved_options(
        head, {k: v for k, v in options.items() if k not in COMPOSE_OPTIONS}, source=source, fix=fix)
    if "backbone_options" in options:
        checked["backbone_options"] = check_saved_options(backbone, options["backbone_options"], source=source,
                                                          fix=fix, key_prefix="'backbone_options'")
    if "adapter_channels" in options:
        value = options["adapter_channels"]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise OptionError(f"{source}: option 'adapter_channels' = {_short(value)} must be a positive integer; "
                              "the file is damaged")
        checked["adapter_channels"] = value
    return checked
