"""A schedule's faults (:class:`FaultPlan`, seeded and serializable) and what was injected
(:class:`FaultLog`, which the per-delivery check of :mod:`harness.invariants` also reads)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FaultPlan:
    """Rates are per bulk write or per record, in [0, 1]; the seed makes a plan reproducible."""

    seed: int = 0
    transient_error_rate: float = 0.0  # connection reset / not primary, nothing applied
    crash_mid_batch_rate: float = 0.0  # k of n operations applied, then the connection drops
    write_concern_error_rate: float = 0.0  # everything applied, acknowledgement failed
    handler_timeout_rate: float = 0.0  # the invocation dies after its writes (Lambda timeout)
    duplicate_delivery_rate: float = 0.0  # a successful batch is delivered again
    late_retry_rate: float = 0.0  # an old batch is delivered again after later ones
    malformed_rate: float = 0.0  # a corrupted copy of a record is injected into a batch
    max_batch: int = 10
    # -- write side (issue 13) ------------------------------------------------------------------
    #: per bulk/find on the tombstone, quarantine and archive collections: the connection drops
    #: or the operation times out before anything is applied
    side_error_rate: float = 0.0
    #: per bulk on a side collection: applied, then the answer times out (NetworkTimeout)
    side_timeout_rate: float = 0.0
    #: per createIndex (the tombstones' TTL index): a transient error
    index_error_rate: float = 0.0
    #: per operation on the main collection, decided by the operation's content (so a
    #: redelivery meets the same error): a permanent write error (121, 17280, 10334) while the
    #: bulk's other operations apply (unordered)
    permanent_error_rate: float = 0.0
    #: per bulk on the main collection: an arbitrary subset applied, then AutoReconnect; half the
    #: time pymongo's retry sends the whole bulk again and it succeeds
    partial_bulk_rate: float = 0.0
    #: per successful bulk on the main collection: failover rollback of some of its documents
    #: (see FaultyCollection._roll_back)
    rollback_rate: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def random(cls, rng: random.Random, seed: int) -> FaultPlan:
        def rate() -> float:
            return rng.choice([0.0, 0.0, 0.05, 0.15, 0.3])

        plan = cls(
            seed=seed,
            transient_error_rate=rate(),
            crash_mid_batch_rate=rate(),
            write_concern_error_rate=rate(),
            handler_timeout_rate=rate(),
            duplicate_delivery_rate=rate(),
            late_retry_rate=rate(),
            malformed_rate=rate(),
            max_batch=rng.choice([1, 2, 5, 10, 50]),
        )
        # The write-side rates come from their own generator, seeded by the schedule's seed:
        # drawing them from ``rng`` would change every later draw (the workload) of every seed.
        side = random.Random(f"write-side:{seed}")

        def side_rate(*choices: float) -> float:
            return side.choice([0.0, 0.0, *choices])

        plan.side_error_rate = side_rate(0.05, 0.15, 0.3)
        plan.side_timeout_rate = side_rate(0.05, 0.15)
        plan.index_error_rate = side_rate(0.3, 0.6)
        plan.permanent_error_rate = side_rate(0.02, 0.05, 0.1)
        plan.partial_bulk_rate = side_rate(0.05, 0.15, 0.3)
        plan.rollback_rate = side_rate(0.05, 0.15, 0.3)
        return plan


@dataclass
class Rollback:
    """Documents a failover rolled back: their ``_id``s and the sequence number each holds
    again (None: the document is gone again)."""

    restored: list[tuple[Any, str | None]]


@dataclass
class FaultLog:
    injected: dict[str, int] = field(default_factory=dict)
    #: every rollback, in order (the per-delivery check excuses what they took back)
    rollbacks: list[Rollback] = field(default_factory=list)
    #: permanently rejected writes: {"_id", "sequence" (padded, None without the guard)}
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: per _id identity: (the newest sequence number sent to the main collection, was that
    #: write permanently rejected) -- a document whose newest write was rejected cannot match
    #: the table, and that is the quarantine's job, not a divergence
    newest: dict[Any, tuple[str, bool]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: held while a rollback is observed, logged and reverted, and while the per-delivery check
    #: reads: a check in another lane's thread never sees a rollback logged but half-reverted
    #: (it would take the not-yet-reverted documents' sequence numbers as the newest seen)
    rollback_lock: threading.RLock = field(default_factory=threading.RLock, repr=False,
                                           compare=False)
    #: called when acknowledged writes are about to be rolled back (the per-delivery check
    #: looks then too: a reader of the primary could see those writes before they vanish)
    #: (it is given the _ids of the documents the rollback is about to take back)
    observer: Callable[[list[Any]], Any] | None = field(default=None, repr=False,
                                                        compare=False)

    def count(self, name: str) -> None:
        with self.lock:
            self.injected[name] = self.injected.get(name, 0) + 1

    def rolled_back(self, restored: list[tuple[Any, str | None]]) -> None:
        with self.lock:
            self.rollbacks.append(Rollback(restored))

    def reject(self, document_id: Any, sequence: str | None) -> None:
        with self.lock:
            self.rejected.append({"_id": document_id, "sequence": sequence})

    def sent(self, key: Any, sequence: str | None, rejected: bool) -> None:
        if sequence is None:
            return
        with self.lock:
            held = self.newest.get(key)
            if held is None or held[0] < sequence or (held[0] == sequence and rejected):
                self.newest[key] = (sequence, rejected)

    def excused(self) -> set[Any]:
        """The _id identities whose newest write was rejected for good (quarantined)."""
        with self.lock:
            return {key for key, (_, rejected) in self.newest.items() if rejected}
