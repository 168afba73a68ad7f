"""Tests here need a Docker engine (testcontainers). Without one they are skipped, all with one
reason, before any fixture starts a container; with one they are marked ``docker`` (``-m docker``
selects them, ``-m "not docker"`` leaves them out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.mongo_topology import docker_skip_reason

HERE = Path(__file__).resolve().parent


def _here(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if _here(item)]
    if not mine:
        return
    reason = docker_skip_reason()
    for item in mine:
        item.add_marker(pytest.mark.docker)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
