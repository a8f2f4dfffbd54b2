"""torchvision's Weights enums, described for the zoo (never downloaded here).

For each tag of a model's Weights enum this gives a :class:`~zoo_core.model.PretrainedWeights`: the
URL, the cache file name (the URL's basename) and the sha256 prefix torchvision embeds in it
(torch.hub's ``name-<sha256 prefix>.pth`` convention), the class names, the preprocessing
(resize/crop size, mean/std, interpolation), the licence and the published accuracy. The zoo fetches
and verifies the file itself (offline-first); torchvision's own downloader is never called.

``python -m zoo_torchvision.tv_weights`` prints the rows of
:data:`zoo_torchvision.classification_specs.MODELS` for the installed torchvision.
"""

from __future__ import annotations

import re
from typing import Any

import torchvision
from torchvision.models import get_model_weights, list_models

from zoo_core.model import Preprocess, PretrainedWeights
from zoo_core.specs import ModelSpec

from .classification_specs import EXCLUDED_TAGS, HEADS

HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: name-<sha256 prefix>.ext


def weights_enum(name: str) -> Any:
    """The Weights enum class of torchvision model ``name``."""
    return get_model_weights(name)


def tags(name: str) -> list[str]:
    """The usable tags of ``name``'s Weights enum, the enum's DEFAULT first."""
    enum = weights_enum(name)
    default = enum.DEFAULT.name
    return [default] + [w.name for w in enum if w.name != default and w.name not in EXCLUDED_TAGS]


def entry(name: str, tag: str) -> Any:
    """The enum member ``tag`` of model ``name``."""
    return weights_enum(name)[tag]


def preprocess_of(member: Any) -> Preprocess:
    """The evaluation preprocessing torchvision states for a Weights member."""
    t = member.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0])
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocess(input_size=(crop, crop), mean=tuple(float(m) for m in t.mean),
                      std=tuple(float(s) for s in t.std), interpolation=str(interpolation),
                      crop_pct=round(crop / resize, 4))


def describe(name: str, tag: str) -> PretrainedWeights:
    """Everything the zoo needs to fetch, verify and use weights ``name.tag``."""
    member = entry(name, tag)
    meta = dict(member.meta)
    filename = member.url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(filename)
    categories = meta.get("categories")
    metrics: dict[str, Any] = dict(meta.get("_metrics") or {})
    for key, out in (("num_params", "num_params"), ("_ops", "gflops"), ("_file_size", "file_size_mb"),
                     ("recipe", "recipe")):
        if key in meta:
            metrics[out] = meta[key]
    return PretrainedWeights(
        tag=tag, url=member.url, filename=filename, hash_prefix=match.group(1) if match else None,
        num_classes=len(categories) if categories else None,
        class_names=list(categories) if categories else None,
        preprocess=preprocess_of(member),
        license=meta.get("license") or "BSD-3-Clause (torchvision); check the dataset's terms",
        metrics=metrics)


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every tag a torchvision spec lists, described (for ``zoo.list_weights`` / ``zoo pull``)."""
    return [describe(spec.name, tag) for tag in spec.weights]


def family(name: str) -> str:
    """The :data:`~zoo_torchvision.classification_specs.HEADS` family a model name belongs to."""
    for prefix in sorted(HEADS, key=len, reverse=True):
        if name.startswith(prefix):
            return prefix
    raise KeyError(f"torchvision model {name!r} belongs to no known family; add its classifier's "
                   "state-dict prefix to zoo_torchvision.classification_specs.HEADS")


def table_rows() -> list[tuple[str, str, int, str]]:
    """The rows :data:`~zoo_torchvision.classification_specs.MODELS` should hold for this torchvision."""
    rows = []
    for name in list_models(module=torchvision.models):
        default = weights_enum(name).DEFAULT
        rows.append((name, family(name), int(default.transforms().crop_size[0]), " ".join(tags(name))))
    return rows


if __name__ == "__main__":  # pragma: no cover - a maintenance helper
    for row in table_rows():
        print(f"    {row!r},")
