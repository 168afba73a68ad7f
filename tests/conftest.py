"""Shared fixtures: small factories, no behaviour of their own."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.fixture
def mongo_db() -> Any:
    """A fresh, empty mongomock database."""
    return mongomock_client()["replica"]
