"""The planner's own values: what to write, and which records each write stands for (pure).

A :class:`PlannedWrite` says what one MongoDB write does in MongoDB's terms (a replacement, an
update or a delete, its filter and document, whether it upserts) without being a pymongo object:
the core reads its values, and only :func:`replicator.operations.operation` turns it into the pymongo
operation ``bulk_write`` sends. The C accelerator's ``plan_records`` builds the same objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from replicator.events import BadRecord, Change, pad_sequence_number

#: MongoDB's write kinds the planner uses: replaceOne, updateOne (an update document or a
#: pipeline), deleteOne
WriteKind = Literal["replace", "update", "delete"]
CollectionRole = Literal["main", "archive"]
#: a replacement document, an update document, or an aggregation pipeline (a list of stages)
WriteDocument = dict[str, Any] | list[dict[str, Any]] | None


@dataclass(frozen=True)
class ShardKeyMove:
    """A write that moves its document to another shard key value (:mod:`replicator.sharding`
    finds the values; it lives here because a PlannedWrite carries it and it carries one).

    MongoDB changes a document's shard key value only in a retryable write or a transaction, with
    the full OLD shard key in the filter (MongoDB docs: "Change a Document's Shard Key Value").
    The PlannedWrite itself is that single write (old shard key + guard, upsert);
    apply.py sends it alone where the target has no transactions. Where it has them (replica set,
    sharded cluster) apply.py runs the move as one transaction instead: read every stored copy of
    ``document_id``; if one is at least as new as ``sequence`` the change is stale; otherwise
    delete each copy that is not at the ``new`` shard key value (by its full shard key) and run
    ``write`` (new shard key + guard, upsert). Reading first also finds a copy stored at a value
    no image mentions, which a blind upsert would duplicate on another shard.

    ``old`` is None when the stored value is unknown (the oldest change of the batch has no old
    image); the single write then filters on ``_id`` and the guard only, which is right on an
    unsharded target, the only kind without transactions.
    """

    document_id: Any
    shard_key: tuple[str, ...]
    old: dict[str, Any] | None
    new: dict[str, Any]
    write: PlannedWrite
    sequence_field: str
    #: the change's padded sequence number; None when the stale-write guard is off
    sequence: str | None
    #: write_mode="merge": the field listing each copy's table fields (Settings.FIELDS_FIELD); the
    #: transaction then carries the MongoDB-only fields of each copy it deletes into ``write``
    #: (merge_pipeline's ``carried``). None: replace mode, nothing to carry.
    fields_field: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """One write and the sequence numbers of every record it stands for (ascending).

    Slotted (no ``__dict__``): the C planner fills and reads the slots directly (issue 21: a
    ``__dict__`` per write cost ~1,000 instructions per event to copy, fill and free)."""

    kind: WriteKind
    filter: dict[str, Any]
    #: the replacement (replace), the update document or pipeline (update); None for a delete
    document: WriteDocument
    upsert: bool
    sequence_numbers: tuple[str, ...]
    collection: CollectionRole = "main"
    #: set when the write changes the document's shard key value (see ShardKeyMove)
    shard_key_move: ShardKeyMove | None = None
    #: a Kinesis change's order key (events.kds_order_key), which the document / tombstone holds;
    #: None: the order is the padded last of ``sequence_numbers`` (DynamoDB Streams; what the C
    #: planner sets).
    order_key: str | None = None
    #: a stored Kinesis order key the table decided this write is newer than (replicator.ties:
    #: a tie -- mixed precisions -- against a tombstone of a later time inside a MILLISECOND
    #: change's millisecond): that tombstone does not block it (TombstoneStore.newer_than)
    decided_over: str | None = None

    @property
    def order(self) -> str:
        """What the document's sequence field holds once this write lands (and a tombstone of it)."""
        return self.order_key or pad_sequence_number(self.sequence_numbers[-1])

    @property
    def document_id(self) -> Any:
        """The ``_id`` the write is for (every filter the planner builds names it)."""
        return self.filter["_id"]

    @classmethod
    def replace(cls, filter: dict[str, Any], document: dict[str, Any],
                sequence_numbers: tuple[str, ...], **where: Any) -> PlannedWrite:
        """An upserting replaceOne."""
        return cls("replace", filter, document, True, sequence_numbers, **where)

    @classmethod
    def update(cls, filter: dict[str, Any], update: dict[str, Any] | list[dict[str, Any]],
               sequence_numbers: tuple[str, ...], *, upsert: bool = True,
               **where: Any) -> PlannedWrite:
        """An updateOne: operators, or a pipeline."""
        return cls("update", filter, update, upsert, sequence_numbers, **where)

    @classmethod
    def delete(cls, filter: dict[str, Any], sequence_numbers: tuple[str, ...],
               **where: Any) -> PlannedWrite:
        """A deleteOne."""
        return cls("delete", filter, None, False, sequence_numbers, **where)


