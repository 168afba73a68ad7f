"""Test helpers: planned writes in pymongo's terms, so a test can state a plan as the operations
it stands for (reading pymongo's private attributes is fine here, outside replicator/)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pymongo.operations import DeleteOne, ReplaceOne

from replicator.operations import operation
from replicator.writes import PlannedWrite, WritePlan


def from_operation(op: Any, sequence_numbers: tuple[str, ...], **where: Any) -> PlannedWrite:
    """The PlannedWrite that ``operations.operation`` turns into ``op``."""
    if isinstance(op, DeleteOne):
        return PlannedWrite.delete(op._filter, sequence_numbers, **where)
    kind = "replace" if isinstance(op, ReplaceOne) else "update"
    return PlannedWrite(kind, op._filter, op._doc, op._upsert, sequence_numbers, **where)


def operations(plan: WritePlan, collection: str = "main") -> list[Any]:
    """The pymongo operations the plan's writes of ``collection`` are sent as."""
    return [operation(w) for w in plan.writes if w.collection == collection]


@dataclass(frozen=True, slots=True)
class OtherDefault:
    """PlannedWrite's slots, names and order, but another default for ``collection``: a class
    the C planner must refuse (a write it builds by filling the slots would differ from the
    class's own)."""

    kind: Any
    filter: Any
    document: Any
    upsert: Any
    sequence_numbers: Any
    collection: Any = "archive"
    shard_key_move: Any = None
    order_key: Any = None
    decided_over: Any = None


def slots_of(cls: type) -> tuple[Any, ...]:
    """A slotted dataclass's member descriptors in field order (what configure_planner takes)."""
    return tuple(vars(cls)[f.name] for f in fields(cls))
