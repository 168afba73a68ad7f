"""Fixtures of the poller tests: in-process moto, DynamoDB Local, mongomock, mongoeco's wire
server, FakeStreams."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client


def _harness_conftest() -> ModuleType:
    """tests/harness/conftest.py (FakeStreams, wire_record), loaded as a plain module."""
    path = Path(__file__).resolve().parents[2] / "harness" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_poller_fake_streams", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FAKES = _harness_conftest()


@pytest.fixture
def fake_streams() -> Any:
    return _FAKES.FakeStreams


@pytest.fixture
def wire_record() -> Any:
    return _FAKES.wire_record


@pytest.fixture
def mongo() -> Any:
    return mongomock_client()["replica"]


@pytest.fixture(scope="module")
def mongoeco_server_uri() -> Iterator[str]:
    """``mongodb://127.0.0.1:<port>/`` of a mongoeco server shared by the module's tests (each
    test uses its own database). mongoeco needs Python >= 3.13: skipped on older ones."""
    pytest.importorskip("mongoeco", reason="mongoeco (the embedded MongoDB target) needs Python >= 3.13")
    from harness.backends.mongoeco_target import MongoecoServer

    server = MongoecoServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _poller_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
