"""Shared test setup: no network, a private ZOO_HOME, strict plugins, few threads."""

from __future__ import annotations

import os

# Set before anything imports zoo_core: no test may touch the network, and a plugin that fails to
# load is an error in the zoo's own CI (tests of broken plugins relax this with monkeypatch).
os.environ["ZOO_OFFLINE"] = "1"
os.environ.setdefault("ZOO_STRICT_PLUGINS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def zoo_home(tmp_path_factory: pytest.TempPathFactory):
    """One cache root for the whole session (catalog caches are reused across tests)."""
    home = tmp_path_factory.mktemp("zoo_home")
    old = os.environ.get("ZOO_HOME")
    os.environ["ZOO_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ZOO_HOME", None)
    else:
        os.environ["ZOO_HOME"] = old


@pytest.fixture
def fresh_registry():
    """Rediscover plugins for this test and again afterwards (for tests that change plugins/env)."""
    from zoo_core.registry import reset_registry, set_provider_priority

    reset_registry()
    yield
    set_provider_priority(None)
    reset_registry()