def main_write(kind: WriteKind, filter: dict[str, Any], document: WriteDocument,
               sequence_numbers: tuple[str, ...], order_key: str | None = None) -> PlannedWrite:
    """A write of the main collection without a shard key move (the planner's common case)."""
    return PlannedWrite(kind, filter, document, kind != "delete", sequence_numbers, "main", None,
                        order_key)


def guard_condition(sequence: str) -> dict[str, Any]:
    """The stale-write guard's condition on the sequence field (a filter holds it as
    ``{field: guard_condition(ours)}``): the stored value is not a string at or above ``ours``.

    It matches a document without the field, and one whose field holds null, a number or any
    other non-string (MongoDB's type bracketing: ``$gte`` with a string operand matches strings
    only), which :func:`replicator.events.order_relation` calls older. Issue 21: it replaced
    ``$or: [{field: {$lt: ours}}, {field: {$exists: false}}]``, which cost ~4,400 instructions
    per event more to build, encode and free, and which refused a non-string value: the upsert
    then hit E11000, the read-back called the stored value older, and the write was retried for
    ever. One difference remains on arrays (MongoDB compares their elements): an array holding a
    string at or above ours is not overwritten (before: any element below ours was enough); the
    replicator never stores an array there. The C planner builds the same dicts."""
    return {"$not": {"$gte": sequence}}


def guard_bound(filter: Mapping[str, Any], field_name: str) -> str | None:
    """The sequence number a filter's guard compares with (``ours`` of :func:`guard_condition`),
    at its top level or in a clause of its ``$or`` (a tie's compare-and-set, replicator.ties);
    None when the filter has no guard on ``field_name``."""
    clauses = filter.get("$or")
    for clause in (filter, *(clauses if isinstance(clauses, list) else ())):
        condition = clause.get(field_name) if isinstance(clause, dict) else None
        negated = condition.get("$not") if isinstance(condition, dict) else None
        if isinstance(negated, dict) and isinstance(negated.get("$gte"), str):
            return str(negated["$gte"])
    return None


