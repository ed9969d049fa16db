"""Shared fixtures: one Prefect test harness per session, a demo site, a demo warehouse.

Stage logic is tested without Prefect; only flow tests ask for ``prefect_harness``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# derived caches (the pickled geo gazetteer) go to a per-session folder, not the user's ~/.cache
_CACHE = tempfile.mkdtemp(prefix="newsflow-test-cache-")
atexit.register(shutil.rmtree, _CACHE, True)

for _k, _v in {
    "NEWSFLOW_CACHE_DIR": _CACHE,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}.items():
    os.environ.setdefault(_k, _v)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on loopback with a free port: tests never touch other addresses."""
    return ("127.0.0.1", 0)


@pytest.fixture
def cascade_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each trafilatura run extract makes, whether it was the fast attempt."""
    from tasks import extract as extract_mod

    calls: list[bool] = []
    real = extract_mod.bare_extraction

    def recording(*args, **kwargs):
        calls.append(bool(kwargs.get("fast")))
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "bare_extraction", recording)
    return calls
