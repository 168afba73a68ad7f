"""Faults of the main collection's bulk writes, the way a MongoDB deployment fails them.

- :class:`BulkWriteShim` gives a mongomock collection pymongo's ``bulk_write`` contract (a
  ``BulkWriteError`` with per-index write errors), so the replicator takes its real-MongoDB path and
  the fault wrapper below can sit in front of it.
- :class:`FaultyCollection` fails bulk writes: before anything is applied (connection reset, not
  primary), after k of n operations (a crash mid-batch), after an arbitrary subset (an unordered
  bulk cut off, then pymongo's retry or none), after all of them with a write concern error, with
  permanent per-document errors for some operations while the others apply, or with a failover
  rollback of some of the documents it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
from collections.abc import Sequence
from typing import Any

import bson
from pymongo.errors import AutoReconnect, BulkWriteError, NotPrimaryError, PyMongoError
from pymongo.operations import DeleteOne
from pymongo.results import BulkWriteResult

from harness.backends.mongomock_target import MongomockCollection, operation_parts
from harness.faults.plan import FaultLog, FaultPlan
from replicator.keys import identity
from replicator.settings import SEQUENCE_FIELD
from replicator.writes import guard_bound

#: Permanent per-document write errors (MongoDB error codes): DocumentValidationFailure, the
#: pre-4.2 "key too large to index" (17280, KeyTooLong) and BSONObjectTooLarge (10334).
PERMANENT_CODES = (121, 17280, 10334)


class BulkWriteShim(MongomockCollection):
    """A mongomock collection with pymongo's ``bulk_write`` contract: the harness's mongomock
    adapter (harness.backends.mongomock_target), named for what the fault wrappers need of it.
    Subclasses may override ``apply_one`` to fail chosen operations."""


class FaultyCollection:
    """Wraps a collection that has ``bulk_write``; fails some bulk writes per the plan.

    One draw of ``rng`` per bulk picks at most one of the per-bulk faults (their rates are
    consecutive slices of [0, 1)), so a plan without the newer kinds draws as it always did.
    """

    def __init__(self, collection: Any, plan: FaultPlan, log: FaultLog | None = None,
                 rng: random.Random | None = None, *,
                 sequence_field: str = SEQUENCE_FIELD) -> None:
        self.inner = collection
        self.plan = plan
        self.log = log or FaultLog()
        self.rng = rng or random.Random(plan.seed)
        self.sequence_field = sequence_field
        # A rollback reads before-images, writes, then restores: no other bulk may land in
        # between (it would be rolled back too, and its acknowledgement stand).
        self._serial = threading.Lock() if plan.rollback_rate else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: Sequence[Any], ordered: bool = True, **kwargs: Any) -> Any:
        with self._serial if self._serial is not None else contextlib.nullcontext():
            return self._bulk_write(list(requests), ordered, **kwargs)

    def _bulk_write(self, requests: list[Any], ordered: bool, **kwargs: Any) -> Any:
        roll = self.rng.random()
        plan = self.plan
        if roll < plan.transient_error_rate:
            self.log.count("transient_error")
            if self.rng.random() < 0.5:
                raise AutoReconnect("connection reset by peer (injected)")
            raise NotPrimaryError("not primary (injected)")
        roll -= plan.transient_error_rate
        if roll < plan.crash_mid_batch_rate and requests:
            self.log.count("crash_mid_batch")
            applied = self.rng.randrange(0, len(requests))
            for operation in requests[:applied]:
                # A stale write in the applied part fails alone, as on the server.
                with contextlib.suppress(PyMongoError):
                    _apply_single(self.inner, operation)
            raise AutoReconnect(f"connection lost after {applied} of {len(requests)} (injected)")
        roll -= plan.crash_mid_batch_rate
        if roll < plan.partial_bulk_rate and requests:
            return self._partial(requests, ordered, **kwargs)
        roll -= plan.partial_bulk_rate
        rolls_back = plan.write_concern_error_rate <= roll < (
            plan.write_concern_error_rate + plan.rollback_rate)
        before = self._before_images(requests) if rolls_back else {}
        result = self._apply(requests, ordered, **kwargs)
        if roll < plan.write_concern_error_rate:
            self.log.count("write_concern_error")
            raise BulkWriteError({"writeErrors": [], "writeConcernErrors": [
                {"code": 64, "errmsg": "waiting for replication timed out (injected)"}],
                "nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0,
                "upserted": []})
        if rolls_back:
            self._roll_back(before)
        return result

    # -- an unordered bulk cut off after an arbitrary subset -----------------------------------
    def _partial(self, requests: list[Any], ordered: bool, **kwargs: Any) -> Any:
        """An unordered bulk's operations may be applied in any order (MongoDB docs:
        "Bulk Write Operations", unordered), so a connection lost mid-bulk leaves any subset
        applied, not a prefix. Then either pymongo's retryable write sends the bulk again
        (its AutoReconnect is retried once) or the error reaches the replicator.

        The retry runs only what the first attempt did not: the server knows each statement of
        a retryable write by its session, transaction number and statement id, does not run an
        executed one again and answers with its first result (MongoDB docs: "Retryable
        Writes"). Running it again would answer an upsert that inserted with E11000 on its own
        document, which the core reads as a stale write, and skip the re-check it owes an
        insert (chaos seeds 419 and 815: a document deleted behind a held retry came back)."""
        chosen = [index for index in range(len(requests)) if self.rng.random() < 0.5]
        executed = {index: answer for index in chosen
                    if (answer := self._execute(requests[index])) is not None}
        if self.rng.random() < 0.5:
            self.log.count("partial_bulk:retried")
            return self._apply(requests, ordered, executed=executed, **kwargs)
        self.log.count("partial_bulk:dropped")
        raise AutoReconnect(
            f"connection lost after {len(chosen)} of {len(requests)}, a subset (injected)")

    def _execute(self, operation: Any) -> dict[str, Any] | None:
        """Run one statement of a bulk the way the server did before the connection was lost:
        its result (``bulk_api_result`` counts), or None when it failed (a stale write's
        E11000, or the permanent error the plan gives it -- a failed statement is not recorded
        as executed, so a retry runs it again)."""
        if self._poison(operation) is not None:
            return None
        try:
            answer = self.inner.bulk_write([operation], ordered=True)
        except PyMongoError:
            return None
        return dict(answer.bulk_api_result)

    # -- permanent per-document errors ---------------------------------------------------------
    def _apply(self, requests: list[Any], ordered: bool, *,
               executed: dict[int, dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """The bulk, with the operations the plan poisons failing alone (unordered semantics:
        the others apply), as a BulkWriteError with their index and a permanent code.
        ``executed``: the statements an interrupted first attempt ran, by index, with their
        results -- not run again, answered with those results (see _partial)."""
        executed = executed or {}
        poisoned = {index: code for index, op in enumerate(requests)
                    if (code := self._poison(op)) is not None and index not in executed}
        for index, operation in enumerate(requests):
            key = _key_of(operation)
            if key is not None:
                self.log.sent(key, self._sequence_of(operation), index in poisoned)
        if ordered:
            poisoned = {}  # only unordered bulks go on past a failed operation
        if not poisoned and not executed:
            return self.inner.bulk_write(requests, ordered=ordered, **kwargs)
        others = [index for index in range(len(requests))
                  if index not in poisoned and index not in executed]
        details: dict[str, Any] = {"nInserted": 0, "nUpserted": 0, "nMatched": 0,
                                   "nModified": 0, "nRemoved": 0, "upserted": [],
                                   "writeErrors": [], "writeConcernErrors": []}
        answers = [([index], answer) for index, answer in sorted(executed.items())]
        if others:
            try:
                answer = self.inner.bulk_write([requests[i] for i in others], ordered=ordered,
                                               **kwargs)
                answers.append((others, dict(answer.bulk_api_result)))
            except BulkWriteError as error:
                answers.append((others, dict(error.details)))
        for indexes, inner in answers:
            for name in ("nInserted", "nUpserted", "nMatched", "nModified", "nRemoved"):
                details[name] += inner.get(name, 0)
            details["upserted"] += [{**item, "index": indexes[item["index"]]}
                                    for item in inner.get("upserted", [])]
            details["writeErrors"] += [{**item, "index": indexes[item["index"]]}
                                       for item in inner.get("writeErrors", [])]
            details["writeConcernErrors"] += list(inner.get("writeConcernErrors", []))
        for index, code in poisoned.items():
            self.log.count(f"permanent_error:{code}")
            self.log.reject(_key_of(requests[index]), self._sequence_of(requests[index]))
            details["writeErrors"].append({"index": index, "code": code, "op": requests[index],
                                           "errmsg": f"code {code} (injected, permanent)"})
        details["writeErrors"].sort(key=lambda item: item["index"])
        details["upserted"].sort(key=lambda item: item["index"])
        if details["writeErrors"] or details["writeConcernErrors"]:
            raise BulkWriteError(details)
        return BulkWriteResult(details, True)

    def _poison(self, operation: Any) -> int | None:
        """The permanent error code of an operation, or None: decided by the operation's content
        and the seed, so a redelivered record meets the same error (a validator or a size
        limit does not pass with time)."""
        if not self.plan.permanent_error_rate or isinstance(operation, DeleteOne):
            return None  # a delete meets no validator and writes no key
        digest = hashlib.sha256(str(self.plan.seed).encode())
        for part in operation_parts(operation):
            with contextlib.suppress(Exception):
                digest.update(bson.encode(part))
        draw = int.from_bytes(digest.digest()[:8], "big")
        if (draw % 1_000_000) / 1_000_000 >= self.plan.permanent_error_rate:
            return None
        return PERMANENT_CODES[(draw >> 32) % len(PERMANENT_CODES)]

    def _sequence_of(self, operation: Any) -> str | None:
        """The (padded) sequence number an operation writes: the bound of the guard in its filter
        (writes.guard_bound), else its document's sequence field; None for an unguarded delete."""
        selector = getattr(operation, "_filter", None) or {}
        bound = guard_bound(selector, self.sequence_field)
        if bound is not None:
            return bound
        if isinstance(operation, DeleteOne):
            return None
        for part in list(operation_parts(operation))[1:]:
            value = part.get(self.sequence_field)
            if isinstance(value, str):
                return value
        return None

    # -- failover rollback ---------------------------------------------------------------------
    def _before_images(self, requests: list[Any]) -> dict[Any, tuple[Any, dict[str, Any] | None]]:
        ids = [op._filter["_id"] for op in requests if "_id" in (getattr(op, "_filter", {}) or {})]
        found = {identity(doc["_id"]): doc for doc in self.inner.find({"_id": {"$in": ids}})}
        return {identity(i): (i, found.get(identity(i))) for i in ids}

    def _roll_back(self, before: dict[Any, tuple[Any, dict[str, Any] | None]]) -> None:
        """A failover rolls back some of the documents the bulk just wrote, then the bulk's
        acknowledgement fails.

        With w:1 the primary acknowledges before any secondary has the write; if it steps down
        first, the new primary never had it and the old one rolls it back when it rejoins
        (MongoDB docs: "Rollbacks During Replica Set Failover"). A writer cannot tell such a
        write from a durable one -- no retry or redelivery would follow, and a document whose
        last write it was would stay old until its key changes again. What a writer can rely
        on is w:"majority": then an acknowledged write is never rolled back, and a write that
        may be rolled back is answered with an error (a stepdown's NotPrimary/connection error,
        or a write concern timeout). That is what this fault models: the documents go back to
        their before-images (deleted again when they did not exist) and the bulk raises
        NotPrimaryError, so the replicator reports the batch in batchItemFailures and the ESM
        emulation redelivers it, which converges. The rollback is logged before it happens, so
        the per-delivery check (harness.invariants) excuses exactly these documents.
        """
        with self.log.rollback_lock:
            self._revert(before)

    def _revert(self, before: dict[Any, tuple[Any, dict[str, Any] | None]]) -> None:
        changed = []
        for key, (document_id, old) in before.items():
            now = self.inner.find_one({"_id": document_id})
            if now != old:
                changed.append((key, document_id, old))
        if not changed:
            return
        chosen = [entry for entry in changed if self.rng.random() < 0.5] or [changed[0]]
        if self.log.observer is not None:
            self.log.observer([document_id for _, document_id, _ in changed])
        self.log.count("rollback")
        self.log.rolled_back([
            (key, None if old is None else old.get(self.sequence_field))
            for key, _, old in chosen])
        for _, document_id, old in chosen:
            if old is None:
                self.inner.delete_one({"_id": document_id})
            else:
                self.inner.replace_one({"_id": document_id}, old, upsert=True)
        raise NotPrimaryError(
            f"primary stepped down before replicating; {len(chosen)} document(s) rolled back "
            "(injected)")


def _key_of(operation: Any) -> Any:
    selector = getattr(operation, "_filter", None)
    if not isinstance(selector, dict) or "_id" not in selector:
        return None
    return identity(selector["_id"])


def _apply_single(collection: Any, operation: Any) -> None:
    if isinstance(collection, MongomockCollection):
        collection.apply_one(operation)
    else:
        collection.bulk_write([operation], ordered=True)
