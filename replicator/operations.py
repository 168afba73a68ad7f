"""The edge between the planner's values and pymongo: a :class:`~replicator.writes.PlannedWrite`
becomes the pymongo operation ``bulk_write`` sends only here (apply.py sends it)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator.writes import PlannedWrite

if TYPE_CHECKING:
    Operation: TypeAlias = "ReplaceOne[dict[str, Any]] | UpdateOne | DeleteOne"


def operations(writes: Sequence[PlannedWrite], native: Any = None) -> list[Operation]:
    """The pymongo operations ``bulk_write`` sends for ``writes``: built by ``native``, the C
    accelerator (:data:`replicator.accelerator.native`; the Replicator hands it in), where given
    (filling the operations' slots skips ``__init__``'s checks, which hold by construction here:
    a tenth of the core's CPU per record), else by :func:`operation`."""
    if native is not None and type(writes) is list:
        built = native.operations(writes)
        if built is not None:
            return built  # type: ignore[no-any-return]
    return [operation(w) for w in writes]


def operation(planned: PlannedWrite) -> Operation:
    """The pymongo operation ``bulk_write`` sends for a planned write."""
    if planned.kind == "replace":
        assert isinstance(planned.document, dict)
        return ReplaceOne(planned.filter, planned.document, upsert=planned.upsert)
    if planned.kind == "update":
        assert planned.document is not None
        return UpdateOne(planned.filter, planned.document, upsert=planned.upsert)
    return DeleteOne(planned.filter)


def write_parts(planned: PlannedWrite) -> Iterator[Mapping[str, Any]]:
    """The documents pymongo encodes for a planned write: the filter, then the replacement /
    update document (a pipeline's literal document, or each stage)."""
    yield planned.filter
    document = planned.document
    if isinstance(document, Mapping):
        yield document
    elif isinstance(document, list):
        for stage in document:  # a pipeline: the planner's [{"$replaceWith": {"$literal": doc}}]
            literal = stage.get("$replaceWith", {}) if isinstance(stage, Mapping) else None
            if isinstance(literal, Mapping) and isinstance(literal.get("$literal"), Mapping):
                yield literal["$literal"]
            elif isinstance(literal, Mapping) and isinstance(literal.get("$mergeObjects"), list):
                # write_mode="merge" (writes.merge_pipeline): the literal documents it sets
                for part in literal["$mergeObjects"]:
                    if isinstance(part, Mapping) and isinstance(part.get("$literal"), Mapping):
                        yield part["$literal"]
            elif isinstance(stage, Mapping):
                yield stage
