"""Sources and targets for the core's I/O tests (the poller's and the migration's): the harness's
backends, and the servers the `replicator` command is run against as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def moto() -> Iterator[Any]:
    """moto in-process, started and stopped around one test."""
    from harness.backends.base import started
    from harness.backends.moto_source import MotoSource

    with started(MotoSource()) as source:
        yield source


@pytest.fixture(scope="module")
def dynamodb_local() -> Iterator[Any]:
    """One DynamoDB Local per test module (it takes ~2-3 s to start); stopped even on failure."""
    from harness.backends.base import started
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    with started(DynamoDBLocalSource()) as source:
        yield source


@pytest.fixture
def moto_server() -> Iterator[Any]:
    """moto's threaded server (an endpoint URL a `replicator` subprocess can reach)."""
    from harness.backends.base import started
    from harness.backends.moto_source import MotoServerSource

    with started(MotoServerSource()) as source:
        yield source


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
