"""README "Writing a plugin": every code block between the plugin-guide markers, run as written.

A ```bash block is a command list; a ```python/```toml block whose first line is ``# file: PATH`` is a
file the reader creates. Sections 1-5 (the template walkthrough) run as one bash script
(``set -euo pipefail``) in a temporary folder holding a copy of ``examples/``; section 6 (a plugin
written from nothing: a regression task, a model for two tasks, a segmentation head) writes its
files and runs its commands in another. One substitution: ``pip install -e X`` becomes a
``pip install --target`` into a private folder on ``PYTHONPATH`` (offline, no dependencies), so the
tests install for real without changing the environment they run in. Any other command added to
the guide runs verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugin_packages import EXAMPLES, REPO, subprocess_env

START, END = "<!-- plugin-guide:start -->", "<!-- plugin-guide:end -->"
PIP_EDITABLE = re.compile(r"^pip install -e (\S+)$", re.M)
PIP_TARGET = r'python -m pip install --quiet --no-deps --no-build-isolation --target "$ZOO_GUIDE_SITE" \1'
FILE_HEADER = re.compile(r"^# file: (\S+)\n")
WALKTHROUGH, WORKED = (1, 2, 3, 4, 5), (6,)
#: the line of the worked model builder the raising variant puts a broken line before
BUILDER_LINE = '    outputs = 1 if task == "counting" else (num_classes or 10)\n'


@dataclass(frozen=True)
class Block:
    section: int
    lang: str
    text: str

    @property
    def path(self) -> str | None:
        """Where a file block goes (None for a command block)."""
        found = FILE_HEADER.match(self.text)
        return found.group(1) if found else None


def guide_blocks() -> list[Block]:
    """Every fenced block of the guide, with the number of the ``### N.`` section it is in."""
    text = (REPO / "README.md").read_text()
    assert START in text and END in text, "README.md lost its plugin-guide markers"
    guide = text[text.index(START):text.index(END)]
    blocks = []
    for part in re.split(r"^### ", guide, flags=re.M)[1:]:
        section = int(part.split(".", 1)[0])
        blocks += [Block(section, lang, body) for lang, body in re.findall(r"```(\w*)\n(.*?)```", part, re.S)]
    assert blocks, "the plugin guide has no code blocks"
    return blocks


def guide_script(sections: tuple[int, ...]) -> tuple[str, int]:
    """The bash blocks of ``sections`` as one script (pip installs redirected), and how many installs."""
    commands = [b.text for b in guide_blocks() if b.section in sections and b.lang == "bash"]
    return PIP_EDITABLE.subn(PIP_TARGET, "\n".join(commands))


def write_guide_files(root: Path, sections: tuple[int, ...] = WORKED) -> dict[str, Path]:
    """Write the file blocks of ``sections`` under ``root``, as a reader would; ``{path: file}``."""
    written = {}
    for block in guide_blocks():
        if block.section in sections and block.path:
            target = root / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            written[block.path] = target
    return written


