"""Shared fixtures: small factories, no behaviour of their own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2026-01-01T00:00:00.000"
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}

RecordFactory = Callable[..., dict[str, Any]]


def _stream_record(
    seq: str,
    name: str = "INSERT",
    keys: dict[str, Any] | None = None,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    view: str | None = "NEW_AND_OLD_IMAGES",
    ttl: bool = False,
    created: Any = 1795712760,
) -> dict[str, Any]:
    """A Lambda-shape DynamoDB Streams record (B as base64 text, epoch-seconds timestamp)."""
    body: dict[str, Any] = {
        "Keys": keys if keys is not None else {"id": {"S": "u1"}},
        "SequenceNumber": seq,
        "ApproximateCreationDateTime": created,
    }
    if view is not None:
        body["StreamViewType"] = view
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    record: dict[str, Any] = {
        "eventID": f"e{seq}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": ARN,
        "dynamodb": body,
    }
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return record


@pytest.fixture
def stream_record() -> RecordFactory:
    """``stream_record(seq, name, keys, new=..., old=..., view=..., ttl=...)`` -> a record."""
    return _stream_record


CASES = Path(__file__).parent / "data" / "cases"


@pytest.fixture
def shared_case() -> Callable[[str], Any]:
    """``shared_case(name)`` -> a fresh copy of tests/data/cases/<name>/event.json (copied from
    the shared failing inputs of issue #10; each folder's expected.md says what is right)."""

    def load(name: str) -> Any:
        return json.loads((CASES / name / "event.json").read_text(encoding="utf-8"))

    return load


@pytest.fixture
def mongo_db() -> Any:
    """A fresh, empty mongomock database (through the harness's adapter)."""
    return mongomock_client()["replica"]


@pytest.fixture(scope="session")
def mongoeco_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real ``pymongo.MongoClient`` on a mongoeco wire server (127.0.0.1, a free port), one per
    session; skipped where mongoeco is not installed (it needs Python >= 3.13)."""
    pytest.importorskip("mongoeco")
    from mongoeco._pytest_runtime import ProxyThread
    from mongoeco.compat import resolve_mongodb_dialect, resolve_pymongo_profile
    from pymongo import MongoClient

    server = ProxyThread(
        "memory",
        tmp_path_factory.mktemp("mongoeco"),
        resolve_mongodb_dialect("7.0").key,
        # "auto-installed": the nearest known profile when pymongo is newer than mongoeco knows
        resolve_pymongo_profile("auto-installed").key,
    )
    uri = server.start()
    client: Any = MongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        yield client
    finally:
        client.close()
        server.close()


@pytest.fixture
def mongoeco_db(mongoeco_client: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh database on the session's mongoeco server, dropped afterwards."""
    name = "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    mongoeco_client.drop_database(name)
    yield mongoeco_client[name]
    mongoeco_client.drop_database(name)
