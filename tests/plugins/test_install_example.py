"""Plugins installed for real with pip, discovered through their entry points.

The example packages run in a fresh ``python`` whose ``PYTHONPATH`` holds only the pip target, so
discovery is exactly a stranger's ``pip install``. The broken packages (``plugin_packages.BAD``)
are put on ``sys.path`` in-process and picked with ``ZOO_LOAD_PLUGINS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core as zoo
from plugin_packages import bad_plugins, example_plugins, subprocess_env
from zoo_core import cli
from zoo_core.errors import PluginError, UnknownNameError
from zoo_core.registry import reset_registry


def run_python(code: str, site: Path, cwd: Path, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=subprocess_env(site, **env), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_installed_examples_are_listed_loaded_and_run(tmp_path):
    """Both example distributions, pip-installed: their models and task through the public API."""
    listed = subprocess.run([sys.executable, "-m", "zoo_core", "list", "--task", "mlc"], capture_output=True,
                            text=True, cwd=tmp_path, env=subprocess_env(example_plugins()), timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["mlcnn", "mlcnn_small"]
    code = """
import json, torch, zoo_core as zoo
from zoo_multilabel.synthetic import make_shapes
model = zoo.load("tinycnn", task="cls", num_classes=3)
out = model(torch.rand(2, 3, 32, 32))
plugins = {p.name: [p.distribution, p.version, p.error] for p in zoo.list_plugins()}
root = make_shapes("data", n_train=4, n_val=4)
ml = zoo.load("mlcnn_small", task="multi-label", class_names=["circle", "square", "triangle", "cross"])
image, target, path = ml.task_impl.read_dataset(root, split="val", train=False, model=ml)[0]
pred = ml.predict([str(root / "val" / "images" / "00000.png")])[0]
print(json.dumps({"names": zoo.list_models(plugin="template"), "shape": list(out.shape),
                  "model": model.config["model"], "plugins": plugins,
                  "cls_pred": model.predict(torch.rand(3, 32, 32))[0].name,
                  "tasks": zoo.list_tasks(), "task": ml.task, "target": target.tolist(),
                  "image": list(image.shape), "pred": type(pred).__name__, "scores": sorted(pred.scores)}))
"""
    got = run_python(code, example_plugins(), tmp_path)
    assert got["names"] == ["tinycnn", "tinycnn_wide"]
    assert got["model"] == "template:tinycnn" and got["shape"] == [2, 3]
    assert got["plugins"]["template"] == ["zoo-plugin-template", "0.1.0", None]
    assert got["plugins"]["multilabel"] == ["zoo-multilabel", "0.1.0", None]
    assert got["cls_pred"] in {"class_0", "class_1", "class_2"}
    assert "multilabel" in got["tasks"] and got["task"] == "multilabel"
    labels = (tmp_path / "data" / "val" / "labels.csv").read_text().splitlines()[1].split(",")[1]
    names = ["circle", "square", "triangle", "cross"]
    assert got["target"] == [1.0 if n in labels.split(";") else 0.0 for n in names]
    assert got["image"] == [3, 64, 64] and got["pred"] == "LabelSet" and got["scores"] == sorted(names)


def test_multilabel_example_own_tests_pass(tmp_path):
    """The example's own unit tests (metrics, dataset errors); training is run by the README guide test."""
    src = example_plugins().parent / "src" / "zoo-multilabel"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-k", "not train_evaluate", "tests"], capture_output=True, text=True, cwd=src,
                          env=subprocess_env(example_plugins()), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed, 1 deselected" in done.stdout


