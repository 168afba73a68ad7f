"""The only place that writes a plan to MongoDB: one ``bulk_write`` per collection and batch.

Server errors are mapped back to the planned writes by their index in the bulk (as pymongo's own
``bulk_shared`` does), so the caller learns exactly which sequence numbers did not land.

A write that moves a document to another shard key value (``PlannedWrite.shard_key_move``) is not
part of the bulk: where the server runs transactions (a replica set member or mongos, asked once
per client with ``hello``) it runs in its own session and transaction; elsewhere (standalone,
mongomock) its single write with the old shard key in the filter is sent alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from replicator.plan import PlannedWrite, same_shard_values, shard_values

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
# Escape for $-prefixed top-level names on a target that cannot store them (mongomock); see
# escape_field_name. FULLWIDTH DOLLAR SIGN, never produced by the replicator otherwise.
DOLLAR_ESCAPE = "\uff04"


@dataclass
class WriteResult:
    """What happened to each planned write."""

    applied: list[PlannedWrite] = field(default_factory=list)
    #: a newer version was already there (stale-write guard): nothing to do, not a failure
    stale: list[PlannedWrite] = field(default_factory=list)
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    round_trips: int = 0


def write(
    collection: Any, writes: Sequence[PlannedWrite], *, transactions: bool | None = None
) -> WriteResult:
    """Send ``writes`` (all for ``collection``) in one unordered bulk write; classify results.

    Shard key moves go apart (see the module doc). ``transactions``: whether the target runs
    transactions; None asks the server (only when a move is in ``writes``).
    """
    moves = [w for w in writes if w.shard_key_move is not None]
    if not moves:
        return _bulk_write(collection, writes)
    if transactions is None:
        transactions = supports_transactions(collection)
    if transactions:
        result = _bulk_write(collection, [w for w in writes if w.shard_key_move is None])
        for planned in moves:
            _move_in_transaction(collection, planned, result)
        return result
    # One request per write that changes a shard key value: MongoDB moves at most one document to
    # another shard per bulk, and only in a retryable write (pymongo's default) or a transaction.
    # A move from an unknown value filters on _id alone and changes no shard key value: it stays.
    alone = [w for w in moves if w.shard_key_move is not None and w.shard_key_move.old is not None]
    apart = {id(w) for w in alone}
    result = _bulk_write(collection, [w for w in writes if id(w) not in apart])
    for planned in alone:
        _merge(result, _bulk_write(collection, [planned]))
    return result


def _bulk_write(collection: Any, writes: Sequence[PlannedWrite]) -> WriteResult:
    result = WriteResult()
    if not writes:
        return result
    if is_mongomock(collection):
        return _write_one_by_one(collection, writes)
    operations = [w.operation for w in writes]
    result.round_trips = 1
    try:
        # Unordered: the plan holds one write per _id, so no write depends on another, and one
        # failure must not hold back the others.
        collection.bulk_write(operations, ordered=False)
    except BulkWriteError as error:
        failed_at: dict[int, str] = {}
        for item in error.details.get("writeErrors", []):
            failed_at[item["index"]] = _describe(item)
        concern = error.details.get("writeConcernErrors") or []
        for index, planned in enumerate(writes):
            if index in failed_at:
                item = next(e for e in error.details["writeErrors"] if e["index"] == index)
                if _is_stale(planned, item.get("code"), item.get("keyPattern")):
                    result.stale.append(planned)
                else:
                    result.failed.append((planned, failed_at[index]))
            elif concern:
                # Applied but not acknowledged with the asked write concern: retry (safe, guarded).
                result.failed.append((planned, f"write concern error: {concern[0].get('errmsg')}"))
            else:
                result.applied.append(planned)
        return result
    except PyMongoError as error:
        message = f"{type(error).__name__}: {error}"
        result.failed.extend((planned, message) for planned in writes)
        return result
    result.applied.extend(writes)
    return result


def _merge(into: WriteResult, other: WriteResult) -> None:
    into.applied.extend(other.applied)
    into.stale.extend(other.stale)
    into.failed.extend(other.failed)
    into.round_trips += other.round_trips


# -- transactions ------------------------------------------------------------------------------
_TRANSACTIONS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def supports_transactions(collection: Any) -> bool:
    """True on a replica set member or a mongos (``hello`` has ``setName``, or ``msg`` is
    ``"isdbgrid"``); False on a standalone and on mongomock (no sessions). Asked once per client;
    a failed ask is not remembered."""
    if is_mongomock(collection):
        return False
    client = collection.database.client
    try:
        return _TRANSACTIONS[client]
    except (KeyError, TypeError):
        pass
    try:
        try:
            hello = client.admin.command("hello")
        except OperationFailure:  # servers before 4.4.2 know only isMaster
            hello = client.admin.command("isMaster")
    except PyMongoError as error:
        log.warning("cannot tell whether the target runs transactions (%s): assuming not",
                    type(error).__name__)
        return False
    answer = "setName" in hello or hello.get("msg") == "isdbgrid"
    with contextlib.suppress(TypeError):  # not weakly referenceable: ask again next time
        _TRANSACTIONS[client] = answer
    return answer


def _move_in_transaction(collection: Any, planned: PlannedWrite, result: WriteResult) -> None:
    """Run a shard key move as one transaction (see plan.ShardKeyMove); classify the outcome."""
    move = planned.shard_key_move
    assert move is not None
    projection = dict.fromkeys((*move.shard_key, move.sequence_field), 1)
    round_trips = [0]

    def body(session: Any) -> bool:
        round_trips[0] += 1
        copies = list(collection.find({"_id": move.document_id}, projection, session=session))
        if move.sequence is not None and any(
            _holds_newer(copy, move.sequence_field, move.sequence) for copy in copies
        ):
            return False  # stale: a newer version is stored; write nothing
        for copy in copies:
            values = shard_values(copy, move.shard_key)
            if not same_shard_values(values, move.new):
                round_trips[0] += 1
                collection.delete_one({"_id": move.document_id, **values}, session=session)
        round_trips[0] += 2  # the write, then the commit
        collection.bulk_write([move.write], ordered=True, session=session)
        return True

    try:
        with collection.database.client.start_session() as session:
            landed = session.with_transaction(
                body,
                read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
            )
    except BulkWriteError as error:
        item = (error.details.get("writeErrors") or [{}])[0]
        if _is_stale(planned, item.get("code"), item.get("keyPattern")):
            result.stale.append(planned)
        else:
            result.failed.append((planned, f"shard key move: {_describe(item)}"))
    except PyMongoError as error:
        result.failed.append((planned, f"shard key move: {type(error).__name__}: {error}"))
    else:
        (result.applied if landed else result.stale).append(planned)
    result.round_trips += round_trips[0]


def _holds_newer(copy: Mapping[str, Any], field_name: str, sequence: str) -> bool:
    """The guard's negation: the stored copy has a sequence field not below ``sequence``."""
    if field_name not in copy:
        return False
    stored = copy[field_name]
    return not (isinstance(stored, str) and stored < sequence)