def merge_pipeline(document: dict[str, Any], fields_field: str,
                   carried: dict[str, Any] | None = None, *,
                   removed: tuple[str, str] | None = None,
                   inserted: tuple[str, str, str] | None = None) -> list[dict[str, Any]]:
    """write_mode="merge": the update pipeline that makes the stored document ``document`` plus
    the stored fields the table never wrote, in one write that reads nothing first.

    ``document`` lists its table fields in ``fields_field``. The pipeline keeps every stored field
    that the stored ``fields_field`` does not list (a document without one, or whose one is not
    an array: every field, so switching from replace mode removes nothing), then sets
    ``document`` over them: a listed field that ``document`` lacks is removed, a field MongoDB
    applications added stays. ``carried``:
    fields to keep from elsewhere (a shard key move's deleted copy), under the stored ones.
    ``removed``: (sequence field, padded sequence number of a REMOVE coalesced into this write):
    a stored document older than that REMOVE keeps nothing, as if the delete had run first.
    ``inserted``: (sequence field, above, below) of an INSERT the write starts from (the change
    itself or one coalesced into it): a stored document whose sequence field lies strictly between
    ``above`` and ``below`` was written by a change older than the INSERT, so about an earlier item
    of that key, and keeps nothing (DynamoDB emits an INSERT only for an item that did not exist
    just before it: docs/write-modes.md, "An INSERT starts a new item"). A document without the
    field, or at or below ``above`` (a copy's "0", another source's keys) keeps its fields.

    ``$objectToArray`` / ``$arrayToObject`` and ``$literal`` handle any field name, ``$``-prefixed
    or dotted, as replace mode's ``$replaceWith`` does (MongoDB 5.0+; pipelines in updates need
    4.2+). On an upsert ``$$ROOT`` is the document the filter's equalities make (``_id``, any
    shard key), which ``document`` overwrites. ``$not`` is avoided (``$eq: [false, ...]``): the
    embedded target (mongoeco) lacks it.
    """
    kept: dict[str, Any] = {"$arrayToObject": {"$filter": {
        "input": {"$objectToArray": "$$ROOT"},
        "as": "field",
        "cond": {"$eq": [False, {"$in": [
            # not an array (another application overwrote the list): nothing known to be the
            # table's, every field kept, as without one; $in would refuse it (code 40081) and
            # every later change of the item would be quarantined
            "$$field.k", {"$cond": [{"$isArray": "$" + fields_field}, "$" + fields_field, []]}]}]},
    }}}
    if removed is not None:
        sequence_field, sequence = removed
        # a missing sequence field sorts before any string: such a document is older too
        kept = {"$cond": [{"$lt": ["$" + sequence_field, sequence]}, {"$literal": {}}, kept]}
    if inserted is not None:
        sequence_field, above, below = inserted
        # ($gt on a missing field is false: a document no change wrote is kept)
        kept = {"$cond": [{"$and": [{"$gt": ["$" + sequence_field, above]},
                                    {"$lt": ["$" + sequence_field, below]}]},
                          {"$literal": {}}, kept]}
    parts: list[Any] = [kept, {"$literal": document}]
    if carried:
        parts.insert(0, {"$literal": carried})
    return [{"$replaceWith": {"$mergeObjects": parts}}]


def mongodb_only(stored: dict[str, Any], fields_field: str,
                 reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a stored document the table never wrote (write_mode="merge"): not listed in
    its ``fields_field``, not ``_id``, ``fields_field`` or ``reserved`` (the sequence field)."""
    listed = stored.get(fields_field)
    owned = {n for n in listed if isinstance(n, str)} if isinstance(listed, list) else set()
    skip = {"_id", fields_field, *reserved}
    return {k: v for k, v in stored.items()
            if k not in skip and k not in owned}


@dataclass
class WritePlan:
    writes: list[PlannedWrite] = field(default_factory=list)
    #: records that can never be applied (malformed, unconvertible, failed transform)
    bad_records: list[BadRecord] = field(default_factory=list)
    #: changes held back behind a failing record (bad_records="fail"); Lambda redelivers them
    deferred: list[Change] = field(default_factory=list)
    #: Kinesis changes of one item and time whose order nothing in the batch tells
    #: (docs/kinesis.md, "Equal timestamps"): the Replicator decides them (replicator.ties)
    ties: list[Tie] = field(default_factory=list)
    #: the parsed changes of a Kinesis batch (replicator.ties reads their keys and images); []
    #: for DynamoDB Streams batches
    changes: list[Change] = field(default_factory=list)
    #: a plan the C planner made of a whole batch (every record in exactly one write, every write
    #: for the main collection): the batch figures read in the same pass, ``(first, last,
    #: highest, plain)`` -- the lowest and highest SequenceNumber as the batch summary picks them,
    #: the highest ApproximateCreationDateTime in epoch seconds (None: no record has one) and
    #: whether that covers every record's time (False: a datetime, which it does not compare);
    #: None for any other plan. Not part of a plan's equality (the same plan either way).
    native_figures: tuple[Any, Any, Any, bool] | None = field(default=None, compare=False)

    @property
    def main_writes(self) -> list[PlannedWrite]:
        return [w for w in self.writes if w.collection == "main"]

    @property
    def archive_writes(self) -> list[PlannedWrite]:
        return [w for w in self.writes if w.collection == "archive"]


@dataclass
class Tie:
    """Changes of one ``_id`` with the same ApproximateCreationDateTime, each a candidate for the
    newest, with the writes it would make (``[]``: it writes nothing, e.g. a TTL delete kept by
    ttl_deletes="ignore"). ``stored``: the order key of the stored document or tombstone of that
    time it ties with, when the tie is with what is stored (None: within the batch)."""

    document_id: Any
    candidates: list[tuple[Change, list[PlannedWrite]]]
    stored: str | None = None
