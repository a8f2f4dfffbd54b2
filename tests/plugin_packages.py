"""Real, pip-installed plugin packages for the plugin tests: the examples and a set of broken ones.

Each broken package is a one-module distribution with its own ``pyproject.toml`` and a
``zoo.plugins`` entry point; :func:`bad_plugins` writes them all and installs them with pip (offline:
``--no-deps --no-build-isolation``) into one target folder, once per test process. Tests pick the
plugins they want with ``ZOO_LOAD_PLUGINS`` and put the folder on ``sys.path``/``PYTHONPATH``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

HEAD = "from zoo_core import hookimpl\n"

#: distribution -> (entry-point name, module name, module source)
BAD = {
    "zoo-broken": ("broken", "zoo_broken_plugin", "import zoo_module_that_does_not_exist_xyz\n"),
    "zoo-misspelled": ("misspelled", "zoo_misspelled_plugin", HEAD + """
@hookimpl
def register_model(register):
    register("net", "zoo_misspelled_plugin:build", tasks=("cls",))
"""),
    "zoo-badarg": ("badarg", "zoo_badarg_plugin", HEAD + """
@hookimpl
def register_models(register, device):
    register("net", "zoo_badarg_plugin:build", tasks=("cls",))
"""),
    "zoo-collide-a": ("collide", "zoo_collide_a", HEAD + """
@hookimpl
def register_models(register):
    register("net", "zoo_collide_a:build", tasks=("cls",))
"""),
    "zoo-collide-b": ("collide", "zoo_collide_b", HEAD + """
@hookimpl
def register_models(register):
    register("net", "zoo_collide_b:build", tasks=("cls",))
"""),
    "zoo-future": ("future", "zoo_future_plugin", HEAD + """
zoo_requires = ">=99"

@hookimpl
def register_models(register):
    register("net", "zoo_future_plugin:build", tasks=("cls",))
"""),
    "zoo-unmarked": ("unmarked", "zoo_unmarked_plugin", """
def register_models(register):  # forgot @hookimpl: the zoo never calls this
    register("net", "zoo_unmarked_plugin:build", tasks=("cls",))
"""),
    "zoo-liars": ("liars", "zoo_liars_plugin", HEAD + '''
import torch
from torch import nn

from zoo_core.backbone import Backbone, FeatureInfo
from zoo_core.model import BuiltModel, Preprocess
from zoo_core.task import Task


def build_wrong_type(spec, *, task, num_classes=None, pretrained=None, **options):
    return nn.Linear(2, 2)  # not a BuiltModel


class Lying(Backbone):
    """Declares 16 channels at stride 8; really returns 8 channels at stride 4."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.feature_info = FeatureInfo.of([16], [8])

    def forward(self, x):
        return [self.conv(x)]


def build_lying(spec, *, pretrained=None, **options):
    return Lying()


class Incomplete(Task):  # no loss()
    name = "incomplete"
    default_metric = "accuracy"

    def read_dataset(self, source, *, split, train, model, image_size=None, class_names=None): ...
    def collate(self, samples): ...
    def forward_eval(self, model, batch): ...
    def new_metrics(self, class_names): ...
    def predict(self, model, images, sources, **options): ...


@hookimpl
def register_tasks(register):
    register("incomplete", "zoo_liars_plugin:Incomplete")


@hookimpl
def register_models(register):
    register("wrong_type", "zoo_liars_plugin:build_wrong_type", tasks=("cls",))
    register("nowhere", "zoo_liars_nowhere:build", tasks=("cls",))


@hookimpl
def register_backbones(register):
    register("lying", "zoo_liars_plugin:build_lying")
'''),
}


def write_package(root: Path, dist: str, ep_name: str, module: str, source: str) -> Path:
    """A one-module distribution ``dist`` whose entry point ``ep_name`` names ``module``."""
    pkg = root / dist
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.1.0"
        dependencies = ["zoo"]

        [project.entry-points."zoo.plugins"]
        {ep_name} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    return pkg


def pip_install(target: Path, *packages: Path) -> None:
    """``pip install --target`` without network: no dependencies, no build isolation."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--disable-pip-version-check", "--no-warn-script-location", "--target", str(target),
           *map(str, packages)]
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def bad_plugins() -> Path:
    """The folder every package of :data:`BAD` is installed in (built once per process)."""
    root = _tempdir("zoo-bad-plugins-")
    pkgs = [write_package(root / "src", dist, *spec) for dist, spec in BAD.items()]
    pip_install(root / "site", *pkgs)
    return root / "site"


@functools.lru_cache(maxsize=None)
def example_plugins() -> Path:
    """The folder ``examples/zoo-plugin-template`` and ``examples/zoo-multilabel`` are installed in."""
    root = _tempdir("zoo-example-plugins-")
    # pip builds in the source tree (build/, *.egg-info): build from copies so examples/ stays clean
    junk = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks")
    copies = [Path(shutil.copytree(EXAMPLES / name, root / "src" / name, ignore=junk))
              for name in ("zoo-plugin-template", "zoo-multilabel")]
    pip_install(root / "site", *copies)
    return root / "site"


def subprocess_env(*paths: Path, **extra: str) -> dict[str, str]:
    """The environment for a fresh python that sees the packages installed in ``paths``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_") or k in {"ZOO_HOME", "ZOO_OFFLINE"}}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env
