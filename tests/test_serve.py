"""``zoo serve`` in-process: results equal ``model.predict``'s, bad requests are JSON 4xx, batching batches.

The app runs under FastAPI's TestClient (lifespan included) or httpx's ASGI transport (concurrent
requests in one event loop). Tiny seeded models: a classifier, a detector, a segmenter.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="zoo serve's tests need the serve extra: pip install -e \".[serve]\"")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from pycocotools import mask as mask_util  # noqa: E402
from serve_helpers import CLS_NAMES, SEG_NAMES, png_bytes, shapes_image, tiny_models  # noqa: E402

from zoo_core.errors import InputError, NonFiniteOutputError  # noqa: E402
from zoo_core.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models), raise_server_exceptions=False) as c:
        yield c


def upload(img, name="shapes.png"):
    return {"file": (name, png_bytes(img), "image/png")}


def test_models_health_and_page(client):
    info = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert set(info) == {"cls", "det", "seg"}
    assert info["cls"]["task"] == "classification" and info["cls"]["classes"] == CLS_NAMES
    assert info["cls"]["input_size"] == [32, 32] and info["seg"]["input_size"] == [64, 64]
    assert "topk" in info["cls"]["options"] and "score_threshold" in info["det"]["options"]  # Task.predict_options
    assert "hflip" not in info["det"]["options"]  # a training option is not a predict option
    assert client.get("/health").json() == {"status": "ok", "models": {"cls": "ok", "det": "ok", "seg": "ok"}}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "decodeRLE" in js.text


def test_each_task_returns_what_model_predict_returns(client, models):
    img = shapes_image()
    cls = client.post("/predict?model=cls&topk=3", files=upload(img)).json()
    assert cls["model"] == "cls" and cls["task"] == "classification"
    (got,) = cls["predictions"]
    (want,) = models["cls"].predict(img, topk=3)
    assert got["source"] == "shapes.png" and got["type"] == "Classification"
    assert got["label"] == want.label and got["name"] == want.name == CLS_NAMES[want.label]
    assert [t["name"] for t in got["topk"]] == [n for _, n, _ in want.topk]
    assert [t["score"] for t in got["topk"]] == pytest.approx([s for *_, s in want.topk], abs=1e-5)

    det = client.post("/predict", data={"model": "det"}, files=upload(img)).json()["predictions"][0]
    want = models["det"].predict(img)[0]
    assert len(det["boxes"]) == len(want) > 0 and all(len(b) == 4 for b in det["boxes"])
    assert np.allclose(det["boxes"], want.boxes.numpy(), atol=1e-3)
    assert det["labels"] == want.labels.tolist() and det["names"] == want.names
    assert det["scores"] == pytest.approx(want.scores.tolist(), abs=1e-5)

    seg = client.post("/predict?model=seg", files=upload(img)).json()["predictions"][0]
    want = models["seg"].predict(img)[0]
    assert seg["size"] == [72, 96] and seg["names"] == want.names
    rebuilt = np.full((72, 96), -1)
    for s in seg["segments"]:
        assert s["name"] == SEG_NAMES[s["label"]]
        binary = mask_util.decode({"size": s["rle"]["size"], "counts": s["rle"]["counts"].encode()})
        assert binary.sum() == s["area"] > 0
        rebuilt[binary.astype(bool)] = s["label"]
    assert (rebuilt == want.mask.numpy()).all()  # the RLEs cover every pixel with its class, exactly


def test_json_base64_data_url_and_raw_body(client, models):
    red, green = shapes_image((220, 40, 40)), shapes_image((40, 200, 40))
    b64 = [base64.b64encode(png_bytes(im)).decode() for im in (red, green)]
    body = {"model": "cls", "images": [b64[0], {"base64": b64[1], "name": "green.png"},
                                        "data:image/png;base64," + b64[0]], "options": {"topk": 2}}
    preds = client.post("/predict", json=body).json()["predictions"]
    assert [p["source"] for p in preds] == ["<image 0>", "green.png", "<image 2>"]
    assert all(len(p["topk"]) == 2 for p in preds)
    want = models["cls"].predict([red, green], topk=2)
    assert [p["score"] for p in preds] == pytest.approx([want[0].score, want[1].score, want[0].score], abs=1e-5)
    raw = client.post("/predict?model=cls", content=png_bytes(red), headers={"content-type": "image/png"}).json()
    assert raw["predictions"][0]["source"] == "<body>"
    assert raw["predictions"][0]["score"] == pytest.approx(want[0].score, abs=1e-5)


def test_options_pass_through_and_bad_ones_are_named(client, models):
    img = shapes_image()
    top1 = client.post("/predict", data={"model": "cls", "topk": "1"}, files=upload(img)).json()["predictions"][0]
    assert len(top1["topk"]) == 1
    everything = models["det"].predict(img)[0]
    cut = float(everything.scores.median())
    kept = client.post("/predict", data={"model": "det", "score_threshold": str(cut)}, files=upload(img)).json()
    scores = kept["predictions"][0]["scores"]
    assert 0 < len(scores) < len(everything) and min(scores) >= cut
    for model, option, value, named in [("cls", "topk", "0", "topk=0"), ("cls", "topk", "abc", "topk='abc'"),
                                        ("cls", "topk", "2.5", "topk=2.5"),
                                        ("det", "score_threshold", "5", "score_threshold=5"),
                                        ("seg", "image_size", "-3", "image_size=-3"),
                                        ("det", "hflip", "0.5", "'hflip'")]:
        r = client.post("/predict", data={"model": model, option: value}, files=upload(img))
        assert r.status_code == 400, (option, value, r.text)
        assert r.json()["error"] == "bad_option" and named in r.json()["detail"], r.json()
    assert client.post("/predict", data={"model": "cls"}, files=upload(img)).status_code == 200
    huge = client.post("/predict", data={"model": "seg", "image_size": "[100000, 100000]"}, files=upload(img))
    assert huge.status_code == 413 and "image_size" in huge.json()["detail"]  # no 10^10-pixel resize on request


def bad_requests(png: bytes) -> list[tuple[dict, int, str, str]]:
    """(request kwargs, status, error code, a word the detail must hold)."""
    big = png_bytes(shapes_image(size=(3000, 3000)))  # tiny as PNG bytes, too many pixels for a 1 MP limit
    return [
        (dict(files={"file": ("notes.txt", b"hello, not an image", "text/plain")}, data={"model": "cls"}), 400,
         "not_an_image", "notes.txt"),
        (dict(files={"file": ("cut.png", png[: len(png) // 2], "image/png")}, data={"model": "cls"}), 400,
         "not_an_image", "cut.png"),
        (dict(files={"file": ("empty.png", b"", "image/png")}, data={"model": "cls"}), 400, "not_an_image", "empty"),
        (dict(files={"file": ("huge.png", b"\x89PNG" + b"0" * 300_000, "image/png")}, data={"model": "cls"}), 413,
         "too_large", "--max-bytes"),
        (dict(files={"file": ("big.png", big, "image/png")}, data={"model": "cls"}), 413, "too_many_pixels",
         "3000x3000"),
        (dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "unsupported_media_type", "text/plain"),
        (dict(content=png), 415, "unsupported_media_type", "no Content-Type"),
        (dict(files={"file": ("a.png", png, "image/png")}, data={"model": "resnet9000"}), 404, "unknown_model",
         "resnet9000"),
        (dict(files={"file": ("a.png", png, "image/png")}), 400, "model_required", "'cls', 'det', 'seg'"),
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "bad_json", "JSON"),
        (dict(json={"model": "cls", "images": ["***"]}), 400, "bad_base64", "base64"),
        (dict(json={"model": "cls", "images": [], "topk": 3}), 400, "bad_json", "topk"),
        (dict(json={"model": "cls", "images": [7]}), 400, "bad_json", "images[0]"),
        (dict(json={"model": "cls", "images": []}), 400, "no_image", "no image"),
        (dict(data={"model": "cls"}, files={"other": (None, "x")}), 400, "no_image", "no image"),
        (dict(json={"model": "cls", "images": ["http://127.0.0.1:9/x.png"]}), 400, "offline", "ZOO_OFFLINE=1"),
        (dict(json={"model": "cls", "images": [base64.b64encode(png).decode()] * 5}), 413, "too_many_images", "4"),
    ]


def test_bad_requests_get_named_4xx_json_and_the_server_keeps_serving(models):
    png = png_bytes(shapes_image())
    app = create_app(models, max_bytes=200_000, max_pixels=1_000_000, max_images=4)
    with TestClient(app, raise_server_exceptions=False) as client:
        for kwargs, status, code, word in bad_requests(png):
            r = client.post("/predict", **kwargs)
            assert r.status_code == status, (code, r.status_code, r.text)
            body = r.json()
            assert body["error"] == code and body["status"] == status and word in body["detail"], body
            assert "Traceback" not in r.text
            good = client.post("/predict", data={"model": "cls"}, files={"file": ("ok.png", png, "image/png")})
            assert good.status_code == 200 and good.json()["predictions"][0]["source"] == "ok.png"
        wrong_method = client.get("/predict")
        assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
        assert client.get("/nothing-here").json()["error"] == "not_found"


def test_a_failing_batch_fails_only_its_requests(models, monkeypatch):
    png = png_bytes(shapes_image())
    model = models["cls"]
    real = type(model).predict
    calls = {"n": 0}

    def flaky(self, inputs, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA error: an illegal memory access\nline two of a long message")
        if calls["n"] == 2:
            raise NonFiniteOutputError("3 NaN outputs in 1 image")
        return real(self, inputs, **kw)

    monkeypatch.setattr(type(model), "predict", flaky)
    with TestClient(create_app({"cls": model}), raise_server_exceptions=False) as client:
        first = client.post("/predict", files={"file": ("a.png", png, "image/png")})
        assert first.status_code == 500 and first.json()["error"] == "prediction_failed"
        assert "RuntimeError: CUDA error: an illegal memory access" in first.json()["detail"]
        assert "line two" not in first.text and "Traceback" not in first.text
        second = client.post("/predict", files={"file": ("a.png", png, "image/png")})
        assert second.status_code == 500 and second.json()["error"] == "non_finite_output"
        third = client.post("/predict", files={"file": ("a.png", png, "image/png")})
        assert third.status_code == 200
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/metrics").json()["predict"]["by_status"] == {"200": 1, "500": 2}


async def post_together(app, requests: list[dict]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://zoo") as http:
        return await asyncio.gather(*(http.post("/predict", **r) for r in requests))


def stop(app) -> None:
    for worker in app.state.workers.values():
        worker.stop()


@pytest.mark.parametrize("max_batch", [8, 1])
def test_requests_arriving_together_are_batched_and_answered_in_order(models, max_batch):
    model = models["cls"]
    colours = [(int(c), 255 - int(c), 90) for c in np.linspace(0, 255, 8)]
    images = [shapes_image(c) for c in colours]
    app = create_app({"cls": model}, max_batch=max_batch, max_wait_ms=500)
    try:
        replies = asyncio.run(post_together(app, [
            {"files": {"file": (f"img{i}.png", png_bytes(im), "image/png")}, "data": {"topk": "3"}}
            for i, im in enumerate(images)]))
        metrics = asyncio.run(httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://zoo").get("/metrics")).json()
    finally:
        stop(app)
    want = model.predict(images, topk=3)
    for i, (r, w) in enumerate(zip(replies, want)):
        (p,) = r.json()["predictions"]
        assert p["source"] == f"img{i}.png"
        assert [t["label"] for t in p["topk"]] == [lab for lab, *_ in w.topk]
        assert p["score"] == pytest.approx(w.score, abs=1e-4)  # its own image's result, not a neighbour's
    hist = {int(k): v for k, v in metrics["models"]["cls"]["batch_size_histogram"].items()}
    assert sum(k * v for k, v in hist.items()) == 8
    if max_batch == 1:
        assert hist == {1: 8}
    else:
        assert max(hist) > 1 and max(hist) <= 8  # arriving within max_wait, they shared forward passes
    assert metrics["models"]["cls"]["queue_depth"] == 0


def test_one_bad_input_in_a_batch_spares_its_neighbours(models, monkeypatch):
    model = models["cls"]
    real = type(model).predict

    def picky(self, inputs, **kw):  # an input the model refuses (as predict does for a NaN tensor)
        if any(np.asarray(im)[0, 0].tolist() == [0, 0, 0] for im in inputs):
            raise InputError("input 1: a black corner this model refuses")
        return real(self, inputs, **kw)

    monkeypatch.setattr(type(model), "predict", picky)
    black = shapes_image()
    black.putpixel((0, 0), (0, 0, 0))
    app = create_app({"cls": model}, max_batch=8, max_wait_ms=500)
    try:
        good, bad, good2 = asyncio.run(post_together(app, [
            {"files": {"file": (name, png_bytes(im), "image/png")}}
            for name, im in (("a.png", shapes_image()), ("black.png", black), ("b.png", shapes_image()))]))
    finally:
        stop(app)
    assert good.status_code == good2.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"] == "bad_image" and "black corner" in bad.json()["detail"]


def test_metrics_count_statuses_latencies_and_batches(models):
    png = png_bytes(shapes_image())
    with TestClient(create_app(models), raise_server_exceptions=False) as client:
        for _ in range(3):
            client.post("/predict?model=det", files={"file": ("a.png", png, "image/png")})
        client.post("/predict?model=det", content=b"x", headers={"content-type": "text/plain"})
        client.get("/health")
        m = client.get("/metrics").json()
    assert m["predict"]["by_status"] == {"200": 3, "415": 1}
    assert m["requests"]["by_path"]["/health"] == 1
    lat = m["predict"]["latency_ms"]
    assert lat["count"] == 4 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert m["models"]["det"]["batch_size_histogram"] == {"1": 3} and m["models"]["det"]["queue_depth"] == 0
    assert m["models"]["seg"]["batches"] == 0


def test_create_app_checks_its_settings(models):
    with pytest.raises(ValueError, match="max_batch=0"):
        create_app(models, max_batch=0)
    with pytest.raises(ValueError, match="max_bytes"):
        create_app(models, max_bytes=0)
    with pytest.raises(TypeError, match="expected a zoo model"):
        create_app({"x": torch.nn.Linear(2, 2)})
    app = create_app([models["cls"], models["det"]])  # a list: named by model.label
    assert set(app.state.workers) == {models["cls"].label, models["det"].label}


def test_an_int8_model_serves_on_the_cpu_whatever_device_is_asked():
    """Quantized kernels exist only on the CPU: moving an int8 model to a GPU would fail every request."""
    import zoo_core as zoo

    float_model = zoo.load("timm:test_vit", task="cls", class_names=CLS_NAMES, seed=0)
    int8 = float_model.quantize("int8", timing_iters=1).model
    with pytest.warns(UserWarning, match=r"is int8 \(dynamic\): its quantized kernels run on the CPU only, so it "
                                         r"serves on the CPU, not cuda"):
        app = create_app({"q": int8}, device="cuda")  # no .to("cuda") is tried (no GPU here: it would raise)
    assert next(p.device for p in app.state.workers["q"].model.parameters()).type == "cpu"


def test_stop_during_a_long_batch_fails_the_queue_and_the_thread_still_ends():
    """A batch outlasting stop()'s timeout: the queued request gets 503 at once, the stop marker is not
    lost with the drain (the thread ends after its batch), and a request after stop is refused."""
    import threading
    import types

    from zoo_core.serve.batching import Job, ModelWorker
    from zoo_core.serve.errors import RequestError

    release = threading.Event()

    def predict(images, **_):
        release.wait(10)
        return []

    stub = types.SimpleNamespace(predict=predict, task_impl=types.SimpleNamespace(output_names=lambda m: []))
    worker = ModelWorker("slow", stub, max_batch=1, max_wait_ms=0)
    running = worker.submit(Job(images=[], sources=[]))
    deadline = time.monotonic() + 5
    while worker.depth() and time.monotonic() < deadline:  # the first job is in its batch
        time.sleep(0.01)
    queued = worker.submit(Job(images=[], sources=[]))
    worker.stop(timeout=0.2)  # the batch is still running
    with pytest.raises(RequestError, match="shutting down"):
        queued.result(timeout=1)
    with pytest.raises(RequestError, match="shutting down"):
        worker.submit(Job(images=[], sources=[]))
    release.set()
    assert running.result(timeout=5) == []
    worker._thread.join(5)
    assert not worker._thread.is_alive()  # the marker survived the drain
