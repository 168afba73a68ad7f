"""Deletes remembered with their sequence number, so no document ever goes back in time.

The stale-write guard lives in each document, so it vanishes with a delete: an older change
delivered after the delete (a late retry, a backfill racing the stream, a replayed capture) would
bring the document back. A tombstone keeps ``{_id, seq, deleted_at}`` in a side collection, outside
the user's collection, for ``retention_s`` (a TTL index; default 48 h, above the stream's 24-hour
retention, after which no older record can arrive).

One extra round trip per batch: a single unordered bulk write on the tombstone collection that both
records this batch's deletes (``$max`` keeps the newest sequence number) and *probes* for this
batch's upserts (one update, without upsert, that matches every tombstone newer than one of the
upserts -- those of their ``_id``s newer than the oldest upsert -- and changes nothing: see
``_probe``). When it matched nothing -- the normal case -- every upsert is clear. Only when it
matched, i.e. when an older change may be arriving after a newer delete, a second trip reads which
tombstones block which upserts. Tombstones are written before the
deletes they stand for, so a crash in between leaves a tombstone and the document, never a gap.

The probe and the upsert are two round trips, so a delete of the same ``_id`` can land between
them (two deliveries of one key in flight). The Replicator closes that window after the main
write with :meth:`TombstoneStore.newer_than` on the upserts that *inserted* a document (see
core.Replicator._undo_resurrections).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from pymongo.operations import UpdateMany, UpdateOne

from replicator.apply import ENCODING_ERRORS, Rejection, classify, encoding_problem
from replicator.writes import PlannedWrite

SEQUENCE = "seq"
DELETED_AT = "deleted_at"
DEFAULT_RETENTION_S = 48 * 3600

log = logging.getLogger(__name__)
#: createIndex on an existing index with other options: IndexOptionsConflict (85), or
#: IndexKeySpecsConflict (86) when the name is the same (MongoDB error codes)
INDEX_CONFLICTS = frozenset({85, 86})


@dataclass
class TombstoneOutcome:
    #: main-collection writes that may go ahead
    clear: list[PlannedWrite] = field(default_factory=list)
    #: upserts older than a remembered delete: skipped, like any stale write
    blocked: list[PlannedWrite] = field(default_factory=list)
    #: the sequence number of the tombstone that blocked each of ``blocked`` (by position)
    blocked_by: list[str] = field(default_factory=list)
    #: transient: retry (batchItemFailures)
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    #: permanent: the tombstone can never be written (quarantine the record)
    rejected: list[tuple[PlannedWrite, Rejection]] = field(default_factory=list)
    round_trips: int = 0


class TombstoneStore:
    def __init__(self, collection: Any, retention_s: int = DEFAULT_RETENTION_S) -> None:
        self.collection = collection
        self.retention_s = retention_s
        self._indexed = False
        self._lock = threading.Lock()

    def guard(self, writes: Sequence[PlannedWrite], native: Any = None) -> TombstoneOutcome:
        """Record the deletes among ``writes`` and hold back upserts older than a tombstone.

        Never raises for the server's sake: an unreachable server fails every write (retried),
        a tombstone that can never be written rejects its write (quarantined). ``native``: the C
        accelerator (the Replicator's), which builds the markers and the probe where it can --
        the same operations as :func:`_operations` (tests/replicator/test_speedups.py)."""
        outcome = TombstoneOutcome()
        if not writes:
            return outcome
        try:
            outcome.round_trips += self._ensure_index()
        except PyMongoError as error:
            why = f"tombstones: index: {type(error).__name__}: {error}"
            outcome.failed.extend((w, why) for w in writes)
            return outcome
        # Naive UTC: pymongo encodes a naive datetime as UTC, so the BSON date is the same as the
        # aware one's, at half the encoding cost (bson calls an aware one's utcoffset(); issue 21:
        # ~3,000 instructions per marker).
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        # (the C builder declines a batch holding a Kinesis change's order key: None)
        built = (native.tombstone_operations(writes, now, SEQUENCE, DELETED_AT)
                 if native is not None and type(writes) is list else None)
        deletes, upserts, operations = built if built is not None else _operations(writes, now)
        ordered = deletes + upserts
        try:
            probes_matched, problems = self._send(operations, len(deletes))
        except PyMongoError as error:
            why = f"tombstones: {type(error).__name__}: {error}"
            outcome.failed.extend((w, why) for w in ordered)
            outcome.round_trips += 1
            return outcome
        except ENCODING_ERRORS as error:
            # pymongo refused to encode the bulk, before sending it: set apart the writes whose
            # _id bson cannot encode (rejected), send the others.
            keep = []
            for planned in ordered:
                rejection = encoding_problem([{"_id": planned.document_id}])
                if rejection is None:
                    keep.append(planned)
                else:
                    outcome.rejected.append((planned, Rejection(
                        f"tombstones: {rejection.reason}", field_path=rejection.field_path,
                        kind="encoding")))
            if len(keep) == len(ordered):  # not one op alone: nothing to tell them apart by
                why = f"tombstones: {type(error).__name__}: {error}"
                outcome.failed.extend((w, why) for w in ordered)
                return outcome
            rest = self.guard(keep, native)
            outcome.clear.extend(rest.clear)
            outcome.blocked.extend(rest.blocked)
            outcome.blocked_by.extend(rest.blocked_by)
            outcome.failed.extend(rest.failed)
            outcome.rejected.extend(rest.rejected)
            outcome.round_trips += rest.round_trips
            return outcome
        outcome.round_trips += 1
        if not problems and not probes_matched:  # the common case: every write clear, in order
            outcome.clear = ordered
            return outcome
        for index, (transient, why, code) in problems.items():
            if index >= len(deletes):
                # The one probe for every upsert failed: nothing is known of any of them, and
                # _send said "read to be sure" (newer_than below decides, or fails them all).
                continue
            if transient:
                outcome.failed.append((ordered[index], f"tombstones: {why}"))
            else:
                outcome.rejected.append((ordered[index], Rejection(f"tombstones: {why}", code=code)))
        failed = {id(ordered[i]) for i in problems if i < len(deletes)}
        candidates = [w for w in upserts if id(w) not in failed]
        blocked_ids: dict[int, str] = {}
        if probes_matched and candidates:
            outcome.round_trips += 1
            try:
                blocked_ids = {id(w): held for w, held in self.newer_than(candidates)}
            except PyMongoError as error:
                why = f"tombstones: {type(error).__name__}: {error}"
                outcome.failed.extend((w, why) for w in candidates)
                candidates = []
        for planned in deletes:
            if id(planned) not in failed:
                outcome.clear.append(planned)
        for planned in candidates:
            if id(planned) in blocked_ids:
                outcome.blocked.append(planned)
                outcome.blocked_by.append(blocked_ids[id(planned)])
            else:
                outcome.clear.append(planned)
        return outcome

    def _send(
        self, operations: list[Any], deletes: int
    ) -> tuple[bool, dict[int, tuple[bool, str, int | None]]]:
        """Run the operations; return (did any probe possibly match, problems by index:
        (transient?, why, code))."""
        try:
            result = self.collection.bulk_write(operations, ordered=False)
        except BulkWriteError as error:
            retryable = error.has_error_label("RetryableWriteError")
            problems: dict[int, tuple[bool, str, int | None]] = {}
            for item in error.details.get("writeErrors", []):
                kind = classify(item, retryable=retryable)
                # A duplicate key on a tombstone upsert is a race with another writer's upsert
                # of the same _id (SERVER-14322): retry, $max makes it idempotent.
                problems[item["index"]] = (
                    kind in ("transient", "duplicate"),
                    f"code {item.get('code')}: {item.get('errmsg', '')}",
                    item.get("code"),
                )
            if error.details.get("writeConcernErrors"):
                for index in range(len(operations)):
                    problems.setdefault(index, (True, "write concern error", None))
            # Which probe matched is unknown after a partial failure: read to be sure.
            return len(operations) > deletes, problems
        delete_matches = deletes - result.upserted_count
        return result.matched_count - delete_matches > 0, {}

    def newer_than(self, upserts: Sequence[PlannedWrite]) -> list[tuple[PlannedWrite, str]]:
        """The upserts (by their filter's ``_id``) that a newer tombstone stands against, with the
        tombstone's sequence number: one find. Raises PyMongoError (the caller decides)."""
        if not upserts:
            return []
        ids = [w.filter["_id"] for w in upserts]  # w.document_id without a frame per write
        found = {}
        for tombstone in self.collection.find({"_id": {"$in": ids}}, {SEQUENCE: 1}):
            found[_key(tombstone["_id"])] = tombstone.get(SEQUENCE, "")
        if not found:  # the common case: no delete of these _ids is remembered
            return []
        newer = []
        for planned in upserts:
            held = found.get(_key(planned.document_id), "")
            # (not the tombstone the table decided this write is newer than: replicator.ties)
            if isinstance(held, str) and held > _sequence(planned) and (
                    held != planned.decided_over):
                newer.append((planned, held))
        return newer

    def _ensure_index(self) -> int:
        """The TTL index on ``deleted_at`` with this store's retention; its round trips.

        A retention changed since the index was made is set with ``collMod``: ``createIndex``
        with other options on an existing index fails with IndexOptionsConflict (85) (MongoDB
        docs: "TTL Indexes", "Change the expireAfterSeconds value"). Raises PyMongoError."""
        with self._lock:
            if self._indexed:
                return 0
            trips = 1
            existing = None
            for spec in self.collection.index_information().values():
                if list(spec.get("key", [])) == [(DELETED_AT, 1)]:
                    existing = spec
            if existing is None:
                trips += 1
                try:
                    self.collection.create_index(DELETED_AT, expireAfterSeconds=self.retention_s)
                except OperationFailure as error:
                    if error.code not in INDEX_CONFLICTS:
                        raise
                    trips += 1  # made meanwhile by another writer with another retention
                    self._set_retention()
            elif existing.get("expireAfterSeconds") != self.retention_s:
                trips += 1
                self._set_retention()
            self._indexed = True
            return trips

    def _set_retention(self) -> None:
        try:
            self.collection.database.command(
                "collMod", self.collection.name,
                index={"keyPattern": {DELETED_AT: 1}, "expireAfterSeconds": self.retention_s},
            )
        except OperationFailure as error:
            if error.timeout:  # out of time (the batch's deadline), not refused: retried
                raise
            # Refused for good (no collMod on this target, not authorized): the index keeps its
            # retention, which was checked to cover the stream's 24 hours when it was set, so
            # tombstones still work. Say so rather than stop replicating.
            log.warning("cannot change the tombstone TTL to %ss (collMod: %s); the index keeps "
                        "its retention", self.retention_s, error)


def _operations(writes: Sequence[PlannedWrite], now: datetime
                ) -> tuple[list[PlannedWrite], list[PlannedWrite], list[Any]]:
    """``writes`` split into deletes and upserts (each in order), and the one bulk's operations:
    a marker per delete (``$max`` keeps the newest sequence number, and the latest deletion
    time, which the TTL index counts from), then the probe (:func:`_probe`) when there are
    upserts. One ``$max`` of both fields rather than ``$max`` of the sequence and ``$set`` of the
    time (issue 21: ~1,700 instructions less per marker in pymongo and bson); the time is
    ``now`` unless another writer's clock stamped a later one, which only keeps the tombstone
    that much longer."""
    deletes: list[PlannedWrite] = []
    upserts: list[PlannedWrite] = []
    for planned in writes:
        (deletes if planned.kind == "delete" else upserts).append(planned)
    operations: list[Any] = [
        UpdateOne(
            {"_id": w.document_id},
            {"$max": {SEQUENCE: _sequence(w), DELETED_AT: now}},
            upsert=True,
        )
        for w in deletes
    ]
    if upserts:
        operations.append(_probe(upserts))
    return deletes, upserts, operations


def _probe(upserts: Sequence[PlannedWrite]) -> UpdateMany:
    """ONE update that matches every tombstone newer than one of ``upserts`` and changes nothing
    (``$max`` with "", below every sequence number): when its ``nMatched`` is 0, no upsert is
    blocked. It matches the tombstones of the upserts' ``_id``s newer than the OLDEST upsert: a
    superset of the blocking ones (a tombstone newer than its own upsert is newer than the
    oldest), so it never misses one; a tombstone between the oldest upsert and its own (a delete
    of a later batch, racing) matches too, and only costs the exact read that follows a match
    (:meth:`TombstoneStore.newer_than`). One ``$in`` list instead of an ``$or`` clause of three
    documents per upsert (issue #21: those clauses were 5 % of the Lambda path's instructions;
    issue #10 had replaced one UpdateOne per upsert with the ``$or``)."""
    return UpdateMany(
        {"_id": {"$in": [w.filter["_id"] for w in upserts]},
         SEQUENCE: {"$gt": min(w.order for w in upserts)}},
        {"$max": {SEQUENCE: ""}},
    )


def _sequence(planned: PlannedWrite) -> str:
    # The padded sequence number, or a Kinesis change's order key (a tombstone of one is
    # K<time>.-: "-" sorts below every digest, so a same-time upsert is not blocked here; the
    # Replicator decides such ties before writing, replicator.ties)
    return planned.order


def _key(document_id: Any) -> Any:
    from replicator.keys import identity

    return identity(document_id)
