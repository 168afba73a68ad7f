"""Faults of the side collections: tombstones, quarantine, TTL archive.

The core reaches them through the constructor arguments of ``replicator.core.Replicator``
(``tombstones=``, ``quarantine=``, ``archive=``): the tombstones with an unordered ``bulk_write``
(deletes remembered + the probe), a ``find`` (which upserts a tombstone blocks, the re-check after
an insert) and ``index_information``/``create_index`` (the TTL index, once per store); the
quarantine and the archive with ``bulk_write``. Each of those can fail the way a deployment does,
and the core must then retry (batchItemFailures, or an error that makes Lambda retry), never lose.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pymongo.errors import AutoReconnect, ExecutionTimeout, NetworkTimeout, OperationFailure

from harness.faults.plan import FaultLog, FaultPlan

#: ShutdownInProgress: a transient createIndex failure (a stepdown while building it); in
#: pymongo's retryable codes (helpers_shared._RETRYABLE_ERROR_CODES).
SHUTDOWN_IN_PROGRESS = 91


class FaultySideCollection:
    """Wraps a tombstone, quarantine or archive collection; ``role`` names it in the fault log."""

    def __init__(self, collection: Any, role: str, plan: FaultPlan, log: FaultLog,
                 rng: random.Random, index_rng: random.Random | None = None) -> None:
        self.inner = collection
        self.role = role
        self.plan = plan
        self.log = log
        self.rng = rng
        #: createIndex runs once per store, in whichever invocation needs the store first (with
        #: parallel lanes, a matter of thread timing): its draws come from a generator of their
        #: own, so the n-th createIndex fails or not whoever calls it, and no invocation's other
        #: draws shift with it
        self.index_rng = index_rng or random.Random(f"{role}:index:{plan.seed}")
        self._index_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: Sequence[Any], ordered: bool = True, **kwargs: Any) -> Any:
        roll = self.rng.random()
        if roll < self.plan.side_error_rate:
            self._fail_before("bulk_write")
        if roll < self.plan.side_error_rate + self.plan.side_timeout_rate:
            # Applied, but the answer never came: the writer cannot tell this from nothing
            # applied, and retries (every side write is an idempotent upsert or $max).
            self.inner.bulk_write(requests, ordered=ordered, **kwargs)
            self.log.count(f"side_timeout:{self.role}")
            raise NetworkTimeout(f"{self.role}: timed out waiting for the answer (injected)")
        return self.inner.bulk_write(requests, ordered=ordered, **kwargs)

    def find(self, *args: Any, **kwargs: Any) -> Any:
        if self.rng.random() < self.plan.side_error_rate:
            self._fail_before("find")
        return self.inner.find(*args, **kwargs)

    def create_index(self, keys: Any, **kwargs: Any) -> Any:
        with self._index_lock:
            fails = self.index_rng.random() < self.plan.index_error_rate
            reset = self.index_rng.random() < 0.5
        if fails:
            self.log.count(f"index_error:{self.role}")
            if reset:
                raise AutoReconnect(f"{self.role}: createIndex: connection reset (injected)")
            raise OperationFailure(f"{self.role}: createIndex: shutdown in progress (injected)",
                                   code=SHUTDOWN_IN_PROGRESS)
        return self.inner.create_index(keys, **kwargs)

    def _fail_before(self, operation: str) -> None:
        self.log.count(f"side_error:{self.role}")
        if self.rng.random() < 0.5:
            raise AutoReconnect(f"{self.role}: {operation}: connection reset (injected)")
        raise ExecutionTimeout(f"{self.role}: {operation}: operation exceeded time limit "
                               "(injected)", code=50)


def faulty_sides(database: Any, plan: FaultPlan, log: FaultLog, *, main: str = "items",
                 rng_for: Callable[[str], random.Random] | None = None) -> dict[str, Any]:
    """The ``Replicator`` keyword arguments for the three side collections of ``main``, each
    wrapped with its own seeded generator (so adding one does not shift the others' draws).
    ``rng_for(role)`` makes those generators instead (chaos: per-invocation ones, so parallel
    lanes draw the same whatever their threads' timing)."""
    sides = {"tombstones": f"{main}_tombstones", "quarantine": f"{main}_quarantine",
             "archive": f"{main}_ttl_archive"}
    return {
        argument: FaultySideCollection(
            database[name], argument, plan, log,
            rng_for(argument) if rng_for else random.Random(f"{argument}:{plan.seed}"))
        for argument, name in sides.items()
    }
