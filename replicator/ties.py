"""Kinesis changes of one item with the same creation time: duplicates dropped, ties decided.

Kinesis Data Streams for DynamoDB has no sequence number: records may arrive out of order and more
than once, and ``ApproximateCreationDateTime`` gives the order (AWS Developer Guide, "Using Kinesis
Data Streams to capture changes to DynamoDB"). The planner orders a batch by it; changes of one
item and time leaving different states are a tie it hands over (plan.kds_ordered). Nor can the
batch know what is stored: a document (or tombstone) written by another change of the same
time. Its order key (events.kds_order_key) holds the time and the digest of the state it wrote,
so, before writing, one read of the batch's ``_id``s (documents and tombstones) tells:

- stored time newer: the write is stale (the guard refuses it anyway: sent as is);
- stored time older, or nothing stored: written, guarded on the time;
- same time, same state: a duplicate, nothing to write (counted stale, "already");
- same time, another state: a **tie**. An image chain is no proof of order (a cycle A->B->A at
  one time reads both ways, and a change of that time may be in another batch), so only the
  table can tell: with an
  item reader (read-back, ``REPLICATOR_READ_BACK_TABLE``) the item is read (consistent read) and the
  candidate whose state is the item's current state is written, conditioned on the stored key it
  was decided against; when no candidate is the current state, the table has moved on and the
  change that made that state is still to come (it carries that state, and is then written), so
  the candidates are superseded. Without an item reader each candidate's record is quarantined
  with the fix in its error (never guessed).

One writer per item at a time is assumed (a Kinesis event source mapping delivers one partition
key's records one batch at a time); a same-time write landing between the read and the write is
caught by the guard and retried (apply: a tie is never taken as stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pymongo.errors import PyMongoError

from replicator.errors import RecordError, UnsupportedRecordError
from replicator.events import BadRecord, Change, image_digest, order_relation
from replicator.keys import identity
from replicator.readback import ItemReader
from replicator.writes import PlannedWrite, Tie, WritePlan, guard_bound

TOMBSTONE_SEQUENCE = "seq"  # tombstones.SEQUENCE (tombstones imports apply; this stays light)


@dataclass
class TieOutcome:
    #: the writes stood for by duplicates and superseded candidates (not sent)
    stale: int = 0
    already: int = 0
    #: candidates of ties no item reader could decide: quarantined
    bad: list[BadRecord] = field(default_factory=list)
    #: writes that could not be decided now (a read failed): retried
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    round_trips: int = 0


def settle(plan: WritePlan, collection: Any, tombstones: Any, reader: ItemReader | None,
           sequence_field: str) -> TieOutcome:
    """Rewrite ``plan.writes`` for a Kinesis batch as the module doc says; what was not sent is
    in the outcome. ``tombstones``: the tombstone collection, or None."""
    outcome = TieOutcome()
    main = [w for w in plan.main_writes if w.order_key is not None]
    ties = list(plan.ties)
    plan.ties = []
    if not main and not ties:
        return outcome
    ids = [w.document_id for w in main] + [t.document_id for t in ties]
    try:
        stored = _stored(collection, tombstones, ids, sequence_field, outcome)
    except PyMongoError as error:
        why = f"reading the stored order keys: {type(error).__name__}: {error}"
        outcome.failed.extend((w, why) for w in plan.writes)
        outcome.failed.extend((w, why) for t in ties for _, ws in t.candidates for w in ws)
        plan.writes = []
        return outcome
    by_sequence = {c.sequence_number: c for c in plan.changes}
    drop: set[tuple[str, ...]] = set()
    for planned in main:
        held = stored.get(identity(planned.document_id))
        written = by_sequence.get(planned.sequence_numbers[-1])
        relation = order_relation(held, planned.order,
                                  written.order_span if written is not None else 1)
        if relation == "same" and planned.kind == "delete":
            # The key may be the tombstone's, written ahead of a delete that never landed (a
            # bulk cut off after the tombstone): send the delete again. Its guard filter makes
            # it a no-op when the document is already gone or newer.
            continue
        if relation == "same":
            drop.add(planned.sequence_numbers)
            outcome.stale += 1
            outcome.already += 1
        elif relation == "tie":
            change = by_sequence.get(planned.sequence_numbers[-1])
            assert change is not None, "a Kinesis write stands for a change of the batch"
            drop.add(planned.sequence_numbers)
            companions = [w for w in plan.writes if w.sequence_numbers == planned.sequence_numbers]
            ties.append(Tie(planned.document_id, [(change, companions)], held))
    plan.writes = [w for w in plan.writes if w.sequence_numbers not in drop]
    pending: list[Tie] = []
    for tie in ties:
        held = stored.get(identity(tie.document_id))
        # (the candidates are of one time, or -- mixed precisions -- MILLISECOND ones whose
        # millisecond holds the others' time: each is compared with its own span)
        relations = {order_relation(held, c.order_key or "", c.order_span)
                     for c, _ in tie.candidates} if held is not None else {"older"}
        if relations == {"newer"}:  # every candidate is older than what is stored
            outcome.stale += 1
            continue
        if relations & {"same", "tie"}:
            tie.stored = held
        pending.append(tie)
    if pending:
        _decide(pending, plan, reader, sequence_field, outcome)
    return outcome


def _stored(collection: Any, tombstones: Any, ids: list[Any], sequence_field: str,
            outcome: TieOutcome) -> dict[Any, str]:
    """The newest stored order key of each ``_id``: the document's, or the tombstone's when newer
    (a deleted document's state is the tombstone). Raises PyMongoError."""
    found: dict[Any, str] = {}
    outcome.round_trips += 1
    for document in collection.find({"_id": {"$in": ids}}, {sequence_field: 1}):
        held = document.get(sequence_field)
        if isinstance(held, str):
            found[identity(document["_id"])] = held
    if tombstones is not None:
        outcome.round_trips += 1
        for tombstone in tombstones.find({"_id": {"$in": ids}}, {TOMBSTONE_SEQUENCE: 1}):
            held = tombstone.get(TOMBSTONE_SEQUENCE)
            key = identity(tombstone["_id"])
            if isinstance(held, str) and held.startswith("K") and (
                    key not in found or order_relation(found[key], held) == "older"):
                found[key] = held
    return found


def _digest(change: Change) -> str:
    assert change.order_key is not None
    return change.order_key.rpartition(".")[2]


def _decide(ties: list[Tie], plan: WritePlan, reader: ItemReader | None, sequence_field: str,
            outcome: TieOutcome) -> None:
    if reader is None:
        for tie in ties:
            for change, _ in tie.candidates:
                outcome.bad.append(BadRecord.of(change, _tie_error(change, tie)))
        return
    try:
        items = reader.read([tie.candidates[0][0].keys for tie in ties])
    except Exception as error:  # any read failure: retried, never guessed
        why = f"equal-timestamp tie: reading the item back failed: {type(error).__name__}: {error}"
        outcome.failed.extend((w, why) for t in ties for _, ws in t.candidates for w in ws)
        return
    for tie, item in zip(ties, items, strict=True):
        current = image_digest(item)
        chosen = next(((c, ws) for c, ws in tie.candidates if _digest(c) == current), None)
        if chosen is None:
            outcome.stale += 1  # superseded: the change that made the current state is to come
            continue
        change, writes = chosen
        if tie.stored is not None and tie.stored == change.order_key:
            outcome.stale += 1
            outcome.already += 1
            continue
        plan.writes.extend(_allowing(w, tie.stored, sequence_field) for w in writes)


def _allowing(planned: PlannedWrite, stored: str | None, sequence_field: str) -> PlannedWrite:
    """``planned`` with its guard also accepting the stored key it was decided against (a
    compare-and-set: a newer write landing meanwhile still wins)."""
    if stored is None or planned.collection != "main":
        return planned
    if guard_bound(planned.filter, sequence_field) is None:
        return planned
    others = {k: v for k, v in planned.filter.items() if k != sequence_field}
    guard = {sequence_field: planned.filter[sequence_field]}
    # decided_over: the stored key may be a tombstone's (a MICROSECOND REMOVE inside a
    # MILLISECOND change's millisecond, which its key sorts after): without it the tombstone
    # guard would block the write the table just decided for (docs/kinesis.md, "Mixed precisions")
    return replace(planned, filter={**others, "$or": [guard, {sequence_field: stored}]},
                   decided_over=stored)


def _tie_error(change: Change, tie: Tie) -> RecordError:
    when = change.created_at.isoformat() if change.created_at else "?"
    against = ("the stored document of that time" if tie.stored else
               f"{len(tie.candidates) - 1} other change(s) of the batch")
    return UnsupportedRecordError(
        f"equal ApproximateCreationDateTime ({when}) with {against}, leaving another state: "
        "only the table can tell which is newer (an image chain is no proof: a change of that "
        "time may still be to come). Set REPLICATOR_READ_BACK_TABLE (the item "
        "is then read back to decide; docs/kinesis.md) or create the Kinesis destination with "
        "ApproximateCreationDateTimePrecision=MICROSECOND; repair this item now with "
        "`replicator recover` (docs/migration.md)",
        problem="equal-timestamp", field_path="kinesis.data.dynamodb.ApproximateCreationDateTime",
    )

