"""The registry: hook validation, collisions, failed plugins, and short-name resolution."""

from __future__ import annotations

import inspect
import types
import re
from types import SimpleNamespace

import pytest

import zoo_core
from zoo_core import hookimpl, hookspecs
from zoo_core.errors import IncompatibleError, PluginError, UnknownNameError
from zoo_core.registry import Registry, discover, reset_registry, set_provider_priority


def plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, hookimpl(fn))
    return mod


def models(*rows):
    def register_models(register):
        for name, kw in rows:
            register(name, "pkg.mod:build", **kw)
    return register_models


def tasks(register):
    register("classification", "pkg.mod:Task", aliases=("cls",))
    register("detection", "pkg.mod:Task", aliases=("det",))


@pytest.fixture
def reg(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_PROVIDER_PRIORITY", raising=False)
    set_provider_priority(None)
    r = Registry()
    r.add_plugin(plugin("t", register_tasks=tasks), "tasks")
    yield r
    set_provider_priority(None)


def test_every_hook_is_documented():
    hooks = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")]
    assert {f.__name__ for f in hooks} == {"register_tasks", "register_models", "register_backbones",
                                          "register_heads"}
    for fn in hooks:
        assert fn.__doc__ and len(fn.__doc__.split()) > 20, f"{fn.__name__} lacks documentation"
        assert list(inspect.signature(fn).parameters) == ["register"]


def test_short_name_picks_highest_priority_then_plugin_name(reg):
    reg.add_plugin(plugin("a", register_models=models(("net", {"tasks": ["cls"], "priority": 10}))), "alpha")
    reg.add_plugin(plugin("b", register_models=models(("net", {"tasks": ["cls"], "priority": 30}))), "beta")
    reg.add_plugin(plugin("c", register_models=models(("net", {"tasks": ["cls"], "priority": 30}))), "gamma")
    reg.finalize()
    assert reg.resolve("model", "net").qualified_name == "beta:net"
    assert [s.plugin for s in reg.providers("model", "net")] == ["beta", "gamma", "alpha"]
    assert reg.resolve("model", "alpha:net").plugin == "alpha"  # qualified always resolves


def test_user_priority_overrides_spec_priority(reg, monkeypatch):
    reg.add_plugin(plugin("a", register_models=models(("net", {"tasks": ["cls"], "priority": 0}))), "alpha")
    reg.add_plugin(plugin("b", register_models=models(("net", {"tasks": ["cls"], "priority": 30}))), "beta")
    reg.finalize()
    monkeypatch.setenv("ZOO_PROVIDER_PRIORITY", "alpha")
    assert reg.resolve("model", "net").plugin == "alpha"
    set_provider_priority(["beta"])  # the API beats the environment
    assert reg.resolve("model", "net").plugin == "beta"


def test_task_filters_providers_and_aliases_canonicalise(reg):
    reg.add_plugin(plugin("a", register_models=models(("net", {"tasks": ["det"], "priority": 50}))), "alpha")
    reg.add_plugin(plugin("b", register_models=models(("net", {"tasks": ["cls"]}))), "beta")
    reg.finalize()
    assert reg.resolve("model", "net", task="classification").plugin == "beta"
    assert reg.resolve("model", "net", task="det").plugin == "alpha"
    assert reg.specs("model")[0].tasks == ("detection",)
    with pytest.raises(IncompatibleError, match="does not support task 'classification'"):
        reg.resolve("model", "alpha:net", task="cls")


def test_unknown_names_are_lookup_errors_with_suggestions(reg):
    reg.add_plugin(plugin("a", register_models=models(("resnet50", {"tasks": ["cls"]}),
                                                      ("resnet18", {"tasks": ["cls"]}))), "alpha")
    reg.finalize()
    with pytest.raises(LookupError) as info:
        reg.resolve("model", "resnet05")
    assert isinstance(info.value, UnknownNameError)
    assert "resnet50" in str(info.value) and "did you mean" in str(info.value)
    with pytest.raises(UnknownNameError, match="classification"):
        reg.canonical_task("clasification")


def test_failed_plugin_is_recorded_and_named_in_unknown_name_errors(reg):
    def broken(register):
        raise RuntimeError("boom: missing dependency")

    info = reg.add_plugin(plugin("x", register_models=broken), "broken")
    reg.add_plugin(plugin("a", register_models=models(("ok", {"tasks": ["cls"]}))), "alpha")
    reg.finalize()
    assert not info.ok and "boom" in info.error and "RuntimeError" in info.traceback
    assert reg.resolve("model", "ok").plugin == "alpha"
    with pytest.raises(UnknownNameError, match="broken.*boom"):
        reg.resolve("model", "nothing_like_it")
    with pytest.raises(UnknownNameError, match="plugin 'broken' failed to load"):
        reg.resolve("model", "broken:thing")


def test_strict_mode_raises_on_failed_plugin(reg, monkeypatch):
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")

    def broken(register):
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match="ZOO_STRICT_PLUGINS"):
        reg.add_plugin(plugin("x", register_models=broken), "broken")


