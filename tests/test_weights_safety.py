"""Weights the zoo can trust: no unpickling of code, integrity by sha256, clear errors on bad files."""

from __future__ import annotations

import http.server
import json
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

import zoo_core as zoo
import zoo_remote_plugin as remote
from zoo_core.errors import WeightsError
from zoo_core.registry import reset_registry
from zoo_core.weights import download, fetch, read_state_dict, sha256_file


@pytest.fixture
def reg(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(remote, "SOURCE", dict(remote.SOURCE))
    reset_registry(remote.make_registry())
    yield
    reset_registry()


class _Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("container", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_its_code_never_runs(reg, tmp_path, container):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    payload = {"fc.weight": torch.zeros(4, 4), "hook": _Evil(marker)}
    if container == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(WeightsError, match=r"refused to load .*evil\.pt.*GLOBAL") as err:
        read_state_dict(evil)
    assert "weights_only=False" not in str(err.value)  # never echo torch's "load it unsafely" advice
    with pytest.raises(WeightsError, match="refused"):
        zoo.load("tiny", task="toy", weights=evil)
    assert not marker.exists()


def test_truncated_safetensors_file_is_a_weights_error(reg, tmp_path):
    path, _, _ = remote.publish(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file.*truncated"):
        read_state_dict(path)


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b"", b'{"a": 1}', os.urandom(64)])
def test_a_file_that_is_not_a_checkpoint_is_named(reg, tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"weights\.pth is not a"):
        zoo.load("tiny", task="toy", weights=path)


def test_file_content_decides_the_reader_not_the_suffix(reg, tmp_path):
    path, _, net = remote.publish(tmp_path)
    renamed = tmp_path / "renamed.bin"
    renamed.write_bytes(path.read_bytes())
    state = read_state_dict(renamed)
    assert torch.equal(state["fc.weight"], net.fc.weight)


def test_non_strict_load_skips_tensors_of_another_shape_and_reports_them(reg, tmp_path):
    src = zoo.load("tiny", task="toy", num_classes=4).net.state_dict()
    src["features.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(src, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=r"shape mismatch.*features\.0\.weight: file \(8, 3, 3, 3\)"):
        zoo.load("tiny", task="toy", weights=tmp_path / "w.pt")
    model = zoo.load("tiny", task="toy", weights=tmp_path / "w.pt", strict=False)
    assert model.weights_report.mismatched == ["features.0.weight: file (8, 3, 3, 3) vs model (4, 3, 3, 3)"]
    assert "features.0.weight" not in model.weights_report.loaded and "fc.weight" in model.weights_report.loaded


def test_config_from_a_newer_zoo_gives_a_version_error(reg, tmp_path):
    out = zoo.load("tiny", task="toy").save(tmp_path / "m")
    config = json.loads((out / "config.json").read_text())
    config.update(format_version=99, zoo_version="9.0")
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"newer zoo \(format_version 99, zoo 9\.0\).*Upgrade"):
        zoo.load(out)


def test_directory_without_config_is_named(reg, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="has no config.json"):
        zoo.load(tmp_path / "empty")


def test_corrupted_cached_file_is_detected_on_the_next_load(reg, tmp_path, monkeypatch):
    _, sha, net = remote.publish(tmp_path)
    monkeypatch.delenv("ZOO_OFFLINE")  # a file:// source: no network involved
    model = zoo.load("remote_tiny.v1", task="toy")
    assert torch.equal(model.net.fc.weight, net.fc.weight) and model.provenance["sha256"] == sha
    cached = Path(os.environ["ZOO_HOME"]) / "weights" / "remote" / remote.FILENAME
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{cached.name} are corrupt: sha256 [0-9a-f]{{64}} but expected {sha}"):
        zoo.load("remote_tiny.v1", task="toy")


def test_corruption_is_caught_by_the_recorded_hash_when_the_provider_has_none(reg, tmp_path, monkeypatch):
    remote.publish(tmp_path)
    remote.SOURCE["sha256"] = None  # the provider publishes no hash: the one recorded at download counts
    monkeypatch.delenv("ZOO_OFFLINE")
    path = fetch(remote.describe(), plugin="remote", model="remote_tiny")
    recorded = path.with_name(path.name + ".sha256").read_text().strip()
    assert recorded == sha256_file(path)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(WeightsError, match=f"expected {recorded}"):
        fetch(remote.describe(), plugin="remote", model="remote_tiny")


def test_hash_mismatch_on_download_deletes_the_temp_file_and_shows_both_hashes(reg, tmp_path):
    _, sha, _ = remote.publish(tmp_path)
    wrong = "0" * 64
    remote.SOURCE["sha256"] = wrong
    dest = tmp_path / "cache" / "w.safetensors"
    with pytest.raises(WeightsError, match=f"sha256 {sha}, expected {wrong}.*deleted"):
        download(remote.SOURCE["url"], dest, remote.describe(), progress=False)
    assert list(dest.parent.iterdir()) == []


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    claimed = 0
    linked = ""  # X-Linked-Etag of the redirect that /resolve/... answers with, as Hugging Face does

    def do_GET(self):  # noqa: N802 - http.server's API
        if self.path.startswith("/resolve/"):
            self.send_response(302)
            self.send_header("Location", "/cdn/" + self.path.rsplit("/", 1)[-1])
            if self.linked:
                self.send_header("X-Linked-Etag", self.linked)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.claimed or len(self.body)))
        self.send_header("ETag", '"' + "cd" * 32 + '"')  # a CDN's own 64-hex ETag: not the file's sha256
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_download_over_http_shows_progress_and_records_the_hash(reg, tmp_path, http_server, capsys):
    path, sha, _ = remote.publish(tmp_path)
    _Handler.body, _Handler.claimed = path.read_bytes(), 0
    url = f"http://127.0.0.1:{http_server.server_port}/{remote.FILENAME}"
    dest = tmp_path / "cache" / remote.FILENAME
    download(url, dest, remote.describe(), progress=True)
    assert sha256_file(dest) == sha
    assert dest.with_name(dest.name + ".sha256").read_text().strip() == sha
    assert f"downloading {remote.FILENAME}" in capsys.readouterr().err


