"""Helpers of the poller tests: tables, scans, convergence, counting and crashing wrappers."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymongo.operations import DeleteOne

from harness.backends.base import Table, TableSpec
from harness.convergence import check
from harness.faults import BulkWriteShim
from harness.lane import scan_items
from replicator.keys import identity
from replicator.plan import Planner
from replicator.poller.checkpoints import CheckpointStore
from replicator.settings import Settings
from replicator.writes import guard_bound


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    return scan_items(client, table)


def diff(source: Any, table: Table, collection: Any) -> Any:
    """The convergence check: the table's consistent scan against the collection."""
    planner = Planner(Settings(key_schema=table.spec.key_schema))
    return check(scan(source.dynamodb(), table.spec.name), collection, planner)


def make_table(source: Any, name: str, *, sort: bool = False) -> Table:
    spec = TableSpec(name, ("pk", "S"), ("sk", "N") if sort else None)
    return source.create_table(spec)


class CountingStreams:
    """A streams client that counts the records GetRecords delivered (and can fail on demand)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.records = 0
        self.sequences: list[str] = []
        self.before_get_records: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_records(self, **request: Any) -> Any:
        if self.before_get_records is not None:
            self.before_get_records()
        page = self.inner.get_records(**request)
        self.records += len(page.get("Records", []))
        self.sequences.extend(r["dynamodb"]["SequenceNumber"] for r in page.get("Records", []))
        return page


class SimulatedCrash(BaseException):
    """The process dies here (a BaseException: nothing in the poller may catch it)."""


class Crasher:
    """Seeded decisions to crash at named points of the poller's work."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.enabled = True
        self.crashes: dict[str, int] = {}

    def maybe(self, site: str) -> None:
        if self.enabled and self.rng.random() < self.rate:
            self.crashes[site] = self.crashes.get(site, 0) + 1
            raise SimulatedCrash(site)


class CrashingCollection:
    """``bulk_write`` that may die before the write, after k of n operations, or after the write
    but before the poller could checkpoint it. ``observe`` runs after every write."""

    def __init__(self, inner: BulkWriteShim, crasher: Crasher,
                 observe: Callable[[list[Any]], None]) -> None:
        self.inner = inner
        self.crasher = crasher
        self.observe = observe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: Any, ordered: bool = True, **kwargs: Any) -> Any:
        requests = list(requests)
        self.crasher.maybe("before the write")
        if self.crasher.enabled and requests and self.crasher.rng.random() < self.crasher.rate:
            applied = self.crasher.rng.randrange(0, len(requests))
            for operation in requests[:applied]:
                with contextlib.suppress(Exception):  # a stale write there fails alone
                    self.inner.apply_one(operation)
            self.observe(requests[:applied])
            self.crasher.crashes["mid-bulk"] = self.crasher.crashes.get("mid-bulk", 0) + 1
            raise SimulatedCrash(f"mid-bulk after {applied} of {len(requests)}")
        try:
            result = self.inner.bulk_write(requests, ordered=ordered, **kwargs)
        finally:
            self.observe(requests)
        self.crasher.maybe("after the write, before the checkpoint")
        return result


class CrashingCheckpoints(CheckpointStore):
    def __init__(self, collection: Any, crasher: Crasher, **options: Any) -> None:
        super().__init__(collection, **options)
        self.crasher = crasher

    def save(self, *args: Any, **kwargs: Any) -> bool:
        self.crasher.maybe("before the checkpoint")
        saved = super().save(*args, **kwargs)
        self.crasher.maybe("after the checkpoint")
        return saved


class CrashingStreams(CountingStreams):
    def __init__(self, inner: Any, crasher: Crasher) -> None:
        super().__init__(inner)
        self.before_get_records = lambda: crasher.maybe("GetRecords")


class RegressionWatch:
    """Remembers the highest sequence number each _id ever had (its document, or its tombstone
    once the document is gone) and records a regression when a document shows a lower one."""

    def __init__(self, collection: Any, tombstones: Any, sequence_field: str = "_ddb_seq") -> None:
        self.collection = collection
        self.tombstones = tombstones
        self.sequence_field = sequence_field
        self.highest: dict[Any, str] = {}
        self.regressions: list[str] = []
        self.observations = 0
        self._lock = threading.Lock()

    def observe(self, operations: Sequence[Any] = ()) -> None:
        """Look at the collection (after ``operations`` were sent to it)."""
        with self._lock:
            self.observations += 1
            present = set()
            for document in self.collection.find({}, {self.sequence_field: 1}):
                key = identity(document["_id"])
                present.add(key)
                sequence = document.get(self.sequence_field, "")
                before = self.highest.get(key)
                if before is not None and sequence < before:
                    self.regressions.append(f"{document['_id']!r}: {before} -> {sequence}")
                if before is None or sequence > before:
                    self.highest[key] = sequence
            # A tombstone counts once its document is gone (it is written before the delete, so
            # a crash in between leaves both: the document has not gone back in time then).
            for tombstone in self.tombstones.find({}):
                key = identity(tombstone["_id"])
                if key in present:
                    continue
                sequence = tombstone.get("seq", "")
                if sequence > self.highest.get(key, ""):
                    self.highest[key] = sequence
            # A delete sent for a document that is gone now: the document was deleted at that
            # sequence number (the bound of the guard in the filter), whether or not tombstones are on.
            for operation in operations:
                if not isinstance(operation, DeleteOne):
                    continue
                selector = operation._filter
                key = identity(selector.get("_id"))
                bound = _lower_bound(selector, self.sequence_field)
                if key not in present and isinstance(bound, str) and bound > self.highest.get(key, ""):
                    self.highest[key] = bound


def _lower_bound(selector: Mapping[str, Any], field_name: str) -> str | None:
    """The sequence number of the guard of a filter (writes.guard_bound)."""
    return guard_bound(selector, field_name)
