"""A test plugin whose model has a downloadable weights tag (``remote_tiny.v1``).

Tests point ``SOURCE`` at a file they wrote (a ``file://`` or local ``http://`` URL) and its sha256;
the network itself is never used.
"""

from __future__ import annotations

from typing import Any

from zoo_core import hookimpl
from zoo_core.model import BuiltModel, Preprocess, PretrainedWeights
from zoo_toy_plugin import TinyNet

FILENAME = "remote_tiny-v1.safetensors"
SOURCE: dict[str, Any] = {"url": "https://example.invalid/remote_tiny-v1.safetensors", "sha256": None}


def describe(tag: str = "v1") -> PretrainedWeights:
    return PretrainedWeights(tag=tag, url=SOURCE["url"], filename=FILENAME, sha256=SOURCE["sha256"],
                             num_classes=4, class_names=["a", "b", "c", "d"],
                             preprocess=Preprocess(input_size=(8, 8)), license="CC0-1.0",
                             metrics={"toy": {"accuracy": 0.75}})


def weights_info(spec) -> list[PretrainedWeights]:
    return [describe(t) for t in spec.weights]


def build(spec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          **options: Any) -> BuiltModel:
    n = num_classes or 4
    return BuiltModel(net=TinyNet(4, n), num_classes=n, preprocess=Preprocess(input_size=(8, 8)),
                      head=("fc",), backbone=("features",),
                      pretrained=describe(pretrained) if pretrained else None,
                      export_formats=("onnx", "torchscript", "torch_export"))


@hookimpl
def register_models(register):
    register("remote_tiny", "zoo_remote_plugin:build", tasks=("toy",), weights=("v1",),
             weights_info="zoo_remote_plugin:weights_info")


def make_registry():
    """A registry holding the toy task/models and this plugin (install it with ``reset_registry``)."""
    import sys

    import zoo_toy_plugin
    from zoo_core.registry import Registry

    reg = Registry()
    reg.add_plugin(zoo_toy_plugin, "toy", distribution="zoo-toy", version="0.0.1")
    reg.add_plugin(sys.modules[__name__], "remote", distribution="zoo-remote", version="0.1")
    return reg.finalize()


def publish(directory, seed: int = 1):
    """Write trained-looking weights for ``remote_tiny`` into ``directory`` and point SOURCE at them.

    Returns ``(path, sha256, net)``: the file, its hash and the network it holds.
    """
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    from zoo_core.weights import sha256_file

    torch.manual_seed(seed)
    net = TinyNet(4, 4)
    path = Path(directory) / FILENAME
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    sha = sha256_file(path)
    SOURCE.update(url=path.resolve().as_uri(), sha256=sha)
    return path, sha, net
