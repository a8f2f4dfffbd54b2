"""The ``zoo serve`` page in a real headless Chromium (Playwright's Python API, the system's Chromium).

For each task the test opens the page, picks the model, uploads an image through the file input,
waits until the page says it has drawn (``<body data-state="drawn">``), and checks that what is drawn
(boxes, mask classes, top-k bars) is what the API returns for the same image; the page's RLE decoder
must give pycocotools' mask pixel for pixel. A screenshot per task is kept in ``$ZOO_TEST_ARTIFACTS``
(default ``<repo>/test-artifacts/``). Skipped only where no Chromium executable exists
(``$ZOO_CHROMIUM``, ``/usr/bin/chromium``, ``chromium`` or ``chromium-browser`` on PATH).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="zoo serve's tests need the serve extra: pip install -e \".[serve]\"")
pytest.importorskip("playwright", reason="the page test needs playwright: pip install -e \".[dev]\"")
import httpx  # noqa: E402
from pycocotools import mask as mask_util  # noqa: E402
from serve_helpers import CHROMIUM_ARGS, find_chromium, png_bytes, shapes_image, tiny_models  # noqa: E402

from zoo_core.serve import create_app  # noqa: E402
from zoo_core.serve.server import ServerThread  # noqa: E402

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable: set ZOO_CHROMIUM, or install "
                                                         "chromium (/usr/bin/chromium, or chromium / "
                                                         "chromium-browser on PATH)")
ROOT = Path(__file__).resolve().parents[1]


def artifacts() -> Path:
    folder = Path(os.environ.get("ZOO_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def served():
    with ServerThread(create_app(tiny_models())) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "shapes.png"
    path.write_bytes(png_bytes(shapes_image(size=(160, 120))))
    return path


def open_page(browser, served, model: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served.url + "/")
    page.wait_for_selector("body[data-state=idle]", timeout=30_000)
    page.select_option("#model", model)
    return page, errors


@pytest.mark.parametrize("model", ["cls", "det", "seg"])
def test_the_page_draws_what_the_api_returns(browser, served, image_file, model):
    page, errors = open_page(browser, served, model)
    page.set_input_files("#file", str(image_file))
    page.wait_for_selector("body[data-state=drawn]", timeout=60_000)
    page.screenshot(path=str(artifacts() / f"serve_page_{model}.png"), full_page=True)
    shown = json.loads(page.text_content("#raw"))
    api = httpx.post(f"{served.url}/predict?model={model}",
                     files={"file": ("shapes.png", image_file.read_bytes(), "image/png")}, timeout=60).json()
    assert shown["model"] == api["model"] == model
    got, want = shown["predictions"][0], api["predictions"][0]
    assert got["source"] == "shapes.png" and got["type"] == want["type"]
    drawn = page.eval_on_selector("#canvas", "c => ({...c.dataset, w: c.width, h: c.height})")
    assert int(drawn["w"]) > 0 and int(drawn["h"]) > 0
    if model == "cls":
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)
        bars = page.eval_on_selector_all("#bars li", "els => els.map(e => [e.querySelector('.name').textContent, "
                                                     "e.querySelector('.score').textContent])")
        assert [b[0] for b in bars] == [t["name"] for t in want["topk"]] and int(drawn["bars"]) == len(bars)
        assert [float(b[1]) for b in bars] == pytest.approx([t["score"] for t in want["topk"]], abs=1e-3)
        assert want["name"] in page.text_content("#summary")
    elif model == "det":
        assert int(drawn["boxes"]) == len(want["boxes"]) > 0
        assert np.allclose(got["boxes"], want["boxes"], atol=1e-2) and got["names"] == want["names"]
        assert f"{len(want['boxes'])} boxes" in page.text_content("#summary")
    else:
        assert int(drawn["segments"]) == len(want["segments"]) > 0
        legend = page.eval_on_selector_all("#legend li", "els => els.map(e => e.textContent)")
        assert [item.split(":")[0] for item in legend] == [s["name"] for s in want["segments"]]
        for seg in got["segments"]:  # the page's decoder reads the RLE as pycocotools does
            in_js = page.evaluate("rle => Array.from(window.zoo.decodeRLE(rle))", seg["rle"])
            expected = mask_util.decode({"size": seg["rle"]["size"], "counts": seg["rle"]["counts"].encode()})
            assert np.array_equal(np.asarray(in_js, dtype=np.uint8).reshape(expected.shape), expected)
        # the overlay is on the canvas: a pixel of the disc is tinted away from the image's own colour
        tinted = page.evaluate("() => { const c = document.getElementById('canvas'); const x = c.width * 0.3, "
                               "y = c.height * 0.4; return Array.from(c.getContext('2d').getImageData(x, y, 1, 1)"
                               ".data); }")
        assert tinted[:3] != [220, 40, 40]
    assert errors == []
    page.close()


def test_the_page_shows_the_servers_error_for_a_bad_file(browser, served, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is text, not a PNG")
    page, errors = open_page(browser, served, "cls")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("body[data-state=error]", timeout=60_000)
    status = page.text_content("#status")
    assert "400 not_an_image" in status and "notes.png" in status
    assert json.loads(page.text_content("#raw"))["error"] == "not_an_image"
    page.screenshot(path=str(artifacts() / "serve_page_error.png"))
    assert errors == []
    page.close()
