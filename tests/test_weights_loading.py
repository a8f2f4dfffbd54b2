"""Weights into torchvision and timm classifiers: files saved by the libraries themselves load
exactly, prefixes are stripped, foreign files and pickles are refused, heads are replaced and
reported, and pretrained tags come from the offline cache with zero downloads."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import zoo_core as zoo
from zoo_core.errors import WeightsError
from zoo_core.registry import get_registry
from zoo_core.weights import cache_path

X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any download attempt is recorded and fails the test."""
    calls: list[str] = []

    def urlopen(req, *args, **kwargs):
        calls.append(getattr(req, "full_url", str(req)))
        raise AssertionError(f"network access: {calls[-1]}")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", lambda self, req, *a, **kw: urlopen(req))
    return calls


@pytest.fixture(scope="module")
def tv_resnet18() -> torchvision.models.ResNet:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def timm_resnet18() -> torch.nn.Module:
    torch.manual_seed(2)
    return timm.create_model("resnet18", pretrained=False).eval()


def _out(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(X)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_torchvision_state_dict_loads_exactly(tmp_path: Path, tv_resnet18, fmt: str, no_network) -> None:
    path = tmp_path / f"resnet18.{fmt}"
    state = tv_resnet18.state_dict()
    torch.save(state, path) if fmt == "pth" else save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = zoo.load("torchvision:resnet18", task="cls", weights=path)
    assert torch.equal(_out(model), _out(tv_resnet18))
    assert model.weights_report.reinitialized == [] and len(model.weights_report.loaded) == len(state)
    assert no_network == []


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_timm_state_dict_loads_exactly(tmp_path: Path, timm_resnet18, fmt: str) -> None:
    path = tmp_path / f"timm_resnet18.{fmt}"
    state = timm_resnet18.state_dict()
    torch.save(state, path) if fmt == "pth" else save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = zoo.load("timm:resnet18", task="cls", weights=path)
    assert torch.equal(_out(model), _out(timm_resnet18))


def test_timm_vit_loads_exactly_through_its_checkpoint_filter(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32).eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "vit.pth")  # wrapped like a training checkpoint
    model = zoo.load("timm:vit_tiny_patch16_224", task="cls", num_classes=5, img_size=32, weights=tmp_path / "vit.pth")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.module.", "net.", "_orig_mod.net.", "module.net."])
def test_ddp_and_compile_prefixes_load(tmp_path: Path, prefix: str) -> None:
    torch.manual_seed(4)
    ref = torchvision.models.squeezenet1_1(weights=None, num_classes=4).eval()
    torch.save({prefix + k: v for k, v in ref.state_dict().items()}, tmp_path / "prefixed.pth")
    model = zoo.load("torchvision:squeezenet1_1", task="cls", num_classes=4, weights=tmp_path / "prefixed.pth")
    assert torch.equal(_out(model), _out(ref))


def test_weights_of_another_architecture_are_refused_naming_keys(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.safetensors"
    net = torchvision.models.mobilenet_v3_small(weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    with pytest.raises(WeightsError) as err:
        zoo.load("torchvision:resnet18", task="cls", weights=path)
    msg = str(err.value)
    assert str(path) in msg and "missing key(s): conv1.weight" in msg and "classifier.0.weight" in msg
    # a deeper model of the same family: missing keys are named too
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"layer1\.2\."):
        zoo.load("torchvision:resnet34", task="cls", weights=tmp_path / "r18.pth")


def test_new_head_on_1000_class_weights_is_reported(tmp_path: Path, tv_resnet18) -> None:
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in tv_resnet18.state_dict().items()}, path)
    with pytest.warns(UserWarning, match="re-initialised") as caught:
        model = zoo.load("torchvision:resnet18", task="cls", num_classes=10, weights=path)
    assert caught[0].filename == __file__  # attributed to the caller's line, not to zoo's internals
    report = model.weights_report
    assert sorted(report.reinitialized) == ["fc.bias", "fc.weight"]
    assert "layer4.1.bn2.running_var" in report.loaded and not report.missing
    assert torch.equal(model.net.layer4[1].conv2.weight, tv_resnet18.layer4[1].conv2.weight)
    assert model.net.fc.out_features == 10
    trunk = torch.nn.Sequential(*list(model.net.children())[:-1]).eval()
    ref_trunk = torch.nn.Sequential(*list(tv_resnet18.children())[:-1]).eval()
    with torch.no_grad():
        assert torch.equal(trunk(X), ref_trunk(X))


