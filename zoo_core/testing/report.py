"""Results of the conformance checks: one :class:`SpecReport` per spec, one line per check.

Every failure names the plugin, its distribution, the spec and the fix, so the message alone is
enough to repair a plugin (it is what ``pytest --zoo-plugin=NAME`` prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import PluginError

Status = Literal["pass", "fail", "skip"]


@dataclass
class CheckResult:
    """One check on one spec: ``status`` is pass, fail or skip; ``fix`` says what to change."""

    check: str
    status: Status
    detail: str = ""
    fix: str = ""
    seconds: float = 0.0
    #: the task a model's check ran for (a model is checked for every task it declares; "" otherwise)
    task: str = ""

    @property
    def label(self) -> str:
        """``build`` or, for a task's run, ``build, task 'counting'``."""
        return f"{self.check}, task {self.task!r}" if self.task else self.check

    def __str__(self) -> str:
        text = f"[{self.status}] {self.label}" + (f" ({self.seconds:.1f}s)" if self.seconds >= 0.1 else "")
        if self.detail:
            text += f": {self.detail}"
        if self.fix and self.status != "pass":
            text += f"\n         fix: {self.fix}"
        return text


@dataclass
class SpecReport:
    """Every check run on one spec (a model, backbone, head or task) of one plugin."""

    kind: str
    qualified_name: str
    plugin: str
    distribution: str = ""
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail a spec)."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def skipped(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "skip"]

    @property
    def tasks(self) -> list[str]:
        """The tasks the checks ran for, in order (a model: every task it declares)."""
        return list(dict.fromkeys(r.task for r in self.results if r.task))

    def result(self, check: str, task: str | None = None) -> CheckResult | None:
        """The result of the check called ``check`` (for ``task``; default: the first task's), or None."""
        return next((r for r in self.results if r.check == check and (task is None or r.task == task)), None)

    @property
    def origin(self) -> str:
        dist = f" (distribution {self.distribution!r})" if self.distribution else ""
        return f"plugin {self.plugin!r}{dist}, {self.kind} {self.qualified_name!r}"

    def __str__(self) -> str:
        head = f"{self.origin}: " + ("conforms" if self.ok else f"{len(self.failures)} check(s) failed")
        return "\n".join([head, *("  " + str(r).replace("\n", "\n  ") for r in self.results)])

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check (with its fix)."""
        if not self.ok:
            raise ConformanceError(self)


class ConformanceError(PluginError, AssertionError):
    """A spec broke the plugin contract; the message names plugin, spec, check and fix."""

    def __init__(self, report: SpecReport) -> None:
        self.report = report
        lines = [f"{report.origin} does not conform:"]
        for r in report.failures:
            lines.append(f"  {r.label}: {r.detail}")
            if r.fix:
                lines.append(f"    fix: {r.fix}")
        super().__init__("\n".join(lines))
