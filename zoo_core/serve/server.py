"""Running the app on uvicorn: in the foreground (``zoo serve``) or in a thread on a free port (tests, benchmarks).

:class:`ServerThread` binds its socket itself (port 0: the system picks a free one) before uvicorn
starts, so there is no window in which another process can take the port, and waits until uvicorn
accepts connections.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from ..errors import ZooError


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (0: a free port); IPv6 when ``host`` is one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port (0: any free "
                       "one) or --host") from None
    return sock


def run(app: Any, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve ``app`` on ``sock`` (:func:`bind`) until Ctrl-C (uvicorn's own signal handling: the batch in
    progress finishes)."""
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


class ServerThread:
    """``with ServerThread(app) as server: httpx.get(server.url + "/health")``: uvicorn in a daemon thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 start_timeout: float = 60.0) -> None:
        self.app, self.host, self.log_level, self.start_timeout = app, host, log_level, start_timeout
        self.sock = bind(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "ServerThread":
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="zoo-serve-uvicorn", daemon=True)
        self.thread.start()
        end = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"uvicorn stopped before serving on {self.url} (its log says why)")
            if time.monotonic() > end:
                self.stop()
                raise TimeoutError(f"uvicorn did not start serving on {self.url} within {self.start_timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
