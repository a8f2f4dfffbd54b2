"""Demo recipes: how each task shows itself off on built-in synthetic data (``zoo demo``, ``zoo data synth``).

The kernel knows no task, so every task brings its own :class:`DemoRecipe` through
:meth:`zoo_core.task.Task.demo`: which built-in dataset to write, which small model to train, and
the Trainer settings that make that model visibly learn in a few CPU minutes. A third-party task
that returns a recipe joins ``zoo demo`` and ``zoo data synth`` unchanged.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import warn
from .specs import import_object

if TYPE_CHECKING:
    from .model import ZooModel

#: Trainer settings of ``zoo demo --quick`` (a smoke run: a few steps, small batches)
QUICK: dict[str, Any] = {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 2, "batch_size": 4}


@dataclass(frozen=True)
class DemoRecipe:
    """One demo run: a built-in synthetic dataset, a small model, and Trainer settings (full / quick).

    ``make`` is ``"module:function"`` called as ``function(out_dir, **data)``, returning the
    dataset root (a folder with ``train/`` and ``val/`` in the task's format). ``model`` is a
    ``zoo.load`` name, or the backbone when ``head`` is set (then ``zoo.build(task, backbone=model,
    head=head, **load)``). ``train`` are :class:`~zoo_core.train.Trainer` arguments; ``quick_*``
    override ``data``/``train`` for ``--quick``. ``task_options`` become the model's task options.
    """

    dataset: str
    make: str
    data: Mapping[str, Any]
    model: str
    load: Mapping[str, Any]
    train: Mapping[str, Any]
    head: str | None = None
    quick_data: Mapping[str, Any] = field(default_factory=dict)
    quick_train: Mapping[str, Any] = field(default_factory=dict)
    task_options: Mapping[str, Any] = field(default_factory=dict)
    #: run by a plain ``zoo demo``; False: only when asked for (``zoo demo --tasks NAME``), for a recipe
    #: that needs minutes more to show learning (a plain ``zoo demo`` stays 2-3 minutes)
    default: bool = True

    @property
    def label(self) -> str:
        """How the summary table names the model: ``"unet"`` or ``"torchvision:resnet18 + faster_rcnn"``."""
        return f"{self.model} + {self.head}" if self.head else self.model

    def write_data(self, out_dir: str | Path, *, quick: bool = False, **overrides: Any) -> Path:
        """Write (or reuse) this recipe's dataset under ``out_dir``; ``overrides`` replace ``data`` entries.

        An override the generator does not take is a :class:`ValueError` naming what it does take
        (a generator with ``**kwargs`` takes anything). Returns the generator's path, or ``out_dir``
        when it returns nothing.
        """
        make = import_object(self.make, "demo dataset")
        accepted = self.generator_keywords()
        unknown = sorted(set(overrides) - accepted) if accepted is not None else []
        if unknown:
            raise ValueError(f"{self.dataset}: the generator {self.make} takes no {unknown}; it takes "
                             f"{sorted(accepted or ())}")
        out = make(Path(out_dir), **{**self.data, **(self.quick_data if quick else {}), **overrides})
        return Path(out) if out is not None else Path(out_dir)

    def generator_keywords(self) -> set[str] | None:
        """The keyword arguments the generator takes (``None``: any, it has ``**kwargs``)."""
        params = inspect.signature(import_object(self.make, "demo dataset")).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"out_dir"}

    def trainer_settings(self, *, quick: bool = False, epochs: int | None = None) -> dict[str, Any]:
        """The Trainer arguments of a full (or ``quick``) run; ``epochs`` overrides ``max_epochs``."""
        settings = {**self.train, **((QUICK | dict(self.quick_train)) if quick else {})}
        if epochs:
            settings["max_epochs"] = epochs
        return settings

    def make_model(self, task: str, *, pretrained: bool = False, seed: int | None = 0) -> "ZooModel":
        """The recipe's model, random or from its default pretrained weights (the backbone's, when composed),
        initialised under ``seed`` (the demo's numbers repeat run after run)."""
        import zoo_core as zoo

        from .api import set_task_options

        if self.head:
            model = zoo.build(task, backbone=self.model, head=self.head,
                              pretrained="default" if pretrained else None, seed=seed, **self.load)
            return set_task_options(model, dict(self.task_options)) if self.task_options else model
        return zoo.load(self.model, task=task, weights="default" if pretrained else None,
                        task_options=dict(self.task_options), seed=seed, **self.load)


def _checked(task: str, recipe: object) -> DemoRecipe | None:
    """``recipe`` if it is a DemoRecipe (or None); anything else is the plugin's bug, named."""
    if recipe is None or isinstance(recipe, DemoRecipe):
        return recipe
    raise TypeError(f"task {task!r}: demo() returned {type(recipe).__name__}, not a zoo_core.demo.DemoRecipe "
                    "(or None for no demo)")


def demo_recipes(tasks: list[str] | None = None, *, every: bool = False) -> dict[str, DemoRecipe]:
    """``{task name or alias as given: recipe}`` for ``tasks`` (default: every registered task whose recipe
    is a :attr:`DemoRecipe.default` one; with ``every``, those that run only when asked for too).

    Unknown task names raise :class:`~zoo_core.errors.UnknownNameError`; a named task without a
    recipe raises :class:`ValueError` listing those that have one. Listing them all, a task whose
    ``demo()`` fails is skipped with a warning naming it (one broken plugin never stops the others).
    """
    import zoo_core as zoo
    from .registry import get_registry

    if tasks is None:  # keyed by the shortest alias ("cls"), the name users type
        found: dict[str, DemoRecipe] = {}
        for spec in get_registry().specs("task"):
            name = min((spec.name, *spec.aliases), key=len)
            try:
                recipe = _checked(name, zoo.get_task(name).demo())
            except Exception as exc:  # a plugin's broken task: the others still run
                warn(f"task {spec.qualified_name} (plugin {spec.distribution or spec.plugin}): its demo() failed "
                     f"({type(exc).__name__}: {exc}); left out of the demo")
                continue
            if recipe is not None and (recipe.default or every):
                found[name] = recipe
        return found
    out: dict[str, DemoRecipe] = {}
    for name in tasks:
        recipe = _checked(name, zoo.get_task(name).demo())
        if recipe is None:
            raise ValueError(f"task {name!r} has no demo recipe; tasks with one: "
                             f"{', '.join(demo_recipes(every=True))}")
        out[name] = recipe
    return out
