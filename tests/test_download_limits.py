"""Downloads that end early or crawl (issue 12, safety), against a real local HTTP server.

A body without Content-Length that is cut short is never cached as if whole (the file's own structure
must show it is complete when there is no hash); a chunked body cut short is named as truncated; and
ZOO_DOWNLOAD_TIMEOUT bounds the whole download, so a trickling or stalled server fails on time.
"""

from __future__ import annotations

import http.server
import io
import threading
import time

import pytest
import torch
from safetensors.torch import save

from zoo_core.errors import WeightsError
from zoo_core.model import PretrainedWeights
from zoo_core.weights import cache_path, download, fetch

SAFETENSORS = save({"w": torch.arange(4096, dtype=torch.float32).reshape(64, 64), "b": torch.ones(3)})
_buffer = io.BytesIO()
torch.save({"w": torch.ones(64, 64)}, _buffer)
TORCH_ZIP = _buffer.getvalue()
STOP = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    """Each path is one server behaviour; HTTP/1.0, so a body without Content-Length ends at close."""

    def do_GET(self):  # noqa: N802 - http.server's API
        kind, _, size = self.path.strip("/").partition("/")
        if kind == "chunked":
            return self.chunked_cut()
        body = {"st": SAFETENSORS, "zip": TORCH_ZIP, "junk": b"\x00\x01junk" * 500}[size or "st"]
        self.send_response(200)
        if kind in ("trickle", "stall", "trickle-stall"):
            self.send_header("Content-Length", "200")
        self.end_headers()
        if kind == "whole":
            self.wfile.write(body)
        elif kind == "cut":
            self.wfile.write(body[: len(body) // 2])
        elif kind in ("trickle", "trickle-stall"):
            self.trickle(body, seconds=1.0 if kind == "trickle-stall" else 6.0)
            if kind == "trickle-stall":
                STOP.wait(10)
        elif kind == "stall":
            STOP.wait(10)

    def trickle(self, body: bytes, seconds: float) -> None:
        end = time.monotonic() + seconds
        for byte in body[:200]:
            if STOP.is_set() or time.monotonic() > end:
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return
            time.sleep(0.03)

    def chunked_cut(self) -> None:
        self.protocol_version = "HTTP/1.1"
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n" % len(SAFETENSORS) + SAFETENSORS[:100])  # the chunk never ends
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    STOP.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads, httpd.block_on_close = True, False
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    STOP.set()
    httpd.shutdown()
    httpd.server_close()


def weights(url: str) -> PretrainedWeights:
    return PretrainedWeights(tag="v1", url=url, filename="w.safetensors")  # no hash, as timm's weights


@pytest.mark.parametrize("kind, why", [
    ("st", r"its safetensors header describes \d+ bytes but \d+ arrived: it was cut short"),
    ("zip", r"it is a zip \(PyTorch\) file whose central directory does not read"),
])
def test_a_body_without_length_cut_short_is_never_cached(server, tmp_path, kind, why):
    whole = tmp_path / "whole" / "w.bin"  # the same file whole, without length or hash: verified and cached
    download(f"{server}/whole/{kind}", whole, weights(f"{server}/whole/{kind}"), progress=False)
    assert whole.read_bytes() == (SAFETENSORS if kind == "st" else TORCH_ZIP)
    url = f"{server}/cut/{kind}"
    dest = tmp_path / "cache" / "w.safetensors"
    with pytest.raises(WeightsError, match=rf"download of {url} was not cached: {why}.*no Content-Length and no "
                                           r"hash. The partial file was deleted"):
        download(url, dest, weights(url), progress=False)
    assert list(dest.parent.iterdir()) == []


def test_unverifiable_content_without_length_or_hash_is_not_cached(server, tmp_path):
    url = f"{server}/whole/junk"
    dest = tmp_path / "cache" / "w.safetensors"
    with pytest.raises(WeightsError, match=r"neither a safetensors file .* cannot tell whether it arrived whole"):
        download(url, dest, weights(url), progress=False)
    assert list(dest.parent.iterdir()) == []


def test_a_chunked_body_cut_short_is_named_truncated(server, tmp_path):
    url = f"{server}/chunked"
    dest = tmp_path / "cache" / "w.safetensors"
    with pytest.raises(WeightsError, match=rf"download of {url} is truncated: the connection closed before the end "
                                           r"of the body"):
        download(url, dest, weights(url), progress=False)
    assert list(dest.parent.iterdir()) == []


def test_zoo_download_timeout_bounds_the_whole_download(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "1.5")
    for kind, slowest in (("trickle", 4.5), ("trickle-stall", 4.5), ("stall", 4.5)):  # vs 6-10 s unbounded
        w = weights(f"{server}/{kind}")
        start = time.monotonic()
        with pytest.raises(WeightsError, match=rf"download of {server}/{kind} did not finish within "
                                               r"ZOO_DOWNLOAD_TIMEOUT=1.5 s \(got \d+ of 200 bytes\): the server is "
                                               r"too slow or stalled.*copy it to .*w\.safetensors.*weights="):
            fetch(w, plugin="p", model="m", progress=False)
        assert time.monotonic() - start < slowest, kind  # one deadline, and each read bounded by what is left
        assert not cache_path(w, "p").exists() and list(cache_path(w, "p").parent.iterdir()) == []
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(WeightsError, match="ZOO_DOWNLOAD_TIMEOUT='soon' is not a number of seconds"):
        fetch(weights(f"{server}/whole/st"), plugin="p", model="m", progress=False)


def test_a_trickling_server_is_abandoned_by_its_rate_long_before_the_deadline(server, tmp_path, monkeypatch):
    from zoo_core import transfer

    monkeypatch.setattr(transfer, "SLOW_WINDOW", 0.5)  # the rule of 30 s, scaled down
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "60")
    url = f"{server}/trickle"
    dest = tmp_path / "cache" / "w.safetensors"
    start = time.monotonic()
    with pytest.raises(WeightsError, match=rf"download of {url} gave up: \d+ bytes/s over the last \d+ s "
                                           r"\(got \d+ of 200 bytes\), below the 16384 bytes/s"):
        download(url, dest, weights(url), progress=False)
    assert time.monotonic() - start < 5.0 and list(dest.parent.iterdir()) == []  # the trickle lasts 6 s
    monkeypatch.setenv("ZOO_DOWNLOAD_MIN_RATE", "0")  # a link that really is this slow: wait for it
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "1")
    with pytest.raises(WeightsError, match="did not finish within ZOO_DOWNLOAD_TIMEOUT=1 s"):
        download(url, dest, weights(url), progress=False)


def test_a_page_that_is_not_weights_is_not_cached_even_with_a_length(tmp_path, monkeypatch):
    """A proxy or captive portal answers 200 with an HTML page and a Content-Length: not a weights file."""
    import http.server as hs

    class Portal(hs.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html><body>Please log in to the network</body></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = hs.ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/w.safetensors"
        dest = tmp_path / "cache" / "w.safetensors"
        with pytest.raises(WeightsError, match=r"was not cached: .*The server sent no hash"):
            download(url, dest, weights(url), progress=False)
        assert list(dest.parent.iterdir()) == []
    finally:
        httpd.shutdown()
        httpd.server_close()
