"""The built-in plugins pass the conformance suite they ask of strangers (a cheap sample per plugin).

The sample covers every kind and task: all built-in tasks; a timm classifier; a timm and a
torchvision backbone (FeatureInfo against the real maps); a torchvision head on a timm backbone
through ``zoo.build`` (segmentation); a torchvision detector (build and task contract only: a
detector's training step at its working resolution is too slow for CI); an smp model when smp
registers one. ``pytest --zoo-plugin=timm --zoo-sample=N`` runs the same checks on more.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from zoo_core.registry import get_registry
from zoo_core.testing import check_plugin, check_spec, plugin_specs

SAMPLE = [
    # (spec, options for check_spec)
    ("model:timm:test_vit", {}),
    ("backbone:timm:test_resnet", {}),
    ("backbone:torchvision:mobilenet_v3_small", {}),
    ("head:torchvision:deeplabv3", {"backbone": "timm:test_resnet"}),
    ("model:torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", {"checks": ["contract"]}),
]


def test_builtin_tasks_conform_and_give_example_samples():
    reports = check_plugin("tasks")
    assert {r.qualified_name for r in reports} >= {"tasks:classification", "tasks:detection", "tasks:segmentation"}
    for report in reports:
        assert report.ok, str(report)
        assert report.result("task").status == "pass", str(report)  # skipped = no example_samples()


@pytest.mark.parametrize("name, options", SAMPLE, ids=[s for s, _ in SAMPLE])
def test_builtin_sample_conforms(name, options):
    report = check_spec(name, **options)
    assert report.ok, str(report)
    ran = {r.check for r in report.results if r.status == "pass"}
    expected = set(options.get("checks") or []) | {"builder", "build"}
    if report.kind == "backbone":
        expected |= {"feature_info", "gradients"}
    elif not options.get("checks"):
        expected |= {"contract", "train_step", "freeze", "save_load", "num_classes"}
    if report.kind == "model" and not options.get("checks"):
        expected |= {"export"}  # built-in classifiers/segmenters declare onnx, torchscript, torch_export
    assert expected <= ran, str(report)


def test_builtin_smp_sample_conforms():
    models = [s for s in get_registry().specs("model") if s.plugin == "smp"]
    if not models:
        pytest.skip("the smp plugin registers no model yet")
    unet = next((s for s in models if s.name == "unet"), models[0])
    report = check_spec(unet, checks=["contract"])
    assert report.ok, str(report)


def test_models_above_max_params_are_skipped_without_being_built():
    report = check_spec("torchvision:resnet18", max_params=1_000_000)
    build = report.result("build")
    assert report.ok and build.status == "skip"
    assert "11,689,512 parameters is above the limit of 1,000,000" in build.detail
    assert "--zoo-max-params" in build.fix
    assert report.result("contract").detail == "needs build"


def test_sample_is_deterministic_and_spread_and_keeps_tasks():
    every = plugin_specs("timm")
    picked = plugin_specs("timm", sample=4)
    assert len(picked) == 4 and picked == plugin_specs("timm", sample=4)
    assert picked[0] == every[0] and picked[-1] != every[-1]  # evenly spaced from the first spec
    assert {s.kind for s in picked} <= {"model", "backbone", "head"}
    tasks = plugin_specs("tasks", sample=1)
    assert {s.name for s in tasks} >= {"classification", "detection", "segmentation"}  # tasks always kept


def test_pytest_plugin_is_registered_and_idle_without_the_option(tmp_path):
    """Without --zoo-plugin the pytest11 plugin must not import the checks, torch or any plugin."""
    (tmp_path / "test_nothing.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""\
        import sys

        def pytest_sessionfinish(session):
            heavy = [m for m in ("torch", "zoo_core.testing.suite", "zoo_core.testing.checks", "zoo_timm.plugin") if m in sys.modules]
            with open("imported.txt", "w") as f:
                f.write(",".join(heavy))
        """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "--zoo-plugin=NAME" in done.stdout and "--zoo-sample=N" in done.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "imported.txt").read_text() == ""


def test_unknown_plugin_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--zoo-plugin=tim"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 4  # pytest's usage-error exit code
    assert "unknown plugin 'tim'; did you mean 'timm'?" in done.stderr