def test_misspelled_hook_and_unknown_argument_are_rejected(reg):
    def register_model(register):  # singular: a typo
        pass

    info = reg.add_plugin(plugin("x", register_model=register_model), "typo")
    assert "register_models" in info.error and "typo" in info.error

    def register_models(register, colour):
        pass

    info = reg.add_plugin(plugin("y", register_models=register_models), "badarg")
    assert "colour" in info.error


def test_bad_register_calls_name_plugin_and_field(reg):
    def bad_field(register):
        register("m", "pkg.mod:build", taskz=("cls",))

    info = reg.add_plugin(plugin("x", register_models=bad_field), "badfield")
    assert "badfield" in info.error and "taskz" in info.error

    def bad_builder(register):
        register("m", "not a builder string")

    info = reg.add_plugin(plugin("y", register_models=bad_builder), "badbuilder")
    assert "module:function" in info.error
    assert reg.list("model") == []  # nothing half-registered


def test_same_qualified_name_twice_is_an_error_naming_both(reg):
    reg.add_plugin(plugin("a", register_models=models(("m", {"tasks": ["cls"]}), ("m", {"tasks": ["cls"]}))),
                   "alpha", distribution="dist-one")
    assert "registered twice by plugin 'alpha' (dist-one); each name must be registered once" in \
        reg.plugins["alpha"].error  # its own bug: nothing to uninstall


def test_zoo_requires_outside_range_is_reported(reg):
    mod = plugin("x", register_models=models(("m", {"tasks": ["cls"]})))
    mod.zoo_requires = ">=99"
    info = reg.add_plugin(mod, "future")
    assert "supports zoo >=99" in info.error


def test_list_filters(reg):
    reg.add_plugin(plugin("a", register_models=models(("resnet18", {"tasks": ["cls"]}),
                                                      ("frcnn", {"tasks": ["det"]}))), "alpha")
    reg.add_plugin(plugin("b", register_models=models(("resnet18", {"tasks": ["cls"]}),
                                                      ("vit_b", {"tasks": ["cls"]}))), "beta")
    reg.finalize()
    assert reg.list("model") == ["frcnn", "resnet18", "vit_b"]  # unique, sorted
    assert reg.list("model", task="cls") == ["resnet18", "vit_b"]
    assert reg.list("model", "res*") == ["resnet18"]
    assert reg.list("model", "alpha:*") == ["frcnn", "resnet18"]
    assert reg.list("model", plugin="beta", exclude="vit*") == ["resnet18"]


def _ep(name, module, dist):
    return SimpleNamespace(name=name, value=module.__name__, dist=SimpleNamespace(name=dist, version="1.0"),
                           load=lambda: module)


