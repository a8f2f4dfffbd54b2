"""What ``GET /metrics`` reports: request counts by status, latency percentiles, batch sizes, queues.

:class:`ServerMetrics` is filled by :class:`MetricsMiddleware` (every HTTP request: its path and
status, and for ``POST /predict`` its latency) and by the model workers (each batch's size); it keeps
the last :data:`WINDOW` latencies, so the percentiles describe recent traffic in bounded memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

#: latencies kept for the percentiles (the most recent ones)
WINDOW = 10_000
#: paths counted by name; any other path counts as "other" (a scanner cannot grow the table)
PATHS = ("/predict", "/models", "/health", "/metrics", "/")


class ServerMetrics:
    """Thread-safe counters: requests by path and status, /predict latencies, batch sizes per model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.by_status: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.predict_by_status: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=WINDOW)
        self.batches: dict[str, Counter[int]] = {}

    def record_request(self, path: str, status: int, seconds: float) -> None:
        path = path if path in PATHS else "other"
        with self._lock:
            self.by_status[str(status)] += 1
            self.by_path[path] += 1
            if path == "/predict":
                self.predict_by_status[str(status)] += 1
                self.latencies.append(seconds)

    def record_batch(self, model: str, images: int) -> None:
        with self._lock:
            self.batches.setdefault(model, Counter())[images] += 1

    def snapshot(self, queue_depths: dict[str, int]) -> dict[str, Any]:
        """Everything as JSON-ready data; ``queue_depths``: requests waiting per model now."""
        with self._lock:
            lat = np.asarray(self.latencies, dtype=np.float64) * 1000.0
            hist = {m: dict(sorted(c.items())) for m, c in self.batches.items()}
            out: dict[str, Any] = {
                "uptime_s": round(time.time() - self.started, 3),
                "requests": {"total": sum(self.by_status.values()), "by_status": dict(sorted(self.by_status.items())),
                             "by_path": dict(sorted(self.by_path.items()))},
                "predict": {"requests": sum(self.predict_by_status.values()),
                            "by_status": dict(sorted(self.predict_by_status.items())),
                            "latency_ms": latency_summary(lat)},
            }
        out["models"] = {}
        for name in sorted(set(hist) | set(queue_depths)):
            sizes = hist.get(name, {})
            batches = sum(sizes.values())
            images = sum(k * v for k, v in sizes.items())
            out["models"][name] = {"queue_depth": queue_depths.get(name, 0), "batches": batches, "images": images,
                                   "mean_batch_size": round(images / batches, 3) if batches else None,
                                   "batch_size_histogram": {str(k): v for k, v in sizes.items()}}
        return out


def latency_summary(ms: np.ndarray) -> dict[str, float | int | None]:
    """Count, mean and p50/p90/p99 of latencies in milliseconds (None when there are none)."""
    if ms.size == 0:
        return {"count": 0, "window": WINDOW, "mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]).tolist()
    return {"count": int(ms.size), "window": WINDOW, "mean": round(float(ms.mean()), 3), "p50": round(p50, 3),
            "p90": round(p90, 3), "p99": round(p99, 3)}


class MetricsMiddleware:
    """A plain ASGI middleware timing each HTTP request and counting its status (500 if it raised)."""

    def __init__(self, app: Callable[..., Any], metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.record_request(scope.get("path", ""), status, time.perf_counter() - start)
