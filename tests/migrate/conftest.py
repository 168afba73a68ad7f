"""Fixtures of the migration tests: in-process moto, DynamoDB Local, mongomock targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _streams_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore sends DynamoDB Streams calls to an account-based endpoint moto does not serve
    # (EMULATORS.md, "moto").
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


@pytest.fixture
def moto() -> Iterator[Any]:
    from harness.backends.base import started
    from harness.backends.moto_source import MotoSource

    with started(MotoSource()) as source:
        yield source


@pytest.fixture(scope="module")
def dynamodb_local() -> Iterator[Any]:
    from harness.backends.base import started
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    with started(DynamoDBLocalSource()) as source:
        yield source


@pytest.fixture
def target() -> Iterator[Any]:
    from harness.backends.base import started, target_backend

    with started(target_backend("mongomock")) as backend:
        yield backend
