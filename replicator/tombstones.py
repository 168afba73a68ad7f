"""Deletes remembered with their sequence number, so no document ever goes back in time.

The stale-write guard lives in each document, so it vanishes with a delete: an older change
delivered after the delete (a late retry, a backfill racing the stream, a replayed capture) would
bring the document back. A tombstone keeps ``{_id, seq, deleted_at}`` in a side collection, outside
the user's collection, for ``retention_s`` (a TTL index; default 48 h, above the stream's 24-hour
retention, after which no older record can arrive).

One extra round trip per batch: a single unordered bulk write on the tombstone collection that both
records this batch's deletes (``$max`` keeps the newest sequence number) and *probes* for this
batch's upserts (an update without upsert that matches only a tombstone newer than the upsert and
changes nothing). When no probe matched -- the normal case -- every upsert is clear. Only when a
probe matched, i.e. when an older change really is arriving after a newer delete, a second trip reads
which tombstones block which upserts. Tombstones are written before the deletes they stand for, so a
crash in between leaves a tombstone and the document, never a gap.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.operations import DeleteOne, UpdateOne

from replicator.apply import is_mongomock
from replicator.events import pad_sequence_number
from replicator.plan import PlannedWrite

SEQUENCE = "seq"
DELETED_AT = "deleted_at"
DEFAULT_RETENTION_S = 48 * 3600


@dataclass
class TombstoneOutcome:
    #: main-collection writes that may go ahead
    clear: list[PlannedWrite] = field(default_factory=list)
    #: upserts older than a remembered delete: skipped, like any stale write
    blocked: list[PlannedWrite] = field(default_factory=list)
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    round_trips: int = 0


class TombstoneStore:
    def __init__(self, collection: Any, retention_s: int = DEFAULT_RETENTION_S) -> None:
        self.collection = collection
        self.retention_s = retention_s
        self._indexed = False
        self._lock = threading.Lock()

    def guard(self, writes: Sequence[PlannedWrite]) -> TombstoneOutcome:
        """Record the deletes among ``writes`` and hold back upserts older than a tombstone."""
        outcome = TombstoneOutcome()
        if not writes:
            return outcome
        self._ensure_index()
        now = datetime.now(timezone.utc)
        deletes = [w for w in writes if isinstance(w.operation, DeleteOne)]
        upserts = [w for w in writes if not isinstance(w.operation, DeleteOne)]
        operations = [
            UpdateOne(
                {"_id": _document_id(w)},
                {"$max": {SEQUENCE: _sequence(w)}, "$set": {DELETED_AT: now}},
                upsert=True,
            )
            for w in deletes
        ] + [
            UpdateOne({"_id": _document_id(w), SEQUENCE: {"$gt": _sequence(w)}},
                      {"$max": {SEQUENCE: _sequence(w)}})
            for w in upserts
        ]
        try:
            probes_matched, failed_at = self._send(operations, len(deletes))
        except PyMongoError as error:
            why = f"tombstones: {type(error).__name__}: {error}"
            outcome.failed.extend((w, why) for w in writes)
            outcome.round_trips = 1
            return outcome
        outcome.round_trips = 1
        ordered = deletes + upserts
        for index, why in failed_at.items():
            outcome.failed.append((ordered[index], f"tombstones: {why}"))
        failed = {id(ordered[i]) for i in failed_at}
        candidates = [w for w in upserts if id(w) not in failed]
        blocked_ids: set[Any] = set()
        if probes_matched:
            outcome.round_trips += 1
            blocked_ids = self._blocking(candidates)
        for planned in deletes:
            if id(planned) not in failed:
                outcome.clear.append(planned)
        for planned in candidates:
            (outcome.blocked if id(planned) in blocked_ids else outcome.clear).append(planned)
        return outcome

    def _send(self, operations: list[UpdateOne], deletes: int) -> tuple[bool, dict[int, str]]:
        """Run the operations; return (did any probe possibly match, failures by index)."""
        if is_mongomock(self.collection):
            # mongomock's bulk_write is broken with current pymongo (see apply.py): one by one.
            # Each failure is reported at its index, as apply.py's one-by-one path does (mongomock
            # raises TypeError on some _id types, e.g. an unhashable Decimal128).
            matched = False
            failed_at: dict[int, str] = {}
            for index, operation in enumerate(operations):
                try:
                    result = self.collection.update_one(
                        operation._filter, operation._doc, upsert=operation._upsert
                    )
                except (PyMongoError, ValueError, TypeError, NotImplementedError) as error:
                    failed_at[index] = f"{type(error).__name__}: {error}"
                    continue
                if index >= deletes and result.matched_count:
                    matched = True
            return matched, failed_at
        try:
            result = self.collection.bulk_write(operations, ordered=False)
        except BulkWriteError as error:
            failed_at = {e["index"]: f"code {e.get('code')}: {e.get('errmsg', '')}"
                         for e in error.details.get("writeErrors", [])}
            # Which probe matched is unknown after a partial failure: read to be sure.
            return len(operations) > deletes, failed_at
        delete_matches = deletes - result.upserted_count
        return result.matched_count - delete_matches > 0, {}

    def _blocking(self, upserts: list[PlannedWrite]) -> set[int]:
        ids = [_document_id(w) for w in upserts]
        found = {}
        for tombstone in self.collection.find({"_id": {"$in": ids}}):
            found[_key(tombstone["_id"])] = tombstone.get(SEQUENCE, "")
        return {id(w) for w in upserts
                if found.get(_key(_document_id(w)), "") > _sequence(w)}

    def _ensure_index(self) -> None:
        with self._lock:
            if not self._indexed:
                self.collection.create_index(DELETED_AT, expireAfterSeconds=self.retention_s)
                self._indexed = True


def _document_id(planned: PlannedWrite) -> Any:
    return planned.operation._filter["_id"]


def _sequence(planned: PlannedWrite) -> str:
    return pad_sequence_number(planned.sequence_numbers[-1])


def _key(document_id: Any) -> Any:
    from replicator.keys import identity

    return identity(document_id)
