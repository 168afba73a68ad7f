"""Fixtures of the poller tests: in-process moto, DynamoDB Local, mongomock, mongoeco's wire
server, FakeStreams."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
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


class MongoecoServer:
    """mongoeco's MongoDB wire-protocol server (memory engine) on 127.0.0.1 at a free port, in a
    thread with its own event loop, for ``replicator`` processes driven by the real pymongo client.
    (As mongoeco's own pytest runtime, ``mongoeco._pytest_runtime.ProxyThread``, minus its PyMongo
    profile check, which refuses pymongo 4.20.)"""

    def __init__(self) -> None:
        self._ready: Future[str] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mongoeco-server", daemon=True)

    def start(self) -> str:
        self._thread.start()
        # A safety net only: start() returns as soon as the server listens.
        return self._ready.result(timeout=120)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=120)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(); a thread must not raise
            if not self._ready.done():
                self._ready.set_exception(error)

    async def _serve(self) -> None:
        from mongoeco.engines.memory import MemoryEngine
        from mongoeco.wire.proxy import AsyncMongoEcoProxyServer

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host="127.0.0.1", port=0,
                                          mongodb_dialect="7.0")
        try:
            address = await server.start()
            self._ready.set_result(f"mongodb://{address.host}:{address.port}/")
            await self._stop.wait()
        finally:
            await server.close()


@pytest.fixture(scope="module")
def mongoeco_server_uri() -> Iterator[str]:
    """``mongodb://127.0.0.1:<port>/`` of a mongoeco server shared by the module's tests (each
    test uses its own database). mongoeco needs Python >= 3.13: skipped on older ones."""
    pytest.importorskip("mongoeco", reason="mongoeco (the embedded MongoDB target) needs Python >= 3.13")
    server = MongoecoServer()
    uri = server.start()
    try:
        yield uri
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _poller_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
