"""Fixtures of the poller tests: mongomock, FakeStreams (moto, moto's server, DynamoDB Local and
mongoeco's wire server: tests/replicator/conftest.py)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client


def _harness_conftest() -> ModuleType:
    """tests/harness/conftest.py (FakeStreams, wire_record), loaded as a plain module."""
    path = Path(__file__).resolve().parents[2] / "harness" / "conftest.py"
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
def mongo() -> Any:
    return mongomock_client()["replica"]


@pytest.fixture(autouse=True)
def _poller_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