def _is_stale(planned: PlannedWrite, code: Any, key_pattern: Any) -> bool:
    if code != DUPLICATE_KEY or not isinstance(planned.operation, (ReplaceOne, UpdateOne)):
        return False
    guarded = "$or" in (planned.operation._filter or {})
    return guarded and (key_pattern is None or dict(key_pattern) == {"_id": 1})


def _describe(item: Mapping[str, Any]) -> str:
    return f"code {item.get('code')}: {item.get('errmsg', '')}"


# -- mongomock ---------------------------------------------------------------------------------
# mongomock 4.3's bulk_write breaks with pymongo >= 4.11 (its add_update() rejects the new `sort`
# argument), and we do not hold the production pymongo back for a mock. So on mongomock the plan's
# operations are applied one by one with the semantics of an unordered bulk write: every operation
# is tried, and each failure is reported at its index. A lock makes each write atomic against the
# harness's parallel batches, as a server would.
_MONGOMOCK_LOCK = threading.RLock()


def is_mongomock(collection: Any) -> bool:
    return type(collection).__module__.startswith("mongomock")


def _write_one_by_one(collection: Any, writes: Sequence[PlannedWrite]) -> WriteResult:
    result = WriteResult(round_trips=len(writes))
    for planned in writes:
        operation = planned.operation
        try:
            with _MONGOMOCK_LOCK:
                _apply_on_mongomock(collection, operation)
        except DuplicateKeyError as error:
            if _is_stale(planned, error.code, (error.details or {}).get("keyPattern")):
                result.stale.append(planned)
            else:
                result.failed.append((planned, f"{type(error).__name__}: {error}"))
        except (PyMongoError, ValueError, TypeError, NotImplementedError) as error:
            result.failed.append((planned, f"{type(error).__name__}: {error}"))
        else:
            result.applied.append(planned)
    return result


def _apply_on_mongomock(collection: Any, operation: Any) -> None:
    selector = operation._filter
    if isinstance(operation, ReplaceOne):
        # Escaped too, so that a stored name that merely starts with the escape reads back right.
        collection.replace_one(selector, escape_document(operation._doc), upsert=operation._upsert)
    elif isinstance(operation, DeleteOne):
        collection.delete_one(selector)
    elif isinstance(operation, UpdateOne):
        document = _literal_replacement(operation._doc)
        if document is None:
            collection.update_one(selector, operation._doc, upsert=operation._upsert)
            return
        # mongomock implements neither $replaceWith nor $-prefixed top-level names at all, so
        # this is the one place a target truly cannot store the names: escape them, reversibly
        # (unescape_document), and say so.
        escaped = escape_document(document)
        log.warning(
            "mongomock cannot store $-prefixed top-level field names; stored %s as %s",
            sorted(k for k in document if k.startswith("$")),
            sorted(k for k in escaped if k.startswith(DOLLAR_ESCAPE)),
        )
        collection.replace_one(selector, escaped, upsert=operation._upsert)
    else:  # pragma: no cover - the planner makes no other operation
        raise TypeError(f"unexpected operation {operation!r}")


def _literal_replacement(update: Any) -> dict[str, Any] | None:
    """The document of ``[{"$replaceWith": {"$literal": doc}}]``, the planner's only pipeline."""
    if isinstance(update, list) and len(update) == 1:
        stage = update[0].get("$replaceWith") if isinstance(update[0], Mapping) else None
        if isinstance(stage, Mapping) and set(stage) == {"$literal"}:
            return dict(stage["$literal"])
    return None


def escape_field_name(name: str) -> str:
    """``$x`` -> ``＄x``; a name already starting with ``＄`` gets one more, so it reverses."""
    if name.startswith("$") or name.startswith(DOLLAR_ESCAPE):
        return DOLLAR_ESCAPE + name[1:] if name.startswith("$") else DOLLAR_ESCAPE + name
    return name


def unescape_field_name(name: str) -> str:
    if not name.startswith(DOLLAR_ESCAPE):
        return name
    rest = name[1:]
    return rest if rest.startswith(DOLLAR_ESCAPE) else "$" + rest


def escape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {escape_field_name(k): v for k, v in document.items()}


def unescape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {unescape_field_name(k): v for k, v in document.items()}
