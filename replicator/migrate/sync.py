"""``replicator sync``: copy a live table into MongoDB and hand over to the stream.

Positions first (the order dsync and NimoShake also use, made safe here by the guard):

1. **Positions.** The poller opens every shard at ``LATEST`` (a stream marker is saved, so a later
   run knows the stream) before a single item is read: every change made from then on is in the
   stream after these iterators.
2. **Copy.** The table's items go through the same Replicator as INSERTs with sequence number
   "0" (replicator/item_records.py): a copied item never overwrites a document a stream change
   wrote, and a tombstone keeps an item deleted by the stream from coming back. Source: a
   Parallel Scan (copy.py, resumable per segment) or a DynamoDB export to S3 (export.py).
3. **Handover.** The poller applies the stream from the positions of step 1 until it is caught up
   (``consistent_at``); ``replicator run`` (or a Lambda event source mapping) continues from there.

A killed sync is run again: the copy resumes per segment (or per export data file); the poller's
shards without a checkpoint restart at ``TRIM_HORIZON`` (an iterator at LATEST cannot be saved
before a record is read), which applies more records than needed but never fewer.

**Over Kinesis Data Streams** (the Poller reads a Kinesis data stream: ``replicator sync
--kinesis-stream ARN``) positions and copy differ, because a Kinesis record may reach the stream
after records of later changes of its item (docs/kinesis.md):

1. The cutoff ``C`` is the copy's start less :data:`KINESIS_MARGIN`; every shard with no
   checkpoint is read from ``AT_TIMESTAMP`` ``C - KINESIS_MARGIN`` (kept in the stream marker, so
   a rerun reads such a shard from there again).
2. Each copied item is written as a Kinesis change made at ``C`` (order key ``K<C>.<digest>``,
   :func:`replicator.item_records.kinesis_item_record`), not at sequence "0": a change made
   before ``C`` -- which the copy, reading after ``C``, already shows -- is stale against it,
   however late its record arrives; a change made from ``C`` on replaces it, and its record is
   read (it reached the stream after ``C - KINESIS_MARGIN``). With sequence "0" a late record of
   an older change would win over the copy for good whenever the newer change's record had come
   before the positions.
3. Handover as above. The margin covers the clock of this host against DynamoDB's
   (``ApproximateCreationDateTime``), the Scan's eventual consistency and the time between a
   change and its record reaching the stream.

The stream keeps records 24 hours (DynamoDB Streams docs): the copy must finish (or the poller
must run beside it, ``replicator run``) within that time, else the handover raises
ResyncRequired and ``replicator recover`` takes over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.core import Replicator
from replicator.errors import ConfigurationError, CopyInterrupted, ResyncRequired
from replicator.events import COPY_OFFSET_US
from replicator.item_records import COPY_SEQUENCE, Record, kinesis_item_record
from replicator.migrate.copy import CopyStats, ScanCopy
from replicator.migrate.export import ExportManifest, ExportStats, WorkerTarget, load_export
from replicator.migrate.segments import SegmentStore
from replicator.migrate.throttle import ReadCapacityThrottle
from replicator.poller import Poller, PollerStats
from replicator.poller.resume import COVERED, stream_created_at

log = logging.getLogger("replicator.migrate")
SYNC_KIND = "sync"
#: Kinesis sync: the cutoff is the copy's start less this; the shards are read from the cutoff
#: less this again (module docstring). Clock skew and the Scan's eventual consistency are
#: seconds; five minutes of margin costs re-reading ten minutes of the stream.
KINESIS_MARGIN = timedelta(minutes=5)


@dataclass
class SyncReport:
    table: str
    source: str
    positions_at: datetime | None = None
    positions: str = "LATEST"
    copy_started_at: datetime | None = None
    copy_finished_at: datetime | None = None
    #: the handover caught up with the stream: from then on the collection is the table, lagging
    #: only by the replication lag
    consistent_at: datetime | None = None
    stream_records_applied: int = 0
    stream_records_stale: int = 0
    copy: CopyStats | None = None
    export: ExportStats | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": self.table, "source": self.source, "positions": self.positions,
            "stream_records_applied": self.stream_records_applied,
            "stream_records_stale": self.stream_records_stale, "notes": self.notes,
        }
        for name in ("positions_at", "copy_started_at", "copy_finished_at", "consistent_at"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value else None
        if self.copy is not None:
            out["copy"] = {**asdict(self.copy), "items_per_s": round(self.copy.items_per_s, 1)}
        if self.export is not None:
            data = asdict(self.export)
            data.pop("per_file")
            out["export"] = {**data, "items_per_s": round(self.export.items_per_s, 1)}
        return out


def copy_replicator_factory(poller: Poller) -> Callable[[], Replicator]:
    """Replicators for the copy: the poller's settings (key schema from DescribeTable), no
    read-back (copied records carry full images)."""
    poller.make_replicator()  # fills the key schema in the poller's settings
    settings = poller.settings
    if not settings.guard:
        raise ConfigurationError("sync needs the stale-write guard (REPLICATOR_GUARD=true): "
                                 "without it a copied item could overwrite a newer change")
    collection = poller.collection
    if poller.kinesis_arn is not None:
        # A copied item and a Kinesis change of the cutoff's very time tie: the table decides
        # (docs/kinesis.md, "Equal timestamps"), as it does for the poller's own ties.
        from replicator.readback import DynamoDBItemReader

        reader = DynamoDBItemReader(poller.dynamodb, poller.table_name)
        return lambda: Replicator(collection, settings, item_reader=reader)
    return lambda: Replicator(collection, settings)


def record_positions(poller: Poller, *, trim_horizon: bool = False,
                     at_timestamp: datetime | None = None) -> PollerStats:
    """Step 1: open the shards (LATEST, TRIM_HORIZON, or -- Kinesis -- AT_TIMESTAMP
    ``at_timestamp``) and apply whatever one poll brings."""
    poller.starting_position = "TRIM_HORIZON" if trim_horizon or at_timestamp else "LATEST"
    poller.starting_timestamp = at_timestamp
    poller.prepare()
    return poller.run(once=True, idle_polls=1)


def handover(poller: Poller, report: SyncReport, now: Callable[[], datetime]) -> None:
    """Step 3: apply the stream from the recorded positions until a poll brings nothing."""
    stats = poller.run(once=True)
    report.stream_records_applied += stats.records_applied
    report.stream_records_stale += stats.stale
    report.consistent_at = now()
    mark_consistent(poller, report.source, report.consistent_at)


def mark_consistent(poller: Poller, source: str, when: datetime) -> None:
    """The handover caught up at ``when``: kept in ``<collection>_sync`` (``verify`` and the
    operator read it), for the single-machine sync and the distributed export copy alike."""
    SegmentStore.beside(poller.collection, poller.table_name).collection.update_one(
        {"_id": f"{poller.table_name}#{SYNC_KIND}"},
        {"$set": {"kind": SYNC_KIND, "table": poller.table_name, "source": source,
                  "consistent_at": when}}, upsert=True)


def sync_scan(
    poller: Poller,
    *,
    segments: int = 4,
    concurrency: int | None = None,
    page_size: int = 1000,
    consistent_read: bool = False,
    read_units_per_s: float | None = None,
    restart: bool = False,
    follow: bool = False,
    store: SegmentStore | None = None,
    on_progress: Callable[[int], None] | None = None,
    after_page: Callable[[int, int], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> SyncReport:
    """Positions, Parallel Scan copy, handover (module docstring).

    ``follow``: the poller applies the stream in a thread while the copy runs (the guard makes
    any interleaving safe), so the handover has little left to do and the shard iterators never
    sit idle past their 15-minute expiry; otherwise the stream is applied after the copy.
    """
    report = SyncReport(table=poller.table_name, source=f"scan ({segments} segments)")
    make_replicator = copy_replicator_factory(poller)
    store = store or SegmentStore.beside(poller.collection, poller.table_name)
    if restart:
        store.clear()
    make_record = None
    if poller.kinesis_arn is None:
        first = record_positions(poller)
    else:
        check_destination(poller)
        cutoff = now() - KINESIS_MARGIN
        make_record = kinesis_copy_record(poller, cutoff)
        first = record_positions(poller, at_timestamp=cutoff - KINESIS_MARGIN)
        report.positions = (f"AT_TIMESTAMP {(cutoff - KINESIS_MARGIN).isoformat()} (Kinesis; "
                            f"copy as of {cutoff.isoformat()})")
    report.positions_at = now()
    report.stream_records_applied += first.records_applied
    report.copy_started_at = now()
    throttle = ReadCapacityThrottle(read_units_per_s) if read_units_per_s else None
    copier = ScanCopy(
        poller.dynamodb, poller.table_name, make_replicator, poller.info.key_schema, store,
        segments=segments, concurrency=concurrency, page_size=page_size,
        consistent_read=consistent_read, throttle=throttle, make_record=make_record,
        on_progress=on_progress, after_page=after_page, stop=poller.stop_event,
    )
    if follow:
        report.copy = _copy_while_following(poller, copier, report)
    else:
        report.copy = copier.run()
    report.copy_finished_at = now()
    handover(poller, report, now)
    # Done: a later `replicator sync` copies again (a rerun before this point resumes instead).
    store.clear()
    log.info("sync of %s: %d items copied (%d already newer from the stream), %d stream "
             "records applied; consistent at %s", poller.table_name, report.copy.items_written,
             report.copy.items_skipped_newer, report.stream_records_applied,
             report.consistent_at.isoformat() if report.consistent_at else "?")
    return report


def check_destination(poller: Poller) -> None:
    """Refuse (ConfigurationError) a Kinesis sync whose table is not sending its changes to the
    poller's data stream: ``DescribeKinesisStreamingDestination`` must list it ``ACTIVE`` (a
    change made while it is not is in no data stream, and the copy would hide that nothing
    follows). Where the call is not answered (an emulator without it: moto, DynamoDB Local; a
    role without ``dynamodb:DescribeKinesisStreamingDestination``) a warning says it was not
    checked, and the sync goes on."""
    arn = poller.kinesis_arn
    try:
        answer = poller.dynamodb.describe_kinesis_streaming_destination(
            TableName=poller.table_name)
    except Exception as error:  # any answer but the list: not checked, and said so
        log.warning("could not check that table %s sends its changes to %s "
                    "(DescribeKinesisStreamingDestination: %s): make sure the destination is "
                    "ACTIVE", poller.table_name, arn, type(error).__name__)
        return
    status = {d.get("StreamArn"): d.get("DestinationStatus")
              for d in answer.get("KinesisDataStreamDestinations") or []}
    if status.get(arn) != "ACTIVE":
        raise ConfigurationError(
            f"table {poller.table_name} does not send its changes to {arn} "
            f"(DescribeKinesisStreamingDestination: {status.get(arn) or 'not a destination'}): "
            f"aws dynamodb enable-kinesis-streaming-destination --table-name "
            f"{poller.table_name} --stream-arn {arn}, wait until it is ACTIVE, then sync")


def kinesis_copy_record(poller: Poller, cutoff: datetime
                        ) -> Callable[[dict[str, Any], str, datetime], Record]:
    """The copy's records for a Kinesis-fed collection: Kinesis changes made at ``cutoff``
    (module docstring, "Over Kinesis Data Streams")."""
    arn = poller.kinesis_arn
    assert arn is not None
    # Half-way into its millisecond: a change of MILLISECOND precision never ties with it.
    micros = int(cutoff.timestamp() * 1000) * 1000 + COPY_OFFSET_US
    key_schema = poller.info.key_schema
    table = poller.table_name

    def make(item: dict[str, Any], event_id: str, _: datetime) -> Record:
        return kinesis_item_record(item, key_schema, micros, event_id, table=table,
                                   stream_arn=arn)
    return make


def _copy_while_following(poller: Poller, copier: ScanCopy, report: SyncReport) -> CopyStats:
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            stats = poller.run()
            report.stream_records_applied += stats.records_applied
        except BaseException as error:  # handed to the main thread
            failure.append(error)
            poller.stop()  # the copy stops after its current pages

    follower = threading.Thread(target=follow, name="stream-follower", daemon=True)
    follower.start()
    try:
        copied = copier.run()
    except CopyInterrupted:
        if failure:  # the follower stopped the copy: its error is the cause
            follower.join()
            raise failure[0] from None
        raise
    finally:
        poller.stop()  # the follower ends after its current batch, checkpointed
        follower.join()
    if failure:
        raise failure[0]
    poller.stop_event.clear()  # ours, not a signal's: a signal during the copy interrupts it
    return copied


def check_export_covered(poller: Poller, manifest: ExportManifest, moment: datetime) -> None:
    """Raise ResyncRequired unless the stream provably holds every change since the export's
    ``exportTime``: the stream existed then (DynamoDB Streams records only changes made while it
    is enabled: DescribeStream ``CreationRequestDateTime`` / the stream label) and ``exportTime``
    is within the last 23 hours (records are trimmed after 24)."""
    arn = poller.stream_arn
    exported = manifest.export_time
    if exported is None or moment - exported > COVERED:
        raise ResyncRequired(
            f"the export's exportTime ({exported.isoformat() if exported else 'missing'}) is not "
            "within the stream's last 23 hours: the changes made since it may be gone from the "
            "stream", table=poller.table_name, stream_arn=arn).with_command(
            _new_source_command(poller.table_name))
    created = stream_created_at(poller.streams, arn)
    if created is None or exported < created:
        when = created.isoformat() if created else "unknown (DescribeStream gives no time)"
        raise ResyncRequired(
            f"the export's exportTime ({exported.isoformat()}) is before the table's stream was "
            f"enabled ({when}): a stream holds only the changes made while it is enabled, so the "
            "changes between the export and the stream's creation are in neither",
            table=poller.table_name, stream_arn=arn).with_command(
            _new_source_command(poller.table_name))


def _new_source_command(table: str) -> str:
    return (f"replicator sync --table {table} (a Parallel Scan), or a new export taken now "
            "that the stream is enabled: replicator sync --table "
            f"{table} --export s3://<bucket>/<prefix>/AWSDynamoDB/<ExportId>")


def sync_export(
    poller: Poller,
    manifest: ExportManifest,
    *,
    processes: int = 0,
    worker: tuple[int, int] = (0, 1),
    worker_target: WorkerTarget | None = None,
    on_file: Callable[[Any], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    s3: Any = None,
) -> SyncReport:
    """Positions, the export's items (full export), handover.

    An export is a snapshot at its ``exportTime``, taken before this command started: the stream
    is applied from ``TRIM_HORIZON``, which holds every change since the snapshot only when the
    stream already existed at ``exportTime`` and the snapshot is less than 23 hours old
    (:func:`check_export_covered`; raises ResyncRequired otherwise). Only worker 0 of N hands over;
    the others only load files. Raises ExportFileMismatch (after loading the other files) when a
    data file does not match its manifest entry: no handover then.
    """
    if poller.kinesis_arn is not None:
        raise ConfigurationError(
            "sync over a Kinesis data stream copies by Parallel Scan: leave out --export "
            "(an export's items would need the Kinesis order of its exportTime; not built yet)")
    if manifest.export_type != "FULL_EXPORT":
        raise ConfigurationError("sync reads a full export; an incremental one is for "
                                 "`replicator recover`")
    check_export_covered(poller, manifest, now())
    report = SyncReport(table=poller.table_name, source="export", positions="TRIM_HORIZON")
    make_replicator = copy_replicator_factory(poller)
    first_worker = worker[0] == 0
    if first_worker:
        report.stream_records_applied += record_positions(poller, trim_horizon=True).records_applied
        report.positions_at = now()
    report.copy_started_at = now()
    target = worker_target
    if target is not None and processes > 0:
        target = replace(target, settings=poller.settings, key_schema=poller.info.key_schema)
    report.export = load_export(
        manifest, key_schema=poller.info.key_schema, make_replicator=make_replicator,
        worker_target=target, processes=processes, worker=worker, sequence=COPY_SEQUENCE,
        progress=SegmentStore.beside(poller.collection, poller.table_name).collection,
        on_file=on_file, s3=s3)
    report.copy_finished_at = now()
    if first_worker:
        handover(poller, report, now)
    else:
        report.notes.append("not worker 0: the handover (stream) is worker 0's")
    return report
