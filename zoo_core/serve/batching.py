"""Dynamic batching: one worker thread per model gathers the requests that arrive together.

Each request becomes a :class:`Job` (its decoded images, its options, a future) on its model's
queue. The worker takes the first job, then more until the batch holds ``max_batch`` images or the
first job has waited ``max_wait_ms`` (so a job that queued while the model was busy is not made to
wait again), then runs ``model.predict`` once per distinct set of options in the batch, in the
worker's thread, off the event loop. Each job gets its own slice of the predictions (as JSON-ready
dicts, :func:`zoo_core.serve.results.to_json`), or the error: an exception fails only the jobs of
that ``predict`` call, as a :class:`~zoo_core.serve.errors.RequestError` (4xx when the input or
option is at fault; then each job of the call is retried alone, so one bad request does not fail
its neighbours). Nothing here imports FastAPI.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .defaults import DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WAIT_MS
from .errors import RequestError, from_exception
from .metrics import ServerMetrics
from .results import to_json

log = logging.getLogger("zoo.serve")


@dataclass
class Job:
    """One request's images for one model, its predict options, and where its result goes."""

    images: list[Any]
    sources: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str:
        """Jobs with equal keys share one ``predict`` call (the same options)."""
        return json.dumps(self.options, sort_keys=True, default=str)


_STOP = object()


class ModelWorker:
    """A model, its request queue and the thread that batches and predicts (started on first use)."""

    def __init__(self, name: str, model: Any, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS, max_queue: int = DEFAULT_MAX_QUEUE,
                 metrics: ServerMetrics | None = None) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r}: must be a whole number >= 1 (1: no batching)")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms={max_wait_ms!r}: must be a number of milliseconds >= 0")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue={max_queue!r}: must be a whole number >= 1")
        self.name, self.model = name, model
        self.max_batch, self.max_wait = max_batch, float(max_wait_ms) / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics or ServerMetrics()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._carry: Job | None = None  # a job that did not fit the last batch: first in the next
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False

    # ---- the request side (any thread, the event loop's included) ---------------------------
    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue ``job``; its future gets a list of JSON-ready predictions or a :class:`RequestError`.

        The check and the ``put`` hold the lock :meth:`stop` takes, so a job is either queued before the
        stop marker (and answered or failed by the drain) or refused with 503: never left unanswered.
        """
        with self._lock:
            if self._stopping:
                raise RequestError(503, "shutting_down", "the server is shutting down; retry elsewhere")
            if self.depth() >= self.max_queue:
                raise RequestError(503, "busy", f"model {self.name!r} has {self.depth()} requests waiting (the "
                                                f"limit); retry shortly")
            self._start_locked()
            self._queue.put(job)
        return job.future

    def depth(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return self._queue.qsize() + (self._carry is not None)

    def alive(self) -> bool:
        """True unless the worker thread was started and has died (it never should)."""
        return self._thread is None or self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name=f"zoo-serve:{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in progress, fail what is still queued with 503, and end the thread.

        A batch that outlasts ``timeout`` keeps running: what is queued is failed now, the stop marker
        stays queued so the thread ends after that batch, and the job it carries over is its to answer.
        """
        with self._lock:
            self._stopping = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)
        ended = thread is None or not thread.is_alive()
        for job in self._drain(take_carry=ended):
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RequestError(503, "shutting_down", "the server is shutting down"))

    def _drain(self, *, take_carry: bool) -> list[Job]:
        """Every queued job; the carried-over one too once the thread has ended (before, it is the
        thread's). A stop marker found is put back, so a thread still running still ends."""
        jobs = [self._carry] if take_carry and self._carry is not None else []
        if take_carry:
            self._carry = None
        stop_seen = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop_seen = True
            else:
                jobs.append(item)
        if stop_seen and not take_carry:
            self._queue.put(_STOP)
        return jobs

    # ---- the worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            try:
                self._process(batch)
            except BaseException as exc:  # noqa: BLE001 - never let the worker die with requests waiting
                log.exception("zoo serve: model %s: batch failed outside predict", self.name)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(from_exception(exc, model=self.name))

    def _gather(self) -> list[Job] | None:
        """The next batch: at least one job, then more until full or the first has waited max_wait."""
        first = self._carry if self._carry is not None else self._queue.get()
        self._carry = None
        if first is _STOP:
            return None
        batch, images = [first], len(first.images)
        deadline = first.enqueued + self.max_wait
        while images < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)  # stop after this batch
                break
            if images + len(job.images) > self.max_batch:
                self._carry = job
                break
            batch.append(job)
            images += len(job.images)
        return batch

    def _process(self, batch: list[Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a client gone: skip it
        groups: dict[str, list[Job]] = {}
        for job in live:
            groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            self._predict(jobs, retry_alone=len(jobs) > 1)

    def _predict(self, jobs: list[Job], *, retry_alone: bool) -> None:
        images = [im for job in jobs for im in job.images]
        sources = [s for job in jobs for s in job.sources]
        self.metrics.record_batch(self.name, len(images))
        try:
            preds = self.model.predict(images, batch_size=len(images), **jobs[0].options)
            names = self.model.task_impl.output_names(self.model)
            results = [to_json(p, names) for p in preds]
            for p, source in zip(results, sources):
                p["source"] = source
        except Exception as exc:  # noqa: BLE001 - every failure goes back to its requests, as JSON
            error = from_exception(exc, model=self.name)
            if error.status < 500 and retry_alone:  # find which request was at fault; spare the others
                for job in jobs:
                    self._predict([job], retry_alone=False)
                return
            if error.status >= 500:
                log.error("zoo serve: model %s: predict failed on %d image(s) (%s)", self.name, len(images),
                          ", ".join(sources[:5]), exc_info=exc)
            for job in jobs:
                job.future.set_exception(error)
            return
        at = 0
        for job in jobs:
            job.future.set_result(results[at:at + len(job.images)])
            at += len(job.images)