def test_a_download_is_checked_against_the_hash_the_server_publishes(reg, tmp_path, http_server):
    """timm's weights carry no hash in timm; Hugging Face's redirect publishes the sha256 (X-Linked-Etag)."""
    path, sha, _ = remote.publish(tmp_path)
    remote.SOURCE["sha256"] = None
    url = f"http://127.0.0.1:{http_server.server_port}/resolve/main/{remote.FILENAME}"
    dest = tmp_path / "cache" / remote.FILENAME
    _Handler.body, _Handler.claimed = path.read_bytes(), 0
    try:
        _Handler.linked = '"' + "ab" * 32 + '"'  # the publisher's hash does not match: refused
        with pytest.raises(WeightsError, match=f"sha256 {sha}, but the server publishes {'ab' * 32}"):
            download(url, dest, remote.describe(), progress=False)
        assert list(dest.parent.iterdir()) == []
        _Handler.linked = ""  # no published hash: the CDN's own ETag is ignored, the hash is recorded
        download(url, dest, remote.describe(), progress=False)
        dest.unlink()
        _Handler.linked = f'"{sha}"'
        download(url, dest, remote.describe(), progress=False)
        assert dest.with_name(dest.name + ".sha256").read_text().strip() == sha
    finally:
        _Handler.linked = ""


def test_truncated_http_download_is_refused_and_cleaned_up(reg, tmp_path, http_server):
    path, _, _ = remote.publish(tmp_path)
    _Handler.body = path.read_bytes()[:100]
    _Handler.claimed = len(path.read_bytes())
    remote.SOURCE["sha256"] = None  # only the length can tell
    url = f"http://127.0.0.1:{http_server.server_port}/x"
    dest = tmp_path / "cache" / "x.safetensors"
    with pytest.raises(WeightsError, match="truncated"):
        download(url, dest, remote.describe(), progress=False)
    assert list(dest.parent.iterdir()) == []
