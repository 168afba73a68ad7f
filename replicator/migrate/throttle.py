"""A limit on the read capacity a copy consumes, shared by every segment.

Each Scan asks for ``ReturnConsumedCapacity=TOTAL`` and reports the units it consumed; when the
total runs ahead of ``units_per_s`` the segment that reported waits until it is back on the line.
(DynamoDB docs, "Parallel Scan": a parallel scan can use all of a table's provisioned read
capacity; a limit keeps the application's own reads from being throttled.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ReadCapacityThrottle:
    def __init__(self, units_per_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if units_per_s <= 0:
            raise ValueError("units_per_s must be positive")
        self.units_per_s = units_per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._start: float | None = None
        self.consumed_units = 0.0
        self.waited_s = 0.0

    def consumed(self, units: float) -> float:
        """Count ``units``; wait as long as the total is ahead of the rate. Returns the wait."""
        with self._lock:
            now = self._clock()
            if self._start is None:
                self._start = now
            self.consumed_units += units
            wait = self.consumed_units / self.units_per_s - (now - self._start)
            wait = max(0.0, wait)
            self.waited_s += wait
        if wait > 0:
            self._sleep(wait)
        return wait
