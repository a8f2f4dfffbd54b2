"""Which plugin a short name picks when several provide it, and saying so.

The order (the registry's module docstring has it in full): a qualified ``plugin:name`` always wins;
then the plugins the user lists (:func:`set_provider_priority`, else ``ZOO_PROVIDER_PRIORITY``); then
the spec's ``priority`` field (built-ins: torchvision 30, smp 20, timm 10; a third party's default 0);
then the plugin name. The built-in plugins' overlaps (``resnet50`` from torchvision and timm) are
documented and resolved by their priorities. A short name that a third-party plugin shares with
another plugin is a :class:`Clash`: ``zoo plugins doctor`` lists it and ``zoo.load(short)`` warns which
provider it took (:class:`ProviderChoiceWarning`), unless the user named the provider.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from .registry import Registry
    from .specs import Spec

#: the distribution of the built-in plugins: they load first and keep their names
OWN_DISTRIBUTION = "zoo"

_user_priority: list[str] | None = None


class ProviderChoiceWarning(UserWarning):
    """A short name several plugins provide (one of them a third party's) was resolved by priority."""


def set_provider_priority(plugins: Sequence[str] | None) -> None:
    """Prefer these plugins, in order, when a short name has several providers (None: reset)."""
    global _user_priority
    _user_priority = list(plugins) if plugins is not None else None


def provider_priority() -> list[str]:
    """The user's provider order: :func:`set_provider_priority`, else ``ZOO_PROVIDER_PRIORITY``."""
    if _user_priority is not None:
        return list(_user_priority)
    return [p.strip() for p in os.environ.get("ZOO_PROVIDER_PRIORITY", "").split(",") if p.strip()]


def best_first(specs: Iterable["Spec"]) -> list["Spec"]:
    """``specs`` in the order a short name picks them (user's order, ``priority``, plugin name)."""
    order = provider_priority()
    return sorted(specs, key=lambda s: (order.index(s.plugin) if s.plugin in order else len(order),
                                        -getattr(s, "priority", 0), s.plugin))


def is_third_party(spec: "Spec") -> bool:
    """Whether a spec comes from a distribution other than the zoo's own."""
    return (spec.distribution or "").lower() != OWN_DISTRIBUTION


@dataclass(frozen=True)
class Clash:
    """One short name of one kind that several plugins provide, a third party's among them."""

    kind: str
    name: str
    #: qualified names, the one a short name picks first
    providers: tuple[str, ...]
    #: ``"plugin (distribution)"`` of each provider, in the same order
    origins: tuple[str, ...]
    #: how the first one won: "ZOO_PROVIDER_PRIORITY", "its priority field" or "plugin name order"
    decided_by: str

    @property
    def chosen(self) -> str:
        return self.providers[0]

    @property
    def user_decided(self) -> bool:
        return self.decided_by == "ZOO_PROVIDER_PRIORITY"

    def __str__(self) -> str:
        others = ", ".join(repr(p) for p in self.providers[1:])
        return (f"{self.kind} {self.name!r} is provided by {' and '.join(self.origins)}; the short name picks "
                f"{self.chosen!r} ({self.decided_by}). Name the provider ({others} or {self.chosen!r}) or set "
                f"ZOO_PROVIDER_PRIORITY={self.providers[-1].partition(':')[0]} to pick another")


def _clash(kind: str, name: str, specs: Sequence["Spec"]) -> Clash | None:
    """The clash among ``specs`` (one short name's providers), or None when there is none to report."""
    if len(specs) < 2 or not any(is_third_party(s) for s in specs):
        return None
    ranked = best_first(specs)
    first, second = ranked[0], ranked[1]
    order = provider_priority()
    if first.plugin in order:
        how = "ZOO_PROVIDER_PRIORITY"
    elif getattr(first, "priority", 0) != getattr(second, "priority", 0):
        how = f"its priority field, {getattr(first, 'priority', 0)} over {getattr(second, 'priority', 0)}"
    else:
        how = "equal priorities: the plugin name that sorts first"
    return Clash(kind, name, tuple(s.qualified_name for s in ranked),
                 tuple(f"plugin {s.plugin!r} (distribution {s.distribution or 'unknown'!r})" for s in ranked), how)


def clashes(registry: "Registry", kinds: Sequence[str] = ("model", "backbone", "head")) -> list[Clash]:
    """Every short name a third-party plugin shares with another plugin (sorted by kind and name)."""
    out = []
    for kind in kinds:
        by_name: dict[str, list[Any]] = {}
        for spec in registry.specs(kind):
            by_name.setdefault(spec.name, []).append(spec)
        for name, specs in sorted(by_name.items()):
            found = _clash(kind, name, specs)
            if found is not None:
                out.append(found)
    return out


def announce_choice(registry: "Registry", spec: "Spec", *, task: str | None = None) -> None:
    """Warn which provider a short name took when a third party's plugin shares the name.

    Called where a user's short name becomes a spec (``zoo.load``, ``zoo train --model``); silent when
    the name has one provider, when only the zoo's own plugins share it (their order is documented),
    or when the user's ``ZOO_PROVIDER_PRIORITY`` made the choice.
    """
    from .errors import warn

    found = _clash(spec.kind, spec.name, registry.providers(spec.kind, spec.name, task))
    if found is None or found.user_decided or found.chosen != spec.qualified_name:
        return
    warn(f"{found.kind} {found.name!r}: took {found.chosen!r} of {len(found.providers)} providers. {found}",
         ProviderChoiceWarning)
