"""The plugin guide's reference tables say what the code does (issue 14): the Task methods a task must
implement, the ``requires=`` keys a head may declare, and the helpers documented as stable for tasks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from zoo_core.features import HeadRequirements
from zoo_core.specs import HEAD_REQUIREMENT_KEYS
from zoo_core.task import Task

README = Path(__file__).resolve().parents[1] / "README.md"


def guide() -> str:
    text = README.read_text()
    return text[text.index("<!-- plugin-guide:start -->"):text.index("<!-- plugin-guide:end -->")]


def table_after(heading: str) -> list[str]:
    """The first cells of the markdown table that follows ``heading`` in the guide."""
    rest = guide()[guide().index(heading):]
    rows = re.findall(r"^\| `([^`]+)` \|", rest[rest.index("\n|"):].split("\n\n")[0], re.M)
    assert rows, heading
    return rows


def test_the_task_method_table_lists_exactly_the_abstract_methods_with_their_signatures():
    rows = table_after("| method | what it does |")
    assert {row.split("(")[0] for row in rows} == set(Task.__abstractmethods__)
    for row in rows:
        name, args = row.split("(", 1)
        documented = [a.strip().split("=")[0].lstrip("*") for a in args.rstrip(")").replace("*,", "").split(",")
                      if a.strip()]
        actual = [p for p in inspect.signature(getattr(Task, name)).parameters if p != "self"]
        assert documented == actual, (name, documented, actual)


def test_the_requires_table_lists_every_head_requirement_with_its_default():
    text = guide()
    rows = re.findall(r"^\| `(\w+)` \| `?([^|`]+?)`? \|", text[text.index("| key | default | meaning |"):], re.M)
    defaults = HeadRequirements().to_dict()
    assert [k for k, _ in rows] == list(HEAD_REQUIREMENT_KEYS) == list(defaults)
    for key, default in rows:
        assert default == repr(defaults[key]), key


def test_the_helpers_the_guide_calls_stable_exist_as_documented():
    from zoo_core.data import folders, images, robust
    from zoo_tasks import transforms

    text = guide()
    for name in ("eval_transform", "train_transform", "to_float_normalized", "target_size", "interpolation_mode"):
        assert f"`{name}" in text and callable(getattr(transforms, name))
    assert list(inspect.signature(transforms.eval_transform).parameters) == ["pre", "size"]
    assert {"scale", "hflip"} <= set(inspect.signature(transforms.train_transform).parameters)
    assert callable(images.load_image) and callable(folders.split_root)
    assert callable(robust.load_or_skip) and inspect.isclass(robust.SkipTracker)
    for where in ("zoo_core.data.images.load_image", "zoo_core.data.folders.split_root", "zoo_core.data.robust"):
        assert where in text
