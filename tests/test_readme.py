"""Every example in README.md (above the plugin guide, which tests/plugins/ covers) runs as written.

Code blocks run in order in one temporary directory: ``bash`` lines through the real ``zoo``
command, ``python`` blocks in one shared namespace. The install commands are what CI itself runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str]]:
    text = README.read_text().split("<!-- plugin-guide:start -->")[0]
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands():
    first_lang, first = readme_blocks()[0]
    assert first_lang == "bash"
    lines = [ln.split("#")[0].strip() for ln in first.strip().splitlines()]
    assert lines == ['pip install -e ".[dev]" && zoo demo', 'pip install -e ".[dev]" && pytest']
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && pytest' in ci


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for lang, code in readme_blocks()[1:]:
        if lang == "python":
            exec(compile(code, f"README.md python block {ran}", "exec"), namespace)
            ran += 1
            continue
        for line in code.strip().splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):  # a comment line
                continue
            argv = shlex.split(line)
            assert argv[0] == "zoo", f"README bash line is not a zoo command: {line}"
            proc = subprocess.run([sys.executable, "-m", "zoo_core", *argv[1:]], capture_output=True,
                                  text=True, env=dict(os.environ), timeout=600)
            assert proc.returncode == 0, f"`{line}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            ran += 1
    assert ran >= 10
    assert namespace["report"]["accuracy"] > 0.3          # one epoch of resnet18 learns the digits
    assert namespace["again"].class_names == namespace["model"].class_names
    assert namespace["result"].max_abs_diff < 1e-3
