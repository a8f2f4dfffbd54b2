"""``zoo serve``: zoo models behind an HTTP API with dynamic batching, metrics and a web page.

>>> from zoo_core.serve import create_app        # needs the serve extra: pip install "zoo[serve]"
>>> app = create_app({"digits": model})          # any ASGI server; `zoo serve` runs it on uvicorn

The modules: :mod:`.app` (routes), :mod:`.parsing` (request bodies), :mod:`.inputs` (images, URLs,
options, limits), :mod:`.batching` (one worker thread per model), :mod:`.results` (predictions as
JSON), :mod:`.metrics` (``GET /metrics``), :mod:`.errors` (JSON errors), :mod:`.server` (uvicorn) and
``static/`` (the page). FastAPI is imported only by :mod:`.app`, :mod:`.parsing` and :mod:`.server`,
so the rest of the zoo never needs it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import ZooError

#: the modules the serve extra installs (import name -> distribution)
SERVE_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def require_serve_extra() -> None:
    """Raise a :class:`~zoo_core.errors.ZooError` naming the extra to install when a serve dependency is missing."""
    missing = []
    for module, dist in SERVE_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken one
            found = False
        if not found:
            missing.append(dist)
    if missing:
        raise ZooError(f"zoo serve needs the serve extra, which is not installed (missing: {', '.join(missing)}): "
                       "pip install \"zoo[serve]\" (or pip install -e \".[serve]\" in a checkout)")


def create_app(models: Any, **kwargs: Any) -> Any:
    """The FastAPI app serving ``models``; see :func:`zoo_core.serve.app.create_app` for the settings."""
    require_serve_extra()
    from .app import create_app as make

    return make(models, **kwargs)


__all__ = ["create_app", "require_serve_extra"]
