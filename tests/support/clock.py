"""A clock for code that takes ``clock``/``sleep`` callables: time moves only when told to."""

from __future__ import annotations

import threading

#: Epoch seconds the clock starts at unless told otherwise (2023-11-14).
T0 = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when told to (``sleep`` moves them too, and is recorded)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
