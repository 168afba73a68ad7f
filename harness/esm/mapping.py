"""An emulation of AWS Lambda's event source mapping (ESM) for DynamoDB Streams (and Kinesis).

Kinesis records (the Lambda shape ``KinesisReader`` hands out, harness/kinesis.py) go through the
same rules: a shard's records in the order of their ``kinesis.sequenceNumber``, batches, partial
batch responses naming that sequence number, ParallelizationFactor by the record's partition key.

Feed it the records ``GetRecords`` returned, shard by shard; it invokes a handler with Lambda
events the way the ESM would, and reports what happened. What it emulates, with the AWS docs page
each rule comes from:

* **Batching** ("Using AWS Lambda with Amazon DynamoDB", *Polling and batching streams*): a shard's
  records go out in order, in batches of at most ``BatchSize`` records and at most 6 MB of event
  payload; with ``MaximumBatchingWindowInSeconds`` > 0 a batch smaller than ``BatchSize`` waits
  until its oldest record has waited that long.
* **ParallelizationFactor** (*Concurrent batches per shard*): a shard's records are spread over N
  concurrent batches by a hash of the partition key, so that one key's records stay in order.
  Here: N lanes per shard, lane = MD5(partition key) mod N; the ready batch of every lane of every
  shard runs at the same time in a thread pool (shards are processed concurrently too).
* **Partial batch responses** ("Configuring partial batch response with DynamoDB and Lambda"):
  with ``ReportBatchItemFailures`` the ESM checkpoints before the lowest reported sequence number
  and retries from it; an empty or null ``batchItemFailures`` list or an empty or null response is
  a complete success; an empty or null ``itemIdentifier`` or one under a wrong key name is a
  complete failure. Without ``ReportBatchItemFailures`` any returned value is a success.
* **Errors** ("Retain discarded records for a DynamoDB event source in Lambda"): a function error
  retries the batch until ``MaximumRetryAttempts`` or ``MaximumRecordAgeInSeconds`` runs out;
  ``BisectBatchOnFunctionError`` splits a failed batch in two without consuming the retry quota;
  discarded records produce an on-failure invocation record (``DDBStreamBatchInfo``, or
  ``KinesisBatchInfo`` for a Kinesis data stream) and the shard goes on.
* **Shard lineage**: a child shard is processed only after its parent (``feed(...,
  parent_shard_id=...)``).

Where AWS leaves a choice open this module says which one it made, next to the code (see also
:class:`EsmConfig`). The handler gets a fresh event decoded from JSON for every invocation, as a
real function would, and its return value goes through JSON like the Python runtime's (a value
JSON cannot carry is a ``Runtime.MarshalError`` function error).
"""

from __future__ import annotations

import decimal
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from harness.esm.config import EsmConfig
from harness.esm.destination import emulated_function_arn, on_failure_record
from harness.esm.lambda_events import epoch_seconds, to_lambda_record
from harness.esm.report import (
    FUNCTION_ERROR,
    LOG_SAMPLE,
    MALFORMED_RESPONSE,
    PARTIAL_FAILURE,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    SUCCESS,
    Discard,
    DriverReport,
    Invocation,
)
from harness.esm.response import MalformedResponse, lane_for, retry_from_index
from harness.esm.shards import Batch, Entry, Result, Shard, ShardLane

__all__ = ["EventSourceMapping"]

log = logging.getLogger("harness.esm.mapping")


_EVENT_OVERHEAD = len('{"Records":[]}')


