"""The replicator: parse -> screen -> (read back) -> plan -> quarantine -> tombstones -> write,
and the Lambda batch response.

Steps in a fixed order, as Powertools' batch processor does, each module visited once (see
:meth:`Replicator.process`); the C accelerator stands in for parse + plan alone (``_plan``). Only
the edges do I/O (read-back, the quarantine write, the tombstone probe, the bulk writes).
Failures come back as data (a :class:`BatchResult`), and the Lambda response is built from it in
one place.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from replicator import apply, deadline
from replicator.convert import Converter
from replicator.errors import ConfigurationError, UnsupportedRecordError
from replicator.events import BadRecord, pad_sequence_number, parse_records, records_of
from replicator.keys import KeyMapper
from replicator.plan import Planner
from replicator.quarantine import WriteRejectedError, quarantine_write, record_path
from replicator.readback import ItemReader, fill_new_images
from replicator.settings import Settings
from replicator.sharding import screen_stream_views
from replicator.source_table import SourceTable
from replicator.tombstones import TombstoneStore
from replicator.writes import PlannedWrite, WritePlan

log = logging.getLogger("replicator")


@dataclass
class BatchResult:
    """What one batch did; ``lambda_response()`` turns it into Lambda's partial-batch answer."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    #: of ``stale``: writes whose document already held their very sequence number (a
    #: redelivery, or a retry of a bulk that had landed), not a newer version
    already: int = 0
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
        self.source = SourceTable(self.settings.source_table)
        self._logged_problems: set[str] = set()

    # -- entry points ----------------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Process a Lambda event; return ``{"batchItemFailures": [...]}``. The MongoDB I/O ends
        before the invocation's timeout (``context.get_remaining_time_in_millis()``, see
        :mod:`replicator.deadline`)."""
        # Read the clock before the remaining time: the deadline can only come out earlier.
        since = time.monotonic()
        remaining = deadline.remaining_in_context(context)
        return self._process(event, remaining, since).lambda_response()

    def process(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                deadline_s: float | None = None) -> BatchResult:
        """A record's whole path, forward: plan (parse -> screen -> read back -> plan), quarantine
        the bad records, then write (tombstones -> bulk write -> quarantine the rejected).

        ``deadline_s``: seconds this call may take (a Lambda invocation's remaining time); every
        MongoDB command is then sent with the time left minus ``Settings.deadline_margin_s`` as
        ``maxTimeMS``, and one that runs out is retried (batchItemFailures), never lost. With
        less than the margin left nothing is written and the whole batch is reported failed."""
        return self._process(event, deadline_s, time.monotonic())

    def _process(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                 remaining_s: float | None, since: float) -> BatchResult:
        records = records_of(event)
        result = BatchResult(records=len(records))
        seconds = deadline.budget(remaining_s, self.settings.deadline_margin_s)
        if seconds is not None and seconds <= 0:
            self._fail_all(records, result, f"{remaining_s:.3f} s left: not more than the "
                                           "deadline margin (Settings.deadline_margin_s)")
            return result
        with deadline.bounded(seconds, since=since):
            plan = self._plan(records)
            self._settle_bad_records(plan, result)
            self._write(plan, result, records)
        if result.failures:
            _log_failures(result.failures, records)
        return result

    def plan(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> WritePlan:
        """The write plan for an event, without writing (pure unless a read-back is needed)."""
        return self._plan(records_of(event))

    # -- steps -----------------------------------------------------------------------------------
    @staticmethod
    def _fail_all(records: Sequence[Any], result: BatchResult, why: str) -> None:
        """Report the whole batch for redelivery (Lambda retries it with a fresh timeout)."""
        sequences = [s for s in map(_sequence_of_raw, records) if s is not None]
        if records and not sequences:
            # No item to name: an error fails the whole batch (Lambda retries it all).
            raise TimeoutError(f"{why}; no record has a readable SequenceNumber")
        if sequences:
            result.failures.append((min(sequences, key=lambda s: s.zfill(40)), why))
        log.warning("nothing written: %s; the batch will be redelivered", why)

    def _plan(self, records: list[Any]) -> WritePlan:
        """Raw records -> a write plan. The C accelerator, where it runs (see
        replicator.accelerator.declined_by), is a drop-in for parse + plan of a batch that needs
        nothing in between (every record well formed, of the pinned stream, with its new image);
        for anything else it answers None and the Python steps decide, as the reference."""
        self.source.pin(records)
        plan = self.planner.plan_records(records, self.source.stream_arn)
        if plan is not None:
            return plan
        changes, bad = parse_records(records)
        changes = self.source.screen(changes, bad)
        changes = screen_stream_views(self.settings, changes, bad)
        changes = fill_new_images(changes, bad, self.item_reader)
        plan = self.planner.plan(changes, bad)
        self._log_configuration_problems(plan.bad_records)
        return plan

    def _log_configuration_problems(self, bad_records: list[BadRecord]) -> None:
        """Each kind of configuration problem once per Replicator (per Lambda container), not
        once per record; every record is still quarantined with the fix in its error."""
        for bad in bad_records:
            error = bad.error
            if isinstance(error, UnsupportedRecordError) and error.problem not in self._logged_problems:
                self._logged_problems.add(error.problem)
                log.warning("configuration: %s (such records are quarantined)", error.reason)

    def _settle_bad_records(self, plan: WritePlan, result: BatchResult) -> None:
        if not plan.bad_records:
            return
        # One line per batch, never one per record (each is kept with its own error).
        first = plan.bad_records[0].error
        log.error("%d bad record(s) in the batch; the first: %s: %s", len(plan.bad_records),
                  type(first).__name__, first)
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
            quarantine_write(bad)
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
        archive_writes = plan.archive_writes
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
        main = [w for w in plan.main_writes if w.sequence_numbers not in blocked]
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
                PlannedWrite.delete({"_id": w.document_id, sequence_field: {"$lt": tombstone}},
                                    w.sequence_numbers)
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
        result.already += len(outcome.already)
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
            PlannedWrite.delete(
                {"_id": planned.document_id,
                 sequence_field: pad_sequence_number(planned.sequence_numbers[-1])},
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
                rejection, field_path=record_path(root, rejection.field_path), index=index,
                event_id=raw.get("eventID") if isinstance(raw, Mapping) else None,
                sequence_number=sequence, covered=planned.sequence_numbers,
            )
            bad_records.append(BadRecord(index, raw, error))
        # One line per batch, never one per record (each is kept with its own error).
        log.error("%d write(s) rejected by MongoDB; the first: %s", len(bad_records),
                  bad_records[0].error)
        self._keep(bad_records, result)


def _log_failures(failures: Sequence[tuple[str, str]], records: Sequence[Any]) -> None:
    """One WARNING for a batch's failed records, never one per record (a cancelled round of
    1,000 records is one line): how many, the lowest one's identity and its error."""
    sequence, why = min(failures, key=lambda failure: failure[0].zfill(40))
    event_id = next((record.get("eventID") for record in records
                     if _sequence_of_raw(record) == sequence), None)
    where = f"SequenceNumber {sequence}" + (f" (eventID {event_id})" if event_id else "")
    others = len({reason.split(":", 1)[0] for _, reason in failures}) - 1
    log.warning("%d record(s) will be redelivered, from %s: %s%s", len(failures), where, why,
                f" (and {others} other kind(s) of error)" if others else "")


def _sequence_of_raw(record: Any) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    sequence = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return sequence if isinstance(sequence, str) else None


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
