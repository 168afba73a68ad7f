"""The standalone poller: read a table's stream, write through the Replicator, checkpoint.

For running outside Lambda (a container, a VM, a laptop against DynamoDB Local). It reads the
stream itself with :class:`replicator.poller.streams.StreamReader` (shard lineage, iterator renewal),
hands each shard's records in order to the same :class:`replicator.core.Replicator` the Lambda
handler uses, and saves each shard's position in a MongoDB collection
(:class:`replicator.poller.checkpoints.CheckpointStore`) only after MongoDB acknowledged the writes of
every record up to it.

* Killed at any moment and restarted, it resumes ``AFTER_SEQUENCE_NUMBER`` each checkpoint. Records
  after a checkpoint may be applied twice; the stale-write guard makes that harmless, so no record
  is lost and no document goes back in time.
* When the Replicator reports failed records (``batchItemFailures``), the checkpoint goes just
  before the lowest failed one and the records from it are retried (bounded exponential backoff),
  never skipped.
* A checkpoint older than the oldest record the stream still holds (DynamoDB Streams keeps records
  24 hours) raises :class:`ResyncRequired`: the changes in between are gone, and only the table
  can make the collection right again (``replicator recover``, which never empties it).
* ``stop`` (a :class:`threading.Event`, set by SIGTERM/SIGINT in the CLI) ends the loop after the
  current batch is written and checkpointed.
* Every ``log_interval`` seconds it logs records applied, records/s, each shard's position and the
  lag (now minus ``ApproximateCreationDateTime`` of the last applied record). Never the URI.
* With ``metrics`` (a :class:`replicator.poller.metrics.PollerMetrics`, ``replicator run
  --metrics-port``), every batch's figures and every shard's advance go to Prometheus, and its
  health endpoint turns unhealthy when a shard stops advancing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from replicator.core import BatchResult, Replicator
from replicator.errors import (
    ConfigurationError,
    ReplicationError,
    ResyncRequired,
)
from replicator.events import creation_time_of
from replicator.poller.checkpoints import Checkpoint, CheckpointStore, StreamMarker
from replicator.poller.kinesis import KinesisReader, is_kinesis_arn
from replicator.poller.resume import (
    COVERED,
    RETENTION,
    check_recreated,
    check_resume,
    created_text,
)
from replicator.poller.streams import ShardState, StartingPosition, StreamReader, error_code
from replicator.poller.tables import TableInfo, describe_table
from replicator.retry import Backoff
from replicator.settings import Settings

if TYPE_CHECKING:
    from replicator.poller.metrics import PollerMetrics

log = logging.getLogger("replicator.poller")

#: Stream errors that no retry will cure.
FATAL_STREAM_ERRORS = frozenset({
    "ResourceNotFoundException", "ValidationException", "AccessDeniedException",
    "UnrecognizedClientException", "InvalidSignatureException", "UnknownOperationException",
})
Record = dict[str, Any]


@dataclass
class ShardProgress:
    applied: str | None = None  # last sequence number applied and checkpointed
    created: datetime | None = None  # its ApproximateCreationDateTime
    lag_s: float | None = None  # now - created, when it was applied


@dataclass
class PollerStats:
    """What a run did (also the numbers of the progress log)."""

    records_read: int = 0
    records_applied: int = 0
    batches: int = 0
    retries: int = 0
    checkpoints: int = 0
    failures: int = 0
    stale: int = 0
    quarantined: int = 0
    polls: int = 0
    shards: dict[str, ShardProgress] = field(default_factory=dict)
    stopped_by_signal: bool = False
    #: now - ApproximateCreationDateTime of the last applied record, when it was applied
    lag_s: float | None = None
    #: the last poll brought nothing new
    caught_up: bool = False


class Poller:
    """Replicates one table's stream into ``collection`` until stopped (or drained, ``once``).

    ``streams_client`` / ``dynamodb_client``: boto3 ``dynamodbstreams`` / ``dynamodb`` clients
    (DescribeTable gives the stream ARN and key schema; pass ``stream_arn`` and ``key_schema``
    to skip it). ``collection``: a pymongo-compatible collection (what Replicator takes).
    ``checkpoints``: default ``CheckpointStore.beside(collection)``. ``starting_position`` applies
    only to a stream this store has never seen; afterwards new shards start at TRIM_HORIZON.
    ``max_attempts``: give up (RetriesExhausted) after that many failures in a row; None: never.
    ``metrics``: where each batch's figures and each shard's advance are reported (Prometheus).
    ``reader_type``: the stream reader; :class:`replicator.poller.kinesis.KinesisReader` reads the
    Kinesis data stream a table sends its changes to (Kinesis Data Streams for DynamoDB): then
    ``streams_client`` is a boto3 ``kinesis`` client and ``stream_arn`` the data stream's ARN
    (required; the key schema still comes from DescribeTable unless given), and the stream's own
    retention replaces DynamoDB Streams' 24 hours in the resume checks.
    """

    def __init__(
        self,
        streams_client: Any,
        dynamodb_client: Any,
        table_name: str,
        collection: Any,
        settings: Settings | None = None,
        checkpoints: CheckpointStore | None = None,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        stop: threading.Event | None = None,
        starting_position: StartingPosition = "TRIM_HORIZON",
        stream_arn: str | None = None,
        key_schema: Sequence[str] | None = None,
        stream_view_type: str | None = None,
        log_interval: float = 30.0,
        max_attempts: int | None = None,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 30.0,
        reader_options: Mapping[str, Any] | None = None,
        replicator: Replicator | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        metrics: PollerMetrics | None = None,
        reader_type: type[StreamReader] = StreamReader,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ConfigurationError(f"batch_size must be 1..10000, not {batch_size}")
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigurationError(
                f"starting_position must be TRIM_HORIZON or LATEST, not {starting_position!r}")
        concern = getattr(collection, "write_concern", None)
        if concern is not None and getattr(concern, "acknowledged", True) is False:
            raise ConfigurationError(
                "the collection's write concern is unacknowledged (w=0): the poller checkpoints "
                "only acknowledged writes; use w=1 or w=majority")
        self.streams = streams_client
        self.dynamodb = dynamodb_client
        self.table_name = table_name
        self.collection = collection
        self.settings = settings or Settings()
        self.checkpoints = checkpoints or CheckpointStore.beside(collection, table=table_name)
        if self.checkpoints.table is None:
            self.checkpoints.table = table_name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop_event = stop or threading.Event()
        self.starting_position: StartingPosition = starting_position
        self.log_interval = log_interval
        #: retries of writes, checkpoints and stream reads; a stop ends its waits at once
        self.backoff = Backoff(backoff_base_s, backoff_max_s, max_attempts,
                               sleep=self.stop_event.wait)
        self.reader_options = dict(reader_options or {})
        self._clock = clock
        self._now = now
        self._info: TableInfo | None = None
        self.reader_type = reader_type
        #: the Kinesis data stream read instead of the table's DynamoDB stream
        self._kinesis_arn: str | None = None
        if issubclass(reader_type, KinesisReader):
            if stream_arn is None or not is_kinesis_arn(stream_arn):
                raise ConfigurationError(
                    "reading a Kinesis data stream needs its ARN (arn:aws:kinesis:REGION:ACCOUNT:"
                    f"stream/NAME) as stream_arn, not {stream_arn!r}")
            self._kinesis_arn = stream_arn
            stream_view_type = stream_view_type or "NEW_AND_OLD_IMAGES"
            if key_schema is None and self.settings.key_schema is None:
                stream_arn = None  # the key schema from DescribeTable; the ARN kept above
        if stream_arn is not None:
            if key_schema is None and self.settings.key_schema is None:
                raise ConfigurationError("with stream_arn, give key_schema too (or Settings.key_schema)")
            schema = tuple(key_schema or self.settings.key_schema or ())
            self._info = TableInfo(table_name, stream_arn, schema, stream_view_type)
        self._key_schema_override = tuple(key_schema) if key_schema else None
        #: Kinesis only: a first run reads the shards from ``AT_TIMESTAMP`` this time (aware
        #: datetime) instead of ``starting_position``; kept in the stream marker, so a later run
        #: reads a shard that has no checkpoint yet from there again (``replicator sync``)
        self.starting_timestamp: datetime | None = None
        self._at_timestamp: datetime | None = None
        self.replicator = replicator
        self.metrics = metrics
        self.reader: StreamReader | None = None
        self._retention: timedelta | None = None
        self.stats = PollerStats()
        self._parents: dict[str, str | None] = {}
        self._positions: dict[str, str] = {}  # applied + checkpointed, per shard
        self._finished: set[str] = set()
        self._last_log = self._started = clock()
        self._last_logged_applied = 0

    # -- setup -------------------------------------------------------------------------------------
    @property
    def info(self) -> TableInfo:
        if self._info is None:
            found = describe_table(self.dynamodb, self.table_name)
            if self._key_schema_override:
                found = replace(found, key_schema=self._key_schema_override)
            if self._kinesis_arn is not None:
                # Kinesis Data Streams for DynamoDB records carry both images, whatever the
                # table's own stream (if any) is set to.
                found = replace(found, stream_arn=self._kinesis_arn,
                                stream_view_type="NEW_AND_OLD_IMAGES")
            self._info = found
        return self._info

    @property
    def stream_arn(self) -> str:
        return self.info.stream_arn

    @property
    def kinesis_arn(self) -> str | None:
        """The Kinesis data stream read instead of the table's DynamoDB stream (None: that one)."""
        return self._kinesis_arn

    def make_replicator(self) -> Replicator:
        """The Replicator the poller writes through (made once; the key schema filled in from
        DescribeTable), also for :func:`replicator.poller.resync.resync` and the migration."""
        if self.replicator is not None:
            return self.replicator
        settings = self.settings
        if settings.key_schema is None or self._key_schema_override:
            settings = replace(settings, key_schema=self.info.key_schema)
        item_reader = None
        if self._kinesis_arn is not None:
            settings = self._kinesis_settings(settings)
        if self.info.stream_view_type in ("KEYS_ONLY", "OLD_IMAGE") or self._kinesis_arn:
            # Kinesis: equal-timestamp ties are decided by reading the item (docs/kinesis.md).
            from replicator.readback import DynamoDBItemReader

            item_reader = DynamoDBItemReader(self.dynamodb, self.table_name)
        self.settings = settings
        self.replicator = Replicator(self.collection, settings, item_reader=item_reader)
        return self.replicator

    def _kinesis_settings(self, settings: Settings) -> Settings:
        """The settings for a Kinesis data stream: ``source="kinesis"`` (ConfigurationError when
        they say "dynamodb"), and ``stream_retention_s`` raised to the stream's own retention so
        tombstones outlive it (``tombstone_retention_s`` follows when it was left to default)."""
        if settings.source == "dynamodb":
            raise ConfigurationError(
                "REPLICATOR_SOURCE is dynamodb but the poller reads a Kinesis data stream "
                f"({self._kinesis_arn}): unset it or set it to kinesis")
        retention = int(self.retention().total_seconds())
        fields: dict[str, Any] = {"source": "kinesis"}
        if retention > settings.stream_retention_s:
            log.info("Kinesis stream %s keeps records %d hours: stream_retention_s raised from %d "
                     "to %d", self._kinesis_arn, retention // 3600, settings.stream_retention_s,
                     retention)
            fields["stream_retention_s"] = retention
            if settings.tombstone_retention_s == settings.stream_retention_s + 24 * 3600:
                fields["tombstone_retention_s"] = 0  # the new retention + 24 hours
        return replace(settings, **fields)

    def _new_reader(self, starting_position: StartingPosition) -> StreamReader:
        options: dict[str, Any] = {
            "limit": min(self.batch_size, 1000),
            # One page per shard and poll, applied before the next is read: a failed read then
            # loses no records already read (the reader is rebuilt from the checkpoints).
            "max_pages": 1,
            "poll_interval": self.poll_interval,
            "sleep": self._sleep,
        }
        options.update(self.reader_options)
        if self._at_timestamp is not None:
            options["at_timestamp"] = self._at_timestamp
        return self.reader_type(
            self.streams, self.stream_arn, starting_position=starting_position,
            positions=dict(self._positions), finished=set(self._finished),
            on_trimmed=self._on_trimmed, on_position_lost=self._on_position_lost,
            now=self._now, **options,
        )

    def _sleep(self, seconds: float) -> None:
        self.stop_event.wait(seconds)

    def _on_trimmed(self, state: ShardState, sequence: str) -> None:
        raise ResyncRequired(
            f"the checkpoint of shard {state.shard_id} (SequenceNumber {sequence}) is older than "
            "the oldest record the stream still holds (" + (
                "GetShardIterator AFTER_SEQUENCE_NUMBER: TrimmedDataAccessException"
                if self._kinesis_arn is None else
                "GetRecords AT_SEQUENCE_NUMBER it gives a later record: the retention period "
                "removed the records in between") + ")",
            table=self.table_name, stream_arn=self.stream_arn, shard_id=state.shard_id,
            sequence_number=sequence,
        )

    def _on_position_lost(self, state: ShardState) -> None:
        """A position without a sequence number (LATEST, or TRIM_HORIZON before any record)
        expired: re-acquiring it at TRIM_HORIZON loses nothing only while the stream still holds
        everything since the position was taken (or last seen empty); otherwise refuse."""
        taken = state.positioned_at
        if taken is not None and self._now() - taken <= self._covered():
            return
        raise ResyncRequired(
            f"the position of shard {state.shard_id} (iterator at {state.start}, taken "
            f"{taken.isoformat(timespec='seconds') if taken else 'at an unknown time'}) " + (
                "has had no record read from it and is older than the stream keeps records: "
                "reading from that time would skip the changes trimmed since"
                if state.start == "AT_TIMESTAMP" else
                "expired before any record was read from it, and it is older than the stream "
                "keeps records: re-reading from TRIM_HORIZON would skip the changes trimmed "
                "since"),
            table=self.table_name, stream_arn=self.stream_arn, shard_id=state.shard_id,
        )

    def prepare(self) -> StreamReader:
        """Load checkpoints, check they are still in the stream, make the reader. Raises
        ResyncRequired when they are not (nothing is written then)."""
        self.make_replicator()
        arn = self.stream_arn
        checkpoints = self.checkpoints.load(arn)
        marker = self.checkpoints.marker(arn)
        listing = self._list_shards()
        created = None
        if self._kinesis_arn is not None:
            # a data stream re-created under its name: the checkpoints are not its positions
            probe = self.reader_type(self.streams, arn, sleep=self._sleep)
            created = probe.created_at() if isinstance(probe, KinesisReader) else None
            check_recreated(self.table_name, arn, checkpoints, marker, created)
        self.check_resume(checkpoints, marker, listing)
        for checkpoint in checkpoints.values():
            if checkpoint.sequence_number is not None:
                self._positions[checkpoint.shard_id] = checkpoint.sequence_number
            if checkpoint.finished:
                self._finished.add(checkpoint.shard_id)
            self._parents[checkpoint.shard_id] = checkpoint.parent_shard_id
        resuming = marker is not None or bool(checkpoints)
        start: StartingPosition = "TRIM_HORIZON" if resuming else self.starting_position
        if self._kinesis_arn is not None:
            self._at_timestamp = (at_timestamp_of(marker.starting_position) if marker is not None
                                  else self.starting_timestamp)
        reader = self._new_reader(start)
        created_at = created_text(created) if created is not None else None
        if marker is None:
            self.checkpoints.start_stream(
                arn, start if self._at_timestamp is None
                else f"{AT_TIMESTAMP} {self._at_timestamp.isoformat()}",
                stream_created_at=created_at)
        else:
            self.checkpoints.touch(arn)
            if created_at is not None and marker.stream_created_at is None:
                self.checkpoints.note_stream_created(arn, created_at)
        listed = {s["ShardId"] for s in listing}
        resumed = sorted(s for s in self._positions if s in listed and s not in self._finished)
        log.info(
            "stream %s of table %s: %d shards listed; %s",
            arn, self.table_name, len(listed),
            (f"resuming {len(resumed)} shards after their checkpoints "
             f"({len(self._finished & listed)} finished), new shards at TRIM_HORIZON")
            if resuming else "first run, starting at " + (
                start if self._at_timestamp is None
                else f"AT_TIMESTAMP {self._at_timestamp.isoformat(timespec='seconds')}"),
        )
        self.reader = reader
        return reader

    def forget_positions(self) -> None:
        """Drop the positions this poller holds in memory and its reader, after their checkpoints
        were deleted: the next ``prepare`` starts where a first run does. For ``recover`` when its
        own earlier positions fell off the stream (replicator/migrate/gap.py)."""
        self._positions.clear()
        self._finished.clear()
        self._parents.clear()
        self.reader = None

    def _list_shards(self) -> list[dict[str, Any]]:
        return self.reader_type(self.streams, self.stream_arn, sleep=self._sleep).shards()

    def retention(self) -> timedelta:
        """How long the stream keeps a record: 24 hours for DynamoDB Streams, the data stream's
        ``RetentionPeriodHours`` for Kinesis (asked once)."""
        if self._retention is None:
            reader = self.reader_type(self.streams, self.stream_arn, sleep=self._sleep)
            self._retention = reader.retention() if isinstance(reader, KinesisReader) \
                else RETENTION
        return self._retention

    def _covered(self) -> timedelta:
        """The age up to which a position is still in the stream (the retention less the hour
        of clock skew :data:`replicator.poller.resume.COVERED` allows)."""
        return COVERED if self._kinesis_arn is None else self.retention() - (RETENTION - COVERED)

    def check_resume(self, checkpoints: Mapping[str, Checkpoint], marker: StreamMarker | None,
                     listing: Sequence[Mapping[str, Any]]) -> None:
        """Raise ResyncRequired if a checkpoint points at records the stream no longer holds."""
        retention = RETENTION if self._kinesis_arn is None else self.retention()
        check_resume(self.checkpoints, self.table_name, self.stream_arn, checkpoints, marker,
                     listing, self._now(), retention=retention)

    # -- the loop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()

    def run(self, *, once: bool = False, idle_polls: int = 2) -> PollerStats:
        """Poll, apply, checkpoint until stopped; with ``once``, until ``idle_polls`` polls in a
        row bring nothing. Returns the stats of this run (also ``self.stats``); raises
        ResyncRequired, RetriesExhausted or a ReplicationError the Replicator raised
        (configuration)."""
        # The stats of this run only: the migration runs one poller several times (positions,
        # following, handover) and adds up what each run returns.
        self.stats = PollerStats()
        self._last_log = self._started = self._clock()
        self._last_logged_applied = 0
        reader = self.reader or self.prepare()
        idle = 0
        read_failures = 0
        while not self.stop_event.is_set():
            try:
                batch = reader.poll()
            except ResyncRequired:
                raise
            except Exception as error:
                if _fatal_stream_error(error):
                    raise
                read_failures += 1
                self.backoff.give_up(read_failures, "reading the stream", error)
                log.warning("reading the stream failed (%s: %s); retrying from the checkpoints",
                            type(error).__name__, error)
                self.backoff.wait(read_failures)
                reader = self.reader = self._new_reader("TRIM_HORIZON")
                continue
            read_failures = 0
            self.stats.polls += 1
            self.stats.caught_up = not batch
            if self.metrics is not None:
                # Shards read with nothing new advanced; the others do once their records are in.
                with_records = {shard_id for shard_id, _ in batch}
                self.metrics.polled(s for s in reader.last_polled if s not in with_records)
            for shard_id, records in batch:
                state = reader.state.get(shard_id)
                self._parents.setdefault(shard_id, state.parent_id if state else None)
                self.stats.records_read += len(records)
                if not self._apply_shard(shard_id, records):
                    break  # stopping: the rest is read again after a restart
            else:
                self._mark_finished(reader)
            self._maybe_log()
            if once:
                idle = 0 if batch else idle + 1
                if idle >= idle_polls:
                    break
        self.stats.stopped_by_signal = self.stop_event.is_set()
        self._log_progress(final=True)
        try:
            self.checkpoints.stopped(self.stream_arn)
        except PyMongoError as error:  # verify then waits for a sign of life that never comes
            log.warning("could not mark the stream marker stopped (%s)", type(error).__name__)
        return self.stats

    def _apply_shard(self, shard_id: str, records: list[Record]) -> bool:
        """Apply one shard's records in order, checkpointing after each acknowledged batch.
        False when stopped before all were applied."""
        pending = records
        attempt = 0
        while pending:
            chunk = pending[: self.batch_size]
            result = self._process(chunk, shard_id)
            self.stats.batches += 1
            failed = result.failed_sequence_numbers
            if not failed:
                self._count(result)
                if not self._checkpoint(shard_id, chunk[-1], len(chunk)):
                    return False
                pending = pending[len(chunk):]
                attempt = 0
                if pending and self.stop_event.is_set():
                    return False
                continue
            # Everything before the lowest failed record is in MongoDB; retry from it. (Compared
            # as numbers: Kinesis sequence numbers run to 129 digits, DynamoDB's to 40.)
            lowest = int(failed[0])
            cut = next((i for i, r in enumerate(chunk) if int(_sequence(r)) >= lowest), 0)
            self.stats.failures += len(failed)
            if cut > 0 and not self._checkpoint(shard_id, chunk[cut - 1], cut):
                return False
            pending = pending[cut:]
            attempt += 1
            self.stats.retries += 1
            self.backoff.give_up(attempt, f"writing shard {shard_id} from SequenceNumber {failed[0]}",
                                result.failures[0][1] if result.failures else "")
            log.warning("shard %s: %d record(s) failed from SequenceNumber %s (%s); checkpoint "
                        "kept before it, retry %d", shard_id, len(failed), failed[0],
                        result.failures[0][1] if result.failures else "?", attempt)
            if not self.backoff.wait(attempt):
                return False
        return True

    def _process(self, chunk: list[Record], shard_id: str | None = None) -> BatchResult:
        replicator = self.replicator or self.make_replicator()
        try:
            result = replicator.process(chunk, table=self.table_name, shard_id=shard_id)
        except ReplicationError:
            raise
        except Exception as error:
            if not transient(error):
                raise
            # Nothing is known to be written: every record of the chunk is retried.
            result = BatchResult(
                records=len(chunk), table=self.table_name, shard_id=shard_id,
                collection=getattr(self.collection, "name", None),
                failures=[(_sequence(chunk[0]), f"{type(error).__name__}: {error}")])
        if self.metrics is not None:
            self.metrics.observe_batch(result)
        return result

    def _count(self, result: BatchResult) -> None:
        self.stats.stale += result.stale
        self.stats.quarantined += len(result.quarantined)

    def _checkpoint(self, shard_id: str, record: Record, applied: int) -> bool:
        """Save the checkpoint at ``record`` (retrying); False if stopped before it was saved."""
        sequence = _sequence(record)
        created = _created_at(record)
        attempt = 0
        while True:
            try:
                self.checkpoints.save(self.stream_arn, shard_id, sequence,
                                      parent_shard_id=self._parents.get(shard_id),
                                      created_at=created)
                break
            except PyMongoError as error:
                attempt += 1
                self.backoff.give_up(attempt, f"saving the checkpoint of shard {shard_id}", error)
                log.warning("shard %s: checkpoint at %s not saved (%s: %s); retry %d",
                            shard_id, sequence, type(error).__name__, error, attempt)
                if not self.backoff.wait(attempt):
                    return False
        self.stats.checkpoints += 1
        self.stats.records_applied += applied
        self._positions[shard_id] = sequence
        progress = self.stats.shards.setdefault(shard_id, ShardProgress())
        progress.applied = sequence
        if created is not None:
            progress.created = created
            progress.lag_s = max(0.0, (self._now() - created).total_seconds())
            self.stats.lag_s = progress.lag_s
        if self.metrics is not None:
            self.metrics.advanced(shard_id, progress.lag_s)
        return True

    def _mark_finished(self, reader: StreamReader) -> None:
        for shard_id in reader.exhausted():
            if shard_id in self._finished:
                continue
            try:
                self.checkpoints.finish(self.stream_arn, shard_id,
                                        parent_shard_id=self._parents.get(shard_id))
            except PyMongoError as error:  # only saves calls later: the next run finds out again
                log.warning("shard %s: could not mark it finished (%s)", shard_id, error)
                continue
            self._finished.add(shard_id)
            if self.metrics is not None:
                self.metrics.finished(shard_id)
            log.info("shard %s read to its end and applied", shard_id)

    # -- progress ----------------------------------------------------------------------------------
    def _maybe_log(self) -> None:
        now = self._clock()
        if now - self._last_log >= self.log_interval:
            self._log_progress()
            try:
                self.checkpoints.touch(self.stream_arn)
            except PyMongoError as error:
                log.warning("could not refresh the stream marker (%s)", type(error).__name__)

    def _log_progress(self, final: bool = False) -> None:
        now = self._clock()
        since = self._started if final else self._last_log  # the last line: the whole run
        elapsed = max(now - since, 1e-9)
        fresh = self.stats.records_applied - (0 if final else self._last_logged_applied)
        lag = "-" if self.stats.lag_s is None else f"{self.stats.lag_s:.2f} s"
        if self.stats.caught_up:
            lag += " (caught up)"
        shards = ", ".join(
            f"{shard}@{p.applied}" + (f" (lag {p.lag_s:.1f} s)" if p.lag_s is not None else "")
            for shard, p in sorted(self.stats.shards.items())
        ) or "none yet"
        log.info(
            "%s: %d records applied (+%d in %.1f s, %.1f records/s), %d read, %d stale, "
            "%d quarantined, %d retries; lag %s; positions: %s",
            "stopped" if final else "progress", self.stats.records_applied, fresh, elapsed,
            fresh / elapsed, self.stats.records_read, self.stats.stale, self.stats.quarantined,
            self.stats.retries, lag, shards,
        )
        self._last_log = now
        self._last_logged_applied = self.stats.records_applied