class EventSourceMapping:
    """Drives ``handler(event) -> response`` like Lambda's ESM drives a function.

    ``clock`` times everything (batching windows, durations, completion times); ``sleep`` lets
    :meth:`drain` wait out a batching window. Record age (``MaximumRecordAgeInSeconds``) compares
    a record's ``ApproximateCreationDateTime`` (epoch seconds) with ``epoch_clock``; by default
    that is ``clock`` when one is injected (a test's fake clock, the runner's ``time.time``), and
    ``time.time`` with the default monotonic clock. ``partition_key`` names the table's partition
    attribute for ParallelizationFactor routing (see :func:`lane_for`). ``on_failure`` receives
    each on-failure record as it is produced, ``on_complete(at, records)`` the records (as fed)
    of each completed batch or batch prefix. ``keep_records`` keeps per-record history in the
    report (see :class:`DriverReport`). ``accept_unsequenced`` (replay of a recording that holds a
    malformed record) delivers a record without ``dynamodb.SequenceNumber`` as it is, under an
    internal placeholder that no ``batchItemFailures`` entry can name; the real ESM never reads
    such a record.

    Not re-entrant from the handler; ``feed``/``pump``/``drain`` may be called from any one
    thread at a time (a lock serialises them).
    """

    def __init__(
        self,
        handler: Callable[[dict[str, Any]], Any],
        config: EsmConfig | None = None,
        *,
        stream_arn: str,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        epoch_clock: Callable[[], float] | None = None,
        partition_key: str | None = None,
        function_arn: str | None = None,
        keep_records: bool = False,
        on_complete: Callable[[float, Sequence[Mapping[str, Any]]], None] | None = None,
        accept_unsequenced: bool = False,
    ) -> None:
        self.handler = handler
        self.config = config or EsmConfig()
        self.stream_arn = stream_arn
        self.region = region
        self.clock = clock
        self.sleep = sleep
        self.on_failure = on_failure
        if epoch_clock is None:
            epoch_clock = time.time if clock is time.monotonic else clock
        self.epoch_clock = epoch_clock
        self.partition_key = partition_key
        self.function_arn = function_arn or emulated_function_arn(stream_arn, region)
        self.report = DriverReport(keep_records=keep_records)
        self.on_complete = on_complete
        self.accept_unsequenced = accept_unsequenced
        self._unsequenced = 0
        self._shards: dict[str, Shard] = {}
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._workers = 0

    # -- public API ------------------------------------------------------------------------------
    def feed(
        self,
        shard_id: str,
        records: Iterable[Mapping[str, Any]],
        *,
        parent_shard_id: str | None = None,
    ) -> int:
        """Append records of one shard, in stream order, as ``GetRecords`` returned them.

        ``parent_shard_id`` (from DescribeStream) holds this shard back until the parent shard has
        been fully processed. Returns the number of records appended.
        """
        if parent_shard_id == shard_id:
            raise ValueError(f"shard {shard_id!r} cannot be its own parent")
        with self._lock:
            shard = self._shard(shard_id, parent_shard_id)
            now = self.clock()
            factor = len(shard.lanes)
            count = 0
            for record in records:
                entry = self._entry(record, now)
                lane = 0
                if factor > 1:
                    kinesis = record.get("kinesis")
                    if isinstance(kinesis, Mapping):
                        # A Kinesis ESM spreads a shard by the record's partition key.
                        lane = lane_for({"PartitionKey": kinesis.get("partitionKey")}, factor)
                    else:
                        keys = record.get("dynamodb", {}).get("Keys") or {}
                        lane = lane_for(keys, factor, self.partition_key)
                shard.lanes[lane].queue.append(entry)
                count += 1
            self.report.records_fed += count
            return count

    def pump(self) -> int:
        """Invoke every batch that is ready (full, its batching window passed, or a retry), each
        lane on its own as soon as its previous batch settles, until no lane has one ready; never
        waits for a window. Returns the invocations made."""
        with self._lock:
            return self._run(force=False)

    def drain(self) -> DriverReport:
        """Process everything fed so far, retries included, waiting out batching windows with
        ``sleep``; returns the (cumulative) report."""
        with self._lock:
            while True:
                self._run(force=False)
                if not self._busy():
                    return self.report
                delay = self._time_to_ready()
                before = self.clock()
                if delay > 0:
                    self.sleep(delay)
                if (delay <= 0 or self.clock() <= before) and not self._run(force=True):
                    # The clock did not move (a fake clock and sleep): flush without waiting.
                    # Nothing could run at all: only a cycle of parent shards does that.
                    raise RuntimeError(
                        "records are left that no batch can take: check the parent_shard_id "
                        "links for a cycle"
                    )

    @property
    def pending_records(self) -> int:
        """Records fed and neither completed nor discarded yet."""
        with self._lock:
            return sum(
                len(lane.queue) + sum(len(b.entries) for b in lane.pending)
                for shard in self._shards.values()
                for lane in shard.lanes
            )

    def close(self) -> None:
        """Stop the worker threads (they also end with the interpreter)."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
                self._workers = 0

    def __enter__(self) -> EventSourceMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- feeding ---------------------------------------------------------------------------------
    def _shard(self, shard_id: str, parent: str | None) -> Shard:
        shard = self._shards.get(shard_id)
        if shard is None:
            lanes = [ShardLane(shard_id, i) for i in range(self.config.parallelization_factor)]
            shard = self._shards[shard_id] = Shard(shard_id, lanes, parent)
        elif parent is not None:
            shard.parent = parent
        return shard

    def _entry(self, record: Mapping[str, Any], now: float) -> Entry:
        kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
        if isinstance(kinesis, Mapping):
            return self._kinesis_entry(record, kinesis, now)
        body = record.get("dynamodb") if isinstance(record, Mapping) else None
        if not isinstance(body, Mapping):
            body = {}
        sequence = body.get("SequenceNumber")
        if (not isinstance(sequence, str) or not sequence) and self.accept_unsequenced:
            self._unsequenced += 1
            sequence = f"\x00unsequenced-{self._unsequenced}"
        elif not isinstance(sequence, str) or not sequence:
            raise ValueError(
                f"cannot feed a record without dynamodb.SequenceNumber: {record!r:.200}"
            )
        lambda_record = to_lambda_record(record, stream_arn=self.stream_arn, region=self.region)
        return Entry(
            sequence=sequence,
            record=record,
            text=json.dumps(lambda_record, separators=(",", ":")),
            created=epoch_seconds(body.get("ApproximateCreationDateTime")),
            fed_at=now,
        )

    def _kinesis_entry(self, record: Mapping[str, Any], kinesis: Mapping[str, Any],
                       now: float) -> Entry:
        """A Kinesis record, already in the Lambda shape (KinesisReader's): delivered as it is,
        identified by ``kinesis.sequenceNumber`` (the ``itemIdentifier`` of a partial batch
        response), aged by ``approximateArrivalTimestamp`` (a Kinesis ESM's
        MaximumRecordAgeInSeconds counts from the record's arrival in the stream)."""
        sequence = kinesis.get("sequenceNumber")
        if not isinstance(sequence, str) or not sequence:
            raise ValueError(f"cannot feed a Kinesis record without kinesis.sequenceNumber: "
                             f"{record!r:.200}")
        return Entry(
            sequence=sequence,
            record=record,
            text=json.dumps(record, separators=(",", ":")),
            created=epoch_seconds(kinesis.get("approximateArrivalTimestamp")),
            fed_at=now,
        )

    # -- scheduling ------------------------------------------------------------------------------
    def _busy(self) -> bool:
        return any(lane.busy for shard in self._shards.values() for lane in shard.lanes)

    def _blocked(self, shard: Shard) -> bool:
        parent = self._shards.get(shard.parent) if shard.parent else None
        return parent is not None and any(lane.busy for lane in parent.lanes)

    def _time_to_ready(self) -> float:
        """Seconds until the first waiting batch's window closes (0 if one is ready)."""
        now = self.clock()
        window = self.config.maximum_batching_window_s
        waits = [
            max(0.0, lane.queue[0].fed_at + window - now)
            for shard in self._shards.values()
            if not self._blocked(shard)
            for lane in shard.lanes
            if lane.queue and not lane.pending
        ]
        return min(waits, default=0.0)

    def _run(self, *, force: bool) -> int:
        """Invoke ready batches -- one in flight per lane, all lanes at once -- settling each
        result as it arrives, until no lane has a batch ready. Returns the invocations made."""
        lanes = [(shard, lane) for shard in self._shards.values() for lane in shard.lanes]
        if not lanes:
            return 0
        executor = self._pool(len(lanes))
        order = {id(lane): n for n, (_, lane) in enumerate(lanes)}
        in_flight: dict[Future[Result], tuple[ShardLane, Batch]] = {}
        busy: set[int] = set()
        made = 0
        while True:
            for shard, lane in lanes:
                if id(lane) in busy or self._blocked(shard):
                    continue
                batch = self._next_batch(lane, force)
                if batch is not None:
                    in_flight[executor.submit(self._invoke, batch)] = (lane, batch)
                    busy.add(id(lane))
            if not in_flight:
                return made
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            # Settle in lane order when several finish together, for a stable log.
            for future in sorted(done, key=lambda f: order[id(in_flight[f][0])]):
                lane, batch = in_flight.pop(future)
                busy.discard(id(lane))
                self._settle(lane, batch, future.result())
                made += 1

    def _next_batch(self, lane: ShardLane, force: bool) -> Batch | None:
        while True:
            if not lane.pending:
                if not self._window_closed(lane, force):
                    return None
                lane.pending.append(Batch(self._take(lane)))
            batch = lane.pending[0]
            self._expire(lane, batch)
            if batch.entries:
                return batch
            lane.pending.popleft()

    def _window_closed(self, lane: ShardLane, force: bool) -> bool:
        if not lane.queue:
            return False
        window = self.config.maximum_batching_window_s
        if force or window <= 0 or len(lane.queue) >= self.config.batch_size:
            return True
        # Also ready when the records waiting already fill the 6 MB payload.
        if self._payload(lane.queue) >= self.config.max_payload_bytes:
            return True
        return self.clock() - lane.queue[0].fed_at >= window

    def _payload(self, entries: Iterable[Entry]) -> int:
        size = _EVENT_OVERHEAD
        for entry in entries:
            size += len(entry.text) + 1
            if size >= self.config.max_payload_bytes:
                break
        return size

    def _take(self, lane: ShardLane) -> list[Entry]:
        """The next batch from the lane's queue: BatchSize records, at most the payload limit
        (always at least one record)."""
        taken: list[Entry] = []
        size = _EVENT_OVERHEAD
        while lane.queue and len(taken) < self.config.batch_size:
            grown = size + len(lane.queue[0].text) + (1 if taken else 0)
            if taken and grown > self.config.max_payload_bytes:
                break
            taken.append(lane.queue.popleft())
            size = grown
        return taken

    def _expire(self, lane: ShardLane, batch: Batch) -> None:
        """Discard the batch's records older than MaximumRecordAgeInSeconds (checked before every
        invocation, retries included), one on-failure record per run of consecutive records."""
        limit = self.config.maximum_record_age_s
        if limit == -1:
            return
        now = self.epoch_clock()
        runs: list[list[Entry]] = []
        kept: list[Entry] = []
        previous_expired = False
        for entry in batch.entries:
            expired = entry.created is not None and now - entry.created > limit
            if expired:
                if not previous_expired:
                    runs.append([])
                runs[-1].append(entry)
            else:
                kept.append(entry)
            previous_expired = expired
        if not runs:
            return
        batch.entries = kept
        for run in runs:
            self._discard(lane, batch, run, RECORD_AGE_EXCEEDED)

    # -- invoking --------------------------------------------------------------------------------
    def _pool(self, workers: int) -> ThreadPoolExecutor:
        """One worker per lane (shards x ParallelizationFactor); grown, idle, as shards appear."""
        if self._executor is None or self._workers < workers:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._workers = workers
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="esm-batch")
        return self._executor

    def _invoke(self, batch: Batch) -> Result:
        """Runs in a worker thread: a fresh event from JSON, the call, the response via JSON."""
        event = json.loads('{"Records":[' + ",".join(e.text for e in batch.entries) + "]}")
        started = self.clock()
        try:
            response = self.handler(event)
        except Exception as error:  # a function error
            return Result(started, self.clock(), error=f"{type(error).__name__}: {error}"[:500])
        ended = self.clock()
        try:
            # The Python runtime serialises the return value (Decimal as a number).
            response = json.loads(json.dumps(response, default=_runtime_default))
        except (TypeError, ValueError) as error:
            return Result(started, ended, error=f"Runtime.MarshalError: {error}"[:500])
        return Result(started, ended, response=response)

    # -- settling --------------------------------------------------------------------------------
    def _settle(self, lane: ShardLane, batch: Batch, result: Result) -> None:
        entries = batch.entries
        batch.invocations += 1
        report = self.report
        report.invocations += 1
        report.records_delivered += len(entries)

        report.handler_s.add(result.ended - result.started)

        def record(outcome: str, error: str | None = None, retry_from: str | None = None) -> None:
            report.outcome_counts[outcome] = report.outcome_counts.get(outcome, 0) + 1
            if not report.keep_records and len(report.log) >= LOG_SAMPLE:
                return
            report.log.append(Invocation(
                shard_id=lane.shard_id, lane=lane.index, first_sequence=entries[0].sequence,
                last_sequence=entries[-1].sequence, size=len(entries), attempt=batch.retries + 1,
                outcome=outcome, started_at=result.started,
                duration_s=result.ended - result.started, error=error, retry_from=retry_from,
            ))

        if result.error is not None:
            record(FUNCTION_ERROR, result.error)
            batch.last_outcome, batch.last_error = FUNCTION_ERROR, result.error
            if self.config.bisect_batch_on_function_error and len(entries) > 1:
                # Bisection replaces the retry and does not consume the quota (AWS docs); the
                # halves keep the batch's retry and invocation counts, first half first.
                middle = len(entries) // 2
                lane.pending.popleft()
                for half in (entries[middle:], entries[:middle]):
                    lane.pending.appendleft(Batch(
                        half, batch.retries, batch.invocations, batch.last_outcome,
                        batch.last_error,
                    ))
                report.bisections += 1
                return
            self._retry_or_discard(lane, batch)
            return
        if not self.config.report_batch_item_failures:
            record(SUCCESS)
            lane.pending.popleft()
            self._complete(entries, result.ended)
            return
        try:
            index = retry_from_index(result.response, [e.sequence for e in entries])
        except MalformedResponse as error:
            # A complete failure, retried whole; not a function error, so never bisected.
            record(MALFORMED_RESPONSE, str(error))
            batch.last_outcome, batch.last_error = MALFORMED_RESPONSE, str(error)
            self._retry_or_discard(lane, batch)
            return
        if index is None:
            record(SUCCESS)
            lane.pending.popleft()
            self._complete(entries, result.ended)
            return
        record(PARTIAL_FAILURE, retry_from=entries[index].sequence)
        # Checkpoint before the lowest reported record: the records before it are done, the batch
        # is retried from it -- exactly the remaining records (with BisectBatchOnFunctionError too:
        # "the batch is bisected at the returned sequence number"). The retry consumes the quota.
        done, batch.entries = entries[:index], entries[index:]
        self._complete(done, result.ended)
        batch.last_outcome, batch.last_error = PARTIAL_FAILURE, None
        self._retry_or_discard(lane, batch)

    def _complete(self, entries: list[Entry], at: float) -> None:
        report = self.report
        report.records_completed += len(entries)
        for entry in entries:
            report.wait_s.add(at - entry.fed_at)
        if report.keep_records:
            for entry in entries:
                report.completed_at[entry.sequence] = at
                report.deliveries.append((at, entry.record))
        if self.on_complete is not None and entries:
            self.on_complete(at, [entry.record for entry in entries])

    def _retry_or_discard(self, lane: ShardLane, batch: Batch) -> None:
        if batch.retries >= self.config.retry_limit:
            lane.pending.popleft()
            self._discard(lane, batch, batch.entries, RETRY_ATTEMPTS_EXHAUSTED,
                          safety_cap=self.config.maximum_retry_attempts == -1)
            return
        batch.retries += 1
        self.report.retries += 1

    def _discard(
        self,
        lane: ShardLane,
        batch: Batch,
        entries: list[Entry],
        condition: str,
        *,
        safety_cap: bool = False,
    ) -> None:
        report = self.report
        discard = Discard(
            shard_id=lane.shard_id, lane=lane.index,
            sequence_numbers=tuple(e.sequence for e in entries), condition=condition,
            invocations=batch.invocations, safety_cap=safety_cap,
            last_outcome=batch.last_outcome, last_error=batch.last_error,
        )
        report.discarded.append(discard)
        report.discarded_records += len(entries)
        if safety_cap:
            report.safety_cap_hits += 1
            log.warning(
                "emulator safety limit: MaximumRetryAttempts is -1 (infinite) but %d records of "
                "shard %s starting at %s were dropped after %d retries (retry_safety_limit)",
                len(entries), lane.shard_id, entries[0].sequence, batch.retries,
            )
        failure = on_failure_record(
            function_arn=self.function_arn, stream_arn=self.stream_arn, shard_id=lane.shard_id,
            batch=batch, entries=entries, condition=condition, now=self.epoch_clock())
        report.on_failure.append(failure)
        if self.on_failure is not None:
            self.on_failure(failure)


def _runtime_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