def test_discover_dedupes_and_reports_entry_point_name_collisions(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    good = plugin("good_mod", register_tasks=tasks, register_models=models(("m", {"tasks": ["cls"]})))
    other = plugin("other_mod", register_models=models(("m", {"tasks": ["cls"]})))
    eps = [_ep("shared", good, "dist-a"), _ep("shared", other, "dist-b")]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    with pytest.warns(UserWarning, match=r"plugin 'shared \(dist-b\)' \(dist-b\) failed to load and is left out"):
        reg = discover()
    with pytest.raises(PluginError, match="claimed by distributions 'dist-a' and 'dist-b'"):
        reg.resolve("model", "shared:m")  # neither wins by sorting first
    with pytest.raises(UnknownNameError, match="'m'"):
        reg.resolve("model", "m")  # not by its short name either
    assert reg.list("model") == []  # the first claimant's specs were withdrawn, its tasks too
    with pytest.raises(UnknownNameError, match="failed to load: shared .*claimed by distributions"):
        reg.task_spec("cls")
    bad = [p for p in reg.plugins.values() if not p.ok]
    assert len(bad) == 2 and all("'dist-a' and 'dist-b'" in p.error for p in bad)


def test_a_broken_plugin_under_warnings_as_errors_leaves_the_others_working(monkeypatch):
    import warnings

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    good = plugin("good_mod", register_tasks=tasks, register_models=models(("m", {"tasks": ["cls"]})))
    future = plugin("future_mod", register_models=models(("n", {"tasks": ["cls"]})))
    future.zoo_requires = ">=99"
    eps = [_ep("future", future, "df"), _ep("good", good, "dg")]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pytest -W error, a plugin author's usual setting
        reg = discover()
    assert reg.resolve("model", "m").plugin == "good" and not reg.plugins["future"].ok


def test_the_zoos_own_plugins_keep_their_names_and_tasks(monkeypatch):
    """A stranger's plugin named like a built-in one, or a task reusing 'cls', fails; the built-in works."""
    from zoo_core.registry import _entry_points

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    builtin = plugin("builtin_mod", register_tasks=tasks, register_models=models(("m", {"tasks": ["cls"]})))
    clash = plugin("clash_mod", register_models=models(("m", {"tasks": ["cls"]})))
    def stolen_alias(register):
        register("binary", "pkg.mod:Task", aliases=("cls",))
    thief = plugin("aaa_mod", register_tasks=stolen_alias)
    eps = [_ep("aaa", thief, "audit-task"), _ep("shared", clash, "audit-clash"), _ep("shared", builtin, "zoo")]
    monkeypatch.setattr("zoo_core.registry.md.entry_points", lambda group: eps)
    assert [e.dist.name for e in _entry_points()] == ["zoo", "audit-task", "audit-clash"]  # the zoo's first
    with pytest.warns(UserWarning):
        reg = discover()
    assert reg.resolve("model", "shared:m").distribution == "zoo" and reg.task_spec("cls").distribution == "zoo"
    errors = {p.name: p.error for p in reg.plugins.values() if not p.ok}
    assert "is the name of the zoo's built-in plugin" in errors["shared (audit-clash)"]
    assert "wants the name 'cls', which task 'shared:classification'" in errors["aaa"]


def test_disable_and_allow_lists(monkeypatch):
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    a = plugin("a_mod", register_tasks=tasks, register_models=models(("m", {"tasks": ["cls"]})))
    b = plugin("b_mod", register_models=models(("n", {"tasks": ["cls"]})))
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: [_ep("a", a, "da"), _ep("b", b, "db")])
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "b")
    reg = discover()
    assert set(reg.plugins) == {"a"} and reg.skipped == {"b": "ZOO_DISABLE_PLUGINS"}
    with pytest.raises(UnknownNameError, match=r"Plugin\(s\) not loaded on purpose: b \(ZOO_DISABLE_PLUGINS\)"):
        reg.resolve("model", "n")  # the error says where the model went
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "b")
    assert set(discover().plugins) == {"b"}
    monkeypatch.delenv("ZOO_LOAD_PLUGINS")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "bb")  # a typo: nothing is disabled, and the user is told
    with pytest.warns(UserWarning, match="ZOO_DISABLE_PLUGINS names bb, which no installed plugin is called; "
                                         "installed plugins: a, b"):
        reg = discover()
    assert set(reg.plugins) == {"a", "b"} and reg.warnings and not reg.skipped


