"""The replicator: parse -> (read back) -> plan -> write, and the Lambda batch response.

Steps in a fixed order, as Powertools' batch processor does; only the edges do I/O (read-back, the
quarantine write, the bulk writes). Failures come back as data (a :class:`BatchResult`), and the
Lambda response is built from it in one place.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import PyMongoError
from pymongo.operations import DeleteOne, UpdateOne

from replicator import apply
from replicator.convert import Converter, _encodable
from replicator.errors import ConfigurationError, RecordError, UnsupportedRecordError
from replicator.events import (
    BadRecord,
    Change,
    EventName,
    pad_sequence_number,
    parse_records,
    records_of,
    table_arn_of,
)
from replicator.keys import KeyMapper
from replicator.plan import PlannedWrite, Planner, WritePlan
from replicator.readback import ItemReader
from replicator.settings import Settings
from replicator.tombstones import TombstoneStore

log = logging.getLogger("replicator")


@dataclass
class BatchResult:
    """What one batch did; ``lambda_response()`` turns it into Lambda's partial-batch answer."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: list[BadRecord] = field(default_factory=list)
    #: sequence numbers Lambda must redeliver, with why
    failures: list[tuple[str, str]] = field(default_factory=list)
    round_trips: int = 0

    @property
    def failed_sequence_numbers(self) -> list[str]:
        return sorted({s for s, _ in self.failures}, key=lambda s: s.zfill(40))

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """``{"batchItemFailures": [...]}`` naming the lowest failed sequence number.

        Lambda checkpoints before the lowest reported item and redelivers from it (AWS docs:
        "Implementing partial batch responses"), so one item says everything.
        """
        failed = self.failed_sequence_numbers
        return {"batchItemFailures": [{"itemIdentifier": failed[0]}] if failed else []}


