"""``mongoeco``: the embedded default target -- a MongoDB wire-protocol server in this process.

mongoeco (PyPI, Apache-2.0) answers MongoDB's wire protocol from an in-memory engine; its own
regression corpus is checked against MongoDB 7.0/8.0/9.0. The harness talks to it with the real
``pymongo.MongoClient`` over a loopback socket, so the replicator's write path, error shapes
(``BulkWriteError`` with ``keyPattern``) and BSON decoding (``Int64``, ``DBRef``) are pymongo's own.

The server runs on its own asyncio loop in a daemon thread (as mongoeco's pytest runtime does,
``mongoeco._pytest_runtime.ProxyThread``, but daemonic so a forgotten ``stop()`` cannot keep the
interpreter alive). It needs Python >= 3.13 (mongoeco's floor).

Limits (measured, see docs/targets.md): an upsert of a *new* ``_id`` costs time linear in the
collection's size, and a request that keeps the server busy for ~10 s makes pymongo's monitor
drop the pool (``_OperationCancelled``). The harness keeps bulks at Lambda-like sizes (<= 1,000
records per batch, the event source mapping's maximum for DynamoDB Streams) and raises
``heartbeatFrequencyMS`` so the monitor does not compete with long requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
from typing import Any

from harness.backends.base import BackendUnavailable, register_target
from replicator.mongo import APPNAME, connect

NEEDS_PYTHON = "the mongoeco target needs Python >= 3.13; use --target mongomock"
#: pymongo's monitor checks the server this often (default 10 s); raised so that heartbeats do
#: not queue behind a long request on mongoeco's single loop.
HEARTBEAT_FREQUENCY_MS = 60_000
#: a local server answers at once or not at all: fail fast instead of pymongo's 30 s default.
SERVER_SELECTION_TIMEOUT_MS = 5_000
START_TIMEOUT_S = 15.0


def available() -> bool:
    """Whether mongoeco can be imported here (Python >= 3.13 and the package installed)."""
    try:
        _import_server()
    except BackendUnavailable:
        return False
    return True


def _import_server() -> tuple[Any, Any]:
    if sys.version_info < (3, 13):
        raise BackendUnavailable(NEEDS_PYTHON)
    try:
        from mongoeco.engines.memory import MemoryEngine
        from mongoeco.wire.proxy import AsyncMongoEcoProxyServer
    except ImportError as error:
        raise BackendUnavailable(
            f"the mongoeco target needs the mongoeco package ({error}): "
            "pip install 'ddb-mongo-replicator[harness]' on Python >= 3.13, or use --target mongomock"
        ) from None
    return MemoryEngine, AsyncMongoEcoProxyServer


class MongoecoServer:
    """One mongoeco wire server on 127.0.0.1 at a free port; ``start()`` returns its URI."""

    def __init__(self, *, mongodb_dialect: str = "7.0") -> None:
        self.mongodb_dialect = mongodb_dialect
        self.uri = ""
        self._ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._error: BaseException | None = None
        # Daemonic: the interpreter may exit even if stop() is never reached.
        self._thread = threading.Thread(target=self._run, name="mongoeco-server", daemon=True)

    def start(self) -> str:
        engine_class, server_class = _import_server()
        self._classes = (engine_class, server_class)
        self._thread.start()
        try:
            self.uri = self._ready.result(timeout=START_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise BackendUnavailable(
                f"the mongoeco server did not start within {START_TIMEOUT_S:.0f} s") from None
        except BaseException:
            self.stop()
            raise
        return self.uri

    def stop(self) -> None:
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)
        if self._thread.ident is not None:
            self._thread.join(timeout=START_TIMEOUT_S)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(); a thread must not raise
            self._error = error
            if not self._ready.done():
                self._ready.set_exception(error)

    async def _serve(self) -> None:
        engine_class, server_class = self._classes
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = server_class(
            engine=engine_class(), host="127.0.0.1", port=0, mongodb_dialect=self.mongodb_dialect
        )
        try:
            address = await server.start()
            self._ready.set_result(f"mongodb://{address.host}:{address.port}/")
            if not self._stop_requested.is_set():
                await self._stop.wait()
        finally:
            await server.close()


@register_target("mongoeco")
class MongoecoTarget:
    """The embedded default: mongoeco's wire server, driven by the real pymongo client."""

    name = "mongoeco"

    def __init__(self, *, mongodb_dialect: str = "7.0") -> None:
        self.mongodb_dialect = mongodb_dialect
        self._server: MongoecoServer | None = None
        self._client: Any = None
        self._last_uri = ""  # kept after stop() for reports

    def start(self) -> None:
        if self._client is not None:
            return
        server = MongoecoServer(mongodb_dialect=self.mongodb_dialect)
        self._server = server
        uri = self._last_uri = server.start()
        try:
            self._client = connect(
                uri,
                appname=f"{APPNAME}-harness",
                server_selection_timeout_ms=SERVER_SELECTION_TIMEOUT_MS,
                directConnection=True,
                heartbeatFrequencyMS=HEARTBEAT_FREQUENCY_MS,
            )
            self._client.admin.command("ping")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        client, self._client = self._client, None
        server, self._server = self._server, None
        try:
            if client is not None:
                client.close()
        finally:
            if server is not None:
                server.stop()

    @property
    def client(self) -> Any:
        return self._client

    @property
    def uri(self) -> str:
        """The running server's URI ("" when stopped)."""
        return self._server.uri if self._server is not None else ""

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        return self._client[database][name]

    def describe(self) -> str:
        where = self._last_uri.removeprefix("mongodb://").rstrip("/") or "not started"
        return f"mongoeco (wire protocol, in-process, {where})"
