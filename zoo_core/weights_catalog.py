"""``zoo.list_weights(name)``: every known pretrained weight of every provider of a model name.

Each provider describes its tags through ``ModelSpec.weights_info`` (a ``"module:function"``
that returns :class:`~zoo_core.model.PretrainedWeights` for a spec without building the network).
A provider that lists tags without describing them still shows its tags, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ZooError
from .registry import get_registry
from .specs import ModelSpec, import_object


@dataclass
class WeightInfo:
    """One pretrained weight: ``model.tag`` plus where it comes from and how to verify and use it."""

    model: str                     # qualified name, e.g. "torchvision:resnet50"
    tag: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    hash_prefix: str | None = None
    license: str | None = None
    num_classes: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None
    default: bool = False          # the tag ``weights="default"`` picks
    cached: bool = False           # already in $ZOO_HOME (verified on load, not here)
    note: str = ""                 # why details are missing, if they are

    @property
    def name(self) -> str:
        """``plugin:model.tag``: what ``zoo.load`` and ``zoo pull`` accept."""
        return f"{self.model}.{self.tag}"

    @property
    def hash(self) -> str:
        """The full sha256 when known, else ``prefix...``, else ``"-"``."""
        return self.sha256 or (f"{self.hash_prefix}..." if self.hash_prefix else "-")


def describe_weights(spec: ModelSpec) -> list[Any]:
    """The provider's :class:`~zoo_core.model.PretrainedWeights` for ``spec`` (imports its module)."""
    if not spec.weights_info:
        return []
    fn = import_object(spec.weights_info, what=f"weights_info of {spec.qualified_name!r}")
    described = list(fn(spec))
    unknown = [w.tag for w in described if spec.weights and w.tag not in spec.weights]
    if unknown:
        raise ZooError(f"weights_info of {spec.qualified_name} describes tags {unknown} that the spec does "
                       f"not list in weights= (plugin {spec.plugin})")
    return described


def find_weights(spec: ModelSpec, tag: str) -> Any:
    """The :class:`~zoo_core.model.PretrainedWeights` for ``spec.tag``; raises listing the known tags."""
    from .errors import UnknownNameError

    for w in describe_weights(spec):
        if w.tag == tag:
            return w
    known = f"known tags: {', '.join(spec.weights[:8]) or 'none'}"
    raise UnknownNameError(f"weights tag of {spec.qualified_name}", tag, spec.weights,
                           known if spec.weights_info else f"plugin {spec.plugin!r} describes no weights")


def list_weights(name: str, task: str | None = None) -> list[WeightInfo]:
    """Every known weight of every provider of ``name`` (or of one, for ``"plugin:name"``).

    Providers come best first (the order ``zoo.load`` resolves them in), each provider's default
    tag first. Importing a provider's ``weights_info`` may import its library (torchvision, timm),
    but no network is used and no network is built.
    """
    from .weights import cache_path

    reg = get_registry()
    best = reg.resolve("model", name, task=task)
    specs = [best] if ":" in name else [s for s in reg.providers("model", best.name) if isinstance(s, ModelSpec)]
    rows: list[WeightInfo] = []
    for spec in specs:
        try:
            described = {w.tag: w for w in describe_weights(spec)}
            note = "" if spec.weights_info else "the plugin lists this tag but does not describe it"
        except (Exception, SystemExit) as exc:  # a broken provider (even one calling sys.exit) must not hide the others
            described, note = {}, f"could not describe: {type(exc).__name__}: {exc}"
        for i, tag in enumerate(spec.weights or tuple(described)):
            w = described.get(tag)
            row = WeightInfo(model=spec.qualified_name, tag=tag, default=i == 0, note="" if w else note)
            if w is not None:
                row.url, row.filename, row.sha256, row.hash_prefix = w.url, w.filename, w.sha256, w.hash_prefix
                row.license, row.num_classes, row.metrics = w.license, w.num_classes, dict(w.metrics)
                row.preprocess = w.preprocess.to_dict() if w.preprocess is not None else None
                row.cached = Path(cache_path(w, spec.plugin)).exists()
            rows.append(row)
    return rows


def format_table(rows: list[WeightInfo], metric_keys: int = 2) -> str:
    """A plain-text table of weights (used by ``zoo weights``)."""
    if not rows:
        return "no known pretrained weights"
    out = []
    for r in rows:
        metrics = ", ".join(f"{k}={v:g}" for k, v in _numeric(r.metrics)[:metric_keys]) or "-"
        size = r.preprocess["input_size"][0] if r.preprocess else "-"
        flags = ("default " if r.default else "") + ("cached" if r.cached else "")
        out.append([r.name, flags.strip() or "-", str(size), metrics, r.hash, r.license or "-",
                    r.url or r.note or "-"])
    head = ["weights", "", "size", "metrics", "sha256", "license", "source"]
    widths = [max(len(str(x[i])) for x in out + [head]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in [head] + out]
    return "\n".join(lines)


def _numeric(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """Numeric metrics flattened (``{"ImageNet-1K": {"acc@1": 69.8}}`` -> ``ImageNet-1K/acc@1``)."""
    out: list[tuple[str, float]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            out += _numeric(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((prefix + str(key), float(value)))
    return out
