"""The transformers extra is optional: listing never imports it, and without it only its models fail, saying
which extra to install. Each check runs in a fresh interpreter (sys.modules is the thing checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

def run(code: str) -> dict:
    env = {**os.environ, "ZOO_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_listing_and_info_do_not_import_transformers():
    out = run("""
        import json, sys
        import zoo_core as zoo
        from zoo_core.cli import main
        names = zoo.list_models(task="det")
        info = zoo.info("rtdetr_r18vd")
        weights = [w.url for w in zoo.list_weights("rtdetr_r18vd")]
        code = main(["list", "--task", "det"])
        print(json.dumps({"imported": "transformers" in sys.modules, "rt": "rtdetr_r18vd" in names,
                          "detr": "detr_resnet50" in names, "weights": weights, "code": code}))
    """)
    assert out == {"imported": False, "rt": True, "detr": True, "code": 0,
                   "weights": ["https://huggingface.co/PekingU/rtdetr_r18vd/resolve/main/model.safetensors"]}


def test_without_transformers_the_zoo_works_and_its_models_name_the_extra():
    out = run("""
        import importlib.abc, importlib.metadata as md, sys

        class NotInstalled(importlib.abc.MetaPathFinder):  # transformers as absent as uninstalled: module and metadata
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "transformers":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NotInstalled())
        sys.modules.pop("transformers", None)
        real_version = md.version

        def version(name):  # what torchmetrics (lightning_utilities) asks before importing it
            if name.lower() == "transformers":
                raise md.PackageNotFoundError(name)
            return real_version(name)

        md.version = version
        import json
        import zoo_core as zoo
        from zoo_core.cli import main
        from zoo_transformers.hf import TransformersMissingError
        plugin = next(p for p in zoo.list_plugins() if p.name == "transformers")
        listed = main(["list"]) == 0 and main(["info", "rtdetr_r18vd"]) == 0
        try:
            zoo.load("rtdetr_r18vd", task="det")
            error = None
        except TransformersMissingError as exc:
            error = str(exc)
        other = zoo.load("fasterrcnn_mobilenet_v3_large_320_fpn", task="det", num_classes=2).num_classes
        print(json.dumps({"plugin_error": plugin.error, "listed": listed, "error": error, "other": other}))
    """)
    assert out["plugin_error"] is None and out["listed"] and out["other"] == 2
    assert out["error"] and 'pip install "zoo[transformers]"' in out["error"] and "rtdetr_r18vd" in out["error"]