def test_catalog_import_pulls_in_no_torch():
    import subprocess
    import sys

    code = ("import sys, zoo_core as zoo; zoo.list_tasks(); zoo.list_models(); zoo.list_plugins();"
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'segmentation_models_pytorch') "
            "if m in sys.modules))")
    # the first listing of a fresh ZOO_HOME builds the per-version timm catalog (imports timm once)
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert zoo_core.__version__


def test_warnings_from_a_plugins_code_point_at_the_users_line(monkeypatch):
    import types
    import warnings

    from zoo_core.errors import warn
    from zoo_core.registry import PluginInfo

    fake = types.ModuleType("fakeplug.tasks")
    exec("def read(warn):\n    warn('fakeplug: 2 files skipped')\n", fake.__dict__)
    reg = Registry()
    reg.plugins["fake"] = PluginInfo("fake", "fakeplug.plugin")
    reset_registry(reg)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fake.read(warn)
    finally:
        reset_registry(None)
    assert caught[0].filename == __file__ and "2 files skipped" in str(caught[0].message)


def test_warnings_skip_only_a_plugins_own_modules_never_its_whole_package_or_main(monkeypatch):
    """A plugin ``acme.zoo.plugin`` must not hide ``acme.app`` (the user's code) from warning attribution."""
    from types import SimpleNamespace

    from zoo_core import errors, registry

    plugins = {"acme": SimpleNamespace(module="acme.zoo.plugin"), "script": SimpleNamespace(module="__main__"),
               "flat": SimpleNamespace(module="flatplug:hooks")}
    specs = {"model": {"acme:net": SimpleNamespace(builder="acme.nets.build:make")}}
    monkeypatch.setattr(registry, "_REGISTRY", SimpleNamespace(plugins=plugins, _specs=specs))
    own = errors._own_modules()
    assert {"zoo_core", "acme.zoo", "flatplug", "acme.nets.build"} <= own and "__main__" not in own
    assert errors._is_own("acme.zoo.tasks", own) and errors._is_own("zoo_core.train.trainer", own)
    assert not errors._is_own("acme.app", own) and not errors._is_own("acme", own)
    assert not errors._is_own("__main__", own) and not errors._is_own("zoo_core_fork", own)


def test_an_empty_zoo_list_says_why(monkeypatch, capsys):
    from zoo_core.cli import main

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    good = plugin("good_mod", register_tasks=tasks, register_models=models(("m", {"tasks": ["cls"]})))
    parts = plugin("parts_mod", register_backbones=lambda register: register("bb", "pkg.mod:bb"))
    broken = SimpleNamespace(name="broken", value="broken_mod", dist=SimpleNamespace(name="zoo-broken", version="1"),
                             load=lambda: (_ for _ in ()).throw(ImportError("No module named 'cv3'")))
    eps = [_ep("good", good, "dist-good"), _ep("parts", parts, "dist-parts"), broken]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: eps)
    with pytest.warns(UserWarning, match="'broken'.*failed to load"):
        reset_registry(discover())
    try:
        cases = {("--plugin", "brokn"): "no plugin is called 'brokn'; installed: broken, good, parts",
                 ("--plugin", "broken"): "plugin 'broken' failed to load: ImportError: No module named 'cv3'",
                 ("--plugin", "parts"): "plugin 'parts' registers no whole models but 1 backbone(s) (`zoo info",
                 ("zzz",): "no model matches pattern 'zzz'"}
        for argv, message in cases.items():
            assert main(["list", *argv]) == 1
            captured = capsys.readouterr()
            assert captured.out == "" and message in captured.err, (argv, captured.err)
    finally:
        reset_registry()


