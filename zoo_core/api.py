"""The public functions: load, list_models, list_tasks, list_plugins, info, get_task.

Listing and ``info`` read only the catalog (no torch, no model code). ``load`` follows plain calls
from a name to the plugin builder that makes the network.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .errors import IncompatibleError, OptionError, UnknownNameError, ZooError, warn
from .registry import PluginInfo, get_registry
from .spec_info import BackboneInfo, HeadInfo, ModelInfo, component_info, model_info
from .specs import ModelSpec, TaskSpec

if TYPE_CHECKING:
    from .model import ZooModel
    from .task import Task


def list_models(pattern: str | Iterable[str] | None = None, *, task: str | None = None,
                plugin: str | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
    """Sorted model names, filtered by glob ``pattern``, ``task`` (``"cls"`` works) and ``plugin``."""
    return get_registry().list("model", pattern, task=task, plugin=plugin, exclude=exclude)


def list_backbones(pattern: str | Iterable[str] | None = None, *, plugin: str | None = None) -> list[str]:
    """Sorted backbone names usable with :func:`zoo_core.build`."""
    return get_registry().list("backbone", pattern, plugin=plugin)


def list_heads(task: str | None = None) -> list[str]:
    """Sorted head names, optionally for one task."""
    return get_registry().list("head", task=task)


def list_tasks() -> list[str]:
    """Canonical names of every registered task, sorted."""
    return sorted(s.name for s in get_registry().specs("task"))


def list_plugins() -> list[PluginInfo]:
    """Every discovered plugin (loaded or not): name, distribution, version, error or None."""
    return sorted(get_registry().plugins.values(), key=lambda p: p.name)


def info(name: str, task: str | None = None, *, kind: str | None = None) -> ModelInfo | HeadInfo | BackboneInfo:
    """Describe a name from the catalog (no model code runs): what ``zoo info NAME`` prints is ``str()`` of it.

    A model name gives a :class:`ModelInfo` (tasks, every provider best first, input size, known
    weights); a head name a :class:`HeadInfo` (its task, requirements on the backbone's maps and what
    they mean); a backbone name a :class:`BackboneInfo`. A name that is several kinds (``resnet18`` is a
    model and a backbone) is taken as a model unless ``kind=`` (``"model"``, ``"head"``,
    ``"backbone"``) says otherwise; ``task`` picks among a model's or head's tasks.
    """
    reg = get_registry()
    if kind is not None and kind not in ("model", "head", "backbone"):
        raise ValueError(f"info(kind={kind!r}): use 'model', 'head' or 'backbone'")
    if kind == "model":
        return model_info(reg, name, task)
    if kind is not None:
        return component_info(reg, kind, name, task)
    try:
        return model_info(reg, name, task)
    except UnknownNameError as not_a_model:
        for other in ("head", "backbone"):
            try:
                return component_info(reg, other, name, task)
            except UnknownNameError:
                continue
        raise not_a_model from None


@functools.lru_cache(maxsize=None)
def _task_instance(spec: TaskSpec) -> "Task":
    """Build a task once; what its plugin's builder raises names builder, plugin and distribution
    (:meth:`~zoo_core.specs.Spec.call_builder`)."""
    from .errors import PluginError
    from .task import Task

    task = spec.call_builder()
    if not isinstance(task, Task):
        raise PluginError(f"the builder {spec.builder!r} of {spec.where} returned {type(task).__name__}, not a "
                          "zoo_core.task.Task")
    return task


def get_task(name: str) -> "Task":
    """The task object for a name or alias (``"det"`` -> the detection task)."""
    return _task_instance(get_registry().task_spec(name))


def split_tag(reg, name: str, task: str | None, provider: str | None) -> tuple[ModelSpec, str | None]:
    """Resolve ``name`` or ``name.tag`` (timm style) to a spec and an optional weights tag.

    A short name a third party's plugin shares with another plugin warns which provider it took
    (:func:`zoo_core.providers.announce_choice`); a qualified name or ``provider=`` is the user's choice.
    """
    from .providers import announce_choice

    spec, tag = _split_tag(reg, name, task, provider)
    if ":" not in name and provider is None:
        announce_choice(reg, spec, task=reg.canonical_task(task) if task else None)
    return spec, tag


def _split_tag(reg, name: str, task: str | None, provider: str | None) -> tuple[ModelSpec, str | None]:
    try:
        spec = reg.resolve("model", name, task=task, provider=provider)
        return spec, None
    except UnknownNameError as first:
        base, dot, tag = name.rpartition(".")
        if not dot or not base:
            raise
        try:
            spec = reg.resolve("model", base, task=task, provider=provider)
        except UnknownNameError:
            raise first from None
        if spec.weights and tag not in spec.weights:
            # another provider of the same short name may know the tag (not for a qualified name)
            canon = reg.canonical_task(task) if task else None
            for other in ([] if ":" in base or provider else reg.providers("model", spec.name, canon)):
                if isinstance(other, ModelSpec) and tag in other.weights:
                    return other, tag
            raise UnknownNameError(f"weights tag of {spec.qualified_name}", tag, spec.weights,
                                   _known_tags(spec)) from None
        return spec, tag


def _known_tags(spec: ModelSpec) -> str:
    tags = ", ".join(spec.weights[:8]) + (" ..." if len(spec.weights) > 8 else "")
    return f"known tags: {tags} (`zoo weights {spec.name}` describes them)"


def load(name: str | Path, task: str | None = None, *, num_classes: int | None = None,
         class_names: Sequence[str] | None = None, weights: str | Path | None = None,
         provider: str | None = None, strict: bool = True, task_options: Mapping[str, Any] | None = None,
         seed: int | None = None, **options: Any) -> "ZooModel":
    """Build a task model by name (or load a directory written by ``model.save``).

    ``name``: ``"resnet50"``, ``"timm:resnet50"``, ``"resnet50.a1_in1k"`` (a weights tag), a saved
    directory, a training run's folder (``"runs/x"``: its ``model/``, else ``best.pt``, else ``last.pt``)
    or a checkpoint file (``"runs/x/best.pt"``, which loads with its own head; :mod:`zoo_core.model_files`).
    ``task``: ``"cls"``/``"classification"`` etc. (default: the model's first task).
    ``weights``: None (random init, the default: nothing is ever downloaded silently),
    ``"default"`` or a tag (the provider's pretrained weights, fetched offline-first), or a path to
    a ``.safetensors``/``.pt`` file or a saved directory. ``num_classes``/``class_names`` replace
    the head; the load report (``model.weights_report``) says which tensors were re-initialised.
    ``options`` go to the plugin's builder (e.g. ``backbone="resnet34"`` for U-Net).
    ``task_options`` override the task's per-model options (augmentation, loss: e.g.
    ``{"hflip": 0.0}`` for digits, ``{"loss": "dice"}``); they are saved with the model.
    ``seed``: build under this seed, so every randomly initialised tensor (a new head, a decoder) is
    the same on every call; the caller's random streams are left as they were. Without it the
    initialisation draws from torch's global generator (``zoo.seed_everything(n)`` seeds that).
    """
    from .train.numerics import seeded

    with seeded(seed):
        return _load(name, task, num_classes=num_classes, class_names=class_names, weights=weights,
                     provider=provider, strict=strict, task_options=task_options, options=options)


def _load(name: str | Path, task: str | None, *, num_classes: int | None, class_names: Sequence[str] | None,
          weights: str | Path | None, provider: str | None, strict: bool, task_options: Mapping[str, Any] | None,
          options: dict[str, Any]) -> "ZooModel":
    from .model_files import is_checkpoint_file, load_checkpoint_model, model_on_disk, not_a_model_error
    from .saving import load_model

    found = model_on_disk(name)  # a saved folder, a run folder (model/, best.pt, last.pt) or a checkpoint
    if found is not None or isinstance(name, Path):
        if found is None:
            raise not_a_model_error(Path(name)) if Path(name).exists() else \
                FileNotFoundError(f"zoo.load: {name} does not exist")
        ignored = {**options, **({"weights": weights} if weights is not None else {}),
                   **({"provider": provider} if provider is not None else {})}
        if ignored:  # a saved model rebuilds from its own config.json: these would silently do nothing
            raise OptionError(f"zoo.load({str(name)!r}) loads a saved model, which rebuilds with the options and "
                              f"weights it was saved with; {sorted(ignored)} cannot apply. Load it by name "
                              "to build with other options, or pass num_classes=/class_names= to re-head it")
        if is_checkpoint_file(found):
            model = load_checkpoint_model(found, task=task, num_classes=num_classes, class_names=class_names)
        else:
            model = load_model(found, task=task, num_classes=num_classes, class_names=class_names, strict=strict)
        return set_task_options(model, task_options)
    reg = get_registry()
    try:
        spec, tag = split_tag(reg, str(name), task, provider)
    except UnknownNameError:
        if Path(name).exists():  # ./unet/ that is no model: say what it is not, not "unknown model"
            raise not_a_model_error(Path(name)) from None
        raise
    if weights is not None and tag is not None:
        raise ValueError(f"{name!r} names weights tag {tag!r} and weights={weights!r} was also given; pick one")
    task_name = reg.canonical_task(task) if task else spec.tasks[0]
    from .weights import is_weights_path

    weights_path = None
    if weights is not None and (isinstance(weights, Path) or is_weights_path(str(weights))):
        weights_path = Path(weights)
    elif weights is not None:
        tag = spec.weights[0] if weights == "default" and spec.weights else str(weights)
        if spec.weights and tag not in spec.weights:
            raise UnknownNameError(f"weights tag of {spec.qualified_name}", tag, spec.weights, _known_tags(spec))
    misplaced = sorted(set(options) & set(getattr(get_task(task_name), "option_defaults", None) or {}))
    if misplaced:  # builders may swallow unknown keywords: a loss= there would silently do nothing
        moved = ", ".join(f"{k!r}: {options[k]!r}" for k in misplaced)
        raise OptionError(f"{misplaced} are options of the {task_name} task, not of the model builder: pass "
                          f"task_options={{{moved}}}")
    model = build_model(spec, task_name, num_classes=num_classes, class_names=class_names, tag=tag,
                        weights_path=weights_path, strict=strict, options=options)
    return set_task_options(model, task_options)


def set_task_options(model: "ZooModel", task_options: Mapping[str, Any] | None) -> "ZooModel":
    """Merge ``task_options`` into ``model.config["task_options"]``, refusing keys the task lacks and values
    its ``check_options`` (when it has one) refuses, so a bad value fails here, not at the first step."""
    if not task_options:
        return model
    task = model.task_impl
    known = getattr(task, "option_defaults", None)
    unknown = sorted(set(task_options) - set(known)) if known is not None else []
    if unknown:
        raise OptionError(f"task_options {unknown} are not options of the {model.task} task; "
                          f"known: {sorted(known)}")
    check = getattr(task, "check_options", None)
    if callable(check):
        check(dict(task_options))
    model.config["task_options"] = {**dict(model.config.get("task_options") or {}), **dict(task_options)}
    return model


def build_model(spec: ModelSpec, task_name: str, *, num_classes: int | None,
                class_names: Sequence[str] | None, tag: str | None, weights_path: Path | None,
                strict: bool = True, options: dict[str, Any] | None = None) -> "ZooModel":
    """Run a model spec's builder, wrap the result, and load weights (used by ``load`` and saving)."""
    from . import weights as W
    from .model import BuiltModel, ZooModel

    options = dict(options or {})
    num_classes, class_names = check_classes(task_name, num_classes, class_names)
    built = spec.call_builder(task=task_name, num_classes=num_classes, pretrained=tag, **options)
    if not isinstance(built, BuiltModel):
        raise ZooError(f"builder {spec.builder!r} of {spec.qualified_name!r} returned "
                       f"{type(built).__name__}, not zoo_core.model.BuiltModel (plugin {spec.distribution})")
    pre = built.pretrained
    if class_names is None:
        if pre is not None and pre.class_names and len(pre.class_names) == built.num_classes:
            class_names = list(pre.class_names)
        else:
            class_names = [f"class_{i}" for i in range(built.num_classes)]
    # options the builder chose that a rebuild must repeat (e.g. the layout of the weights it was built for)
    config = {"model": spec.qualified_name, "task": task_name, "num_classes": built.num_classes,
              "options": {**options, **dict(built.extra.get("rebuild_options") or {})}}
    if built.extra.get("task_options"):  # the plugin's defaults for the task (e.g. U-Net's loss)
        config["task_options"] = dict(built.extra["task_options"])
    provenance: dict[str, Any] = {"weights": None}
    model = ZooModel(built.net, task=task_name, class_names=class_names,
                     preprocess=(pre.preprocess if pre is not None and pre.preprocess else built.preprocess),
                     config=config, head=built.head, export_formats=built.export_formats or spec.export_formats,
                     provenance=provenance, export_options=built.extra.get("export"), backbone=built.backbone)
    source: Path | None = None
    if tag is not None:
        if pre is None:
            raise ZooError(f"{spec.qualified_name} knows no weights {tag!r}")
        source = W.fetch(pre, plugin=spec.plugin, model=spec.name)
        model.provenance.update(weights=f"{spec.qualified_name}.{tag}", url=pre.url, license=pre.license)
    elif weights_path is not None:
        source = weights_path
        model.provenance.update(weights=str(weights_path))
    if source is not None:
        load_weights(model, source, head=built.head, strict=strict, map_state_dict=built.map_state_dict,
                     label=spec.qualified_name)
    return model


def check_classes(task_name: str, num_classes: int | None, class_names: Sequence[str] | None
                  ) -> tuple[int | None, list[str] | None]:
    """Reconcile ``num_classes`` with ``class_names`` and let the task refuse impossible counts."""
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class_names were given")
        num_classes = len(class_names)
    if num_classes is not None:
        get_task(task_name).validate_num_classes(num_classes)
    return num_classes, class_names


def load_weights(model: "ZooModel", source: Path, *, head: Sequence[str] = (), strict: bool = True,
                 map_state_dict: Any = None, label: str = "") -> None:
    """Load a weights file into ``model.net``, record the report and provenance, warn on a new head."""
    from . import weights as W

    state = W.read_state_dict(source)
    report = W.load_into(model.net, state, source=str(source), head=head, strict=strict,
                         map_state_dict=map_state_dict)
    if source.is_file():
        report.sha256 = W.sha256_file(source)
    model.provenance["sha256"] = report.sha256
    model.weights_report = report
    if report.reinitialized:
        warn(f"{label}: {report}")


def check_task(model: "ZooModel", task: str | None) -> None:
    """Refuse a saved model whose task differs from the requested one."""
    if task and get_registry().canonical_task(task) != model.task:
        raise IncompatibleError(f"the saved model is a {model.task} model, not {task}")
