"""Changes -> a write plan: pymongo operations plus a map back to sequence numbers (pure).

Within a batch the changes of one ``_id`` are coalesced: only the newest by sequence number is
written, as a whole-document replacement (so attributes DynamoDB removed are removed) or a delete.
Every filter carries the stale-write guard, so a write lands only when it is newer than what the
document holds; a stale upsert then fails with a duplicate ``_id`` (error 11000), which the apply
step reads as "already newer".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator.convert import Converter
from replicator.errors import ConversionError, RecordError, TransformError
from replicator.events import BadRecord, Change, EventName, pad_sequence_number
from replicator.keys import KeyMapper, identity
from replicator.settings import Settings

Operation = ReplaceOne | DeleteOne | UpdateOne
Transform = Callable[[dict[str, Any]], dict[str, Any]]
CollectionRole = Literal["main", "archive"]


@dataclass(frozen=True)
class PlannedWrite:
    """One operation and the sequence numbers of every record it stands for (ascending)."""

    operation: Operation
    sequence_numbers: tuple[str, ...]
    collection: CollectionRole = "main"


@dataclass
class WritePlan:
    writes: list[PlannedWrite] = field(default_factory=list)
    #: records that can never be applied (malformed, unconvertible, failed transform)
    bad_records: list[BadRecord] = field(default_factory=list)
    #: changes held back behind a failing record (bad_records="fail"); Lambda redelivers them
    deferred: list[Change] = field(default_factory=list)

    @property
    def operations(self) -> list[Operation]:
        return [w.operation for w in self.writes if w.collection == "main"]

    @property
    def archive_operations(self) -> list[Operation]:
        return [w.operation for w in self.writes if w.collection == "archive"]


class Planner:
    def __init__(
        self,
        settings: Settings,
        *,
        converter: Converter | None = None,
        key_mapper: KeyMapper | None = None,
        transforms: Sequence[Transform] = (),
    ) -> None:
        self.settings = settings
        self.converter = converter or Converter(settings.numbers)
        self.key_mapper = key_mapper or KeyMapper(self.converter, settings.key_schema)
        self.transforms = tuple(transforms)

    # -- entry point ---------------------------------------------------------------------------
    def plan(self, changes: Sequence[Change], bad_records: Sequence[BadRecord] = ()) -> WritePlan:
        bad = list(bad_records)
        groups: dict[Any, tuple[Any, list[Change]]] = {}
        for change in changes:
            try:
                document_id = self.key_mapper.document_id(change.keys)
            except RecordError as error:
                bad.append(_bad(change, error))
                continue
            groups.setdefault(identity(document_id), (document_id, []))[1].append(change)

        if self.settings.bad_records == "quarantine":
            writes = self._writes(groups.values(), bad)
            return WritePlan(writes=writes, bad_records=_by_index(bad))

        # bad_records="fail": nothing at or after the first failing record is applied, so no later
        # change of a key overtakes a failed earlier one; Lambda redelivers from there. A failure
        # found while converting can move the cut earlier, hence the loop (it only shrinks).
        while True:
            cut = min((b.index for b in bad), default=None)
            kept = [
                (document_id, [c for c in group if cut is None or c.index < cut])
                for document_id, group in groups.values()
            ]
            found: list[BadRecord] = []
            writes = self._writes([g for g in kept if g[1]], found)
            if not found:
                deferred = [c for _, group in groups.values() for c in group
                            if cut is not None and c.index > cut]
                return WritePlan(writes=writes, bad_records=_by_index(bad),
                                 deferred=sorted(deferred, key=lambda c: c.index))
            bad.extend(found)

    # -- per key -------------------------------------------------------------------------------
    def _writes(
        self, groups: Any, bad: list[BadRecord]
    ) -> list[PlannedWrite]:
        writes: list[PlannedWrite] = []
        for document_id, group in groups:
            ordered = sorted(group, key=lambda c: c.sort_key)
            # Newest first; a change that cannot be converted is set aside and the next older one
            # is the best state we can write (the bad one is quarantined with its raw form).
            for position in range(len(ordered) - 1, -1, -1):
                change = ordered[position]
                try:
                    planned = self._write_for(document_id, change)
                except RecordError as error:
                    bad.append(_bad(change, error))
                    ordered.pop(position)
                    continue
                covered = tuple(c.sequence_number for c in ordered[: position + 1])
                writes.extend(replace(w, sequence_numbers=covered) for w in planned)
                break
        return writes

    def _write_for(self, document_id: Any, change: Change) -> list[PlannedWrite]:
        sequence = pad_sequence_number(change.sequence_number)
        if change.event_name is EventName.REMOVE:
            return self._delete_for(document_id, change, sequence)
        assert change.new_image is not None, "read-back fills the image before planning"
        document = self.document(document_id, change.new_image, sequence)
        guard = self._filter(document_id, sequence, self._shard_values(document))
        if any(name.startswith("$") for name in document):
            # MongoDB refuses top-level $-names in a replacement of an existing document, but a
            # pipeline update writes them literally (MongoDB docs: "Field Names", 5.0+).
            operation: Operation = UpdateOne(
                guard, [{"$replaceWith": {"$literal": document}}], upsert=True
            )
        else:
            operation = ReplaceOne(guard, document, upsert=True)
        return [PlannedWrite(operation, (change.sequence_number,))]

    def _delete_for(self, document_id: Any, change: Change, sequence: str) -> list[PlannedWrite]:
        seqs = (change.sequence_number,)
        old = (
            self.converter.image(change.old_image, root="dynamodb.OldImage")
            if change.old_image is not None
            else None
        )
        shard_source = old if old is not None else self.key_mapper.key_document(change.keys)
        delete = PlannedWrite(
            DeleteOne(self._filter(document_id, sequence, self._shard_values(shard_source))), seqs
        )
        if not change.is_ttl_delete or self.settings.ttl_deletes == "delete":
            return [delete]
        if self.settings.ttl_deletes == "ignore":
            return []
        archived = {"_id": document_id, **(old or self.key_mapper.key_document(change.keys))}
        archived["_id"] = document_id
        archived["_ddb_expired_at"] = change.created_at
        if self.settings.guard:
            archived[self.settings.sequence_field] = sequence
        archive = PlannedWrite(
            ReplaceOne({"_id": document_id}, archived, upsert=True), seqs, collection="archive"
        )
        return [archive, delete]

    # -- documents and filters -----------------------------------------------------------------
    def document(self, document_id: Any, image: Mapping[str, Any], sequence: str) -> dict[str, Any]:
        """New image -> transforms -> ``_id`` first -> sequence field."""
        converted = self.converter.image(image, root="dynamodb.NewImage")
        for transform in self.transforms:
            name = getattr(transform, "__qualname__", repr(transform))
            try:
                converted = transform(converted)
            except Exception as error:
                raise TransformError(f"transform {name} raised {error!r}") from error
            if not isinstance(converted, dict):
                raise TransformError(f"transform {name} returned {type(converted).__name__}")
        if "_id" in converted and converted["_id"] != document_id:
            raise ConversionError(
                "attribute '_id' differs from the _id made from the table key; "
                "set Settings(id_mapping=...) to choose",
                field_path="dynamodb.NewImage._id",
            )
        document = {"_id": document_id}
        document.update((k, v) for k, v in converted.items() if k != "_id")
        if self.settings.guard:
            document[self.settings.sequence_field] = sequence
        return document

    def _filter(
        self, document_id: Any, sequence: str, shard_values: Mapping[str, Any]
    ) -> dict[str, Any]:
        condition: dict[str, Any] = {"_id": document_id}
        condition.update(shard_values)
        if self.settings.guard:
            field_name = self.settings.sequence_field
            condition["$or"] = [
                {field_name: {"$lt": sequence}},
                {field_name: {"$exists": False}},
            ]
        return condition

    def _shard_values(self, document: Mapping[str, Any]) -> dict[str, Any]:
        return {name: _get_path(document, name) for name in self.settings.shard_key}


def _get_path(document: Mapping[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None  # MongoDB treats a missing shard key field as null
        value = value[part]
    return value


def _bad(change: Change, error: RecordError) -> BadRecord:
    error.located(
        index=change.index, event_id=change.event_id, sequence_number=change.sequence_number
    )
    return BadRecord(index=change.index, raw=change.raw, error=error)


def _by_index(bad: list[BadRecord]) -> list[BadRecord]:
    return sorted(bad, key=lambda b: b.index)