@pytest.mark.parametrize("hook, fields, message", [
    ("register_models", {}, r"tasks=\(\.\.\.\) must name at least one task"),
    ("register_models", {"tasks": ["cls"], "input_size": 32}, r"input_size=32 must be \(channels, height, width\)"),
    ("register_models", {"tasks": ["cls"], "input_size": [32, 32]}, r"input_size=\(32, 32\) must be"),
    ("register_models", {"tasks": ["cls"], "export_formats": ["tflite"]}, r"export_formats \['tflite'\] are not"),
    ("register_heads", {"task": "cls", "requires": {"min_levelz": 1}},
     r"requires has unknown key\(s\) \['min_levelz'\]"),
])
def test_a_spec_with_bad_fields_fails_its_plugin_at_registration(reg, hook, fields, message):
    bad = plugin("bad_mod", **{hook: lambda register: register("x", "pkg.mod:build", **fields)})
    info = reg.add_plugin(bad, "bad")
    assert not info.ok and re.search(rf"plugin 'bad': (model|head) 'x': {message}", info.error), info.error


def test_a_zoo_requires_that_is_not_a_specifier_is_named(reg):
    mod = plugin("req_mod", register_models=models(("m", {"tasks": ["cls"]})))
    mod.zoo_requires = "zoo 0.1 or newer"
    info = reg.add_plugin(mod, "req")
    assert not info.ok and "zoo_requires = 'zoo 0.1 or newer' is not a version specifier" in info.error


def test_head_requirement_keys_match_the_dataclass():
    from zoo_core.backbone import HeadRequirements
    from zoo_core.specs import HEAD_REQUIREMENT_KEYS

    assert set(HEAD_REQUIREMENT_KEYS) == set(HeadRequirements.__dataclass_fields__)


def test_an_unexpected_exception_in_a_builder_names_the_spec_and_its_plugin(monkeypatch):
    import sys

    builders = types.ModuleType("kaboom_builders")
    exec("def build(spec, **kwargs):\n    raise KeyError('weights_path')\n", builders.__dict__)
    monkeypatch.setitem(sys.modules, "kaboom_builders", builders)
    mod = plugin("kaboom_mod", register_tasks=tasks,
                 register_models=lambda register: register("boom", "kaboom_builders:build", tasks=("cls",)))
    reg = Registry()
    reg.add_plugin(mod, "kaboom", distribution="zoo-kaboom", version="1.0")
    spec = reg.finalize().resolve("model", "boom")
    with pytest.raises(PluginError, match=r"the builder 'kaboom_builders:build' of model 'kaboom:boom' \(plugin "
                                          r"'kaboom', distribution 'zoo-kaboom'\) failed: KeyError: 'weights_path'"):
        spec.call_builder(task="classification", num_classes=3, pretrained=None)  # what zoo.load calls
    builders.build = lambda spec, **kw: (_ for _ in ()).throw(ValueError("num_classes must be 3"))
    with pytest.raises(ValueError, match=r"^num_classes must be 3 \(raised by the builder 'kaboom_builders:build' "
                                         r"of model 'kaboom:boom' \(plugin 'kaboom', distribution 'zoo-kaboom'\)\)$"):
        spec.call_builder(task="classification", num_classes=4, pretrained=None)  # the message kept whole, named


def test_zoo_plugins_prints_a_multi_line_error_on_its_row(monkeypatch, capsys):
    from zoo_core.cli import main

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    broken = SimpleNamespace(name="broken", value="broken_mod", dist=SimpleNamespace(name="zoo-broken", version="1"),
                             load=lambda: (_ for _ in ()).throw(ImportError("line one\n  line two")))
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: [broken])
    with pytest.warns(UserWarning):
        reset_registry(discover())
    try:
        main(["plugins"])
        row = [line for line in capsys.readouterr().out.splitlines() if "broken" in line]
        assert len(row) == 1 and "ERROR ImportError: line one line two" in row[0]
    finally:
        reset_registry()


def test_the_conformance_suite_says_a_disabled_plugin_is_disabled(monkeypatch):
    from zoo_core.testing.suite import plugin_specs

    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "b")
    mods = [_ep("a", plugin("a_mod", register_tasks=tasks), "da"), _ep("b", plugin("b_mod"), "db")]
    monkeypatch.setattr("zoo_core.registry._entry_points", lambda: mods)
    with pytest.raises(UnknownNameError, match=r"plugin 'b' is installed but was not loaded on purpose "
                                               r"\(ZOO_DISABLE_PLUGINS\)"):
        plugin_specs("b", registry=discover())
