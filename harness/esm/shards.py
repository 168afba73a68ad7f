"""The event-source-mapping emulation's bookkeeping: a shard's lanes (:class:`ShardLane`, one per
ParallelizationFactor slot: the concurrent batches of a shard), the records fed and not yet
delivered, the batches waiting to be invoked (bisected halves included) and one invocation's
outcome. Used by :mod:`harness.esm.mapping`.

A *shard lane* is the ESM's; a handler under test with its target and its mapping is a
:class:`harness.lane.Lane`."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    sequence: str
    record: Mapping[str, Any]
    text: str  # the Lambda record as JSON
    created: float | None  # ApproximateCreationDateTime, epoch seconds
    fed_at: float  # clock time


@dataclass
class Batch:
    entries: list[Entry]
    retries: int = 0
    invocations: int = 0
    last_outcome: str | None = None
    last_error: str | None = None


@dataclass
class ShardLane:
    """One of a shard's ParallelizationFactor slots: the records whose partition key hashes to it
    (:func:`harness.esm.response.lane_for`), in order."""

    shard_id: str
    index: int
    queue: deque[Entry] = field(default_factory=deque)  # fed, not yet in a batch
    pending: deque[Batch] = field(default_factory=deque)  # batches (bisected halves) to invoke

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.pending)


@dataclass
class Shard:
    shard_id: str
    lanes: list[ShardLane]
    parent: str | None = None


@dataclass
class Result:
    started: float
    ended: float
    response: Any = None
    error: str | None = None
