"""Fixtures of the poller tests: its logs at INFO (the sources, targets and FakeStreams are
support.fixtures')."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _poller_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
