"""Test helpers: planned writes in pymongo's terms, so a test can state a plan as the operations
it stands for (reading pymongo's private attributes is fine here, outside replicator/)."""

from __future__ import annotations

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
