"""Fixtures of the migration tests: moto and DynamoDB Local (tests/replicator/conftest.py), and
the target -- the mongoeco wire server with the real pymongo client by default."""

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
    """A fresh target for one test: the harness's mongoeco target (its wire server in a thread,
    the real pymongo client: bulk_write, E11000 from the guard and BSON decoding -- ``Int64`` --
    as against MongoDB). Where mongoeco cannot run (Python < 3.13: the core's 3.11 session), the
    harness's mongomock adapter instead, so the migration code is still exercised there; it hands
    back plain ``int``s and matches composite ``_id``s in any field order (docs/EMULATORS.md), so a
    test that needs the wire behaviour uses ``wire_target``, which skips instead."""
    from harness.backends.base import started, target_backend
    from harness.backends.mongoeco_target import available

    with started(target_backend("mongoeco" if available() else "mongomock")) as backend:
        yield backend


@pytest.fixture(scope="module")
def wire_target() -> Iterator[Any]:
    """The harness's mongoeco target, one per module, skipped where mongoeco cannot run.
    mongoeco's upsert of a new _id grows with the collection (measured on mongoeco 4.11), so the
    scenarios stay small."""
    pytest.importorskip("mongoeco", reason="mongoeco (the wire target) needs Python >= 3.13")
    from harness.backends.base import started, target_backend

    with started(target_backend("mongoeco")) as backend:
        yield backend



@pytest.fixture
def mongoeco_uri() -> Iterator[str]:
    """A mongoeco wire server of its own (the ``replicator`` subprocesses of the journeys connect
    with the real pymongo)."""
    pytest.importorskip("mongoeco", reason="mongoeco (the wire target) needs Python >= 3.13")
    from harness.backends.mongoeco_target import MongoecoServer

    server = MongoecoServer()
    uri = server.start()
    try:
        yield uri
    finally:
        server.stop()
