"""Fixtures of the poller tests: in-process moto, DynamoDB Local, mongomock, FakeStreams."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client


def _harness_conftest() -> ModuleType:
    """tests/devkit/conftest.py (FakeStreams, wire_record), loaded as a plain module."""
    path = Path(__file__).resolve().parent.parent / "devkit" / "conftest.py"
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
def mongo() -> Any:
    return mongomock_client()["replica"]


@pytest.fixture(autouse=True)
def _poller_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
