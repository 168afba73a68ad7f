"""The per-delivery check: after every handler call, no document went back in time.

Chaos used to look only at the final state, which hides a document that was wrong for a while and
was then overwritten. :class:`DeliveryChecker` reads the main collection after every delivery
(every call of the handler the ESM emulation makes, whether it answered or raised) -- all
documents, the schedules are small -- and records two kinds of violation:

- **regression**: a document's sequence number (``_ddb_seq``, DynamoDB sequence numbers padded to
  40 digits, so string order is numeric order) is older than one the check saw before;
- **resurrection**: a key whose delete with sequence number s was delivered, and whose document
  was then seen gone, is back with a sequence number below s.

A check *during* a delivery (:meth:`DeliveryChecker.observe`: what a reader of the primary sees
just before a failover rolls acknowledged writes back) can see the core's tombstone window -- an
insert between its tombstone probe and its post-insert re-check (docs/write-errors.md) -- which
the delivery itself undoes before it ends. Such mid-delivery sightings are kept apart
(``sightings``): issue 13 asks for no regression after every delivery, and the window is the
documented limit of a two-round-trip guard.

Both are allowed only for the documents an injected failover rollback took back
(:class:`harness.faults.FaultLog` lists them; the check resets what it knows of them to the
restored state). Violations name the ``_id``, the sequence numbers before and after and the
delivery's index.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.convergence import Diff
from harness.faults.plan import FaultLog
from replicator.events import EventName, pad_sequence_number, parse_records
from replicator.keys import identity
from replicator.plan import Planner
from replicator.settings import SEQUENCE_FIELD


@dataclass(frozen=True)
class Violation:
    kind: str  # "regression" | "resurrection"
    document_id: Any
    before: str | None  # the sequence number seen before (a regression) / of the delete
    after: str | None  # the sequence number now stored
    delivery: int  # 1-based index of the delivery after which it was seen

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "_id": repr(self.document_id), "before": self.before,
                "after": self.after, "delivery": self.delivery}


@dataclass
class DeliveryChecker:
    """Call :meth:`after_delivery` with each delivered event (or wrap the handler with
    :meth:`wrap`). Thread-safe: concurrent deliveries are checked one at a time."""

    collection: Any  # the main collection, unwrapped (reads must not meet injected faults)
    planner: Planner
    log: FaultLog = field(default_factory=FaultLog)
    sequence_field: str = SEQUENCE_FIELD
    #: a planted bug for the checker's own test: rollbacks are not excused
    ignore_rollbacks: bool = False
    deliveries: int = 0
    violations: list[Violation] = field(default_factory=list)
    #: what a check in the middle of a delivery saw (the tombstone window); not failures
    sightings: list[Violation] = field(default_factory=list)
    _seen: dict[Any, str] = field(default_factory=dict)
    _deleted: dict[Any, str] = field(default_factory=dict)  # delivered deletes, newest per key
    _gone: dict[Any, str] = field(default_factory=dict)  # deletes seen to have taken effect
    #: the lane an event belongs to (chaos: shard and ParallelizationFactor lane); with it, a
    #: delivery is checked on its lane's documents only, see :meth:`after_delivery`
    lane_of: Callable[[Mapping[str, Any]], Any] | None = None
    _lane_keys: dict[Any, set[Any]] = field(default_factory=dict)
    _rollbacks_read: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def regressions(self) -> int:
        return sum(1 for v in self.violations if v.kind == "regression")

    @property
    def resurrections(self) -> int:
        return sum(1 for v in self.violations if v.kind == "resurrection")

    def wrap(self, handler: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def checked(event: dict[str, Any]) -> Any:
            try:
                return handler(event)
            finally:
                self.after_delivery(event)

        return checked

    def after_delivery(self, event: Mapping[str, Any]) -> list[Violation]:
        """Check the collection after ``event`` was delivered; the violations found now.

        With ``lane_of``, only the documents of the keys delivered in the event's lane so far:
        when one lane's delivery ends, the other lanes are in the middle of theirs, and what a
        check of their documents sees would depend on thread timing (e.g. an insert between its
        tombstone probe and its re-check)."""
        # The rollback lock first, always: a rollback holds it when it calls observe().
        with self.log.rollback_lock, self._lock:
            self.deliveries += 1
            scope = None
            changes = self._changes_in(event)
            if self.lane_of is not None:
                scope = self._lane_keys.setdefault(self.lane_of(event), set())
                scope.update(key for key, _ in changes)
            for key, change in changes:
                if (change.event_name is EventName.REMOVE and self._deletes(change)
                        and _rank_of(change) > self._deleted.get(key, "")):
                    self._deleted[key] = _rank_of(change)
            return self._check(self.deliveries, scope)

    def observe(self, document_ids: Iterable[Any] | None = None) -> list[Violation]:
        """Check now, during a delivery (counted as the delivery in progress): what a reader
        sees in the middle of one, e.g. acknowledged writes a failover is about to roll back
        (``document_ids``: those documents only; None: all)."""
        scope = None if document_ids is None else {identity(i) for i in document_ids}
        with self.log.rollback_lock, self._lock:
            return self._check(self.deliveries + 1, scope, mid_delivery=True)

    def _check(self, delivery: int, scope: set[Any] | None = None, *,
               mid_delivery: bool = False) -> list[Violation]:
        # The caller holds self._lock. ``scope``: the identities to check (None: all).
        # Read the documents first, the rollback log after: a rollback is logged before it
        # reverts anything, so every reverted document this read shows is excused below.
        documents = {}
        for doc in self.collection.find({}, {self.sequence_field: 1}):
            key = identity(doc["_id"])
            if scope is None or key in scope:
                documents[key] = doc
        rolled_back = self._read_rollbacks()
        found: list[Violation] = []
        for key, document in documents.items():
            stored = document.get(self.sequence_field)
            if not isinstance(stored, str):
                continue
            stored = _rank(stored)
            before = self._seen.get(key)
            if before is not None and stored < before:
                found.append(Violation("regression", document["_id"], before, stored,
                                       delivery))
            deleted = self._gone.get(key)
            if deleted is not None and stored < deleted:
                found.append(Violation("resurrection", document["_id"], deleted, stored,
                                       delivery))
                if not mid_delivery:
                    del self._gone[key]  # reported once
            if mid_delivery:
                # A sighting does not lower what the check knows: after the delivery the
                # document must be back at (or above) what was seen before.
                self._seen[key] = max(stored, before or "")
                continue
            self._seen[key] = stored
        if mid_delivery:
            self.sightings.extend(found)
            return found
        for key, sequence in self._deleted.items():
            if (scope is None or key in scope) and key not in documents \
                    and key not in rolled_back:
                self._gone[key] = max(sequence, self._gone.get(key, ""))
        self.violations.extend(found)
        return found

    def report(self, limit: int = 10) -> list[dict[str, Any]]:
        return [v.as_dict() for v in self.violations[:limit]]

    def _read_rollbacks(self) -> set[Any]:
        with self.log.lock:
            fresh = self.log.rollbacks[self._rollbacks_read:]
            self._rollbacks_read = len(self.log.rollbacks)
        keys: set[Any] = set()
        if self.ignore_rollbacks:
            return keys
        for rollback in fresh:
            for key, sequence in rollback.restored:
                keys.add(key)
                self._gone.pop(key, None)
                if sequence is None:
                    self._seen.pop(key, None)
                else:
                    self._seen[key] = _rank(sequence)
        return keys

    def _deletes(self, change: Any) -> bool:
        """Whether the core deletes the document for this REMOVE: not for a TTL expiry under
        ``ttl_deletes="ignore"`` (the document is kept, and an older write still landing is
        right), nor under "archive" without an old image (quarantined, the document left)."""
        if not change.is_ttl_delete:
            return True
        mode = self.planner.settings.ttl_deletes
        return bool(mode == "delete" or (mode == "archive" and change.old_image is not None))

    def _changes_in(self, event: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        """(document identity, change) for each record of ``event`` the core can key."""
        records = event.get("Records") if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            return []
        changes, _ = parse_records([r for r in records if isinstance(r, Mapping)])
        keyed = []
        for change in changes:
            try:
                document_id = self.planner.key_mapper.document_id(change.keys)
            except Exception:  # a key the core quarantines writes nothing
                continue
            keyed.append((identity(document_id), change))
        return keyed


def excuse(diff: Diff, keys: set[Any]) -> Diff:
    """``diff`` without the documents in ``keys`` (those whose newest write was rejected for
    good: the quarantine holds that record, the document cannot equal the table)."""
    if not keys:
        return diff
    return Diff(
        missing=[i for i in diff.missing if identity(i) not in keys],
        extra=[i for i in diff.extra if identity(i) not in keys],
        changed=[d for d in diff.changed if identity(d.document_id) not in keys],
        expected_count=diff.expected_count, actual_count=diff.actual_count,
    )


def unkept_rejections(log: FaultLog, quarantine: Any) -> list[str]:
    """Permanently rejected writes whose record is not in the quarantine: lost."""
    kept: set[str] = set()
    for document in quarantine.find({}, {"sequence_number": 1, "error": 1, "raw_record": 1}):
        kept.update(_kds_times(document.get("raw_record")))
        sequence = document.get("sequence_number")
        if isinstance(sequence, str):
            kept.add(pad_sequence_number(sequence))
        error = document.get("error")
        covered = error.get("covered_sequence_numbers") if isinstance(error, dict) else None
        for number in covered or ():
            if isinstance(number, str):
                kept.add(pad_sequence_number(number))
    lost = []
    with log.lock:
        rejected = list(log.rejected)
    for entry in rejected:
        sequence = entry.get("sequence")
        if isinstance(sequence, str) and sequence.startswith("K"):
            # A Kinesis change's order key (K<17-digit µs>.<digest>): kept when a quarantined
            # raw record is a change of that time.
            sequence = sequence.split(".")[0]
        if sequence is not None and sequence not in kept:
            lost.append("permanently rejected write not quarantined: "
                        + json.dumps({"sequence": sequence, "_id": repr(entry.get("_id"))}))
    return sorted(set(lost))


def _kds_times(raw_record: Any) -> set[str]:
    """``K<17-digit µs>`` of a quarantined Kinesis record's change (its order key's time part),
    read from the raw record's JSON; empty for anything else."""
    from harness.kinesis import change_of

    try:
        raw = json.loads(raw_record) if isinstance(raw_record, str) else raw_record
    except ValueError:
        return set()
    change = change_of(raw) if isinstance(raw, dict) else None
    body = change.get("dynamodb") if change else None
    if not isinstance(body, dict) or type(body.get("ApproximateCreationDateTime")) is not int:
        return set()
    scale = 1 if body.get("ApproximateCreationDateTimePrecision") == "MICROSECOND" else 1000
    return {f"K{body['ApproximateCreationDateTime'] * scale:017d}"}


def _rank(stored: str) -> str:
    """A stored sequence field as the check compares it: a DynamoDB sequence number padded; a
    Kinesis order key (``K<17-digit µs>.<digest>``, docs/kinesis.md) by its time alone -- two
    changes of one time are a tie the core decides by the item, not an order."""
    if stored.startswith("K"):
        return stored.split(".", 1)[0]
    return pad_sequence_number(stored)


def _rank_of(change: Any) -> str:
    """A change's place in that order: its Kinesis order key's time, else its sequence number."""
    order_key = getattr(change, "order_key", None)
    return _rank(order_key) if isinstance(order_key, str) else str(change.sort_key)
