"""The one retry policy of the poller, the re-sync and the migration copies.

Capped exponential backoff with jitter, as AWS recommends for retried calls
(https://docs.aws.amazon.com/general/latest/gr/api-retries.html): the ``n``-th wait is
``min(max_s, base_s * 2**(n-1))`` times a random factor in ``[1 - jitter, 1]``, so concurrent
writers that failed together do not retry together. ``sleep`` is injectable: a
``threading.Event.wait`` makes a stop end the wait at once (it returns True when set), a list's
``append`` makes a test that waits for nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from replicator.errors import ConfigurationError, RetriesExhausted

#: Sleeps ``seconds``; a true result means "interrupted" (``threading.Event.wait`` when set).
Sleep = Callable[[float], object]


@dataclass(frozen=True)
class Backoff:
    """When to retry and how long to wait first.

    ``max_attempts``: failures in a row after which :meth:`give_up` raises; None: never.
    """

    base_s: float = 0.2
    max_s: float = 30.0
    max_attempts: int | None = None
    jitter: float = 0.5
    sleep: Sleep = time.sleep
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1 (or None: forever)")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigurationError(f"jitter must be 0..1, not {self.jitter}")
        if self.base_s < 0 or self.max_s < 0:
            raise ConfigurationError("backoff delays must not be negative")

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure in a row (1-based)."""
        ceiling = min(self.max_s, self.base_s * float(2 ** min(max(attempt, 1) - 1, 62)))
        return ceiling * (1.0 - self.jitter * self.rng.random())

    def exhausted(self, attempt: int) -> bool:
        """True once ``attempt`` failures in a row reached ``max_attempts``."""
        return self.max_attempts is not None and attempt >= self.max_attempts

    def give_up(self, attempt: int, what: str, last_error: object) -> None:
        """Raise :class:`RetriesExhausted` (naming ``what`` and the last error) once
        :meth:`exhausted`."""
        if self.exhausted(attempt):
            raise RetriesExhausted(f"{what} failed {attempt} times in a row; last error: {last_error}")

    def wait(self, attempt: int) -> bool:
        """Wait :meth:`delay` ``(attempt)``; False if the sleep was interrupted (stopped)."""
        return not self.sleep(self.delay(attempt))
