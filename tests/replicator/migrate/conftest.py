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


@pytest.fixture(scope="module")
def wire_target() -> Iterator[Any]:
    """The harness's mongoeco target (its wire server in a thread, the real pymongo client): where
    the replicator's real write path (bulk_write, E11000 from the guard) runs. mongoeco's upsert of
    a new _id grows with the collection (measured on mongoeco 4.11), so the scenarios stay small."""
    pytest.importorskip("mongoeco", reason="mongoeco (the wire target) needs Python >= 3.13")
    from harness.backends.base import started, target_backend

    with started(target_backend("mongoeco")) as backend:
        yield backend
