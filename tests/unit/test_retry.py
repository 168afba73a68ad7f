"""replicator.retry.Backoff: the one retry policy, tested with an injected sleep (nothing waits)."""

from __future__ import annotations

import random
import threading

import pytest

from replicator.errors import ConfigurationError, RetriesExhausted
from replicator.retry import Backoff


def test_delays_double_from_the_base_up_to_the_cap_without_jitter() -> None:
    slept: list[float] = []
    policy = Backoff(base_s=0.5, max_s=3.0, jitter=0.0, sleep=slept.append)
    for attempt in range(1, 6):
        assert policy.wait(attempt) is True
    assert slept == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_keeps_each_delay_between_the_lower_bound_and_the_capped_ceiling() -> None:
    policy = Backoff(base_s=1.0, max_s=8.0, jitter=0.5, rng=random.Random(7))
    for attempt in range(1, 40):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        assert ceiling * 0.5 <= policy.delay(attempt) <= ceiling
    # and the jitter spreads the waits (concurrent writers do not retry in step)
    assert len({round(policy.delay(3), 9) for _ in range(20)}) > 1


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    assert Backoff(base_s=0.2, max_s=30.0, jitter=0.0).delay(10_000) == 30.0


def test_give_up_raises_only_once_max_attempts_failures_in_a_row() -> None:
    policy = Backoff(max_attempts=3)
    policy.give_up(1, "writing", "boom")
    policy.give_up(2, "writing", "boom")
    with pytest.raises(RetriesExhausted, match="writing failed 3 times in a row; last error: boom"):
        policy.give_up(3, "writing", "boom")
    assert not Backoff(max_attempts=None).exhausted(10**9)


def test_a_set_stop_event_interrupts_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    assert Backoff(base_s=60.0, max_s=60.0, sleep=stop.wait).wait(1) is False


@pytest.mark.parametrize("options", [{"max_attempts": 0}, {"jitter": 1.5}, {"base_s": -1.0}])
def test_nonsense_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**options)  # type: ignore[arg-type]