class _Exploit:
    """Unpickling this would create a marker file (what a malicious checkpoint could do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": _Exploit(str(marker))}, f)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Exploit(str(marker))}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(WeightsError, match="refused"):
            zoo.load("torchvision:resnet18", task="cls", weights=p)
    assert not marker.exists()


def _write_cached(spec_name: str, tag: str, state: dict[str, torch.Tensor]) -> Path:
    """Put a weights file exactly where the zoo's cache expects the provider's download."""
    spec = get_registry().resolve("model", spec_name)
    info = spec.load_builder()(spec, task="classification", pretrained=tag).pretrained
    path = cache_path(info, spec.plugin)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def test_timm_tag_loads_from_the_cache_offline(timm_resnet18, no_network) -> None:
    path = _write_cached("timm:resnet18", "a1_in1k", timm_resnet18.state_dict())
    assert path.name == "resnet18.a1_in1k.safetensors" and "timm" in path.parts
    try:
        model = zoo.load("resnet18.a1_in1k", task="cls")  # the short name is torchvision's; the tag is timm's
        assert model.config["model"] == "timm:resnet18"
        assert model.provenance["weights"] == "timm:resnet18.a1_in1k"
        assert torch.equal(_out(model), _out(timm_resnet18))
        assert model.class_names[0].startswith("tench") and model.preprocess.crop_pct == pytest.approx(0.95)
        assert no_network == []
    finally:
        path.unlink()


def test_torchvision_tag_loads_from_the_cache_and_is_hash_checked(tv_resnet18, no_network,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_cached("torchvision:resnet18", "IMAGENET1K_V1", tv_resnet18.state_dict())
    try:
        assert path.name == "resnet18-f37072fd.pth"
        # our random file cannot have torchvision's hash prefix: the cache check calls it corrupt
        with pytest.raises(WeightsError, match="corrupt.*f37072fd"):
            zoo.load("torchvision:resnet18", task="cls", weights="IMAGENET1K_V1")
        # with the prefix of this file, the same path loads offline, exactly
        actual = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        import zoo_torchvision.classification as tvc

        original = tvc.describe
        monkeypatch.setattr(tvc, "describe", lambda name, tag: replace(original(name, tag), hash_prefix=actual))
        model = zoo.load("torchvision:resnet18", task="cls", weights="default")
        assert torch.equal(_out(model), _out(tv_resnet18))
        assert model.class_names[0] == "tench" and model.provenance["weights"] == "torchvision:resnet18.IMAGENET1K_V1"
        assert no_network == []
    finally:
        path.unlink()


def test_missing_tag_offline_fails_at_once_naming_path_and_pull(no_network) -> None:
    assert os.environ["ZOO_OFFLINE"] == "1"
    start = time.monotonic()
    with pytest.raises(WeightsError) as err:
        zoo.load("torchvision:resnet50", task="cls", weights="IMAGENET1K_V2")
    msg = str(err.value)
    assert "resnet50-11ad3fa6.pth" in msg and "zoo pull" in msg and "ZOO_OFFLINE" in msg
    assert str(cache_path(replace(_info("torchvision:resnet50", "IMAGENET1K_V2")), "torchvision")) in msg
    with pytest.raises(WeightsError, match=r"resnet18\.a1_in1k\.safetensors"):
        zoo.load("timm:resnet18.a1_in1k", task="cls")
    assert no_network == [] and time.monotonic() - start < 30  # immediate: no retries, no timeouts


def _info(name: str, tag: str):
    spec = get_registry().resolve("model", name)
    return spec.load_builder()(spec, task="classification", pretrained=tag).pretrained
