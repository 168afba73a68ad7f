"""Sources for the core's I/O tests (the poller's and the migration's): the harness's backends."""

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