# -- helpers -----------------------------------------------------------------------------------------
#: a Kinesis stream marker's ``starting_position`` when its first run read from a time:
#: ``"AT_TIMESTAMP <ISO 8601>"``
AT_TIMESTAMP = "AT_TIMESTAMP"


def at_timestamp_of(starting_position: str) -> datetime | None:
    """The time of a marker's ``"AT_TIMESTAMP <ISO 8601>"``; None for TRIM_HORIZON / LATEST."""
    kind, _, moment = starting_position.partition(" ")
    if kind != AT_TIMESTAMP or not moment:
        return None
    return datetime.fromisoformat(moment)


def _sequence(record: Mapping[str, Any]) -> str:
    """The record's position in its shard: ``dynamodb.SequenceNumber``, or a Kinesis record's
    ``kinesis.sequenceNumber`` (the Lambda-event shape KinesisReader hands out)."""
    kinesis = record.get("kinesis")
    if isinstance(kinesis, Mapping):
        return str(kinesis["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def _created_at(record: Mapping[str, Any]) -> datetime | None:
    """When the record's change was made (the checkpoint's ``created_at``, the lag figures); for
    a Kinesis record whose change time the core cannot give, when it reached the data stream
    (``approximateArrivalTimestamp``: at or after the change)."""
    created = creation_time_of(record)
    kinesis = record.get("kinesis")
    if created is None and isinstance(kinesis, Mapping):
        arrival = kinesis.get("approximateArrivalTimestamp")
        if isinstance(arrival, (int, float)) and not isinstance(arrival, bool):
            return datetime.fromtimestamp(float(arrival), timezone.utc)
    return created


def transient(error: BaseException) -> bool:
    """Worth retrying: MongoDB, network and AWS service errors (not bugs, not configuration)."""
    if isinstance(error, (PyMongoError, OSError, TimeoutError)):
        return True
    return type(error).__module__.startswith(("botocore", "urllib3"))


def _fatal_stream_error(error: BaseException) -> bool:
    return error_code(error) in FATAL_STREAM_ERRORS
