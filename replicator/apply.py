"""The only place that writes a plan to MongoDB: one ``bulk_write`` per collection and batch.

Every planned write ends in exactly one of four lists of :class:`WriteResult` (the table of
error codes behind the choice, and its sources, is docs/write-errors.md):

- ``applied``: it landed (``inserted`` also lists the upserts that created their document);
- ``stale``: a newer version is stored (the guard refused it, shown by reading the stored
  sequence number back: an E11000 alone is no proof);
- ``failed``: a transient problem (network, not primary, write concern, a duplicate key race):
  the caller reports it in ``batchItemFailures`` and Lambda redelivers it;
- ``rejected``: it can never be applied (an unencodable document, a validator, a unique
  secondary index, a too large document, ...): the caller quarantines its record.

Server errors are mapped back to the planned writes by their index in the bulk (as pymongo's own
``bulk_shared`` does). Nothing here raises for a write's sake.

A write that moves a document to another shard key value (``PlannedWrite.shard_key_move``) is not
part of the bulk: where the server runs transactions (a replica set member or mongos, asked once
per client with ``hello``) it runs in its own session and transaction; elsewhere (a standalone)
its single write with the old shard key in the filter is sent alone.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.errors import BSONError
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.results import BulkWriteResult
from pymongo.write_concern import WriteConcern

from replicator.events import order_relation
from replicator.keys import identity
from replicator.operations import operation, operations, write_parts
from replicator.settings import SEQUENCE_FIELD
from replicator.sharding import same_shard_values, shard_values
from replicator.writes import PlannedWrite, merge_pipeline, mongodb_only

log = logging.getLogger(__name__)


#: 11000 and its legacy forms (pymongo's helpers_shared raises DuplicateKeyError for all three)
DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})

#: Per-write server errors worth retrying; any other code is permanent (docs/write-errors.md).
#: pymongo's own list (pymongo/helpers_shared.py ``_RETRYABLE_ERROR_CODES``: the "not primary",
#: "node is recovering" and network codes of the retryable writes spec), plus the MongoDB codes
#: of conditions that pass with time: MaxTimeMSExpired, WriteConcernFailed, LockTimeout, LockBusy,
#: WriteConflict.
TRANSIENT_CODES = frozenset({
    # pymongo _NOT_PRIMARY_CODES (incl. _SHUTDOWN_CODES)
    10058, 10107, 13435, 11602, 13436, 189, 11600, 91,
    # pymongo _RETRYABLE_ERROR_CODES additions
    7, 6, 89, 9001, 262, 134,
    # MongoDB error codes (src/mongo/base/error_codes.yml) that pass with time
    50,  # MaxTimeMSExpired
    64,  # WriteConcernFailed
    24,  # LockTimeout
    46,  # LockBusy
    112,  # WriteConflict
})

#: What pymongo/bson raise while encoding a command, before (part of) it is sent: NUL in a name
#: (InvalidDocument), a lone surrogate (UnicodeEncodeError), an int beyond int64 (OverflowError),
#: a cycle or absurd depth (RecursionError), an unencodable type (InvalidDocument/TypeError).
ENCODING_ERRORS: tuple[type[BaseException], ...] = (
    BSONError, UnicodeError, OverflowError, RecursionError, ValueError, TypeError,
)


@dataclass(frozen=True)
class Rejection:
    """Why a write can never be applied: a server ``code`` when there is one, the document path
    of the offending value when known (``""`` otherwise)."""

    reason: str
    code: int | None = None
    field_path: str = ""
    #: "encoding" (refused by the client), "constraint" (a unique secondary index) or "server"
    kind: str = "server"


@dataclass
class WriteResult:
    """What happened to each planned write."""

    applied: list[PlannedWrite] = field(default_factory=list)
    #: a newer version was already there (stale-write guard): nothing to do, not a failure
    stale: list[PlannedWrite] = field(default_factory=list)
    #: transient: retry (batchItemFailures)
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    #: permanent: quarantine the record the write stands for
    rejected: list[tuple[PlannedWrite, Rejection]] = field(default_factory=list)
    #: the applied upserts that inserted a new document (a subset of ``applied``)
    inserted: list[PlannedWrite] = field(default_factory=list)
    #: the stale writes whose document holds their very sequence number (a subset of
    #: ``stale``): a redelivery, or a retried bulk that had landed -- not a newer version
    already: list[PlannedWrite] = field(default_factory=list)
    round_trips: int = 0


def write(
    collection: Any,
    writes: Sequence[PlannedWrite],
    *,
    transactions: bool | None = None,
    sequence_field: str = SEQUENCE_FIELD,
    native: Any = None,
) -> WriteResult:
    """Send ``writes`` (all for ``collection``) in one unordered bulk write; classify results.

    Shard key moves go apart (see the module doc). ``transactions``: whether the target runs
    transactions; None asks the server (only when a move is in ``writes``). ``sequence_field``:
    where documents keep their sequence number, read back to tell a stale write from a race.
    ``native``: the C accelerator that builds the pymongo operations (the Replicator's), or None.
    """
    moves = [w for w in writes if w.shard_key_move is not None]
    if not moves:
        return _bulk_write(collection, writes, sequence_field, native)
    if transactions is None:
        transactions = supports_transactions(collection)
    if transactions:
        result = _bulk_write(
            collection, [w for w in writes if w.shard_key_move is None], sequence_field, native
        )
        for planned in moves:
            _move_in_transaction(collection, planned, result)
        return result
    # One request per write that changes a shard key value: MongoDB moves at most one document to
    # another shard per bulk, and only in a retryable write (pymongo's default) or a transaction.
    # A move from an unknown value filters on _id alone and changes no shard key value: it stays.
    alone = [w for w in moves if w.shard_key_move is not None and w.shard_key_move.old is not None]
    apart = {id(w) for w in alone}
    rest = [w for w in writes if id(w) not in apart]
    result = _bulk_write(collection, rest, sequence_field, native)
    for planned in alone:
        _merge(result, _bulk_write(collection, [planned], sequence_field, native))
    return result


def _bulk_write(
    collection: Any, writes: Sequence[PlannedWrite], sequence_field: str, native: Any = None
) -> WriteResult:
    result = WriteResult()
    if not writes:
        return result
    try:
        # Unordered: the plan holds one write per _id, so no write depends on another, and one
        # failure must not hold back the others.
        answer = collection.bulk_write(operations(writes, native), ordered=False)
    except BulkWriteError as error:
        result.round_trips = 1
        _classify_bulk_error(collection, writes, error, sequence_field, result)
        return result
    except PyMongoError as error:
        # The whole command failed (network, server selection, not primary, a command-level
        # OperationFailure, the batch's deadline -- ExecutionTimeout/NetworkTimeout, see
        # replicator/deadline.py): nothing is known to have landed, and every write is guarded.
        result.round_trips = 1
        message = f"{type(error).__name__}: {error}"
        result.failed.extend((planned, message) for planned in writes)
        return result
    except ENCODING_ERRORS as error:
        return _isolate_unencodable(collection, writes, error, sequence_field, native)
    result.round_trips = 1
    result.applied.extend(writes)
    if type(answer) is BulkWriteResult and answer.acknowledged:
        # What its upserted_ids property reads, without the {index: _id} dict it builds (issue
        # 21: ~500 instructions per event of a 100-record batch with the dict and its sort).
        raw = answer.bulk_api_result
        indexes = sorted([item["index"] for item in raw["upserted"]]) if raw else []
    else:  # another client's result, or an unacknowledged one: its property decides
        indexes = sorted(getattr(answer, "upserted_ids", None) or {})
    if indexes:
        count = len(writes)
        result.inserted.extend([writes[index] for index in indexes if index < count])
    return result


def _isolate_unencodable(
    collection: Any, writes: Sequence[PlannedWrite], error: BaseException, sequence_field: str,
    native: Any = None,
) -> WriteResult:
    """pymongo refused to encode the bulk (it raises before sending the command it was building):
    find the writes that cannot be encoded, reject them, send the rest.

    Each operation is encoded on its own with bson (no I/O). When that finds none (an error only
    the whole command shows), the bulk is halved and each half sent, down to single writes: a
    single write that still cannot be encoded is rejected. Resending writes that may have gone
    out with an earlier message of the same bulk is safe: every write is guarded and idempotent.
    """
    result = WriteResult()
    bad = {}
    for index, planned in enumerate(writes):
        rejection = encoding_problem(write_parts(planned))
        if rejection is not None:
            bad[index] = rejection
    if bad:
        for index, rejection in bad.items():
            result.rejected.append((writes[index], rejection))
        _merge(result, _bulk_write(
            collection, [w for i, w in enumerate(writes) if i not in bad], sequence_field, native))
        return result
    if len(writes) == 1:
        result.rejected.append((writes[0], Rejection(
            f"{type(error).__name__}: {error}", field_path="", kind="encoding")))
        return result
    middle = len(writes) // 2
    _merge(result, _bulk_write(collection, writes[:middle], sequence_field, native))
    _merge(result, _bulk_write(collection, writes[middle:], sequence_field, native))
    return result


def _classify_bulk_error(
    collection: Any,
    writes: Sequence[PlannedWrite],
    error: BulkWriteError,
    sequence_field: str,
    result: WriteResult,
) -> None:
    details = error.details or {}
    by_index = {item.get("index"): item for item in details.get("writeErrors") or []}
    concern = details.get("writeConcernErrors") or []
    upserted = {item.get("index") for item in details.get("upserted") or []}
    # A label on the whole error makes every write error in it retryable (retryable writes spec).
    retryable = error.has_error_label("RetryableWriteError")
    duplicates: list[tuple[PlannedWrite, Mapping[str, Any]]] = []
    for index, planned in enumerate(writes):
        item = by_index.get(index)
        if item is None:
            if concern:
                # Applied but not acknowledged with the asked write concern: retry (safe, guarded).
                result.failed.append((planned, f"write concern error: {_describe(concern[0])}"))
            else:
                result.applied.append(planned)
                if index in upserted:
                    result.inserted.append(planned)
            continue
        kind = classify(item, retryable=retryable)
        if kind == "duplicate":
            duplicates.append((planned, item))
        elif kind == "constraint":
            result.rejected.append((planned, Rejection(
                f"unique index {dict(item.get('keyPattern') or {})} refused the write "
                f"(keyValue {dict(item.get('keyValue') or {})}): {_describe(item)}",
                code=item.get("code"), kind="constraint")))
        elif kind == "transient":
            result.failed.append((planned, _describe(item)))
        else:
            result.rejected.append((planned, Rejection(_describe(item), code=item.get("code"))))
    if duplicates:
        result.round_trips += 1
        _settle_duplicates(collection, duplicates, sequence_field, result)


def classify(item: Mapping[str, Any], *, retryable: bool = False) -> str:
    """One write error (a ``writeErrors`` entry) -> "duplicate" (E11000 on ``_id`` or on an
    unnamed index: read back to decide), "constraint" (E11000 on a unique secondary index),
    "transient" or "permanent". See docs/write-errors.md."""
    code = item.get("code")
    if code in DUPLICATE_KEY_CODES:
        pattern = item.get("keyPattern")
        if pattern is None or dict(pattern) == {"_id": 1}:
            return "duplicate"
        return "constraint"
    if retryable or code is None or code in TRANSIENT_CODES:
        # No code at all: nothing says the write can never succeed; retry rather than drop.
        return "transient"
    labels = item.get("errorLabels") or ()
    if "RetryableWriteError" in labels:
        return "transient"
    return "permanent"


def _settle_duplicates(
    collection: Any,
    duplicates: list[tuple[PlannedWrite, Mapping[str, Any]]],
    sequence_field: str,
    result: WriteResult,
) -> None:
    """E11000 on ``_id`` is no proof that a newer version is stored: an upsert racing an insert
    of the same ``_id`` (SERVER-14322) or an orphan left by a chunk migration give it too. Read
    the stored sequence numbers of those ``_id``s (one find): at least ours -> stale; absent or
    older -> a race -> retry, where the guard decides again."""
    ids = [planned.document_id for planned, _ in duplicates]
    try:
        stored = {
            identity(document["_id"]): document.get(sequence_field)
            for document in collection.find({"_id": {"$in": ids}}, {sequence_field: 1})
        }
    except PyMongoError as error:
        why = f"duplicate key, and reading back the stored version failed: {error}"
        result.failed.extend((planned, why) for planned, _ in duplicates)
        return
    for planned, item in duplicates:
        held = stored.get(identity(planned.document_id))
        relation = order_relation(held, _sequence(planned))
        if relation == "newer" or relation == "same":
            result.stale.append(planned)
            if relation == "same":
                result.already.append(planned)
        elif relation == "other-source":
            result.rejected.append((planned, Rejection(
                f"the document holds a Kinesis order key ({held}), which a DynamoDB Streams "
                "sequence number cannot be ordered against: this collection was switched to "
                "Kinesis Data Streams; switch back as docs/kinesis.md (\"Switching\") says",
                kind="source")))
        else:  # older, or a Kinesis tie of the same time landed meanwhile: decided on retry
            result.failed.append((planned, f"duplicate key while no newer version is stored "
                                           f"(a concurrent insert; retried): {_describe(item)}"))


def _merge(into: WriteResult, other: WriteResult) -> None:
    into.applied.extend(other.applied)
    into.stale.extend(other.stale)
    into.failed.extend(other.failed)
    into.rejected.extend(other.rejected)
    into.inserted.extend(other.inserted)
    into.already.extend(other.already)
    into.round_trips += other.round_trips


# -- encoding ----------------------------------------------------------------------------------
def encoding_problem(parts: Iterable[Mapping[str, Any]]) -> Rejection | None:
    """Encode each document as pymongo would; a Rejection naming the offending value's path when
    one cannot be encoded, else None."""
    for part in parts:
        try:
            bson.encode(part)
        except ENCODING_ERRORS as error:
            return Rejection(f"{type(error).__name__}: {error}", field_path=_bad_path(part),
                             kind="encoding")
    return None


_INT64 = (-(2**63), 2**63 - 1)


def _bad_path(value: Any, path: str = "", depth: int = 0) -> str:
    """The dotted path of the first value or name bson cannot encode ("" when none is found)."""
    if depth > 200:
        return path
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or "\x00" in key or not _encodable_text(key):
                return here.encode("utf-8", "backslashreplace").decode()
            found = _bad_path(item, here, depth + 1)
            if found:
                return found
        return ""
    if isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            found = _bad_path(item, f"{path}.{number}" if path else str(number), depth + 1)
            if found:
                return found
        return ""
    if isinstance(value, str):
        return "" if _encodable_text(value) else path
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return "" if _INT64[0] <= value <= _INT64[1] else path
    try:
        bson.encode({"": value})
    except ENCODING_ERRORS:
        return path
    return ""


def _encodable_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- transactions ------------------------------------------------------------------------------
_TRANSACTIONS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def supports_transactions(collection: Any) -> bool:
    """True on a replica set member or a mongos (``hello`` has ``setName``, or ``msg`` is
    ``"isdbgrid"``); False on a standalone. Asked once per client; a failed ask is not
    remembered."""
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
    """Run a shard key move as one transaction (see writes.ShardKeyMove); classify the outcome."""
    move = planned.shard_key_move
    assert move is not None
    # write_mode="merge" reads whole copies: the MongoDB-only fields of a deleted copy move along.
    projection = (None if move.fields_field is not None
                  else dict.fromkeys((*move.shard_key, move.sequence_field), 1))
    round_trips = [0]

    def body(session: Any) -> bool:
        round_trips[0] += 1
        copies = list(collection.find({"_id": move.document_id}, projection, session=session))
        if move.sequence is not None and any(
            _holds_newer(copy, move.sequence_field, move.sequence) for copy in copies
        ):
            return False  # stale: a newer version is stored; write nothing
        carried: dict[str, Any] = {}
        for copy in copies:
            values = shard_values(copy, move.shard_key)
            if not same_shard_values(values, move.new):
                if move.fields_field is not None:
                    carried.update(mongodb_only(copy, move.fields_field, (move.sequence_field,)))
                round_trips[0] += 1
                collection.delete_one({"_id": move.document_id, **values}, session=session)
        write = move.write
        if carried:
            assert isinstance(write.document, list), "merge mode writes a pipeline"
            literal = write.document[0]["$replaceWith"]["$mergeObjects"][-1]["$literal"]
            write = PlannedWrite.update(write.filter, merge_pipeline(
                literal, move.fields_field or "", carried), write.sequence_numbers)
        round_trips[0] += 2  # the write, then the commit
        collection.bulk_write([operation(write)], ordered=True, session=session)
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
        kind = classify(item, retryable=error.has_error_label("RetryableWriteError"))
        if kind in ("duplicate", "transient"):
            # The transaction read no newer copy, so a duplicate key is a race: retry.
            result.failed.append((planned, f"shard key move: {_describe(item)}"))
        else:
            result.rejected.append((planned, Rejection(
                f"shard key move: {_describe(item)}", code=item.get("code"),
                kind="constraint" if kind == "constraint" else "server")))
    except PyMongoError as error:
        result.failed.append((planned, f"shard key move: {type(error).__name__}: {error}"))
    except ENCODING_ERRORS as error:
        rejection = encoding_problem(write_parts(move.write)) or Rejection(
            f"{type(error).__name__}: {error}", kind="encoding")
        result.rejected.append((planned, rejection))
    else:
        (result.applied if landed else result.stale).append(planned)
    result.round_trips += round_trips[0]


def _holds_newer(copy: Mapping[str, Any], field_name: str, sequence: str) -> bool:
    """The guard's negation: the stored copy has a sequence field not below ``sequence``."""
    if field_name not in copy:
        return False
    stored = copy[field_name]
    return not (isinstance(stored, str) and stored < sequence)


def _sequence(planned: PlannedWrite) -> str:
    return planned.order  # the padded sequence number, or a Kinesis change's order key


def _describe(item: Mapping[str, Any]) -> str:
    return f"code {item.get('code')}: {item.get('errmsg', '')}"
