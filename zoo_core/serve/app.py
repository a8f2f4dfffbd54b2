"""The FastAPI app of ``zoo serve``: ``POST /predict``, ``GET /models``, ``/health``, ``/metrics`` and the page.

``create_app({"digits": model, ...})`` serves zoo models by name, each batched by its own
:class:`~zoo_core.serve.batching.ModelWorker`. It works in-process (``fastapi.testclient.TestClient``,
``httpx.ASGITransport``) and on any ASGI server; ``zoo serve`` runs it on uvicorn.

``POST /predict`` takes

- ``multipart/form-data``: image files (any field name), plus ``model`` and task options as fields;
- ``application/json``: ``{"model": ..., "images": [...], "options": {...}}`` where each image is
  base64 (or a ``data:`` URL), an ``http(s)`` URL, or ``{"base64": ..., "name": ...}`` / ``{"url": ...}``;
- a raw ``image/*`` (or ``application/octet-stream``) body: one image;

and ``?model=...&topk=3`` in the query string with any of them. It answers
``{"model", "task", "predictions": [one per image]}`` (:mod:`zoo_core.serve.results`), or a JSON error
``{"error", "detail", "status"}`` (:mod:`zoo_core.serve.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from .batching import Job, ModelWorker
from .defaults import (DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE,
                       DEFAULT_MAX_WAIT_MS)
from .errors import RequestError, from_exception
from .inputs import Limits, check_options
from .metrics import MetricsMiddleware, ServerMetrics
from .parsing import load_images, read_request

log = logging.getLogger("zoo.serve")
STATIC = Path(__file__).resolve().parent / "static"


def name_models(models: Any) -> dict[str, Any]:
    """``{name: model}`` from a mapping, a sequence of models (named by ``model.label``) or one model."""
    from ..model import ZooModel

    if isinstance(models, ZooModel):
        models = [models]
    if isinstance(models, Mapping):
        named = {str(k): v for k, v in models.items()}
    else:
        named = {}
        for m in models:
            label = getattr(m, "label", None) or type(m).__name__
            if label in named:
                raise ValueError(f"two models are both named {label!r}; pass a dict {{name: model}} to name them")
            named[label] = m
    if not named:
        raise ValueError("create_app needs at least one model")
    for name, m in named.items():
        if not isinstance(m, ZooModel):
            raise TypeError(f"model {name!r}: expected a zoo model (zoo.load / zoo.build), got {type(m).__name__}")
        if not name or "/" in name:
            raise ValueError(f"model name {name!r}: must be non-empty and hold no '/'")
    return named


def serving_device(model: Any, device: Any) -> Any:
    """Where ``model`` serves: ``device``, except an int8 model, whose quantized kernels exist only on the
    CPU (on a GPU every request would fail): it stays on the CPU, with a warning when another was asked."""
    import torch

    if model.config.get("quantized") and device is not None and torch.device(device).type != "cpu":
        from ..errors import warn

        warn(f"{model.label} is int8 ({model.config['quantized'].get('method')}): its quantized kernels run on the "
             f"CPU only, so it serves on the CPU, not {device}")
        return "cpu"
    return device


def create_app(models: Any, *, max_batch: int = DEFAULT_MAX_BATCH, max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
               max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_images: int = DEFAULT_MAX_IMAGES, max_queue: int = DEFAULT_MAX_QUEUE, allow_urls: bool = True,
               device: Any = None) -> FastAPI:
    """The app serving ``models`` (see :func:`name_models`), each on its own batching worker.

    ``max_batch`` images per forward pass (1: no batching), gathered for at most ``max_wait_ms``;
    ``max_bytes`` per request body (and per image fetched from a URL), ``max_pixels`` per image,
    ``max_images`` per request, ``max_queue`` requests waiting per model (then 503); ``allow_urls``
    lets JSON requests name ``http(s)`` URLs (never fetched when ``ZOO_OFFLINE=1``); ``device`` moves
    every model there (default: where they are). Models are put in eval mode.
    """
    named = name_models(models)
    limits = Limits(max_bytes=max_bytes, max_pixels=max_pixels, max_images=max_images, allow_urls=allow_urls)
    metrics = ServerMetrics()
    workers: dict[str, ModelWorker] = {}
    for name, model in named.items():
        target = serving_device(model, device)
        if target is not None:
            model.to(target)
        model.eval()
        workers[name] = ModelWorker(name, model, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                    metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for w in workers.values():
            w.start()
        yield
        for w in workers.values():
            await run_in_threadpool(w.stop)

    app = FastAPI(title="zoo serve", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.workers, app.state.metrics, app.state.limits = workers, metrics, limits
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail), "status": exc.status_code},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "detail": str(exc.errors()), "status": 422}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # a safety net: routes catch their own
        log.exception("zoo serve: %s %s failed", request.method, request.url.path)
        error = from_exception(exc, model="?")
        return JSONResponse(error.body(), status_code=error.status)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health() -> JSONResponse:
        states = {name: "ok" if w.alive() else "worker stopped" for name, w in workers.items()}
        ok = all(s == "ok" for s in states.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "models": states}, status_code=200 if ok else 503)

    @app.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"models": [describe_model(name, w.model) for name, w in workers.items()],
                "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                           "max_images": limits.max_images, "urls": limits.allow_urls},
                "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms}}

    @app.get("/metrics")
    async def get_metrics() -> dict[str, Any]:
        return metrics.snapshot({name: w.depth() for name, w in workers.items()})

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            name, items, options = await read_request(request, limits)
            worker = pick_worker(workers, name)
            task = worker.model.task_impl
            options = check_options(options, getattr(task, "predict_options", None), model=worker.name,
                                    task=worker.model.task, max_pixels=limits.max_pixels)
            images = await run_in_threadpool(load_images, items, limits)
            job = Job(images, [item.source for item in items], options)
            results = await asyncio.wrap_future(worker.submit(job))
            return JSONResponse({"model": worker.name, "task": worker.model.task, "predictions": results})
        except Exception as exc:  # noqa: BLE001 - every failure is a JSON answer, never a traceback
            error = from_exception(exc, model=request.query_params.get("model", "?"))
            if error.status >= 500 and not isinstance(exc, RequestError):
                log.error("zoo serve: POST /predict failed", exc_info=exc)
            return JSONResponse(error.body(), status_code=error.status)

    return app


def describe_model(name: str, model: Any) -> dict[str, Any]:
    """What ``GET /models`` says of one model (and what the page needs to offer it)."""
    task = model.task_impl
    device = next((str(p.device) for p in model.parameters()), "cpu")
    return {"name": name, "task": model.task, "model": model.label, "classes": list(model.class_names),
            "num_classes": model.num_classes, "input_size": list(model.preprocess.input_size),
            "in_chans": model.preprocess.in_chans, "options": dict(getattr(task, "predict_options", None) or {}),
            "device": device}


def pick_worker(workers: Mapping[str, ModelWorker], name: str | None) -> ModelWorker:
    """The worker of model ``name`` (the only model when None); 400/404 naming the models otherwise."""
    names = ", ".join(repr(n) for n in workers)
    if name is None:
        if len(workers) == 1:
            return next(iter(workers.values()))
        raise RequestError(400, "model_required", f"this server has {len(workers)} models; say which with "
                                                  f"model= (one of {names})")
    if name not in workers:
        close = difflib.get_close_matches(name, list(workers), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RequestError(404, "unknown_model", f"no model {name!r} on this server{hint} (models: {names}; "
                                                 "GET /models lists them)")
    return workers[name]