class Replicator:
    """Replicates DynamoDB Streams batches into one MongoDB collection.

    ``collection`` is a pymongo collection (or one with its API). ``item_reader``
    reads current items for KEYS_ONLY / OLD_IMAGE streams (see :mod:`replicator.readback`).
    """

    def __init__(
        self,
        collection: Any,
        settings: Settings | None = None,
        *,
        item_reader: ItemReader | None = None,
        quarantine: Any = None,
        archive: Any = None,
        tombstones: Any = None,
    ) -> None:
        self.collection = collection
        self.settings = settings or Settings()
        self.item_reader = item_reader
        database = getattr(collection, "database", None)
        self.quarantine = quarantine if quarantine is not None else _side(
            database, self.settings.quarantine_collection, f"{collection.name}_quarantine"
        )
        self.archive = archive if archive is not None else _side(
            database, self.settings.archive_collection, f"{collection.name}_ttl_archive"
        )
        self.tombstones: TombstoneStore | None = None
        if self.settings.guard and self.settings.tombstones:
            store = tombstones if tombstones is not None else _side(
                database, self.settings.tombstone_collection, f"{collection.name}_tombstones"
            )
            if store is not None:
                self.tombstones = TombstoneStore(store, self.settings.tombstone_retention_s)
        converter = Converter(self.settings.numbers)
        id_mapping = load_callable(self.settings.id_mapping) if self.settings.id_mapping else None
        self.planner = Planner(
            self.settings,
            converter=converter,
            key_mapper=KeyMapper(converter, self.settings.key_schema, id_mapping),
            transforms=[load_callable(path) for path in self.settings.transforms],
        )
        # The table this Replicator replicates (its ARN, before "/stream/"), pinned from the first
        # record that names one (and matches Settings.source_table when set); records of another
        # table are quarantined, never merged into this collection. _stream_arn: the full
        # eventSourceARN the C planner accepts as is (anything else goes the Python way).
        self._table_arn: str | None = None
        self._stream_arn: str | None = None
        self._logged_problems: set[str] = set()

    # -- entry points ----------------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Process a Lambda event; return ``{"batchItemFailures": [...]}``."""
        return self.process(event).lambda_response()

    def process(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> BatchResult:
        records = records_of(event)
        result = BatchResult(records=len(records))
        plan = self.plan(records)
        self._settle_bad_records(plan, result)
        self._write(plan, result, records)
        for failed_sequence, why in result.failures:
            log.warning("will be redelivered: SequenceNumber %s: %s", failed_sequence, why)
        return result

    def plan(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> WritePlan:
        """The write plan for an event, without writing (pure unless a read-back is needed)."""
        records = records_of(event)
        if self._stream_arn is None and records:
            self._pin_table(records[0])
        # the C accelerator's one pass, common case
        plan = self.planner.plan_records(records, self._stream_arn)
        if plan is not None:
            return plan
        changes, bad = parse_records(records)
        changes = self._of_this_table(changes, bad)
        changes = self._check_stream_view(changes, bad)
        changes = self._read_back(changes, bad)
        plan = self.planner.plan(changes, bad)
        self._log_configuration_problems(plan.bad_records)
        return plan

    # -- steps -----------------------------------------------------------------------------------
    def _pin_table(self, raw: Any) -> None:
        """Pin the table of the batch's first record, before the C planner sees the batch (it
        takes only records of the pinned stream, so the common batch stays on its path)."""
        arn = raw.get("eventSourceARN") if type(raw) is dict else None
        table = table_arn_of(arn)
        if table is not None and self._is_source(table):
            self._table_arn, self._stream_arn = table, arn

    def _is_source(self, table_arn: str) -> bool:
        wanted = self.settings.source_table
        if wanted is None:
            return self._table_arn is None or table_arn == self._table_arn
        if wanted.startswith("arn:"):
            return table_arn == table_arn_of(wanted)
        return table_arn.rpartition(":table/")[2] == wanted

    def _of_this_table(self, changes: list[Change], bad: list[BadRecord]) -> list[Change]:
        """The changes of the pinned table (and those without eventSourceARN, as GetRecords
        gives them); a record of another table is quarantined: two tables merged into one
        collection would overwrite each other's documents by key."""
        kept = []
        for change in changes:
            table = table_arn_of(change.event_source_arn)
            if table is not None and self._table_arn is None and self._is_source(table):
                self._table_arn = table
            if table is None or table == self._table_arn:
                if table is not None:
                    self._stream_arn = change.event_source_arn  # a new stream of the same table
                kept.append(change)
                continue
            wanted = self.settings.source_table
            error = UnsupportedRecordError(
                f"record of table {table}, but this Replicator replicates "
                + (f"{self._table_arn}" if self._table_arn else f"table {wanted!r}")
                + " (Settings.source_table, or the first table seen): give each table its own "
                "Replicator and collection",
                problem="record of another table",
                field_path="eventSourceARN",
            ).located(index=change.index, event_id=change.event_id,
                      sequence_number=change.sequence_number)
            bad.append(BadRecord(index=change.index, raw=change.raw, error=error))
        return kept

    def _log_configuration_problems(self, bad_records: list[BadRecord]) -> None:
        """Each kind of configuration problem once per Replicator (per Lambda container), not
        once per record; every record is still quarantined with the fix in its error."""
        for bad in bad_records:
            error = bad.error
            if isinstance(error, UnsupportedRecordError) and error.problem not in self._logged_problems:
                self._logged_problems.add(error.problem)
                log.warning("configuration: %s (such records are quarantined)", error.reason)

    def _check_stream_view(self, changes: list[Change], bad: list[BadRecord]) -> list[Change]:
        """With a shard key that can change, a record from a stream without old images cannot
        say where its document is stored: quarantined with the fix, before any write. Judged per
        record (a single KEYS_ONLY record must not stop a batch); logged once."""
        if not self.settings.shard_key:
            return changes
        kept = []
        for change in changes:
            try:
                if change.stream_view_type is not None:
                    self.planner.check_stream_view(change.stream_view_type, tuple(change.keys))
            except ConfigurationError as problem:
                error = UnsupportedRecordError(
                    str(problem), problem="stream view without old images for a movable shard key",
                    field_path="dynamodb.StreamViewType",
                ).located(index=change.index, event_id=change.event_id,
                          sequence_number=change.sequence_number)
                bad.append(BadRecord(index=change.index, raw=change.raw, error=error))
                continue
            kept.append(change)
        return kept

    def _read_back(self, changes: list[Change], bad: list[BadRecord]) -> list[Change]:
        needed = [c for c in changes if c.event_name is not EventName.REMOVE and c.new_image is None]
        if not needed:
            return changes
        if self.item_reader is None:
            # Judged per record: one record without a new image must not stop the batch.
            for change in needed:
                view = change.stream_view_type
                error = UnsupportedRecordError(
                    f"a {change.event_name.value} from a "
                    f"{view.value if view else 'image-less'} stream does not carry the new item: "
                    "give Replicator an item reader (replicator.readback.DynamoDBItemReader) so "
                    "it can read the item back, or set the stream to NEW_AND_OLD_IMAGES or "
                    "NEW_IMAGE",
                    problem="no new image and no item reader",
                    field_path="dynamodb.NewImage",
                ).located(index=change.index, event_id=change.event_id,
                          sequence_number=change.sequence_number)
                bad.append(BadRecord(index=change.index, raw=change.raw, error=error))
            skipped = {c.index for c in needed}
            return [c for c in changes if c.index not in skipped]
        images = self.item_reader.read([c.keys for c in needed])
        filled = {
            c.index: (
                replace(c, new_image=image)
                if image is not None
                # Gone by now: the delete's own record follows; deleting here is the same state.
                else replace(c, event_name=EventName.REMOVE)
            )
            for c, image in zip(needed, images, strict=True)
        }
        return [filled.get(c.index, c) for c in changes]

    def _settle_bad_records(self, plan: WritePlan, result: BatchResult) -> None:
        if not plan.bad_records:
            return
        for bad in plan.bad_records:
            log.error("bad record: %s", bad.error)
        self._keep(plan.bad_records, result, plan)

    def _keep(self, bad_records: Sequence[BadRecord], result: BatchResult,
              plan: WritePlan | None = None) -> None:
        """Quarantine ``bad_records`` (raw record + error), or, with bad_records="fail", report
        them for redelivery. A quarantine that cannot be written is a failure (retried)."""
        if self.settings.bad_records == "fail":
            result.failures.extend(
                (_sequence_for_retry(bad, plan), str(bad.error)) for bad in bad_records
            )
            return
        writes = [
            PlannedWrite(_quarantine_write(bad), (bad.sequence_number or "",))
            for bad in bad_records
        ]
        outcome = apply.write(self.quarantine, writes)
        result.round_trips += outcome.round_trips
        landed = {id(w) for w in outcome.applied}
        result.quarantined.extend(
            bad for bad, w in zip(bad_records, writes, strict=True) if id(w) in landed
        )
        not_kept = [(planned, why) for planned, why in outcome.failed] + [
            (planned, f"rejected: {rejection.reason}") for planned, rejection in outcome.rejected
        ]
        for planned, why in not_kept:
            index = next(i for i, w in enumerate(writes) if w is planned)
            result.failures.append(
                (_sequence_for_retry(bad_records[index], plan), f"could not quarantine: {why}")
            )

    def _write(self, plan: WritePlan, result: BatchResult, records: Sequence[Any] = ()) -> None:
        sequence_field = self.settings.sequence_field
        rejected: list[tuple[PlannedWrite, apply.Rejection, str]] = []
        archive_writes = [w for w in plan.writes if w.collection == "archive"]
        blocked: set[tuple[str, ...]] = set()
        if archive_writes:
            outcome = apply.write(self.archive, archive_writes, sequence_field=sequence_field)
            result.round_trips += outcome.round_trips
            for planned, why in outcome.failed:
                blocked.add(planned.sequence_numbers)  # keep the document until it is archived
                result.failures.append((planned.sequence_numbers[0], f"archive failed: {why}"))
            # A rejected archive write keeps the old image in the quarantine (its raw record):
            # the delete may go ahead, nothing is lost.
            rejected.extend((w, why, "dynamodb.OldImage") for w, why in outcome.rejected)
        main = [w for w in plan.writes if w.collection == "main"
                and w.sequence_numbers not in blocked]
        cleanup: list[PlannedWrite] = []
        if self.tombstones is not None and main:
            guarded = self.tombstones.guard(main)
            result.round_trips += guarded.round_trips
            result.stale += len(guarded.blocked)
            result.failures.extend((w.sequence_numbers[0], why) for w, why in guarded.failed)
            rejected.extend((w, why, "dynamodb.Keys") for w, why in guarded.rejected)
            # A blocked upsert's _id must hold no version older than the delete: remove one left
            # behind (by an earlier delivery whose re-check failed, see _undo_resurrections), in
            # the same bulk. A newer version is never removed ($lt the tombstone).
            cleanup = [
                PlannedWrite(DeleteOne({"_id": w.operation._filter["_id"],
                                        sequence_field: {"$lt": tombstone}}), w.sequence_numbers)
                for w, tombstone in zip(guarded.blocked, guarded.blocked_by, strict=True)
            ]
            main = guarded.clear + cleanup
        outcome = apply.write(self.collection, main, sequence_field=sequence_field)
        if cleanup:
            extra = {id(w) for w in cleanup}
            outcome.applied = [w for w in outcome.applied if id(w) not in extra]
        result.round_trips += outcome.round_trips
        result.applied += len(outcome.applied)
        result.stale += len(outcome.stale)
        # Report the lowest record a failed write stands for: everything from there is redelivered.
        result.failures.extend((w.sequence_numbers[0], why) for w, why in outcome.failed)
        rejected.extend((w, why, "dynamodb.NewImage") for w, why in outcome.rejected)
        if self.tombstones is not None and outcome.inserted:
            self._undo_resurrections(outcome.inserted, result)
        if rejected:
            self._quarantine_rejected(rejected, records, result)

    def _undo_resurrections(self, inserted: list[PlannedWrite], result: BatchResult) -> None:
        """Remove the documents this batch inserted although a newer delete is remembered.

        The tombstone probe and the upsert are two round trips: a delete of the same _id can
        land between them, and the upsert, finding no document, inserts an older version after
        the delete. Reading the tombstones of the _ids we inserted, after our insert, closes that
        window: either the read sees the delete's tombstone (written before its delete), and we
        remove our document -- filtered on the sequence number we wrote, so a newer write is
        never removed --; or the tombstone was not written yet, so the delete's own guarded
        deleteOne runs after our insert and removes it. One find, only for batches that
        created documents (updates of existing documents cannot resurrect anything).
        """
        assert self.tombstones is not None
        sequence_field = self.settings.sequence_field
        result.round_trips += 1
        try:
            newer = self.tombstones.newer_than(inserted)
        except PyMongoError as error:
            # Retried: the redelivered upsert is then blocked by the tombstone probe, and the
            # document it left is removed with it (see _write).
            why = f"tombstones: re-check after insert: {type(error).__name__}: {error}"
            result.failures.extend((w.sequence_numbers[0], why) for w in inserted)
            return
        if not newer:
            return
        undo = [
            PlannedWrite(
                DeleteOne({"_id": planned.operation._filter["_id"],
                           sequence_field: pad_sequence_number(planned.sequence_numbers[-1])}),
                planned.sequence_numbers,
            )
            for planned, _ in newer
        ]
        outcome = apply.write(self.collection, undo, sequence_field=sequence_field)
        result.round_trips += outcome.round_trips
        result.applied -= len(outcome.applied)
        result.stale += len(outcome.applied)
        for planned, why in [*outcome.failed, *((w, r.reason) for w, r in outcome.rejected)]:
            result.failures.append((planned.sequence_numbers[0],
                                    f"removing a write older than a remembered delete: {why}"))

    def _quarantine_rejected(
        self,
        rejected: list[tuple[PlannedWrite, apply.Rejection, str]],
        records: Sequence[Any],
        result: BatchResult,
    ) -> None:
        """Quarantine the writes that can never be applied, each with the raw record it stands
        for: the newest record of its coalesced group (the one whose content it carries)."""
        by_sequence: dict[str, tuple[int, Any]] = {}
        for index, record in enumerate(records):
            sequence = _sequence_of_raw(record)
            if sequence is not None:
                by_sequence.setdefault(sequence, (index, record))
        bad_records = []
        for planned, rejection, root in rejected:
            sequence = planned.sequence_numbers[-1]
            index, raw = by_sequence.get(sequence, (-1, None))
            error = WriteRejectedError(
                rejection, field_path=_record_path(root, rejection.field_path), index=index,
                event_id=raw.get("eventID") if isinstance(raw, Mapping) else None,
                sequence_number=sequence, covered=planned.sequence_numbers,
            )
            log.error("write rejected: %s", error)
            bad_records.append(BadRecord(index, raw, error))
        self._keep(bad_records, result)


class WriteRejectedError(RecordError):
    """MongoDB or the client refused a planned write for good (see apply.Rejection)."""

    def __init__(self, rejection: apply.Rejection, *, covered: Sequence[str] = (),
                 **where: Any) -> None:
        self.code = rejection.code
        self.kind = rejection.kind
        self.covered = tuple(covered)
        super().__init__(f"write rejected ({rejection.kind}): {rejection.reason}", **where)

    def as_dict(self) -> dict[str, object]:
        details = super().as_dict()
        details.update(code=self.code, kind=self.kind, covered_sequence_numbers=list(self.covered))
        return details


def _sequence_of_raw(record: Any) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    sequence = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return sequence if isinstance(sequence, str) else None


def _record_path(root: str, document_path: str) -> str:
    """A document path -> the record's field path: ``_id`` comes from Keys, the rest from the
    image the write carries."""
    if not document_path:
        return ""
    if document_path == "_id" or document_path.startswith("_id."):
        return "dynamodb.Keys"
    return f"{root}.{document_path}"


def quarantine_document(bad: BadRecord) -> dict[str, Any]:
    """What the quarantine keeps: the raw record (exact JSON text), the error and the time."""
    error = bad.error
    details = error.as_dict() if hasattr(error, "as_dict") else {
        "type": type(error).__name__, "message": str(error)}
    return {
        "_id": _quarantine_id(bad),
        "sequence_number": _text_safe(bad.sequence_number),
        "index": bad.index,
        "error": _text_safe(details),
        "raw_record": _raw_json(bad.raw),
        "quarantined_at": datetime.now(timezone.utc),
    }


def _quarantine_write(bad: BadRecord) -> UpdateOne:
    """Upsert by a content-addressed id; a redelivery keeps the time it was first quarantined."""
    document = quarantine_document(bad)
    first_seen = document.pop("quarantined_at")
    document_id = document.pop("_id")
    return UpdateOne(
        {"_id": document_id},
        {"$set": document, "$setOnInsert": {"quarantined_at": first_seen}},
        upsert=True,
    )


def _quarantine_id(bad: BadRecord) -> str:
    """Stable across redeliveries (a replayed batch does not quarantine a record twice), and
    distinct for distinct records even when they claim the same sequence number."""
    # surrogatepass: a lone surrogate (crafted input, json.loads accepts it) must not raise here
    digest = hashlib.sha256(_raw_json(bad.raw).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_text_safe(bad.sequence_number) or 'no-sequence'}:{digest}"


def _raw_json(raw: Any) -> str:
    """The raw record as JSON text that BSON can store: readable (non-ASCII kept) when UTF-8 can
    encode it, else with every non-ASCII character escaped (a lone surrogate); any depth."""
    try:
        text = json.dumps(raw, default=_json_fallback, sort_keys=True, ensure_ascii=False)
    except RecursionError:  # nesting beyond the interpreter's limit (a crafted record)
        return _deep_json(raw)
    except (TypeError, ValueError):  # non-str keys of mixed types, a cycle
        return str(_text_safe(repr(raw)))
    if _encodable(text):
        return text
    # A lone surrogate (crafted input) cannot be stored as UTF-8: keep the exact record as JSON
    # with \u escapes, which json.loads turns back into the same string.
    return json.dumps(raw, default=_json_fallback, sort_keys=True, ensure_ascii=True)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return {"$binary_base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _deep_json(raw: Any) -> str:
    """``json.dumps(raw, sort_keys=True, ensure_ascii=True)`` without recursion."""
    parts: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, raw)]
    while stack:
        literal, item = stack.pop()
        if literal:
            parts.append(item)
            continue
        todo: list[tuple[bool, Any]] = []
        if isinstance(item, Mapping):
            entries = sorted(((str(k), v) for k, v in item.items()), key=lambda kv: kv[0])
            todo.append((True, "{"))
            for n, (name, value) in enumerate(entries):
                todo.append((True, ("" if n == 0 else ", ") + json.dumps(name) + ": "))
                todo.append((False, value))
            todo.append((True, "}"))
        elif isinstance(item, (list, tuple)):
            todo.append((True, "["))
            for n, value in enumerate(item):
                if n:
                    todo.append((True, ", "))
                todo.append((False, value))
            todo.append((True, "]"))
        else:
            fallback = _json_fallback(item) if not isinstance(
                item, (str, int, float, bool, type(None))) else item
            todo.append((True, json.dumps(fallback, default=repr)))
        stack.extend(reversed(todo))
    return "".join(parts)


def _text_safe(value: Any) -> Any:
    """Strings that UTF-8 (hence BSON) cannot hold, made storable (an error message may quote a
    lone surrogate or a NUL of the record it is about)."""
    if isinstance(value, str):
        if _encodable(value):
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(_text_safe(k)).replace("\x00", "\\x00"): _text_safe(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_safe(v) for v in value]
    return value


def _sequence_for_retry(bad: BadRecord, plan: WritePlan | None) -> str:
    if bad.sequence_number:
        return bad.sequence_number
    # No readable sequence number: retry from the nearest record before it that has one.
    raise ConfigurationError(
        f"record index {bad.index} has no readable SequenceNumber and bad_records='fail': "
        "the whole batch fails"
    )


def _side(database: Any, configured: str | None, default: str) -> Any:
    if database is None:
        return None
    return database[configured or default]


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``pkg.module:function`` or ``pkg.module.function``."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(f"not a dotted path to a function: {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"cannot load {path!r}: {error}") from error
    if not callable(target):
        raise ConfigurationError(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]
