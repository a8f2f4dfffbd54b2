"""How the conformance checks run: in order, each recorded as pass, fail or skip with its fix.

A check is a function returning a detail string; raising :class:`_Skip` or :class:`_Fail` records
that outcome, and any other exception (the plugin's code raised) is a failure that names the
exception's type, its message (which names the builder, plugin and distribution when it came through
:meth:`zoo_core.specs.Spec.call_builder`) and the plugin's own line that raised it.
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Callable, Sequence

from ..specs import Spec
from .report import CheckResult, SpecReport


class _Skip(Exception):
    """Raised inside a check to record it as skipped (with the reason as the message)."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.fix = fix


class _Fail(Exception):
    """Raised inside a check to record a failure with its fix."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


class _Runner:
    """Runs checks in order; a check whose prerequisite did not pass (for the same task) is skipped."""

    def __init__(self, report: SpecReport, only: Sequence[str] | None,
                 needs: dict[str, tuple[str, ...]] | None = None, *, task: str = "") -> None:
        self.report, self.needs, self.task = report, needs or {}, task
        self.only = None if not only else _closure(set(only), self.needs)

    def run(self, name: str, fn: Callable[[], str | None], fix: str) -> bool:
        """Record ``fn()``'s outcome as check ``name`` (any exception is a failure with ``fix``)."""
        if self.only is not None and name not in self.only:
            return False
        blocked = [n for n in self.needs.get(name, ())
                   if (r := self.report.result(n, self.task)) is None or r.status != "pass"]
        if blocked:
            self.report.results.append(CheckResult(name, "skip", f"needs {', '.join(blocked)}", task=self.task))
            return False
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detail = fn() or ""
        except _Skip as skip:
            result = CheckResult(name, "skip", str(skip), skip.fix)
        except _Fail as fail:
            result = CheckResult(name, "fail", str(fail), fail.fix or fix)
        except Exception as exc:  # the plugin's code raised: report it with where it happened
            result = CheckResult(name, "fail", f"{describe_exception(exc)}{_plugin_frame(exc)}", fix)
        else:
            result = CheckResult(name, "pass", detail)
        result.seconds = time.perf_counter() - start
        result.task = self.task
        self.report.results.append(result)
        return result.status == "pass"


def describe_exception(exc: BaseException) -> str:
    """``ValueError: message``: a builder's ValueError/TypeError that the zoo wrapped to name the builder
    (``BuilderValueError``) is shown under its original type, with the wrapper's message."""
    from ..errors import shown_type

    return f"{shown_type(exc)}: {exc}"


def _closure(names: set[str], needs: dict[str, tuple[str, ...]]) -> set[str]:
    """``names`` plus every check they need, transitively."""
    todo, out = list(names), set()
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += needs.get(n, ())
    return out


def _plugin_frame(exc: BaseException) -> str:
    """`` (at file:line in func)``: the innermost frame outside torch and the zoo kernel, looked for in the
    exception and then in its causes (the zoo wraps a builder's exception; the plugin's line is in it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = [f for f in traceback.extract_tb(current.__traceback__)
                  if "/torch/" not in f.filename and "/zoo_core/" not in f.filename]
        if frames:
            found = frames[-1]
        current = current.__cause__ or current.__context__
    return f" (at {found.filename}:{found.lineno} in {found.name})" if found is not None else ""


def new_report(spec: Spec) -> SpecReport:
    return SpecReport(spec.kind, spec.qualified_name, spec.plugin, spec.distribution)


__all__ = ["_Fail", "_Runner", "_Skip", "describe_exception", "new_report"]
