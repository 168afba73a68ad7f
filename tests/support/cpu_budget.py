"""A pytest plugin: a test without ``@pytest.mark.slow`` whose call takes more than a CPU-time
budget fails, so the fast set (``pytest -m "not slow"``, ``nox -s fast``) stays fast.

Measured in CPU seconds of this process (all its threads: moto's and mongoeco's servers run in
threads) plus its children waited for during the call (``getrusage``), never wall time: a loaded
machine makes a test slower on the clock, not on the CPU, so the check cannot be flaky under load.
Only the test's call is measured: a fixture's setup (a server started once per module) is not.

``REPLICATOR_TEST_CPU_BUDGET``: the budget in CPU seconds (default 10); ``0`` turns the check off.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Generator

import pytest

ENV = "REPLICATOR_TEST_CPU_BUDGET"
DEFAULT_BUDGET_S = 10.0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def budget() -> float:
    """The budget from ``REPLICATOR_TEST_CPU_BUDGET`` (seconds); raises pytest.UsageError on a
    value that is not a number >= 0."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise pytest.UsageError(f"{ENV}={text!r}: expected CPU seconds, a number >= 0 (0: no check)")
    return value


def pytest_configure(config: pytest.Config) -> None:
    budget()  # a bad value is one usage line before collection, not an error per test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    limit = budget()
    if not limit or item.get_closest_marker("slow") is not None:
        return (yield)
    start = cpu_seconds()
    result = yield  # the test's own failure, if any, propagates first
    used = cpu_seconds() - start
    if used > limit:
        pytest.fail(
            f"{item.nodeid} used {used:.1f} s of CPU, over the {limit:g} s budget of an unmarked "
            f"test: mark it @pytest.mark.slow (it then leaves the fast set), or make it cheaper "
            f"({ENV} changes the budget)", pytrace=False)
    return result
