"""The one place that imports Hugging Face transformers, with the error that says how to get it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from zoo_core.errors import ZooError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from zoo_core.model import PretrainedWeights

#: how a user gets this plugin's dependency
EXTRA = 'pip install "zoo[transformers]"'


class TransformersMissingError(ZooError, ImportError):
    """A transformers model was asked for, but the optional ``transformers`` package is not installed."""


def require_transformers(what: str) -> ModuleType:
    """``import transformers``, or a :class:`TransformersMissingError` naming ``what`` needed it and the fix."""
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise TransformersMissingError(
            f"{what} is a Hugging Face transformers model, and transformers is not installed: {EXTRA} "
            f"(everything else in the zoo works without it)") from exc


#: where a Hugging Face Hub repository's weights file is (the zoo's downloader fetches it; no huggingface_hub)
HUB_URL = "https://huggingface.co/{repo}/resolve/main/model.safetensors"


def hub_weights(repo: str, tag: str, *, license: str, num_classes: int | None = None, preprocess: Any = None,
                metrics: dict[str, Any] | None = None) -> "PretrainedWeights":
    """The zoo's description of ``repo``'s ``model.safetensors`` on the Hub, cached as
    ``<org>--<name>.safetensors``; ``metrics["hub_id"]`` names the repository."""
    from zoo_core.model import PretrainedWeights

    return PretrainedWeights(tag=tag, url=HUB_URL.format(repo=repo), filename=repo.replace("/", "--") + ".safetensors",
                             num_classes=num_classes, preprocess=preprocess, license=license,
                             metrics={"hub_id": repo, **dict(metrics or {})})


def hub_keys(hf_model: "nn.Module", prefix: str, *, drop: Sequence[str] = ()
             ) -> Callable[[dict[str, "Tensor"]], dict[str, "Tensor"]]:
    """A ``map_state_dict`` turning a Hub checkpoint of ``hf_model``'s class into the zoo network's keys.

    ``hf_model`` sits under ``prefix`` (``"hf."``) in the zoo network. Hub files keep the layout their
    model was first published with; transformers >= 5 renames keys when it loads them
    (``transformers.conversion_mapping``): the same renamings are applied here, so a file loads exactly as
    ``from_pretrained`` would load it, without transformers reading it. Keys already in the network's layout
    (a file the zoo saved) pass unchanged; keys starting with one of ``drop`` (parts of the checkpoint the
    zoo network leaves out: an ImageNet classifier, a text tower) are dropped. A key needing a tensor
    conversion (split or merged weights) is refused by name: the zoo only renames.
    """
    renamings, converters = _conversions(hf_model)
    own = hf_model.state_dict()
    base = getattr(hf_model, "base_model_prefix", None) or None

    def convert(state: dict[str, "Tensor"]) -> dict[str, "Tensor"]:
        from zoo_core.errors import WeightsError

        out: dict[str, Tensor] = {}
        for key, value in state.items():
            inner = key[len(prefix):] if key.startswith(prefix) else key
            if inner in own:
                out[prefix + inner] = value
                continue
            if any(inner.startswith(d) for d in drop):
                continue
            renamed, pattern = _rename(inner, renamings, converters, base, own)
            if pattern is not None:
                raise WeightsError(f"checkpoint key {key!r} needs transformers' tensor conversion {pattern!r} "
                                   f"for {type(hf_model).__name__}; the zoo only renames keys. Convert the file with "
                                   "transformers (from_pretrained, then save_pretrained) and pass the result")
            out[prefix + renamed] = value
        return out

    return convert


def _conversions(hf_model: "nn.Module") -> tuple[list[Any], list[Any]]:
    """transformers' key renamings and tensor converters for ``hf_model`` (none before transformers 5)."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming
    except ImportError:  # transformers 4: checkpoints are stored in the model's own layout
        return [], []
    transforms = get_model_conversion_mapping(hf_model)
    return ([t for t in transforms if isinstance(t, WeightRenaming)],
            [t for t in transforms if isinstance(t, WeightConverter)])


def _rename(key: str, renamings: list[Any], converters: list[Any], base: str | None,
            own: Mapping[str, Any]) -> tuple[str, str | None]:
    if not renamings and not converters:
        renamed, pattern = key, None
    else:
        from transformers.core_model_loading import rename_source_key

        renamed, pattern = rename_source_key(key, renamings, converters)
    if base and renamed not in own:  # a base model's file in a task model, or the reverse (as from_pretrained does)
        if renamed.startswith(base + ".") and renamed[len(base) + 1:] in own:
            renamed = renamed[len(base) + 1:]
        elif f"{base}.{renamed}" in own:
            renamed = f"{base}.{renamed}"
    return renamed, pattern
