"""README "Writing a plugin": every shell block between the plugin-guide markers, run in order.

The blocks run as one bash script (``set -euo pipefail``) in a temporary folder holding a copy of
``examples/``, with one substitution: ``pip install -e X`` becomes a ``pip install --target`` into a
private folder on ``PYTHONPATH`` (offline, no dependencies), so the test installs for real without
changing the environment it runs in. Any other command added to the guide runs verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from plugin_packages import EXAMPLES, REPO, subprocess_env

START, END = "<!-- plugin-guide:start -->", "<!-- plugin-guide:end -->"
PIP_EDITABLE = re.compile(r"^pip install -e (\S+)$", re.M)
PIP_TARGET = r'python -m pip install --quiet --no-deps --no-build-isolation --target "$ZOO_GUIDE_SITE" \1'


def guide_script() -> tuple[str, int]:
    text = (REPO / "README.md").read_text()
    assert START in text and END in text, "README.md lost its plugin-guide markers"
    guide = text[text.index(START):text.index(END)]
    blocks = re.findall(r"```bash\n(.*?)```", guide, re.S)
    assert blocks, "the plugin guide has no ```bash blocks"
    return PIP_EDITABLE.subn(PIP_TARGET, "\n".join(blocks))


def test_guide_walkthrough_runs_as_written(tmp_path):
    script, installs = guide_script()
    assert installs == 2  # the template copy and the multilabel example
    shutil.copytree(EXAMPLES, tmp_path / "examples",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = tmp_path / "site"
    env = subprocess_env(site, ZOO_GUIDE_SITE=str(site), ZOO_HOME=str(tmp_path / "zoo_home"),
                         ZOO_STRICT_PLUGINS="1", PIP_NO_INDEX="1")
    (tmp_path / "guide.sh").write_text("set -euo pipefail\n" + script)
    done = subprocess.run(["bash", "guide.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "tinycnn\ntinycnn_wide\n" in out  # zoo list --plugin myzoo
    assert "providers: myzoo:tinycnn" in out  # zoo info
    assert re.search(r"^accuracy 0\.\d{3}$", out, re.M)
    assert re.search(r"onnx -> tinycnn\.onnx .*max \|exported - eager\|", out)
    assert (tmp_path / "my-zoo-plugin" / "tinycnn.onnx").is_file()
    assert re.search(r"^=* ?\d+ passed", out, re.M) and "4 passed" in out  # its tests + conformance
    assert "myzoo" in out and "zoo-plugin[myzoo]" not in done.stderr
    assert re.search(r"^myzoo\s+my-zoo-plugin\s+0\.1\.0\s+ok \(2 models\)", out, re.M)  # zoo plugins
    assert "[ok] myzoo  (my-zoo-plugin 0.1.0)" in out and "0 problem(s)" in out  # doctor
    assert "mlcnn\nmlcnn_small\n" in out  # zoo list --task multilabel
    assert re.search(r"^mAP 0\.\d{3}$", out, re.M)
    assert "zoo demo (quick)" in out and "multilabel: mlcnn" in out and "mAP 0." in out  # Task.demo() recipe
    last = out.strip().splitlines()[-1]
    assert last.startswith("[") and set(eval(last)) <= {"circle", "square", "triangle", "cross"}


@pytest.mark.skipif(shutil.which("zoo") is None, reason="the zoo console script is not installed")
def test_guide_uses_only_installed_commands():
    script, _ = guide_script()
    commands = {line.split()[0] for line in script.splitlines()
                if line and not line.startswith((" ", "import", "model", "names", "zoo.", "report", "print"))
                and not line.startswith(("EOF", "#", ")"))}
    assert commands <= {"cp", "cd", "mv", "sed", "python", "zoo", "pytest"}, commands
    for cmd in commands:
        assert shutil.which(cmd) or cmd == "cd", f"{cmd} is not on PATH"
    assert os.access(shutil.which("zoo"), os.X_OK)
