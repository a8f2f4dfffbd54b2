"""Offline-first: with every socket blocked, cached and local weights load with zero network calls."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch

import zoo_core as zoo
import zoo_remote_plugin as remote
from zoo_core.errors import WeightsError
from zoo_core.registry import reset_registry


@pytest.fixture
def reg(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(remote, "SOURCE", dict(remote.SOURCE))
    reset_registry(remote.make_registry())
    yield
    reset_registry()


@pytest.fixture
def no_network(monkeypatch):
    """Block every way out (connect, create_connection, DNS) and count the attempts."""
    calls: list[str] = []

    def blocked(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise OSError(f"network blocked by the test ({name})")
        return refuse

    monkeypatch.setattr(socket.socket, "connect", blocked("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", blocked("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", blocked("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", blocked("getaddrinfo"))
    return calls


def _cache(tmp_path: Path) -> tuple[str, torch.nn.Module]:
    """Put remote_tiny.v1 into $ZOO_HOME exactly where a download (or `zoo pull`) leaves it."""
    import os

    path, sha, net = remote.publish(tmp_path)
    remote.SOURCE["url"] = "https://weights.example.invalid/" + remote.FILENAME
    cached = Path(os.environ["ZOO_HOME"]) / "weights" / "remote" / remote.FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    return sha, net


@pytest.mark.parametrize("offline", ["1", ""])
def test_cached_weights_load_with_zero_network_calls(reg, tmp_path, no_network, monkeypatch, offline):
    monkeypatch.setenv("ZOO_OFFLINE", offline)  # a cache hit never needs the network, offline or not
    sha, net = _cache(tmp_path)
    model = zoo.load("remote_tiny.v1", task="toy")
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(model(x), net(x))
    assert model.provenance["sha256"] == sha and model.class_names == ["a", "b", "c", "d"]
    print(f"network calls while loading cached weights (ZOO_OFFLINE={offline!r}): {len(no_network)}")
    assert no_network == []


def test_local_files_and_saved_models_load_with_zero_network_calls(reg, tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE")
    path, _, net = remote.publish(tmp_path)
    from_file = zoo.load("remote_tiny", task="toy", weights=path)
    saved = zoo.load(from_file.save(tmp_path / "saved"))
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(from_file(x), net(x)) and torch.equal(saved(x), net(x))
    assert no_network == []


def test_missing_weights_offline_fail_at_once_naming_the_file_and_zoo_pull(reg, no_network):
    start = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        zoo.load("remote_tiny.v1", task="toy")
    message = str(err.value)
    assert "ZOO_OFFLINE=1" in message and remote.FILENAME in message
    assert "zoo pull remote_tiny.v1 --to DIR" in message and "ZOO_HOME" in message
    print(f"offline miss failed after {time.perf_counter() - start:.3f}s")
    assert no_network == []


def test_without_zoo_offline_a_missing_weight_fails_fast_when_there_is_no_network(reg, no_network, monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE")
    remote.SOURCE["url"] = "https://weights.example.invalid/" + remote.FILENAME
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"could not download https://weights\.example\.invalid/.*zoo pull"):
        zoo.load("remote_tiny.v1", task="toy")
    print(f"no-network download failed after {time.perf_counter() - start:.3f}s "
          f"({len(no_network)} blocked attempt(s): {no_network})")
    assert no_network, "the download should have tried (and been refused) a connection"
    cache_dir = Path(__import__("os").environ["ZOO_HOME"]) / "weights" / "remote"
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []  # no partial file left
