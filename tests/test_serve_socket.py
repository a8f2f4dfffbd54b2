"""``zoo serve`` over a real socket: uvicorn in a thread, the real command in a subprocess, image URLs.

The README's call (``curl -F file=@image.png "http://127.0.0.1:8000/predict?model=digits"``) is made
here with httpx against ``zoo serve`` started exactly as the README starts it (on a free port).
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="zoo serve's tests need the serve extra: pip install -e \".[serve]\"")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import CLS_NAMES, png_bytes, shapes_image, tiny_models  # noqa: E402

from zoo_core.cli import main  # noqa: E402
from zoo_core.commands.serve import model_name  # noqa: E402
from zoo_core.serve import create_app  # noqa: E402
from zoo_core.serve.server import ServerThread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def test_real_socket_bad_then_good_and_concurrent_clients(models):
    png = png_bytes(shapes_image())
    with ServerThread(create_app(models, max_wait_ms=100)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.post("/predict?model=cls", files={"file": ("a.png", png, "image/png")}).status_code == 200
        bad = http.post("/predict?model=cls", files={"file": ("a.png", b"GIF89a broken", "image/gif")})
        assert bad.status_code == 400 and bad.json()["error"] == "not_an_image"
        assert http.post("/predict?model=cls", files={"file": ("b.png", png, "image/png")}).status_code == 200

        def one(i: int) -> httpx.Response:
            with httpx.Client(base_url=server.url) as own:  # one connection per client, as real clients have
                return own.post("/predict", data={"model": "det" if i % 2 else "cls"},
                                files={"file": (f"img{i}.png", png, "image/png")})

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(one, range(8)))
        for i, r in enumerate(replies):
            assert r.status_code == 200 and r.json()["model"] == ("det" if i % 2 else "cls")
            assert r.json()["predictions"][0]["source"] == f"img{i}.png"
        metrics = http.get("/metrics").json()
    assert metrics["predict"]["by_status"] == {"200": 10, "400": 1}
    assert metrics["models"]["cls"]["images"] == 6 and metrics["models"]["det"]["images"] == 4


class ImageHost(http.server.BaseHTTPRequestHandler):
    """/img.png: an image; /big: more bytes than the server takes; /ftp: a redirect to ftp://; else 404."""

    png = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/img.png":
            self._send(200, self.png, "image/png")
        elif self.path == "/big":
            self._send(200, b"\x89PNG" + b"0" * 400_000, "image/png")
        elif self.path == "/ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/img.png")
            self.end_headers()
        else:
            self._send(404, b"nope", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def image_host():
    ImageHost.png = png_bytes(shapes_image())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImageHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_image_urls_are_fetched_within_limits_and_refused_offline(models, image_host, monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)  # conftest sets it; this host is local
    cases = [(f"{image_host}/img.png", 200, None), (f"{image_host}/big", 413, "too_large"),
             (f"{image_host}/missing", 400, "url_failed"), (f"{image_host}/ftp", 400, "bad_url"),
             ("file:///etc/passwd", 400, "bad_url"), ("http://127.0.0.1:1/x.png", 400, "url_failed")]
    with TestClient(create_app({"cls": models["cls"]}, max_bytes=300_000), raise_server_exceptions=False) as client:
        for url, status, code in cases:
            r = client.post("/predict", json={"images": [{"url": url}] if url.startswith("file") else [url]})
            assert r.status_code == status, (url, r.text)
            if code:
                assert r.json()["error"] == code and "Traceback" not in r.text
        got = client.post("/predict", json={"images": [f"{image_host}/img.png"]}).json()["predictions"][0]
        assert got["source"] == f"{image_host}/img.png"
        assert got["score"] == pytest.approx(models["cls"].predict(shapes_image())[0].score, abs=1e-5)
        assert "404" in client.post("/predict", json={"images": [f"{image_host}/missing"]}).json()["detail"]
        monkeypatch.setenv("ZOO_OFFLINE", "1")
        r = client.post("/predict", json={"images": [f"{image_host}/img.png"]})
        assert r.status_code == 400 and r.json()["error"] == "offline"
    monkeypatch.delenv("ZOO_OFFLINE")
    with TestClient(create_app({"cls": models["cls"]}, allow_urls=False)) as client:
        r = client.post("/predict", json={"images": [f"{image_host}/img.png"]})
        assert r.status_code == 400 and r.json()["error"] == "urls_disabled"


def test_zoo_serve_command_as_the_readme_runs_it(models, tmp_path):
    # README: zoo serve runs/cli digits=out/digits-resnet18 --port 8000  (here on a free port)
    models["cls"].save(tmp_path / "runs" / "cli" / "model")  # a run folder holding its final model/
    models["cls"].save(tmp_path / "out" / "digits-resnet18")  # a saved model, named on the command line
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "zoo_core", "serve", "runs/cli", "digits=out/digits-resnet18",
                             "--port", "0", "--log-level", "warning"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"zoo serve: (http://\S+)/ \(page\)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        image = tmp_path / "image.png"
        image.write_bytes(png_bytes(shapes_image()))
        # curl -F file=@image.png "http://127.0.0.1:8000/predict?model=digits&topk=3"
        with open(image, "rb") as f:
            r = httpx.post(f"{url}/predict?model=digits&topk=3", files={"file": ("image.png", f, "image/png")},
                           timeout=60)
        assert r.status_code == 200, r.text
        (pred,) = r.json()["predictions"]
        assert r.json()["model"] == "digits" and pred["name"] in CLS_NAMES and len(pred["topk"]) == 3
        # httpx.post("http://127.0.0.1:8000/predict", params={"model": "digits"}, files={"file": open(...)})
        with open(image, "rb") as f:
            again = httpx.post(f"{url}/predict", params={"model": "digits"}, files={"file": f}, timeout=60).json()
        assert again["predictions"][0]["label"] == pred["label"]
        assert [m["name"] for m in httpx.get(f"{url}/models").json()["models"]] == ["cli", "digits"]
        assert httpx.get(f"{url}/").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode in (0, 130), out
    assert "Traceback" not in out, out


def test_zoo_serve_without_the_serve_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if fastapi were not installed
    assert main(["serve", "resnet18"]) == 1
    err = capsys.readouterr().err
    assert "zoo[serve]" in err and "fastapi" in err


def test_zoo_serve_refuses_two_models_of_one_name_and_a_taken_port(tmp_path, capsys):
    assert main(["serve", "resnet18", "resnet18"]) == 1
    assert "NAME=SPEC" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "resnet18", "--port", str(taken.getsockname()[1])]) == 1
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_model_names_from_specs(tmp_path):
    (tmp_path / "runs" / "digits" / "model").mkdir(parents=True)
    (tmp_path / "runs" / "digits" / "best.pt").write_bytes(b"")
    assert model_name("resnet18") == ("resnet18", "resnet18")
    assert model_name("timm:resnet18") == ("timm:resnet18", "timm:resnet18")
    assert model_name("mine=resnet18") == ("mine", "resnet18")
    assert model_name(str(tmp_path / "runs" / "digits"))[0] == "digits"
    assert model_name(str(tmp_path / "runs" / "digits" / "model"))[0] == "digits"
    assert model_name(str(tmp_path / "runs" / "digits" / "best.pt"))[0] == "digits"
