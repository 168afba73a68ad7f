"""Changes -> a write plan: planned writes (replicator.writes) with the sequence numbers each
stands for (pure).

Within a batch the changes of one ``_id`` are coalesced: only the newest by sequence number is
written, as a whole-document replacement (so attributes DynamoDB removed are removed) or a delete.
Every filter carries the stale-write guard, so a write lands only when it is newer than what the
document holds; a stale upsert then fails with a duplicate ``_id`` (error 11000), which the apply
step reads as "already newer".

On a sharded target (``Settings.shard_key``) every filter also carries the full shard key by
equality, as MongoDB requires for upserts and single-document writes there: the values of the new
document for a write, of the stored document for a delete. Where the document is stored before a
batch is what the oldest change of its key in the batch had as old image; when that differs from
the new document's shard key, or is unknown (the oldest change is an INSERT, which has no old
image, yet a copy may be stored: a TTL delete kept by ttl_deletes="ignore", a pre-filled
collection, or moto's key-only INSERT before the full one), the write is a shard key move
(:class:`ShardKeyMove`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from replicator.convert import Converter, storage_problem
from replicator.errors import (
    ConversionError,
    MalformedRecordError,
    RecordError,
    TransformError,
    UnsupportedRecordError,
)
from replicator.events import (
    KDS_ORDER_PREFIX,
    BadRecord,
    Change,
    EventName,
    StreamViewType,
    order_time_end,
    order_time_floor,
    order_time_micros,
    pad_sequence_number,
)
from replicator.item_records import COPY_SEQUENCE, is_copy
from replicator.keys import KeyMapper, identity
from replicator.settings import FIELDS_FIELD, Settings
from replicator.sharding import (
    check_stream_view,
    movable_shard_key,
    same_shard_values,
    shard_values,
)
from replicator.writes import (
    PlannedWrite,
    ShardKeyMove,
    Tie,
    WriteDocument,
    WriteKind,
    WritePlan,
    guard_condition,
    main_write,
    merge_pipeline,
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]
#: Planner.plan_records' default: records of any eventSourceARN (the Replicator passes its pin).
ANY_STREAM: Any = object()


class Planner:
    def __init__(
        self,
        settings: Settings,
        *,
        converter: Converter | None = None,
        key_mapper: KeyMapper | None = None,
        transforms: Sequence[Transform] = (),
        native_batches: bool = False,
    ) -> None:
        """``converter``: pure Python unless it was handed the C accelerator (the default
        converter is pure). ``native_batches``: whether the converter's C accelerator may also
        plan whole batches of raw records (:meth:`plan_records`); true only where it implements
        every planning setting -- ``replicator.accelerator.declined_by(settings)`` is empty, the
        one gate, which :func:`replicator.expected.planner_for` asks."""
        self.settings = settings
        self.converter = converter or Converter(settings.numbers)
        self.key_mapper = key_mapper or KeyMapper(self.converter, settings.key_schema)
        self.transforms = tuple(transforms)
        # The C accelerator plans a whole batch of raw records in one pass where it implements
        # every planning setting (the caller asked the gate); Python plans the rest.
        common = (
            native_batches
            and not self.transforms
            and self.key_mapper.id_mapping is None
            and self.converter.native is not None
            and self.key_mapper.converter.native is not None
        )
        self._native_plan: Callable[..., list[PlannedWrite] | None] | None = (
            self.converter.native.plan_records if common else None
        )

    # -- entry points --------------------------------------------------------------------------
    def plan_records(self, records: list[Any], stream_arn: Any = ANY_STREAM) -> WritePlan | None:
        """The plan for a batch of raw records (a Lambda event's ``Records``) in one pass of the C
        accelerator, when it implements this planner's settings (accelerator.declined_by, the
        one gate: no transforms, shard key or id mapping) and every record is well formed and
        ready to plan, and every record with an ``eventSourceARN`` has exactly ``stream_arn`` (the
        Replicator's pinned stream; None: no record may have one; ANY_STREAM, the default: not
        checked). None otherwise: then
        ``plan(*parse_records(records))`` (after any read-back) decides, as the reference, and
        gives an equal plan where both apply (tests/replicator/test_speedups.py)."""
        if self._native_plan is None or type(records) is not list:
            return None
        arguments = (
            records,
            self.key_mapper.key_schema,
            self.settings.guard,
            self.settings.sequence_field,
            self.settings.ttl_deletes == "delete",
        )
        # the batch figures come along where the stream is pinned (the Replicator's call)
        figures: list[Any] = []
        writes = (self._native_plan(*arguments) if stream_arn is ANY_STREAM
                  else self._native_plan(*arguments, stream_arn, figures))
        if writes is None:
            return None
        return WritePlan(writes=writes, native_figures=(
            (figures[0], figures[1], figures[2], figures[3]) if figures else None))

    def plan(self, changes: Sequence[Change], bad_records: Sequence[BadRecord] = ()) -> WritePlan:
        bad = list(bad_records)
        groups: dict[Any, tuple[Any, list[Change]]] = {}
        document_id_of = self.key_mapper.document_id
        for change in changes:
            try:
                document_id = document_id_of(change.keys)
            except RecordError as error:
                bad.append(BadRecord.of(change, error))
                continue
            key = identity(document_id)
            group = groups.get(key)
            if group is None:
                groups[key] = (document_id, [change])
            else:
                group[1].append(change)

        ties: list[Tie] = []
        if self.settings.bad_records == "quarantine":
            writes = self._writes(groups.values(), bad, ties)
            return WritePlan(writes=writes, bad_records=_by_index(bad), ties=ties)

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
            ties = []
            writes = self._writes([g for g in kept if g[1]], found, ties)
            if not found:
                deferred = [c for _, group in groups.values() for c in group
                            if cut is not None and c.index > cut]
                return WritePlan(writes=writes, bad_records=_by_index(bad),
                                 deferred=sorted(deferred, key=lambda c: c.index), ties=ties)
            bad.extend(found)

    # -- per key -------------------------------------------------------------------------------
    def _writes(
        self, groups: Any, bad: list[BadRecord], ties: list[Tie] | None = None
    ) -> list[PlannedWrite]:
        writes: list[PlannedWrite] = []
        # Superseded changes whose image alone can make them bad: checked together at the end.
        superseded: list[Change] = []
        images_only = not self.transforms
        for document_id, group in groups:
            if group[0].order_key is not None:
                # Kinesis: by creation time; equal times leaving other states are a tie
                # (kds_ordered), decided by the Replicator (replicator.ties)
                ordered, tied = kds_ordered(group)
                if tied:
                    self._tie(document_id, group, tied, bad, ties)
                    continue
                covered_all = kinesis_covered(ordered)
            else:
                # c.sort_key, inlined (hot): sequence numbers compare padded. Equal sequence
                # numbers: the first in batch order sorts last (is written), as the guard ($lt on
                # the stored sequence) lets the first applied one win when they arrive in
                # separate batches.
                ordered = sorted(group, key=lambda c: (c.sequence_number.zfill(40), -c.index))
                covered_all = None
            stored = self._stored_shard_values(ordered, bad)
            # Newest first; a change that cannot be converted is set aside and the next older one
            # is the best state we can write (the bad one is quarantined with its raw form).
            for position in range(len(ordered) - 1, -1, -1):
                change = ordered[position]
                covered = (kinesis_covered(ordered[: position + 1]) if covered_all is not None
                           else tuple([c.sequence_number for c in ordered[: position + 1]]))
                try:
                    planned = self._write_for(document_id, change, stored, covered,
                                              removed=self._removed_before(ordered, position),
                                              inserted=self._inserted_by(ordered, position))
                except RecordError as error:
                    bad.append(BadRecord.of(change, error))
                    ordered.pop(position)
                    continue
                if not planned:
                    # A TTL delete kept by ttl_deletes="ignore" writes nothing, so the next older
                    # change is still the state to write (coalescing must not drop it).
                    continue
                writes.extend(planned)
                # The older changes are coalesced away, but a malformed one is still quarantined:
                # whether a bad record is reported must not depend on how records were batched.
                for older in ordered[:position]:
                    if images_only and stored is None and (
                        older.new_image is None or "_id" not in older.new_image
                    ):
                        superseded.append(older)
                        continue
                    try:  # user code, a shard key, an _id attribute: what writing it would raise
                        self._write_for(document_id, older, stored)
                    except RecordError as error:
                        bad.append(BadRecord.of(older, error))
                break
        if superseded:
            self._check_images(superseded, bad)
        return writes

    def _tie(self, document_id: Any, group: list[Change], tied: list[Change],
             bad: list[BadRecord], ties: list[Tie] | None) -> None:
        """Changes of one item whose newest time holds changes leaving different states (a tie,
        see kds_ordered): each state's change becomes a candidate with its writes (standing for
        every record of the group), for the Replicator to decide (replicator.ties); one that
        cannot be written is bad. The older ones are coalesced away."""
        if ties is None:
            raise AssertionError("Kinesis changes are planned through Planner.plan")
        covered = kinesis_covered(group)
        by_time = sorted(group, key=_kds_time)
        stored = self._stored_shard_values(by_time, bad)
        # merge mode: a REMOVE of the group came before whichever candidate the table shows (a
        # later REMOVE would have left the item absent), so a candidate that writes the item
        # starts from nothing over a document older than it, as in separate batches
        removed = self._removed_before(by_time, len(by_time))
        # and an INSERT of the group started the item the candidate shows: the candidate itself,
        # else the group's newest (one tied with the candidate came before it: a change of the
        # table's current state after a later INSERT would be of a later time)
        newest_insert = self._inserted_by(by_time, len(by_time) - 1)
        candidates = []
        for change in tied:
            own = self._inserted_by([change], 0)
            try:
                candidates.append((change, self._write_for(document_id, change, stored, covered,
                                                           removed=removed,
                                                           inserted=own or newest_insert)))
            except RecordError as error:
                bad.append(BadRecord.of(change, error))
        if candidates:
            ties.append(Tie(document_id, candidates))

    def _removed_before(self, ordered: list[Change], position: int) -> str | None:
        """write_mode="merge": the padded sequence number of the newest REMOVE of the item before
        ``ordered[position]``, its newest change, within the batch (None: none). That delete is
        coalesced away, so the write starts from nothing where the stored document is older than
        the REMOVE (as the delete would have left it: the fields other applications added go,
        as they would had the REMOVE come in an earlier batch; the outcome must not depend on
        batching), and merges where it is newer (a redelivered old REMOVE changes nothing). A TTL
        delete that ttl_deletes="ignore" keeps deletes nothing: not counted."""
        if self.settings.write_mode != "merge":
            return None
        remove = EventName.REMOVE
        kept_expiries = self.settings.ttl_deletes == "ignore"
        for change in reversed(ordered[:position]):
            if change.event_name is remove and not (kept_expiries and change.is_ttl_delete):
                return change.order_key or pad_sequence_number(change.sequence_number)
        return None

    def _inserted_by(self, ordered: list[Change], position: int) -> tuple[str, str] | None:
        """write_mode="merge" with the guard: the bounds (above, below) of the stored sequence
        field that mark a document older than the newest INSERT of the item at or before
        ``ordered[position]`` (None: no INSERT, or a copy's). DynamoDB emits an INSERT only for an
        item that did not exist just before it, so such a document was written about an earlier
        item of the key: the write starts from nothing over it, as it would after the REMOVE
        between them -- which Kinesis may deliver after the INSERT, or not in this batch
        (docs/write-modes.md, "An INSERT starts a new item"). Bounds, not the INSERT's key alone:
        a DynamoDB Streams INSERT counts changes above the copy's "0"; a Kinesis one, Kinesis keys
        of its time (a MILLISECOND one's: its millisecond) or older (a tie the table decided for
        it is with a change before it), never a DynamoDB Streams number (which cannot be ordered
        against it: the switch's overlap)."""
        if self.settings.write_mode != "merge" or not self.settings.guard:
            return None
        insert = EventName.INSERT
        for change in reversed(ordered[: position + 1]):
            if change.event_name is insert and not is_copy(change):
                if change.order_key is not None:
                    # (a MILLISECOND INSERT's end is its millisecond's: a MICROSECOND key inside
                    # it reached this write only as a tie the table decided for the INSERT, so
                    # it is older -- an earlier item's -- as in one batch, where the tie starts
                    # the write from the INSERT as well. A Kinesis copy's key half-way into it
                    # is taken as older too: the catch-up limit docs/write-modes.md states)
                    return KDS_ORDER_PREFIX, order_time_end(change.order_key, change.order_span)
                return (pad_sequence_number(COPY_SEQUENCE),
                        pad_sequence_number(change.sequence_number))
        return None

    def _check_images(self, changes: list[Change], bad: list[BadRecord]) -> None:
        """Set aside as bad each change whose image :meth:`_write_for` could not convert: the new
        image, or a REMOVE's old image. The C accelerator vouches for a good one without building
        anything; the converter decides the others."""
        vouch = self.converter.vouch
        for change in changes:
            if change.event_name is EventName.REMOVE:
                image, root = change.old_image, "dynamodb.OldImage"
                if image is None:
                    continue
            else:
                image, root = change.new_image, "dynamodb.NewImage"
                assert image is not None, "read-back fills the image before planning"
                try:
                    self._check_new_image(change, image)
                except RecordError as error:
                    bad.append(BadRecord.of(change, error))
                    continue
            if vouch is not None and type(image) is dict and vouch(image):
                continue
            try:
                self.converter.image(image, root=root)
            except RecordError as error:
                bad.append(BadRecord.of(change, error))

    def _write_for(
        self,
        document_id: Any,
        change: Change,
        stored: dict[str, Any] | None = None,
        covered: tuple[str, ...] | None = None,
        *,
        removed: str | None = None,
        inserted: tuple[str, str] | None = None,
    ) -> list[PlannedWrite]:
        """``stored``: see :meth:`_stored_shard_values` (None: the shard key cannot change);
        ``covered``: the sequence numbers the writes stand for (default: the change's own);
        ``removed``: merge mode, a REMOVE coalesced into the write (:meth:`_removed_before`);
        ``inserted``: merge mode, the INSERT the write starts from (:meth:`_inserted_by`)."""
        sequence = change.order_key or pad_sequence_number(change.sequence_number)
        seqs = covered or (change.sequence_number,)
        order = change.order_key
        if change.event_name is EventName.REMOVE:
            return self._delete_for(document_id, change, sequence, stored, seqs)
        assert change.new_image is not None, "read-back fills the image before planning"
        self._check_new_image(change, change.new_image)
        document = self.document(document_id, change.new_image, sequence)
        new = self._shard_values(document) if self.settings.shard_key else {}
        kind, written = self._main_document(document, removed, inserted)
        if stored is None or (stored and same_shard_values(stored, new)):
            return [main_write(kind, self._filter(document_id, sequence, new), written, seqs,
                               order)]
        move = ShardKeyMove(
            document_id=document_id,
            shard_key=tuple(self.settings.shard_key),
            old=dict(stored) or None,
            new=new,
            write=main_write(kind, self._filter(document_id, sequence, new), written, seqs, order),
            sequence_field=self.settings.sequence_field,
            sequence=sequence if self.settings.guard else None,
            # (after a coalesced REMOVE the move carries nothing: the delete would have taken it;
            # from an INSERT neither: every copy it moves from is older, an earlier item's)
            fields_field=(FIELDS_FIELD if self.settings.write_mode == "merge" and removed is None
                          and inserted is None else None),
        )
        return [PlannedWrite(kind, self._filter(document_id, sequence, stored), written, True, seqs,
                             shard_key_move=move, order_key=order)]

    def _delete_for(
        self,
        document_id: Any,
        change: Change,
        sequence: str,
        stored: dict[str, Any] | None,
        seqs: tuple[str, ...],
    ) -> list[PlannedWrite]:
        # A malformed OldImage makes the record malformed: it is quarantined like any other.
        old = (
            self.converter.image(change.old_image, root="dynamodb.OldImage")
            if change.old_image is not None
            else None
        )
        if stored is None:
            shard_source = old if old is not None else self.key_mapper.key_document(change.keys)
            stored = self._shard_values(shard_source)
        # stored == {}: where the document is is unknown; a single-document delete by _id alone
        # is valid on a sharded collection too (MongoDB sends it to every shard).
        delete = main_write("delete", self._filter(document_id, sequence, stored), None, seqs,
                            change.order_key)
        if not change.is_ttl_delete or self.settings.ttl_deletes == "delete":
            return [delete]
        if self.settings.ttl_deletes == "ignore":
            return []
        if old is None:
            # Archiving the keys alone and deleting the document would lose the item's attributes
            # for good: keep the record (quarantine) and leave the document where it is.
            view = change.stream_view_type
            raise UnsupportedRecordError(
                "ttl_deletes='archive' needs the expired item's old image, and this TTL delete "
                f"carries none ({view.value if view else 'no'} stream view type): the document "
                "is left in place; set the stream to NEW_AND_OLD_IMAGES or OLD_IMAGE",
                problem="archive-without-old-image", field_path="dynamodb.OldImage",
            )
        archived = {"_id": document_id, **old}
        archived["_id"] = document_id
        archived["_ddb_expired_at"] = change.created_at
        if self.settings.guard:
            archived[self.settings.sequence_field] = sequence
        # Guarded like the main write (a late redelivery must not overwrite a newer archived
        # expiry) and $-safe (an old image may hold $-prefixed names): see _replacement.
        kind, written = self._replacement(archived)
        archive = PlannedWrite(kind, self._filter(document_id, sequence, {}), written, True, seqs,
                               collection="archive", order_key=change.order_key)
        return [archive, delete]

    def _check_new_image(self, change: Change, image: Mapping[str, Any]) -> None:
        """What makes a new image inconsistent whatever its values: an attribute named like the
        reserved sequence field (writing would overwrite it silently), or key attributes that
        differ from ``Keys`` (the ``_id`` would name another item than the document's key)."""
        reserved = self.settings.sequence_field
        if self.settings.guard and reserved in image:
            raise ConversionError(
                f"attribute {reserved!r} is the replicator's reserved sequence field and would be "
                "overwritten; set Settings(sequence_field=...) (a name no item uses) to keep it",
                field_path=f"dynamodb.NewImage.{reserved}",
            )
        if FIELDS_FIELD in image and self.settings.write_mode == "merge":
            raise ConversionError(_FIELDS_TAKEN, field_path=f"dynamodb.NewImage.{FIELDS_FIELD}")
        key_value = self.key_mapper.converter.value
        for name, typed in change.keys.items():
            path = f"dynamodb.NewImage.{name}"
            found = image.get(name)
            if found is None:
                raise MalformedRecordError(
                    "the new image lacks a key attribute that Keys has", field_path=path
                )
            # Raw equality first (the common case); else compare as the _id would (lossless, by
            # BSON value: "1" vs "1.0" agree, base64 text vs bytes agree, N 1 vs S "1" differ).
            if found != typed and identity(key_value(found, root=path)) != identity(
                key_value(typed, root=f"dynamodb.Keys.{name}")
            ):
                raise MalformedRecordError(
                    f"the new image's key attribute {found!r:.60} differs from Keys' {typed!r:.60}",
                    field_path=path,
                )

    # -- documents and filters -----------------------------------------------------------------
    def document(self, document_id: Any, image: Mapping[str, Any], sequence: str) -> dict[str, Any]:
        """New image -> transforms -> ``_id`` first -> sequence field."""
        document = None if self.transforms else self.converter.keyed_image(image, document_id)
        if document is not None:  # the C accelerator's short cut (no transforms, no _id attribute)
            if self.settings.write_mode == "merge":
                self._list_fields(document, "dynamodb.NewImage")
            if self.settings.guard:
                document[self.settings.sequence_field] = sequence
            return document
        converted = self._transformed(image, "dynamodb.NewImage")
        if "_id" in converted and converted["_id"] != document_id:
            raise ConversionError(
                "attribute '_id' differs from the _id made from the table key; "
                "set Settings(id_mapping=...) to choose",
                field_path="dynamodb.NewImage._id",
            )
        if "_id" in converted:
            document = {"_id": document_id}
            document.update((k, v) for k, v in converted.items() if k != "_id")
        else:
            document = {"_id": document_id, **converted}
        if self.settings.write_mode == "merge":
            self._list_fields(document, "transformed" if self.transforms else "dynamodb.NewImage")
        if self.settings.guard:
            document[self.settings.sequence_field] = sequence
        return document

    def _list_fields(self, document: dict[str, Any], root: str) -> None:
        """write_mode="merge": record the document's table fields in FIELDS_FIELD (its top-level
        names but ``_id``, sorted; the sequence field is added after), so a later change, even one
        without an old image, knows which stored fields are the table's to remove."""
        if FIELDS_FIELD in document:  # a transform added it (an attribute is refused earlier)
            error = ConversionError if root == "dynamodb.NewImage" else TransformError
            raise error(_FIELDS_TAKEN, field_path=f"{root}.{FIELDS_FIELD}")
        # Sorted: the list is a set, and one item's attributes come in any order (a stream
        # image's and a scan's differ), so equal items give equal lists.
        document[FIELDS_FIELD] = sorted(name for name in document if name != "_id")

    def _transformed(self, image: Mapping[str, Any], root: str) -> dict[str, Any]:
        converted = self.converter.image(image, root=root)
        for transform in self.transforms:
            name = getattr(transform, "__qualname__", repr(transform))
            try:
                converted = transform(converted)
            except Exception as error:
                raise TransformError(f"transform {name} raised {error!r}") from error
            if not isinstance(converted, dict):
                raise TransformError(f"transform {name} returned {type(converted).__name__}")
        if self.transforms:
            # User code may build what MongoDB cannot store: refuse it here, with its path,
            # rather than as an encoding error of the whole bulk write.
            problem = storage_problem(converted)
            if problem is not None:
                path, reason = problem
                raise TransformError(f"the transformed document cannot be stored: {reason}",
                                     field_path=f"transformed{path}")
        return converted

    def _main_document(self, document: dict[str, Any], removed: str | None = None,
                       inserted: tuple[str, str] | None = None
                       ) -> tuple[WriteKind, WriteDocument]:
        """How the main collection receives ``document``: whole (replace mode, :meth:`_replacement`)
        or merged into what is stored (merge mode, :func:`replicator.writes.merge_pipeline`;
        ``removed``: see :meth:`_removed_before`, ``inserted``: :meth:`_inserted_by`; without the
        guard, a coalesced REMOVE makes it whole: last delivery wins)."""
        if self.settings.write_mode != "merge":
            return self._replacement(document)
        if removed is not None and not self.settings.guard:
            return self._replacement(document)
        field_name = self.settings.sequence_field
        return "update", merge_pipeline(
            document, FIELDS_FIELD,
            removed=None if removed is None else (field_name, removed),
            inserted=None if inserted is None else (field_name, *inserted))

    def _replacement(self, document: dict[str, Any]) -> tuple[WriteKind, WriteDocument]:
        """How to write ``document`` whole: a replacement, or a pipeline update."""
        if _has_dollar_name(document, self.converter.native):
            # MongoDB refuses top-level $-names in a replacement of an existing document, but a
            # pipeline update writes them literally (MongoDB docs: "Field Names", 5.0+).
            return "update", [{"$replaceWith": {"$literal": document}}]
        return "replace", document

    def _filter(
        self, document_id: Any, sequence: str, shard_values: Mapping[str, Any]
    ) -> dict[str, Any]:
        condition: dict[str, Any] = {"_id": document_id}
        if shard_values:
            condition.update(shard_values)
        if self.settings.guard:
            field_name = self.settings.sequence_field
            if sequence[:1] == "K":
                # A Kinesis order key: strictly older times only; a stored change of the same
                # time is a duplicate or a tie, which the Replicator decides (replicator.ties).
                sequence = order_time_floor(sequence)
            condition[field_name] = guard_condition(sequence)
        return condition

    def _shard_values(self, document: Mapping[str, Any]) -> dict[str, Any]:
        return shard_values(document, self.settings.shard_key)

    # -- shard key moves -----------------------------------------------------------------------
    def check_stream_view(self, view: StreamViewType | None, key_names: Sequence[str]) -> None:
        """Refuse, before any write, a stream that cannot say where a document is stored.

        The Replicator calls it with the first record's StreamViewType and ``Keys`` names.
        """
        check_stream_view(self.settings, view, key_names)

    def _stored_shard_values(
        self, ordered: list[Change], bad: list[BadRecord]
    ) -> dict[str, Any] | None:
        """Shard key values of the stored document before this batch, when they can differ.

        Only the oldest change of the key in the batch tells (the later ones are coalesced away,
        their old images describe states that were never written). None when the shard key is made
        of table key attributes (it never changes); ``{}`` when it is unknown (the oldest change
        has no old image: an INSERT). A change whose old image cannot be converted is set aside
        as bad, and the next one tells.
        """
        if not ordered or not self.settings.shard_key:
            return None
        key_names = self.settings.key_schema or tuple(ordered[0].keys)
        if not movable_shard_key(self.settings.shard_key, key_names):
            return None
        while ordered:
            first = ordered[0]
            if first.old_image is None:
                return {}
            try:
                return self._shard_values(self._transformed(first.old_image, "dynamodb.OldImage"))
            except RecordError as error:
                bad.append(BadRecord.of(first, error))
                ordered.pop(0)
        return None


_FIELDS_TAKEN = (
    f"attribute {FIELDS_FIELD!r} is write_mode='merge''s reserved list of the table's fields and "
    "would be overwritten; rename the attribute (a transform can) or use write_mode='replace'"
)


def _has_dollar_name(document: dict[str, Any], accelerator: Any = None) -> bool:
    """``any(name.startswith("$") for name in document)``, as a plain loop (hot, and faster);
    ``accelerator``: the C module the planner's converter uses, or None (pure Python)."""
    if accelerator is not None:
        found = accelerator.has_dollar_name(document)
        if found is not None:
            return found  # type: ignore[no-any-return]
    for name in document:  # noqa: SIM110 - any() over a generator is twice as slow here
        if name.startswith("$"):
            return True
    return False


def _by_index(bad: list[BadRecord]) -> list[BadRecord]:
    return sorted(bad, key=lambda b: b.index)


# -- Kinesis: order by creation time; equal times leaving other states are a tie -----------------
def _kds_time(change: Change) -> str:
    assert change.order_key is not None
    return order_time_floor(change.order_key)


def kinesis_covered(changes: Sequence[Change]) -> tuple[str, ...]:
    """The Kinesis sequence numbers a write of ``changes`` stands for: the others ascending, then
    the last change's (the one whose content it carries, which the quarantine of a rejected write
    keeps). The lowest is what batchItemFailures must name (core: ``min`` of them)."""
    last = changes[-1].sequence_number
    others = sorted({c.sequence_number for c in changes[:-1]} - {last}, key=_padded_kinesis)
    return (*others, last)


def _padded_kinesis(number: str) -> str:
    return number.zfill(128)


def kds_ordered(group: Sequence[Change]) -> tuple[list[Change], list[Change]]:
    """Kinesis changes of one item, oldest first, and -- when the newest time holds changes that
    leave different states -- one change per state of that time: a tie (``[]`` otherwise).

    Older times come before newer ones. At the newest time (the only one a write can carry),
    changes leaving the same state are one candidate (duplicates, or a cycle back to that state:
    either way the same document), placed last in batch order. Several states at that time are
    a tie, whatever their image chain says: the batch may lack a change of that time (delivered
    in another batch), and with it any order of the others is possible -- 1->2 and 3->1 chain as
    3->1->2, yet the table may have gone 1->2->3->1 with 2->3 still to come. Only the table can
    tell (replicator.ties; docs/kinesis.md, "Equal timestamps")."""
    by_time = sorted(group, key=lambda c: (_kds_time(c), c.index))
    newest = _kds_time(by_time[-1])
    # and a MILLISECOND change whose millisecond holds the newest (MICROSECOND) time: made before
    # or after it, nothing in the records says (docs/kinesis.md, "Mixed precisions")
    newest_micros = order_time_micros(by_time[-1].order_key or "")
    latest = [c for c in by_time if _kds_time(c) == newest or (
        c.order_span > 1 and newest_micros < order_time_micros(c.order_key or "") + c.order_span)]
    states: dict[str, Change] = {}
    for change in latest:
        held = states.get(_new_digest(change))
        if held is None or _kds_time(change) > _kds_time(held):
            states[_new_digest(change)] = change  # one state: its newest time is written
    if len(states) > 1:
        return by_time, list(states.values())
    return by_time, []


def _new_digest(change: Change) -> str:
    assert change.order_key is not None
    return change.order_key.rpartition(".")[2]
