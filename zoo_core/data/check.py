"""What ``zoo data check`` reports about a dataset (:meth:`zoo_core.task.Task.check_data` fills it).

A task reads its data without a model and describes each split: image count, classes and how many
images (or boxes, or pixels) each has, objects per image, image sizes, and every problem found (an
unreadable image, a box outside its image, a bad label line, a mask value that is no class), each
naming its file (and line). The command prints it as tables and exits 1 when any split has a problem,
so a broken dataset is found before anyone trains on it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

#: problems shown per split before "... and N more"
SHOWN_PROBLEMS = 20


@dataclass
class SplitCheck:
    """One split: ``per_class`` counts ``what_counted`` (``"images"``, ``"boxes"``, ``"images with"``)."""

    split: str
    images: int = 0
    class_names: list[str] = field(default_factory=list)
    per_class: dict[str, int] = field(default_factory=dict)
    what_counted: str = "images"
    objects_per_image: list[int] | None = None  # boxes per image (detection)
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings that are not errors (clamped boxes...)

    def rows(self) -> list[tuple[str, str]]:
        """The table rows: what a person checks before training."""
        rows = [("images", str(self.images)), ("classes", f"{len(self.class_names)}: " + _short(self.class_names))]
        if self.per_class:
            counts = [f"{name} {n}" for name, n in self.per_class.items()]
            rows.append((f"{self.what_counted} per class", _short(counts, 12)))
            empty = [name for name, n in self.per_class.items() if n == 0]
            if empty:
                rows.append(("classes never seen", _short(empty)))
        if self.objects_per_image:
            values = self.objects_per_image
            rows.append(("boxes per image", f"min {min(values)} / mean {statistics.fmean(values):.2f} / max "
                                            f"{max(values)} ({sum(v == 0 for v in values)} image(s) without boxes)"))
        if self.sizes:
            widths = [w for w, _ in self.sizes.elements()]
            heights = [h for _, h in self.sizes.elements()]
            (w, h), n = self.sizes.most_common(1)[0]
            rows.append(("image sizes", f"{len(self.sizes)} distinct; most common {w}x{h} ({n}); width "
                                        f"{min(widths)}-{max(widths)}, height {min(heights)}-{max(heights)}"))
        rows += [("note", text) for text in self.notes]
        shown = self.problems[:SHOWN_PROBLEMS]
        rows += [("PROBLEM", text) for text in shown]
        if len(self.problems) > len(shown):
            rows.append(("PROBLEM", f"... and {len(self.problems) - len(shown)} more"))
        rows.append(("verdict", f"{len(self.problems)} problem(s)" if self.problems else "ok"))
        return rows


@dataclass
class DataCheck:
    """A dataset's check: its ``format`` (with the ``evidence`` that decided it) and one entry per split."""

    source: str
    task: str
    format: str
    evidence: str = ""
    splits: list[SplitCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(s.problems for s in self.splits)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (``zoo data check --json``)."""
        return {"source": self.source, "task": self.task, "format": self.format, "evidence": self.evidence,
                "ok": self.ok, "splits": [{"split": s.split, "images": s.images, "class_names": s.class_names,
                                           "per_class": s.per_class, "what_counted": s.what_counted,
                                           "objects_per_image": s.objects_per_image,
                                           "sizes": {f"{w}x{h}": n for (w, h), n in s.sizes.items()},
                                           "problems": s.problems, "notes": s.notes} for s in self.splits]}


def _short(items: Sequence[str], n: int = 20) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")
