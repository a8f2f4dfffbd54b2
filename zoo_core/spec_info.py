"""``zoo.info(name)`` / ``zoo info NAME``: what the catalog knows about a model, head or backbone name.

Read from the catalog only (no torch, no model code). The text ``zoo info`` prints is each result's
``str()``, so Python and the command line say the same thing. A head's requirements are described by
:mod:`zoo_core.features`, the rules ``zoo.build`` and ``zoo compat`` apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .specs import BackboneSpec, HeadSpec, ModelSpec

if TYPE_CHECKING:
    from .registry import Registry


@dataclass
class ModelInfo:
    """What the catalog knows about a model name: every provider, the default one, tasks, weights."""

    name: str
    default: str
    providers: list[str]
    tasks: list[str]
    input_size: tuple[int, int, int] | None
    weights: dict[str, list[str]] = field(default_factory=dict)
    export_formats: dict[str, list[str]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    #: the same short name as another kind: ``{"head": ["torchvision:fpn"], "backbone": [...]}``
    also: dict[str, list[str]] = field(default_factory=dict)
    kind: ClassVar[str] = "model"

    def __str__(self) -> str:
        lines = [f"{self.name}", f"  tasks:     {', '.join(self.tasks)}",
                 f"  providers: {', '.join(self.providers)} (default: {self.default}; override with "
                 "a qualified name or ZOO_PROVIDER_PRIORITY)",
                 f"  input:     {self.input_size or 'any'}"]
        for other, names in self.also.items():  # zoo.load takes the model; zoo.build the head/backbone
            use = f"head={self.name!r}" if other == "head" else f"backbone={self.name!r}"
            lines.append(f"  also a {other}: {', '.join(names)} (`zoo info {self.name} --kind {other}`; "
                         f"zoo.build(..., {use}) uses it, zoo.load({self.name!r}) the model)")
        for qn in self.providers:
            w = self.weights.get(qn) or []
            lines.append(f"  {qn}: weights {', '.join(w[:8]) + (' ...' if len(w) > 8 else '') or 'none known'}"
                         f"; export {', '.join(self.export_formats.get(qn) or []) or '-'}")
            if self.descriptions.get(qn):
                lines.append(f"    {self.descriptions[qn]}")
        return "\n".join(lines)


@dataclass
class ComponentInfo:
    """Common fields of a head's and a backbone's info: the provider a short name picks, and the others."""

    name: str
    #: the provider the short name picks (``plugin:name``)
    qualified_name: str
    #: the plugin (entry-point name) that registered it, and the distribution that installed that plugin
    plugin: str
    distribution: str
    version: str | None
    providers: list[str]
    description: str = ""
    #: the builder options a saved model's config may set (the spec's ``saved_options``)
    saved_options: list[str] = field(default_factory=list)
    kind: ClassVar[str] = ""

    def _common_lines(self) -> list[str]:
        what = f"a {getattr(self, 'task', '')} head" if self.kind == "head" else "a backbone"
        lines = [f"{self.name}: {what}, not a whole model (zoo.build combines backbones and heads)",
                 f"  name:          {self.qualified_name}" + (f" (default of {', '.join(self.providers)}; "
                                                               "override with a qualified name or "
                                                               "ZOO_PROVIDER_PRIORITY)" if len(self.providers) > 1
                                                               else ""),
                 f"  plugin:        {self.plugin}",
                 f"  distribution:  {self.distribution or 'unknown'}" + (f" {self.version}" if self.version else "")]
        if self.description:
            lines.append(f"  {self.description}")
        return lines


@dataclass
class HeadInfo(ComponentInfo):
    """A head: its task, its requirements on the backbone's maps (every key, defaults filled in), and
    whether typical backbones meet them (the rule ``zoo.build`` and ``zoo compat`` apply)."""

    task: str = ""
    requires: dict[str, Any] = field(default_factory=dict)
    needs: str = ""
    #: typical backbone -> "fits" / "fits through a simple feature pyramid (...)" / "no: reason"
    fits: dict[str, str] = field(default_factory=dict)
    kind: ClassVar[str] = "head"

    def __str__(self) -> str:
        lines = self._common_lines()
        lines += [f"  task:          {self.task}",
                  f"  requires:      {', '.join(f'{k}={v!r}' for k, v in self.requires.items())}",
                  f"  needs:         {self.needs}"]
        lines += [f"    {backbone}: {verdict}" for backbone, verdict in self.fits.items()]
        if self.saved_options:
            more = len(self.saved_options) - 8
            lines.append(f"  saved options: {', '.join(self.saved_options[:8])}" + (f", ... (+{more})" if more > 0 else ""))
        lines.append(f"  build:         zoo.build({self.task!r}, backbone=BACKBONE, head={self.name!r}, num_classes=N); "
                     "`zoo compat BACKBONE` checks a real backbone against every head")
        return "\n".join(lines)


@dataclass
class BackboneInfo(ComponentInfo):
    """A backbone: its known pretrained weights."""

    weights: list[str] = field(default_factory=list)
    kind: ClassVar[str] = "backbone"

    def __str__(self) -> str:
        lines = self._common_lines()
        weights = ", ".join(self.weights[:8]) + (" ..." if len(self.weights) > 8 else "")
        lines += [f"  weights:       {weights or 'none known'}",
                  f"  build:         zoo.build(TASK, backbone={self.qualified_name!r}, head=HEAD, num_classes=N); "
                  f"`zoo compat {self.qualified_name}` lists the heads it fits"]
        return "\n".join(lines)


def model_info(reg: "Registry", name: str, task: str | None) -> ModelInfo:
    """:class:`ModelInfo` of a model name (raises UnknownNameError/IncompatibleError as resolve does)."""
    best = reg.resolve("model", name, task=task)
    specs = [best] if ":" in name else reg.providers("model", best.name)
    specs = [s for s in specs if isinstance(s, ModelSpec)]
    return ModelInfo(
        name=best.name, default=best.qualified_name, providers=[s.qualified_name for s in specs],
        tasks=sorted({t for s in specs for t in s.tasks}),
        input_size=getattr(best, "input_size", None),
        weights={s.qualified_name: list(s.weights) for s in specs},
        export_formats={s.qualified_name: list(s.export_formats) for s in specs},
        descriptions={s.qualified_name: s.description for s in specs},
        also={kind: [s.qualified_name for s in found] for kind in ("head", "backbone")
              if (found := reg.providers(kind, best.name))},
    )


def component_info(reg: "Registry", kind: str, name: str, task: str | None = None) -> HeadInfo | BackboneInfo:
    """:class:`HeadInfo` (``task`` picks among heads) or :class:`BackboneInfo` of a name."""
    from .compose import requirements
    from .features import TYPICAL_BACKBONES, fit

    spec = reg.resolve(kind, name, task=task if kind == "head" else None)
    providers = [spec] if ":" in name else reg.providers(kind, spec.name, getattr(spec, "task", None) or None)
    plugin = reg.plugins.get(spec.plugin)
    common: dict[str, Any] = dict(
        name=spec.name, qualified_name=spec.qualified_name, plugin=spec.plugin,
        distribution=spec.distribution, version=plugin.version if plugin is not None else None,
        providers=[s.qualified_name for s in providers], description=spec.description,
        saved_options=list(getattr(spec, "saved_options", ())))
    if isinstance(spec, HeadSpec):
        req = requirements(spec)
        return HeadInfo(**common, task=spec.task, requires=req.to_dict(), needs=req.describe(),
                        fits={label: str(fit(info, req)) for label, info in TYPICAL_BACKBONES.items()})
    assert isinstance(spec, BackboneSpec)
    return BackboneInfo(**common, weights=list(spec.weights))
