"""``zoo plugins doctor``: what it shows for a healthy install and for each kind of broken plugin."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from plugin_packages import bad_plugins
from zoo_core import cli
from zoo_core.doctor import diagnose, run_doctor


@pytest.fixture
def doctor(capsys, monkeypatch, fresh_registry):
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS", raising=False)

    def run() -> tuple[int, str]:
        rc = run_doctor()
        return rc, capsys.readouterr().out

    return run


def test_healthy_install(doctor, monkeypatch):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,torchvision")
    rc, out = doctor()
    assert rc == 0, out
    assert "[ok] tasks  (zoo 0.1.0)  module zoo_tasks.plugin" in out
    assert "hooks: register_tasks" in out
    tasks_line = next(ln for ln in out.splitlines() if "tasks:" in ln and "classification" in ln)
    assert "detection" in tasks_line and "segmentation" in tasks_line
    assert "[skipped] timm  (not in ZOO_LOAD_PLUGINS)" in out
    assert "ZOO_LOAD_PLUGINS='tasks,torchvision'" in out
    assert out.rstrip().endswith("0 problem(s)")


def test_every_problem_is_reported_with_its_fix(doctor, monkeypatch):
    monkeypatch.syspath_prepend(str(bad_plugins()))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,broken,misspelled,badarg,collide,future,unmarked")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")  # the doctor diagnoses everything even in strict mode
    rc, out = doctor()
    assert rc == 1
    assert os.environ["ZOO_STRICT_PLUGINS"] == "1"
    assert "  broken         zoo_broken_plugin" in out and "zoo-broken 0.1.0" in out  # the entry point row
    assert "[FAILED] broken  (zoo-broken 0.1.0)" in out
    assert "| Traceback (most recent call last):" in out
    assert "ModuleNotFoundError: No module named 'zoo_module_that_does_not_exist_xyz'" in out
    problems = out[out.index("problem(s):"):]
    assert "ZOO_DISABLE_PLUGINS=broken skips it meanwhile" in problems
    assert "unknown hook 'register_model'" in problems and "must match zoo_core.hookspecs" in problems
    assert "badarg" in problems and "device" in out
    assert "zoo-collide-a" in problems and "zoo-collide-b" in problems
    assert "zoo_requires: >=99" in out and "supports zoo >=99" in problems
    assert "zoo_unmarked_plugin.register_models is not decorated with @zoo_core.hookimpl" in problems
    # two distributions claiming "collide": neither loads (the alphabetical first must not win silently)
    assert "summary: 8 plugin(s), 2 ok, 6 failed, 5 skipped; 7 problem(s)" in out
    assert cli.main(["plugins", "doctor"]) == 1


def write_dist(site: Path, *, entry_points: dict[str, str], module: str | None = None) -> None:
    """Metadata of distribution ``zoo-dupe`` in ``site`` (as an editable install or an egg-info leaves it)."""
    info = site / "zoo_dupe-0.2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-dupe\nVersion: 0.2.0\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{eps}\n")
    if module:
        (site / f"{module}.py").write_text(textwrap.dedent("""\
            from zoo_core import hookimpl

            @hookimpl
            def register_models(register):
                register("dupenet", "zoo_dupe_mod:build", tasks=("cls",))
            """))


@pytest.mark.parametrize("same", [True, False])
def test_duplicate_metadata_is_deduplicated_and_reported(doctor, monkeypatch, tmp_path, same):
    write_dist(tmp_path / "a", entry_points={"dupe": "zoo_dupe_mod"}, module="zoo_dupe_mod")
    stale = {"dupe": "zoo_dupe_mod"} if same else {"dupe": "zoo_dupe_mod", "dupe_old": "zoo_dupe_old"}
    write_dist(tmp_path / "b", entry_points=stale)
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,dupe")
    diag = diagnose()
    assert set(diag.registry.plugins) == {"tasks", "dupe"} and diag.registry.plugins["dupe"].ok  # no false collision
    assert not diag.registry.collisions
    rc, out = doctor()
    assert "distribution 'zoo-dupe' has metadata in 2 places" in out
    assert str(tmp_path / "a") in out and str(tmp_path / "b") in out
    if same:
        assert rc == 0 and "note: distribution 'zoo-dupe'" in out and "harmless" in out
    else:
        assert rc == 1 and "delete the stale metadata folder" in out