def test_conformance_failures_through_pytest_name_plugin_spec_and_fix(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zoo-plugin=liars"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=subprocess_env(bad_plugins(), ZOO_LOAD_PLUGINS="tasks,liars"), timeout=300)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "4 failed" in out
    assert "plugin 'liars' (distribution 'zoo-liars'), model 'liars:wrong_type' does not conform" in out
    assert "returned Linear, not zoo_core.model.BuiltModel" in out
    assert "cannot import module 'zoo_liars_nowhere'" in out
    assert "feature_info does not match the real feature maps" in out
    assert "Incomplete does not implement the required method(s) ['loss']" in out
    assert out.count("fix: ") >= 4


# ---- broken plugins, in-process -------------------------------------------------------------------
@pytest.fixture
def bad_site(monkeypatch, fresh_registry):
    """The broken packages on sys.path, non-strict; each test picks plugins with ZOO_LOAD_PLUGINS."""
    monkeypatch.syspath_prepend(str(bad_plugins()))
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS", raising=False)
    yield
    reset_registry()


def plugins_by_name() -> dict:
    return {p.name: p for p in zoo.list_plugins()}


def test_broken_plugin_is_reported_and_not_fatal(bad_site, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,broken")
    broken = plugins_by_name()["broken"]
    assert broken.distribution == "zoo-broken" and "zoo_module_that_does_not_exist_xyz" in broken.error
    assert "Traceback" in broken.traceback
    assert "classification" in zoo.list_tasks()  # everything else works
    with pytest.raises(UnknownNameError, match="plugin 'broken' failed to load"):
        zoo.load("broken:net")
    assert cli.main(["plugins"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("broken"))
    assert "zoo-broken" in line and "ERROR" in line and "zoo_module_that_does_not_exist_xyz" in line


def test_broken_plugin_is_fatal_in_strict_mode(bad_site, monkeypatch):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,broken")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' .*failed to load.*ZOO_STRICT_PLUGINS=1"):
        zoo.list_plugins()


@pytest.mark.parametrize("plugin, expected", [
    ("misspelled", ["unknown hook 'register_model'", "register_models", "in plugin 'misspelled'"]),
    ("badarg", ["register_models", "device"]),
    ("future", ["plugin 'future' supports zoo >=99, but this is zoo"]),
    ("collide", ["'collide'", "zoo-collide-a", "zoo-collide-b"]),
])
def test_contract_violations_are_caught_at_registration(bad_site, monkeypatch, plugin, expected):
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", plugin)
    failed = [p for p in zoo.list_plugins() if p.error]
    assert failed, f"{plugin} should have failed to load"
    text = " ".join(p.error for p in failed)
    for piece in expected:
        assert piece in text
    assert zoo.list_models(plugin=plugin) == []  # a plugin that failed registers nothing (both collide-a and -b)


def test_disable_and_allow_lists(bad_site, monkeypatch):
    every = "broken,misspelled,badarg,collide,future,unmarked,liars"
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", every)
    plugins = plugins_by_name()
    assert not set(every.split(",")) & set(plugins) and all(p.ok for p in plugins.values())
    assert {"tasks", "torchvision", "timm"} <= set(plugins)
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks, liars")
    reset_registry()
    assert set(plugins_by_name()) == {"tasks", "liars"}
    assert zoo.list_models() == ["nowhere", "wrong_type"]


def test_conformance_catches_each_lie(bad_site, monkeypatch):
    from zoo_core.testing import ConformanceError, check_plugin

    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,liars")
    reports = {r.qualified_name: r for r in check_plugin("liars")}
    assert set(reports) == {"liars:incomplete", "liars:wrong_type", "liars:nowhere", "liars:lying"}
    assert all(not r.ok for r in reports.values())
    wrong = reports["liars:wrong_type"].result("build")
    assert wrong.status == "fail" and "returned Linear" in wrong.detail and "BuiltModel(net=" in wrong.fix
    nowhere = reports["liars:nowhere"].result("builder")
    assert nowhere.status == "fail" and "zoo_liars_nowhere" in nowhere.detail
    lying = reports["liars:lying"].result("feature_info")
    assert lying.status == "fail" and "map 0 has 8 channels, declared 16" in lying.detail
    assert "declared stride 8" in lying.detail
    task = reports["liars:incomplete"].result("task")
    assert task.status == "fail" and "['loss']" in task.detail and "define loss()" in task.fix
    with pytest.raises(ConformanceError, match=r"plugin 'liars' \(distribution 'zoo-liars'\), backbone 'liars:lying'"):
        reports["liars:lying"].raise_for_failures()


def test_check_plugin_reports_a_plugin_that_failed_to_load(bad_site, monkeypatch):
    from zoo_core.testing import check_plugin

    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "tasks,broken")
    (report,) = check_plugin("broken")
    assert not report.ok and report.failures[0].check == "load"
    assert "zoo_module_that_does_not_exist_xyz" in report.failures[0].detail
