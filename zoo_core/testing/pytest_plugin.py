"""pytest plugin (``pytest11`` entry point ``zoo``): the conformance suite as one test per spec.

``pytest --zoo-plugin=myzoo`` adds a test for every task, model, backbone and head the installed
plugin ``myzoo`` registers (:func:`zoo_core.testing.check_spec`; a model is checked for every task it
declares, and fails naming the task that broke). ``--zoo-sample=N`` checks N models/backbones/heads
evenly spread over the sorted list (tasks are always checked); ``--zoo-backbone=NAME`` is the
backbone heads are built on (default: the plugin's own smallest compatible one, else a small built-in
one); ``--zoo-max-params=N`` skips (and names) models above N parameters, so a sample of a large
catalog stays runnable on a CPU. ``--zoo-plugin`` may be repeated. A failure names the plugin, the
spec, each failed check and its fix; ``-rA`` also shows passed and skipped checks. Nothing that
hides a whole spec is skipped unless asked for (``--zoo-max-params``, ``-k``, ``--deselect``): a head
no backbone can feed fails. Without ``--zoo-plugin`` this plugin adds nothing and imports nothing heavy.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest


class ConformanceSkipWarning(UserWarning):
    """A conformance check could not run on a spec (e.g. its task gives no example samples)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zoo", "zoo plugin conformance suite")
    group.addoption("--zoo-plugin", action="append", default=[], metavar="NAME",
                    help="run the zoo conformance checks on every spec of the installed zoo plugin NAME "
                         "(repeatable)")
    group.addoption("--zoo-sample", type=int, default=None, metavar="N",
                    help="check only N models/backbones/heads per plugin, evenly spread (tasks: all)")
    group.addoption("--zoo-max-params", type=int, default=None, metavar="N",
                    help="skip models with more parameters than N (counted without memory; default: no limit)")
    group.addoption("--zoo-backbone", default=None, metavar="NAME",
                    help="backbone to build heads on (default: the plugin's smallest compatible backbone, "
                         "else a small built-in one such as timm:test_resnet)")


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so those filter the generated tests
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    names: list[str] = list(dict.fromkeys(config.getoption("zoo_plugin") or []))  # ini addopts + command line
    if not names:
        return
    from zoo_core.errors import ZooError
    from zoo_core.registry import get_registry
    from zoo_core.testing.suite import plugin_specs

    sample = config.getoption("zoo_sample")
    if sample is not None and sample < 1:
        raise pytest.UsageError(f"--zoo-sample must be >= 1, got {sample}")
    try:
        registry = get_registry()
    except ZooError as exc:
        raise pytest.UsageError(f"zoo could not load its plugins: {exc}") from exc
    for name in names:
        info = registry.plugins.get(name)
        try:
            specs: list[Any] = [None] if info is not None and not info.ok else plugin_specs(name, sample=sample)
        except LookupError as exc:
            raise pytest.UsageError(f"--zoo-plugin={name}: {exc}") from exc
        parent = ZooPluginCollector.from_parent(session, name=f"zoo-plugin[{name}]",
                                                nodeid=f"zoo-plugin[{name}]")
        for spec in specs:
            label = f"{spec.kind}:{spec.qualified_name}" if spec is not None else f"plugin:{name}"
            items.append(ConformanceItem.from_parent(parent, name=f"conformance[{label}]", spec=spec,
                                                     plugin=name))


class ZooPluginCollector(pytest.Collector):
    """Groups the conformance tests of one plugin (they are created, not collected from files)."""

    def collect(self) -> list[pytest.Item]:  # pragma: no cover - items are added directly
        return []


class ConformanceItem(pytest.Item):
    """One spec through :func:`zoo_core.testing.check_spec` (or a plugin that failed to load)."""

    def __init__(self, *, spec: Any, plugin: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec, self.plugin = spec, plugin

    def runtest(self) -> None:
        from zoo_core.testing.suite import check_plugin, check_spec

        if self.spec is None:  # the plugin did not load: report why
            report = check_plugin(self.plugin)[0]
        else:
            report = check_spec(self.spec, backbone=self.config.getoption("zoo_backbone"),
                                max_params=self.config.getoption("zoo_max_params"))
        self.add_report_section("call", "zoo conformance", str(report))
        report.raise_for_failures()
        builds = [r for r in report.results if r.check == "build"]
        if builds and all(r.status == "skip" for r in builds):  # above --zoo-max-params: skipped as asked
            pytest.skip(f"{report.origin}: {builds[0].detail}")
        for r in report.skipped:
            if r.fix:  # a check that could not run for a reason the author can fix
                warnings.warn(ConformanceSkipWarning(f"{report.origin}: {r.label} skipped: {r.detail} "
                                                     f"(fix: {r.fix})"), stacklevel=1)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from zoo_core.testing.report import ConformanceError

        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name
