"""A plugin calling sys.exit (or raising any BaseException but Ctrl-C) is a broken plugin like any other.

It is listed by `zoo plugins` with its error, every other plugin and command keeps working, and
ZOO_STRICT_PLUGINS=1 still makes it an error (issue 12, safety).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from types import SimpleNamespace

import pytest

from plugin_packages import pip_install, subprocess_env, write_package
from zoo_core import hookimpl
from zoo_core.errors import PluginError
from zoo_core.registry import discover


class Boom(BaseException):
    """Not an Exception: what `except Exception` lets through."""


def module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, hookimpl(fn))
    return mod


def good_models(register):
    register("net", "pkg.mod:build", tasks=("cls",))


def tasks(register):
    register("classification", "pkg.mod:Task", aliases=("cls",))


def _ep(name: str, load) -> SimpleNamespace:
    return SimpleNamespace(name=name, value=f"{name}_mod", dist=SimpleNamespace(name=f"zoo-{name}", version="1"),
                           load=load)


def _raise(exc: BaseException):
    def load():
        raise exc
    return load


@pytest.fixture
def lenient(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)


def test_sys_exit_or_a_base_exception_at_import_or_in_a_hook_leaves_the_others_working(lenient, monkeypatch):
    def exits_in_hook(register):
        sys.exit("bye from the hook")

    def raises_in_hook(register):
        raise Boom("not an Exception")

    good = module("good_mod", register_tasks=tasks, register_models=good_models)
    eps = [_ep("exit_import", _raise(SystemExit(3))), _ep("boom_import", _raise(Boom("at import"))),
           _ep("exit_hook", lambda: module("m1", register_models=exits_in_hook)),
           _ep("boom_hook", lambda: module("m2", register_models=raises_in_hook)), _ep("good", lambda: good)]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    with pytest.warns(UserWarning, match=r"plugin 'exit_import' \(zoo-exit_import\) failed to load and is left out: "
                                         r"SystemExit: the plugin called sys.exit\(3\) while loading"):
        reg = discover()
    errors = {p.name: p.error for p in reg.plugins.values() if not p.ok}
    assert set(errors) == {"exit_import", "boom_import", "exit_hook", "boom_hook"}
    assert "sys.exit('bye from the hook')" in errors["exit_hook"] and errors["boom_hook"] == "Boom: not an Exception"
    assert reg.resolve("model", "net").plugin == "good" and reg.list("model") == ["net"]
    assert "SystemExit" in reg.plugins["exit_import"].traceback


def test_strict_mode_still_makes_it_an_error_and_ctrl_c_is_never_swallowed(monkeypatch):
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: [_ep("exit_import", _raise(SystemExit(3)))])
    with pytest.raises(PluginError, match=r"plugin 'exit_import' .*SystemExit.*ZOO_STRICT_PLUGINS=1") as err:
        discover()
    assert isinstance(err.value.__cause__, SystemExit)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS")

    def real_ctrl_c(*args):  # the user presses Ctrl-C while this plugin loads: a real SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs before this returns

    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: [_ep("ctrl_c", real_ctrl_c)])
    with pytest.raises(KeyboardInterrupt):
        discover()
    with pytest.raises(KeyboardInterrupt):
        discover(extra=[("ctrl_c_hook", module("m3", register_models=real_ctrl_c))])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_plugin_raising_keyboard_interrupt_itself_is_contained_too(lenient, monkeypatch):
    """Only a real SIGINT is the user's Ctrl-C; a plugin raising KeyboardInterrupt at import is broken."""
    good = module("good_mod", register_tasks=tasks, register_models=good_models)
    monkeypatch.setattr("zoo_core.registry._entry_points",
                        lambda: [_ep("kbint", _raise(KeyboardInterrupt())), _ep("good", lambda: good)])
    with pytest.warns(UserWarning, match=r"plugin 'kbint' .* failed to load"):
        reg = discover()
    assert reg.plugins["kbint"].error.startswith("KeyboardInterrupt") and reg.list("model") == ["net"]


def test_an_extra_module_that_exits_at_import_is_contained(lenient, tmp_path, monkeypatch):
    (tmp_path / "zoo_exiting_extra.py").write_text("import sys\nsys.exit(5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="sys.exit"):
        reg = discover(extra=[("exiting", "zoo_exiting_extra")])
    assert "sys.exit(5)" in reg.plugins["exiting"].error


@pytest.fixture(scope="module")
def quitter_site(tmp_path_factory):
    """A real pip-installed distribution whose plugin module calls sys.exit(3) when imported."""
    root = tmp_path_factory.mktemp("quitter")
    pkg = write_package(root / "src", "zoo-quitter", "quitter", "zoo_quitter_plugin",
                        "import sys\nsys.exit(3)\n")
    pip_install(root / "site", pkg)
    return root / "site"


def _zoo(site, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo_core", *argv], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(site, ZOO_LOAD_PLUGINS="quitter,tasks,torchvision", **env))


def test_an_installed_plugin_calling_sys_exit_no_longer_ends_every_command(quitter_site):
    done = _zoo(quitter_site, "plugins")
    assert done.returncode == 0, done.stdout + done.stderr
    row = [line for line in done.stdout.splitlines() if line.startswith("quitter")]
    assert len(row) == 1 and "zoo-quitter" in row[0] and "SystemExit: the plugin called sys.exit(3)" in row[0]
    assert any(line.startswith("torchvision") and "ERROR" not in line for line in done.stdout.splitlines())
    done = _zoo(quitter_site, "list", "resnet1*")
    assert done.returncode == 0 and done.stdout.split() == ["resnet101", "resnet152", "resnet18"], done.stderr
    done = _zoo(quitter_site, "list", "resnet18", ZOO_STRICT_PLUGINS="1")
    assert done.returncode == 1 and "plugin 'quitter'" in done.stderr and "ZOO_STRICT_PLUGINS" in done.stderr
