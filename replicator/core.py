"""The replicator: parse -> screen -> (read back) -> plan -> quarantine -> tombstones -> write,
and the Lambda batch response.

Steps in a fixed order, as Powertools' batch processor does, each module visited once (see
:meth:`Replicator.process`); the C accelerator stands in for parse + plan alone (``_plan``). Only
the edges do I/O (read-back, the quarantine write, the tombstone probe, the bulk writes).
Failures come back as data (a :class:`BatchResult`), and the Lambda response is built from it in
one place.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import PyMongoError

from replicator import accelerator, apply, deadline, ties
from replicator.errors import ConfigurationError, UnsupportedRecordError
from replicator.events import (
    BadRecord,
    creation_time_of,
    is_kinesis_record,
    pad_sequence_number,
    parse_records,
    records_of,
    sequence_of_record,
)
from replicator.expected import load_callable as load_callable  # its home; re-exported
from replicator.expected import planner_for
from replicator.item_records import COPY_SEQUENCE
from replicator.keys import identity
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
    """What one batch did; ``lambda_response()`` turns it into Lambda's partial-batch answer.

    The figures of the batch's metrics and summary log line (:mod:`replicator.metrics`):
    ``records`` in the batch; ``applied`` writes MongoDB acknowledged (the records of one item in
    a batch are coalesced into one write, so this can be lower than the records); ``stale``
    writes refused because a newer version is stored ("already newer"); ``quarantined`` records;
    ``failures`` (see :attr:`failed`); ``round_trips`` to MongoDB; ``duration_s`` of the whole
    batch (seconds, monotonic clock); ``replication_lag_s``: when the batch ended, minus the
    newest ``ApproximateCreationDateTime`` among the records applied (None when nothing was
    applied; AWS rounds that time to the second, so the lag has that resolution).
    """

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
    #: the source table's name (from the records' eventSourceARN, or given to process())
    table: str | None = None
    #: the MongoDB collection's name (without the database)
    collection: str | None = None
    #: the stream shard, when the caller knows it (the poller; a Lambda event does not name it)
    shard_id: str | None = None
    #: the lowest and highest SequenceNumber of the batch
    first_sequence_number: str | None = None
    last_sequence_number: str | None = None
    duration_s: float = 0.0
    newest_applied_at: datetime | None = None
    replication_lag_s: float | None = None

    @property
    def failed_sequence_numbers(self) -> list[str]:
        # zfill(128): a Kinesis sequence number has up to 128 digits (DynamoDB Streams' up to 40)
        return sorted({s for s, _ in self.failures}, key=lambda s: s.zfill(128))

    @property
    def failed(self) -> int:
        """Records reported for redelivery: each failed write counts once, by its lowest record
        (Lambda redelivers the batch from the lowest of them)."""
        return len({s for s, _ in self.failures})

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """``{"batchItemFailures": [...]}`` naming the lowest failed sequence number: the
        DynamoDB Streams SequenceNumber, or for a Kinesis batch the Kinesis sequenceNumber.

        Lambda checkpoints before the lowest reported item and redelivers from it (AWS docs:
        "Implementing partial batch responses"; for Kinesis, "Configuring partial batch response
        with Kinesis Data Streams and Lambda": the same rule), so one item says everything.
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
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.collection = collection
        #: the wall clock of the replication lag (tests pass a fixed one)
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(timezone.utc))
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
        # The one construction from Settings, shared with verify, recover and the harness.
        self.planner = planner_for(self.settings)
        #: the C accelerator this Replicator parses records and builds pymongo operations with
        #: (replicator.accelerator: None where it is not built or turned off): same results
        self.native: Any = accelerator.native
        self.source = SourceTable(self.settings.source_table, self.settings.source)
        self._logged_problems: set[str] = set()

    # -- entry points ----------------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Process a Lambda event; return ``{"batchItemFailures": [...]}``. The MongoDB I/O ends
        before the invocation's timeout (``context.get_remaining_time_in_millis()``, see
        :mod:`replicator.deadline`)."""
        return self.handle_batch(event, context).lambda_response()

    def handle_batch(self, event: Mapping[str, Any], context: Any = None) -> BatchResult:
        """:meth:`handle`, returning the whole :class:`BatchResult` (for the handler's metrics)."""
        # Read the clock before the remaining time: the deadline can only come out earlier.
        since = time.monotonic()
        remaining = deadline.remaining_in_context(context)
        return self._process(event, remaining, since)

    def process(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                deadline_s: float | None = None, *, table: str | None = None,
                shard_id: str | None = None) -> BatchResult:
        """A record's whole path, forward: plan (parse -> screen -> read back -> plan), quarantine
        the bad records, then write (tombstones -> bulk write -> quarantine the rejected).

        ``deadline_s``: seconds this call may take (a Lambda invocation's remaining time); every
        MongoDB command is then sent with the time left minus ``Settings.deadline_margin_s`` as
        ``maxTimeMS``, and one that runs out is retried (batchItemFailures), never lost. With
        less than the margin left nothing is written and the whole batch is reported failed.
        ``table`` / ``shard_id``: where the batch comes from, for its figures and summary line,
        when the records do not say (GetRecords' records carry no eventSourceARN)."""
        return self._process(event, deadline_s, time.monotonic(), table=table, shard_id=shard_id)

    def _process(self, event: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                 remaining_s: float | None, since: float, *, table: str | None = None,
                 shard_id: str | None = None) -> BatchResult:
        records = records_of(event)
        result = BatchResult(records=len(records), shard_id=shard_id,
                             collection=getattr(self.collection, "name", None))
        seconds = deadline.budget(remaining_s, self.settings.deadline_margin_s)
        figures = None
        if seconds is not None and seconds <= 0:
            self._fail_all(records, result, f"{remaining_s:.3f} s left: not more than the "
                                           "deadline margin (Settings.deadline_margin_s)")
        else:
            with deadline.bounded(seconds, since=since):
                plan = self._plan(records)
                if plan.changes:
                    self._settle_ties(plan, result)
                self._settle_bad_records(plan, result)
                self._write(plan, result, records)
                figures = plan.native_figures
        self._close(result, records, since, table, figures)
        return result

    def _close(self, result: BatchResult, records: Sequence[Any], since: float,
               table: str | None, figures: tuple[Any, Any, Any, bool] | None = None) -> None:
        """Fill in the batch's figures and log its one summary line (never one per record:
        the quarantine collection holds each bad record with its error). ``figures``: the C
        planner's (WritePlan.native_figures), which hold the sequence range already."""
        result.duration_s = time.monotonic() - since
        pinned = self.source.table_arn
        result.table = table or (pinned.rpartition(":table/")[2] if pinned else None)
        span = (figures[:2] if figures is not None
                else self.native.sequence_range(records)
                if self.native is not None and type(records) is list else None)
        if span is not None:  # the C accelerator: the same answer as below, in one pass
            result.first_sequence_number, result.last_sequence_number = span
        elif sequences := _sequences_of(records):
            # What sorted(sequences, key=pad_sequence_number)[0] and [-1] are (the first of equal
            # lowest, the last of equal highest), without sorting: the key is a C call, not a frame.
            result.first_sequence_number = min(sequences, key=_PADDED)
            result.last_sequence_number = max(reversed(sequences), key=_PADDED)
        if result.newest_applied_at is not None:
            lag = (self.now() - result.newest_applied_at).total_seconds()
            result.replication_lag_s = max(0.0, lag)
        event_id = None
        if result.failures:
            lowest = result.failed_sequence_numbers[0]
            carrying = [r.get("eventID") for r in records
                        if isinstance(r, Mapping) and _sequence_of_raw(r) == lowest]
            # Named only where it is the failed record: the one record of that sequence number,
            # or the first of several (a copy's or an export's all carry "0") when all failed;
            # otherwise which of them failed is not known here, and a wrong eventID misleads.
            if len(carrying) == 1 or (carrying and sum(
                    1 for s, _ in result.failures if s == lowest) >= len(carrying)):
                event_id = carrying[0]
        log_batch(result, getattr(self.collection, "full_name", result.collection), event_id)

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

    def _plan(self, records: list[Any]) -> WritePlan:
        """Raw records -> a write plan. The C accelerator, where it runs (see
        replicator.accelerator.declined_by), is a drop-in for parse + plan of a batch that needs
        nothing in between (every record well formed, of the pinned stream, with its new image);
        for anything else it answers None and the Python steps decide, as the reference."""
        # The C planner takes DynamoDB Streams records only (and declines a batch with any other
        # record, so the first record tells whether to ask it at all).
        if self.source.kind != "kinesis" and not (records and is_kinesis_record(records[0])):
            self.source.pin(records)
            plan = self.planner.plan_records(records, self.source.stream_arn)
            if plan is not None:
                if records and _sequence_of_raw(records[0]) != COPY_SEQUENCE:
                    # the pin screen_kind keeps on other paths (a copy's records pin nothing)
                    self.source.kind = "dynamodb"
                return plan
        changes, bad = parse_records(records, native=self.native)
        changes = self.source.screen_kind(changes, bad)
        changes = self.source.screen(changes, bad)
        changes = screen_stream_views(self.settings, changes, bad)
        changes = fill_new_images(changes, bad, self.item_reader)
        plan = self.planner.plan(changes, bad)
        if self.source.kind == "kinesis":  # pinned by screen_kind: every change left is Kinesis
            plan.changes = [c for c in changes if c.order_key is not None]
        self._log_configuration_problems(plan.bad_records)
        return plan

    def _settle_ties(self, plan: WritePlan, result: BatchResult) -> None:
        """A Kinesis batch: drop duplicates of what is stored and decide equal-timestamp ties
        (replicator.ties: one read of the batch's stored order keys; the item read back where a
        tie needs it, else its records quarantined)."""
        tombstones = self.tombstones.collection if self.tombstones is not None else None
        outcome = ties.settle(plan, self.collection, tombstones, self.item_reader,
                              self.settings.sequence_field)
        result.round_trips += outcome.round_trips
        result.stale += outcome.stale
        result.already += outcome.already
        result.failures.extend((_lowest(w), why) for w, why in outcome.failed)
        if outcome.bad:
            plan.bad_records = sorted([*plan.bad_records, *outcome.bad], key=lambda b: b.index)
            self._log_configuration_problems(outcome.bad)

    def _log_configuration_problems(self, bad_records: list[BadRecord]) -> None:
        """Each kind of configuration problem once per Replicator (per Lambda container), not
        once per record; every record is still quarantined with the fix in its error."""
        for bad in bad_records:
            error = bad.error
            if isinstance(error, UnsupportedRecordError) and error.problem not in self._logged_problems:
                self._logged_problems.add(error.problem)
                log.warning("configuration: %s (such records are quarantined)", error.reason)

    def _settle_bad_records(self, plan: WritePlan, result: BatchResult) -> None:
        if plan.bad_records:
            self._keep(plan.bad_records, result, plan)

    def quarantine_records(self, bad_records: Sequence[BadRecord]) -> BatchResult:
        """Keep records found bad outside the core (an export's unreadable line) the way the core
        keeps its own: in the quarantine, raw form and error; ``failures`` when it could not."""
        result = BatchResult(records=len(bad_records))
        self._keep(bad_records, result)
        return result

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
        outcome = apply.write(self.quarantine, writes, native=self.native)
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
        figures = plan.native_figures
        # the C planner's writes are all for the main collection (two list passes saved)
        archive_writes = plan.archive_writes if figures is None else []
        blocked: set[tuple[str, ...]] = set()
        if archive_writes:
            outcome = apply.write(self.archive, archive_writes, sequence_field=sequence_field,
                                  native=self.native)
            result.round_trips += outcome.round_trips
            for planned, why in outcome.failed:
                blocked.add(planned.sequence_numbers)  # keep the document until it is archived
                result.failures.append((_lowest(planned), f"archive failed: {why}"))
            # A rejected archive write keeps the old image in the quarantine (its raw record):
            # the delete may go ahead, nothing is lost.
            rejected.extend((w, why, "dynamodb.OldImage") for w, why in outcome.rejected)
        main = plan.main_writes if figures is None else list(plan.writes)
        if blocked:
            main = [w for w in main if w.sequence_numbers not in blocked]
        cleanup: list[PlannedWrite] = []
        if self.tombstones is not None and main:
            guarded = self.tombstones.guard(main, self.native)
            result.round_trips += guarded.round_trips
            result.stale += len(guarded.blocked)
            result.failures.extend((_lowest(w), why) for w, why in guarded.failed)
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
        outcome = apply.write(self.collection, main, sequence_field=sequence_field,
                              native=self.native)
        if cleanup:
            extra = {id(w) for w in cleanup}
            outcome.applied = [w for w in outcome.applied if id(w) not in extra]
        result.round_trips += outcome.round_trips
        result.applied += len(outcome.applied)
        result.stale += len(outcome.stale)
        result.already += len(outcome.already)
        # Report the lowest record a failed write stands for: everything from there is redelivered.
        result.failures.extend((_lowest(w), why) for w, why in outcome.failed)
        rejected.extend((w, why, "dynamodb.NewImage") for w, why in outcome.rejected)
        undone: set[tuple[str, ...]] = set()
        if self.tombstones is not None and outcome.inserted:
            undone = self._undo_resurrections(outcome.inserted, result)
        if outcome.applied and plan.changes:  # Kinesis: the parsed changes carry the times
            wanted = {s for w in outcome.applied if w.sequence_numbers not in undone
                      for s in w.sequence_numbers}
            result.newest_applied_at = max(
                (c.created_at for c in plan.changes
                 if c.sequence_number in wanted and c.created_at is not None), default=None)
        elif (figures is not None and figures[3] and not undone
              and len(outcome.applied) == len(plan.writes)
              and (figures[2] is None or (newest := _created_at(figures[2])) is not None)):
            # Every write of a C plan applied: they stand for every record of the batch (the C
            # planner plans all or nothing, one write per _id covering each of its records), so
            # the newest time is the batch's, read in the planner's pass (issue 21: ~2,000
            # instructions per event less than reading the records again).
            result.newest_applied_at = None if figures[2] is None else newest
        elif outcome.applied:
            result.newest_applied_at = _newest_created(
                records, (w for w in outcome.applied if w.sequence_numbers not in undone)
                if undone else outcome.applied, self.native)
        if rejected:
            self._quarantine_rejected(rejected, records, result)

    def _undo_resurrections(self, inserted: list[PlannedWrite],
                            result: BatchResult) -> set[tuple[str, ...]]:
        """Remove the documents this batch inserted although a newer delete is remembered.

        The tombstone probe and the upsert are two round trips: a delete of the same _id can
        land between them, and the upsert, finding no document, inserts an older version after
        the delete. Reading the tombstones of the _ids we inserted, after our insert, closes that
        window: either the read sees the delete's tombstone (written before its delete), and we
        remove our document -- filtered on the sequence number we wrote, so a newer write is
        never removed --; or the tombstone was not written yet, so the delete's own guarded
        deleteOne runs after our insert and removes it. One find, only for batches that
        created documents (updates of existing documents cannot resurrect anything).
        Returns the sequence numbers of the writes removed (no longer applied).
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
            result.failures.extend((_lowest(w), why) for w in inserted)
            return set()
        if not newer:
            return set()
        undo = [
            PlannedWrite.delete(
                # planned.order: what the insert stored (a Kinesis write stores its order key,
                # not its Kinesis sequence number; else the padded sequence number)
                {"_id": planned.document_id, sequence_field: planned.order},
                planned.sequence_numbers,
            )
            for planned, _ in newer
        ]
        outcome = apply.write(self.collection, undo, sequence_field=sequence_field,
                              native=self.native)
        result.round_trips += outcome.round_trips
        result.applied -= len(outcome.applied)
        result.stale += len(outcome.applied)
        for planned, why in [*outcome.failed, *((w, r.reason) for w, r in outcome.rejected)]:
            result.failures.append((_lowest(planned),
                                    f"removing a write older than a remembered delete: {why}"))
        return {w.sequence_numbers for w in outcome.applied}

    def _quarantine_rejected(
        self,
        rejected: list[tuple[PlannedWrite, apply.Rejection, str]],
        records: Sequence[Any],
        result: BatchResult,
    ) -> None:
        """Quarantine the writes that can never be applied, each with the raw record it stands
        for: the newest record of its coalesced group (the one whose content it carries).

        A record is found by the write's last sequence number; where several records of the
        batch carry it -- a copy's or an export's records all carry COPY_SEQUENCE, a gap
        recovery's one number per window -- by the write's ``_id`` among them too (before, each
        rejected write of such a batch was kept with the batch's first record: the rejected
        items' own records were lost)."""
        by_sequence: dict[str, list[tuple[int, Any]]] = {}
        for index, record in enumerate(records):
            sequence = _sequence_of_raw(record)
            if sequence is not None:
                by_sequence.setdefault(sequence, []).append((index, record))
        by_id: dict[str, dict[Any, tuple[int, Any]]] = {}  # per shared number, made once
        bad_records = []
        for planned, rejection, root in rejected:
            sequence = planned.sequence_numbers[-1]
            candidates = by_sequence.get(sequence, [])
            if len(candidates) <= 1:
                index, raw = candidates[0] if candidates else (-1, None)
            else:
                if sequence not in by_id:
                    by_id[sequence] = self._records_by_id(candidates)
                index, raw = by_id[sequence].get(identity(planned.document_id), (-1, None))
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

    def _records_by_id(self, candidates: list[tuple[int, Any]]
                       ) -> dict[Any, tuple[int, Any]]:
        """The (index, raw record) candidates of one sequence number by their ``_id``
        (:func:`replicator.keys.identity`), the last of equal ones kept (the newest of a
        coalesced group); a record that does not parse or whose key maps to no ``_id`` is left
        out (no write stands for it)."""
        found: dict[Any, tuple[int, Any]] = {}
        changes, _ = parse_records([raw for _, raw in candidates])
        for change in changes:
            try:
                document_id = self.planner.key_mapper.document_id(change.keys)
            except Exception:  # any: a key that maps to no _id is not a write's
                continue
            found[identity(document_id)] = candidates[change.index]
        return found


def _newest_created(records: Sequence[Any], applied: Iterable[PlannedWrite],
                    native: Any = None) -> datetime | None:
    """The newest ApproximateCreationDateTime of the records the ``applied`` writes stand for.

    Hot (every record of every batch): a Lambda event's times are epoch seconds in plain dicts,
    and epoch seconds -> datetime is monotonic, so the newest number is found first and converted
    once; any other record (a datetime from GetRecords, not a dict) goes through
    :func:`creation_time_of` as before, and so does every record when the newest number is not
    a time (out of range, NaN): the same answer as :func:`_newest_created_each`. ``native``: the C
    accelerator, which finds the newest number of a batch of plain records in one pass."""
    # the C accelerator reads the writes' sequence numbers from their slots (issue 21: the
    # set comprehension cost ~1,000 instructions per event); the same set
    wanted = (native.covered_sequences(applied)
              if native is not None and type(applied) is list else None)
    if wanted is None:
        wanted = {s for w in applied for s in w.sequence_numbers}
    if not wanted:
        return None
    highest: int | float | None = None
    others = []
    found = (native.newest_created(records, wanted)
             if native is not None and type(records) is list else None)
    latest: datetime | None = None
    if found is not None:  # every record read in C: none left for the loop below
        highest, latest = found
    for raw in () if found is not None else records:
        body = raw.get("dynamodb") if type(raw) is dict else None
        if type(body) is not dict:
            others.append(raw)
            continue
        sequence = body.get("SequenceNumber")
        if type(sequence) is not str or sequence not in wanted:
            continue
        value = body.get("ApproximateCreationDateTime")
        if type(value) is int or type(value) is float:
            if highest is None or value > highest:
                highest = value
        elif value is not None:
            others.append(raw)
    newest: datetime | None = None
    if highest is not None:
        newest = creation_time_of({"dynamodb": {"ApproximateCreationDateTime": highest}})
        if newest is None:
            return _newest_created_each(records, wanted)
    rest = _newest_created_each(others, wanted) if others else latest
    if rest is not None and (newest is None or rest > newest):
        newest = rest
    return newest


def _created_at(seconds: int | float) -> datetime | None:
    """Epoch seconds -> the aware datetime :func:`_newest_created` gives for them (None: not a
    time)."""
    return creation_time_of({"dynamodb": {"ApproximateCreationDateTime": seconds}})


def _newest_created_each(records: Sequence[Any], wanted: set[str]) -> datetime | None:
    """:func:`_newest_created` record by record (the reference)."""
    newest: datetime | None = None
    for raw in records:
        if _sequence_of_raw(raw) in wanted:
            created = creation_time_of(raw)
            if created is not None and (newest is None or created > newest):
                newest = created
    return newest


def log_batch(result: BatchResult, target: str | None, failed_event_id: str | None = None) -> None:
    """The one log line of a batch: what it did, where from (table, shard, sequence range) and
    where to; a WARNING when something was quarantined or will be redelivered. The figures are
    also the record's ``batch`` attribute (a JSON log formatter writes them as fields); error
    texts stay in the message, which the log redaction covers (replicator.redact)."""
    level = logging.WARNING if result.quarantined or result.failures else logging.INFO
    if not log.isEnabledFor(level):
        return  # the text costs more than many a small batch's planning
    figures = batch_fields(result)
    text = (f"batch of {result.records} records, SequenceNumber "
            f"{result.first_sequence_number or '-'}..{result.last_sequence_number or '-'} "
            f"(table {result.table or '-'}, shard {result.shard_id or '-'}) into {target or '-'}: "
            f"{result.applied} applied, {result.stale} already newer, "
            f"{len(result.quarantined)} quarantined, {result.failed} failed; "
            f"{result.round_trips} round trips in {figures['duration_ms']:.1f} ms; lag "
            + (f"{result.replication_lag_s:.2f} s" if result.replication_lag_s is not None
               else "-"))
    if result.quarantined:
        more = len(result.quarantined) - 1
        text += f"; quarantined: {result.quarantined[0].error}" + (f" (and {more} more)" if more
                                                                    else "")
    if result.failures:
        lowest = result.failed_sequence_numbers[0]
        why = next(w for s, w in result.failures if s == lowest)
        more = len(result.failures)
        where = f"SequenceNumber {lowest}" + (f" (eventID {failed_event_id})" if failed_event_id
                                               else "")
        text += f"; {more} record(s) will be redelivered, from {where}: {why}"
    log.log(level, "%s", text, extra={"batch": figures})


def batch_fields(result: BatchResult) -> dict[str, Any]:
    """A batch's figures as plain JSON values (the summary line's structured fields)."""
    lag = result.replication_lag_s
    return {
        "table": result.table,
        "collection": result.collection,
        "shard_id": result.shard_id,
        "first_sequence_number": result.first_sequence_number,
        "last_sequence_number": result.last_sequence_number,
        "records": result.records,
        "applied": result.applied,
        "already_newer": result.stale,
        "quarantined": len(result.quarantined),
        "failed": result.failed,
        "round_trips": result.round_trips,
        "duration_ms": round(result.duration_s * 1000, 3),
        "replication_lag_ms": None if lag is None else round(lag * 1000, 3),
    }


#: pad_sequence_number as a key function called from C (no Python frame per record)
_PADDED = operator.methodcaller("zfill", 40)
assert _PADDED("1") == pad_sequence_number("1")


def _sequences_of(records: Sequence[Any]) -> list[str]:
    """The readable SequenceNumbers of ``records`` in their order (:func:`_sequence_of_raw` of
    each, Nones left out), plain dicts read inline: once per record of every batch."""
    sequences = []
    for record in records:
        body = record.get("dynamodb") if type(record) is dict else None
        sequence = body.get("SequenceNumber") if type(body) is dict else _sequence_of_raw(record)
        if type(sequence) is str:
            sequences.append(sequence)
    return sequences


def _sequence_of_raw(record: Any) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    if body is None and isinstance(record, Mapping) and is_kinesis_record(record):
        return sequence_of_record(record)  # kinesis.sequenceNumber (GetRecords: SequenceNumber)
    sequence = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return sequence if isinstance(sequence, str) else None


def _lowest(planned: PlannedWrite) -> str:
    """The lowest record a write stands for (what batchItemFailures must name): the first of a
    DynamoDB Streams write's ascending sequence numbers; of a Kinesis write's, the lowest (the
    content's record comes last there, plan.kinesis_covered)."""
    numbers = planned.sequence_numbers
    if planned.order_key is None:
        return numbers[0]
    return min(numbers, key=lambda s: s.zfill(128))


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
