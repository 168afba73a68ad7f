"""Where a scenario's time goes: the source emulator's writes, the stream reads, the handler, and
the target's bulk writes inside the handler -- summed busy time per part, so that a run bounded by
an emulator says so (issue 14, part 4).

The parts overlap in wall time (the workload writes in its own thread while the stream is read and
the handler runs), so shares are of the sum of busy times, not of the wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PARTS", "Stopwatch", "Timed", "shares", "timed_collection"]

#: the parts, in the order tables print them
PARTS = ("source_write_s", "stream_read_s", "handler_core_s", "target_write_s")


class Stopwatch:
    """Seconds summed per part name, from any thread."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, part: str, seconds: float) -> None:
        with self._lock:
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds
            self.calls[part] = self.calls.get(part, 0) + 1

    @contextmanager
    def timing(self, part: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            self.add(part, self.clock() - started)


class Timed:
    """An object (a pymongo collection, a boto3 client) whose method calls -- those in ``methods``,
    or all -- add their time to ``part`` of a :class:`Stopwatch`; attributes pass through."""

    def __init__(
        self, wrapped: Any, stopwatch: Stopwatch, part: str, methods: frozenset[str] | None = None
    ) -> None:
        self._wrapped = wrapped
        self._stopwatch = stopwatch
        self._part = part
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._wrapped, name)
        if not callable(value) or (self._methods is not None and name not in self._methods):
            return value
        stopwatch, part = self._stopwatch, self._part

        def timed(*args: Any, **kwargs: Any) -> Any:
            with stopwatch.timing(part):
                return value(*args, **kwargs)

        return timed


def timed_collection(collection: Any, stopwatch: Stopwatch) -> Any:
    """``collection`` with its ``bulk_write`` time in ``target_write_s``."""
    return Timed(collection, stopwatch, "target_write_s", frozenset({"bulk_write"}))


def shares(seconds: dict[str, float], *, handler_total_s: float) -> dict[str, dict[str, float]]:
    """Each part's seconds and share of their sum; the handler's time without its target writes
    is ``handler_core_s`` (the replicator: parse, convert, plan, and its reads of the target)."""
    parts = {
        "source_write_s": seconds.get("source_write_s", 0.0),
        "stream_read_s": seconds.get("stream_read_s", 0.0),
        "handler_core_s": max(0.0, handler_total_s - seconds.get("target_write_s", 0.0)),
        "target_write_s": seconds.get("target_write_s", 0.0),
    }
    total = sum(parts.values())
    return {
        part: {"seconds": round(value, 3),
               "share": round(value / total, 4) if total > 0 else 0.0}
        for part, value in parts.items()
    }
