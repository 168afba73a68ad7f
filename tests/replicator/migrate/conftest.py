"""Fixtures of the migration tests: in-process moto, DynamoDB Local, mongomock targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _streams_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore sends DynamoDB Streams calls to an account-based endpoint moto does not serve
    # (404 "Not yet implemented", measured on moto 5.2).
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


@pytest.fixture
def target() -> Iterator[Any]:
    from harness.backends.base import started, target_backend

    with started(target_backend("mongomock")) as backend:
        yield backend


class MongoecoWire:
    """mongoeco's wire-protocol server (memory engine) in a thread, reached by the real pymongo
    client: the "wire" target of the issue, where the replicator's real write path (bulk_write,
    E11000 from the guard) runs. mongoeco's upsert of a new _id grows with the collection
    (measured on mongoeco 4.11), so the scenarios stay small on it. (The approach of
    tests/replicator/poller's fixture and mongoeco's own pytest runtime, minus its PyMongo profile check.)"""

    name = "mongoeco-wire"

    def __init__(self) -> None:
        import asyncio
        import threading
        from concurrent.futures import Future

        self._asyncio = asyncio
        self._ready: Future[str] = Future()
        self._loop: Any = None
        self._stop: Any = None
        self._thread = threading.Thread(target=self._run, name="mongoeco-server", daemon=True)
        self.client: Any = None

    def start(self) -> None:
        from pymongo import MongoClient

        self._thread.start()
        uri = self._ready.result(timeout=120)  # a safety net: returns once the server listens
        self.client = MongoClient(uri, heartbeatFrequencyMS=60_000)

    def stop(self) -> None:
        import contextlib

        if self.client is not None:
            self.client.close()
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=120)

    def collection(self, database: str, name: str) -> Any:
        return self.client[database][name]

    def _run(self) -> None:
        try:
            self._asyncio.run(self._serve())
        except BaseException as error:  # reported to start(); a thread must not raise
            if not self._ready.done():
                self._ready.set_exception(error)

    async def _serve(self) -> None:
        from mongoeco.engines.memory import MemoryEngine
        from mongoeco.wire.proxy import AsyncMongoEcoProxyServer

        self._loop = self._asyncio.get_running_loop()
        self._stop = self._asyncio.Event()
        server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host="127.0.0.1", port=0,
                                          mongodb_dialect="7.0")
        try:
            address = await server.start()
            self._ready.set_result(f"mongodb://{address.host}:{address.port}/")
            await self._stop.wait()
        finally:
            await server.close()


@pytest.fixture(scope="module")
def wire_target() -> Iterator[Any]:
    pytest.importorskip("mongoeco", reason="mongoeco (the wire target) needs Python >= 3.13")
    server = MongoecoWire()
    server.start()
    try:
        yield server
    finally:
        server.stop()