def run_guide(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    environ = subprocess_env(site, ZOO_GUIDE_SITE=str(site), ZOO_HOME=str(tmp_path / "zoo_home"),
                             ZOO_STRICT_PLUGINS="1", PIP_NO_INDEX="1", **env)
    (tmp_path / "guide.sh").write_text("set -euo pipefail\n" + script)
    return subprocess.run(["bash", "guide.sh"], cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=600)


def test_every_block_of_the_guide_is_run_by_these_tests():
    """A block is a command list (run by a test below) or a file (written by one): nothing is left unread."""
    blocks = guide_blocks()
    assert {b.section for b in blocks} == set(WALKTHROUGH + WORKED)
    for block in blocks:
        assert block.lang == "bash" or (block.lang in {"python", "toml"} and block.path), block.text[:200]
    files = [b.path for b in blocks if b.path]
    assert len(files) == len(set(files)) == 7 and all(b.section in WORKED for b in blocks if b.path)


@pytest.mark.slow
def test_guide_walkthrough_runs_as_written(tmp_path):
    script, installs = guide_script(WALKTHROUGH)
    assert installs == 2  # the template copy and the multilabel example
    shutil.copytree(EXAMPLES, tmp_path / "examples",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    done = run_guide(tmp_path, script)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "tinycnn\ntinycnn_wide\n" in out  # zoo list --plugin myzoo
    assert "providers: myzoo:tinycnn" in out  # zoo info
    assert re.search(r"^accuracy 0\.\d{3}$", out, re.M)
    assert re.search(r"onnx -> tinycnn\.onnx .*max \|exported - eager\|", out)
    assert (tmp_path / "my-zoo-plugin" / "tinycnn.onnx").is_file()
    assert re.search(r"^=* ?\d+ passed", out, re.M) and "6 passed" in out  # its 3 tests + 3 conformance
    assert "myzoo" in out and "zoo-plugin[myzoo]" not in done.stderr
    assert re.search(r"^myzoo\s+my-zoo-plugin\s+0\.1\.0\s+ok \(1 head, 2 models\)", out, re.M)  # zoo plugins
    assert "[ok] myzoo  (my-zoo-plugin 0.1.0)" in out and "0 problem(s)" in out  # doctor
    assert "mlcnn\nmlcnn_small\n" in out  # zoo list --task multilabel
    assert re.search(r"^mAP 0\.\d{3}$", out, re.M)
    assert "zoo demo (quick)" in out and "multilabel: mlcnn" in out and "mAP 0." in out  # Task.demo() recipe
    last = out.strip().splitlines()[-1]
    assert last.startswith("[") and set(eval(last)) <= {"circle", "square", "triangle", "cross"}


@pytest.mark.slow
def test_the_worked_plugin_written_from_the_guide_installs_trains_and_conforms(tmp_path):
    """Section 6 alone, from the README's text: a task, a model for two tasks and a head, pip-installed."""
    files = write_guide_files(tmp_path)
    assert "counting-zoo/zoo_counting/task.py" in files and BUILDER_LINE in files["counting-zoo/zoo_counting/models.py"].read_text()
    script, installs = guide_script(WORKED)
    assert installs == 1
    done = run_guide(tmp_path, script)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "dotnet\n" in out  # zoo list --plugin counting
    assert "tasks:     classification, counting" in out and "providers: counting:dotnet" in out  # zoo info
    assert "fuseseg: a segmentation head" in out and "  plugin:        counting\n" in out  # zoo info HEAD
    assert "  distribution:  zoo-counting 0.1.0" in out
    assert "requires:      min_levels=2, strides=(), min_stride=4, max_stride=None, single_level_ok=True" in out
    assert re.search(r"^counting:fuseseg\s+fits through a simple feature pyramid", out, re.M)  # zoo compat ViT
    assert re.search(r"^best mae \d+\.\d{3} in epoch 1$", out, re.M)  # FitResult.best_epoch is 1-based
    assert "| best mae" in out.replace("│", "|") and "(epoch 1)" in out  # the summary says the same epoch
    assert re.search(r"^mae \d+\.\d{3} rmse \d+\.\d{3}$", out, re.M)
    assert re.search(r"^Count\(source='dots/val/images/0000\.png', count=-?\d", out, re.M)
    assert re.search(r"onnx -> dotnet\.onnx .*max \|exported - eager\|", out)
    assert "FuseSegNet backbone: ('backbone',) head: ('classifier',)" in out
    assert "{'min_levels': 2, 'strides': (), 'min_stride': 4, 'max_stride': None, 'single_level_ok': True}" in out
    assert re.search(r"^=* ?3 passed", out, re.M), out  # the task, dotnet (both tasks), fuseseg


@pytest.mark.slow
def test_the_worked_plugin_with_a_builder_raising_for_one_task_fails_the_suite_naming_it(tmp_path):
    """The same plugin whose builder breaks for its second task (classification): the model's test fails,
    naming the task, the exception, the builder and the plugin's line; nothing says PASSED for it."""
    files = write_guide_files(tmp_path)
    models = files["counting-zoo/zoo_counting/models.py"]
    source = models.read_text()
    assert source.count(BUILDER_LINE) == 1, "the guide's build_dotnet changed: update BUILDER_LINE"
    models.write_text(source.replace(BUILDER_LINE, '    if task == "classification":\n'
                                                   '        rows, cols = (1, 2, 3)\n' + BUILDER_LINE))
    site = tmp_path / "site"
    env = subprocess_env(site, ZOO_HOME=str(tmp_path / "zoo_home"), ZOO_STRICT_PLUGINS="1", PIP_NO_INDEX="1")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), "./counting-zoo"], cwd=tmp_path, env=env, check=True, timeout=300)
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--zoo-plugin=counting",
                           "-k", "dotnet"], cwd=tmp_path / "counting-zoo", env=env, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "FAILED zoo-plugin[counting]::conformance[model:counting:dotnet]" in out
    assert "PASSED zoo-plugin[counting]::conformance[model:counting:dotnet]" not in out
    assert "1 failed" in out
    assert ("plugin 'counting' (distribution 'zoo-counting'), model 'counting:dotnet' does not conform:\n"
            "  build, task 'classification': ValueError: too many values to unpack (expected 2) (raised by the "
            "builder 'zoo_counting.models:build_dotnet' of model 'counting:dotnet' (plugin 'counting', distribution "
            "'zoo-counting'))") in out
    assert re.search(r"\(at \S+/zoo_counting/models\.py:\d+ in build_dotnet\)", out)
    assert "fix: make zoo_counting.models:build_dotnet return zoo_core.model.BuiltModel" in out
    assert "[pass] export, task 'counting'" in out  # the first task was checked in full, and passed


@pytest.mark.skipif(shutil.which("zoo") is None, reason="the zoo console script is not installed")
def test_guide_uses_only_installed_commands():
    script, _ = guide_script(WALKTHROUGH + WORKED)
    commands = {line.split()[0] for line in script.splitlines()
                if line and not line.startswith((" ", "import", "model", "names", "zoo.", "report", "print", "fit",
                                                 "seg"))
                and not line.startswith(("EOF", "#", ")"))}
    assert commands <= {"cp", "cd", "mv", "sed", "python", "zoo", "pytest"}, commands
    for cmd in commands:
        assert shutil.which(cmd) or cmd == "cd", f"{cmd} is not on PATH"
    assert os.access(shutil.which("zoo"), os.X_OK)
