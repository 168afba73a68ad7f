"""Redrive: apply the sequence ranges an event source mapping discarded (``replicator redrive``).

When Lambda gives up on a DynamoDB stream batch (``MaximumRetryAttempts`` or
``MaximumRecordAgeInSeconds`` reached) it sends the mapping's on-failure destination (SQS, or SNS)
an invocation record naming the batch, not its records (AWS Lambda docs, "Retaining discarded
batches for a DynamoDB Streams event source"; example: harness/esm/destination.py)::

    {"requestContext": {"condition": "RetryAttemptsExhausted", ...}, "version": "1.0",
     "DDBStreamBatchInfo": {"shardId": "shardId-...", "startSequenceNumber": "8000...",
                            "endSequenceNumber": "8000...", "batchSize": 1,
                            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04Z",
                            "approximateArrivalOfLastRecord": "2019-11-14T00:38:04Z",
                            "streamArn": "arn:aws:dynamodb:...:table/T/stream/..."}}

:func:`batch_info` reads that (also inside an SNS notification envelope, what an SQS queue
subscribed to the SNS destination without raw delivery receives). :class:`RangeRedriver` reads
the range back from the stream (:meth:`replicator.poller.streams.StreamReader.read_range`) and
applies it through the core :class:`replicator.core.Replicator`: the stale-write guard and the
tombstones make a range applied again, or applied after newer changes, harmless.
:func:`redrive_queue` receives the queue's messages and deletes one only once its whole range is
applied; a range the stream no longer holds (records older than 24 hours, a shard gone) keeps its
message (or moves it to another queue) and is reported: ``replicator recover`` repairs it.

A Kinesis event source mapping (a table's Kinesis Data Streams for DynamoDB destination) sends
the same record with ``KinesisBatchInfo`` instead (AWS Lambda docs, "Retaining records of
discarded batches for a Kinesis Data Streams event source": ``shardId``,
``startSequenceNumber``, ``endSequenceNumber``, ``approximateArrivalOfFirstRecord``,
``approximateArrivalOfLastRecord``, ``batchSize``, ``streamArn`` of the data stream). Its range is
read back with :class:`replicator.poller.kinesis.KinesisReader` and applied the same way; the
order keys make a change applied again, or older than what is stored, stale (docs/kinesis.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from replicator.core import BatchResult, Replicator
from replicator.errors import (
    OnFailureMessageError,
    RangeUnavailable,
    ReplicationError,
    RetriesExhausted,
)
from replicator.retry import Backoff

log = logging.getLogger("replicator.redrive")

Record = dict[str, Any]
#: What became of one message (and its range):
#: applied -- every record of the range went through the core; the message was deleted;
#: would-apply -- ``dry_run``: the stream holds the whole range; nothing written, message kept;
#: not-in-stream -- the stream no longer holds the whole range; kept (or moved): run recover;
#: failed -- reading or writing kept failing (retries exhausted); kept, run redrive again;
#: unreadable -- not a DynamoDB stream batch record; kept;
#: other-table -- the range is of another table than the one redriven; kept.
Status = Literal["applied", "would-apply", "not-in-stream", "failed", "unreadable", "other-table"]
STATUSES: tuple[Status, ...] = ("applied", "would-apply", "not-in-stream", "failed", "unreadable",
                                "other-table")

#: The fields of ``DDBStreamBatchInfo`` a redrive needs (AWS's example invocation record).
REQUIRED_FIELDS = ("streamArn", "shardId", "startSequenceNumber", "endSequenceNumber")


@dataclass(frozen=True)
class BatchInfo:
    """``DDBStreamBatchInfo`` of one on-failure message (sequence numbers as AWS gives them)."""

    stream_arn: str
    shard_id: str
    start: str
    end: str
    batch_size: int | None = None
    first_arrival: str | None = None
    last_arrival: str | None = None
    #: requestContext.condition: RetryAttemptsExhausted, RecordAgeExceeded, ...
    condition: str | None = None
    #: "dynamodb" (``DDBStreamBatchInfo``) or "kinesis" (``KinesisBatchInfo``: ``stream_arn`` is
    #: the Kinesis data stream's, which names no table)
    kind: Literal["dynamodb", "kinesis"] = "dynamodb"

    @property
    def table_name(self) -> str | None:
        """The table of ``stream_arn`` (``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL``)."""
        resource = self.stream_arn.split(":", 5)[-1]
        parts = resource.split("/")
        return parts[1] if len(parts) >= 2 and parts[0] == "table" else None

    def describe(self) -> str:
        return f"shard {self.shard_id} {self.start}..{self.end}"


def batch_info(body: str) -> BatchInfo:
    """The ``DDBStreamBatchInfo`` of an on-failure message body (the invocation record, or an SNS
    notification carrying it). Raises :class:`OnFailureMessageError` naming what is missing."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        raise OnFailureMessageError("the message body is not JSON") from None
    if (isinstance(document, dict) and document.get("Type") == "Notification"
            and isinstance(document.get("Message"), str)):
        try:  # an SNS envelope (SQS subscribed to the SNS destination without raw delivery)
            document = json.loads(document["Message"])
        except ValueError:
            raise OnFailureMessageError("the SNS notification's Message is not JSON") from None
    if not isinstance(document, dict):
        raise OnFailureMessageError("the message body is not a JSON object")
    kind: Literal["dynamodb", "kinesis"] = "dynamodb"
    section = "DDBStreamBatchInfo"
    info = document.get(section)
    if info is None and isinstance(document.get("KinesisBatchInfo"), dict):
        kind, section = "kinesis", "KinesisBatchInfo"
        info = document[section]
    if not isinstance(info, dict):
        raise OnFailureMessageError(
            "no DDBStreamBatchInfo (nor KinesisBatchInfo): not a DynamoDB stream or Kinesis "
            "on-failure record")
    for name in REQUIRED_FIELDS:
        if not isinstance(info.get(name), str) or not info[name]:
            raise OnFailureMessageError(f"{section}.{name} is missing or not a string")
    for name in ("startSequenceNumber", "endSequenceNumber"):
        if not (info[name].isdigit() and info[name].isascii()):
            raise OnFailureMessageError(f"{section}.{name} is not a sequence number")
    if int(info["endSequenceNumber"]) < int(info["startSequenceNumber"]):
        raise OnFailureMessageError(
            f"{section}.endSequenceNumber is before startSequenceNumber")
    size = info.get("batchSize")
    context = document.get("requestContext")
    condition = context.get("condition") if isinstance(context, dict) else None
    return BatchInfo(
        stream_arn=info["streamArn"], shard_id=info["shardId"],
        start=info["startSequenceNumber"], end=info["endSequenceNumber"],
        batch_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        first_arrival=_text(info.get("approximateArrivalOfFirstRecord")),
        last_arrival=_text(info.get("approximateArrivalOfLastRecord")),
        condition=_text(condition), kind=kind,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class RangeOutcome:
    """What one message's range came to. Counts are those of the core's passes that succeeded
    (a chunk retried after a failure counts the records its failed pass wrote as already newer)."""

    status: Status
    info: BatchInfo | None = None
    records: int = 0  # records of the range read from the stream
    written: int = 0  # documents written (BatchResult.applied)
    stale: int = 0  # already newer in MongoDB (the guard skipped them)
    quarantined: int = 0
    reason: str = ""


class RangeRedriver:
    """Reads a message's range from its stream and applies it through ``replicator``.

    ``reader_factory(stream_arn)``: a :class:`replicator.poller.streams.StreamReader` of that
    stream (a :class:`replicator.poller.kinesis.KinesisReader` when ``kinesis_arn`` names the
    data stream whose ``KinesisBatchInfo`` ranges are this table's; any other Kinesis range is
    "other-table"). ``batch_size``: records per ``Replicator.process`` call. A chunk whose records fail
    (``batchItemFailures``, or a MongoDB / AWS error) is retried whole under ``backoff`` (the guard
    skips what the failed pass wrote); once ``backoff.max_attempts`` is reached the range is
    ``failed``.
    """

    def __init__(self, reader_factory: Callable[[str], Any], replicator: Callable[[], Replicator],
                 *, table: str, batch_size: int = 100, backoff: Backoff | None = None,
                 dry_run: bool = False, kinesis_arn: str | None = None) -> None:
        self.reader_factory = reader_factory
        self.kinesis_arn = kinesis_arn
        self.replicator = replicator
        self.table = table
        self.batch_size = batch_size
        self.backoff = backoff or Backoff(max_attempts=5)
        self.dry_run = dry_run

    def redrive(self, info: BatchInfo) -> RangeOutcome:
        if info.kind == "kinesis":
            if info.stream_arn != self.kinesis_arn:
                return RangeOutcome("other-table", info, reason=(
                    f"a Kinesis range of data stream {info.stream_arn}"
                    + (f", not {self.kinesis_arn} (the table's)" if self.kinesis_arn else
                       f": redrive it with --kinesis-stream {info.stream_arn}")))
        elif self.kinesis_arn is not None:
            return RangeOutcome("other-table", info, reason=(
                f"a DynamoDB Streams range ({info.stream_arn}) while redriving the Kinesis data "
                f"stream {self.kinesis_arn}: redrive it without --kinesis-stream"))
        elif info.table_name != self.table:
            return RangeOutcome("other-table", info, reason=(
                f"the range is of table {info.table_name or '?'} ({info.stream_arn}), not "
                f"{self.table}"))
        outcome = RangeOutcome("would-apply" if self.dry_run else "applied", info)
        reader = self.reader_factory(info.stream_arn)
        try:
            for page in reader.read_range(info.shard_id, info.start, info.end):
                outcome.records += len(page)
                if not self.dry_run:
                    for at in range(0, len(page), self.batch_size):
                        self._apply(page[at:at + self.batch_size], outcome)
        except RangeUnavailable as error:
            outcome.status, outcome.reason = "not-in-stream", error.reason
        except RetriesExhausted as error:
            outcome.status, outcome.reason = "failed", str(error)
        except ReplicationError:
            raise  # configuration (exit 2): not a matter of one message
        except Exception as error:  # the stream or MongoDB kept failing: keep the message
            outcome.status, outcome.reason = "failed", f"{type(error).__name__}: {error}"
        return outcome

    def _apply(self, chunk: list[Record], outcome: RangeOutcome) -> None:
        from replicator.poller.loop import transient

        attempt = 0
        while True:
            try:
                result = self.replicator().process(chunk)
            except ReplicationError:
                raise
            except Exception as error:
                if not transient(error):
                    raise
                from replicator.events import sequence_of_record

                result = BatchResult(records=len(chunk), failures=[
                    (str(sequence_of_record(chunk[0])), f"{type(error).__name__}: {error}")])
            if not result.failures:
                outcome.written += result.applied
                outcome.stale += result.stale
                outcome.quarantined += len(result.quarantined)
                return
            attempt += 1
            first = result.failed_sequence_numbers[0]
            self.backoff.give_up(attempt, f"applying shard records from SequenceNumber {first}",
                                 result.failures[0][1])
            log.warning("%d record(s) failed from SequenceNumber %s (%s); retry %d",
                        len(result.failures), first, result.failures[0][1], attempt)
            self.backoff.wait(attempt)


@dataclass
class RedriveSummary:
    """Exact counts of one run (``messages`` per status)."""

    received: int = 0
    deleted: int = 0
    moved: int = 0
    kept: int = 0
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    records: int = 0
    written: int = 0
    stale: int = 0
    quarantined: int = 0
    #: the run stopped at a failed message; the messages not tried yet stay in the queue
    stopped_early: bool = False

    def add(self, outcome: RangeOutcome) -> None:
        self.messages[outcome.status] += 1
        self.records += outcome.records
        self.written += outcome.written
        self.stale += outcome.stale
        self.quarantined += outcome.quarantined


def redrive_queue(sqs: Any, queue_url: str, redriver: RangeRedriver, *, max_messages: int | None,
                  wait_s: int = 2, visibility_timeout_s: int = 300,
                  move_unavailable_to: str | None = None,
                  on_message: Callable[[str, RangeOutcome, str], None] | None = None,
                  ) -> RedriveSummary:
    """Receive the queue's messages (10 per ReceiveMessage, long-polled ``wait_s``) until one
    comes back empty or ``max_messages`` were handled; redrive each; delete a message only once
    its range is applied (``move_unavailable_to``: a range not in the stream moves there, sent
    before it is deleted here). The first ``failed`` range stops the run (its cause, MongoDB or
    the stream unreachable, would fail the next ones too). Messages kept are made visible again
    at the end (ChangeMessageVisibility 0); they stay hidden during the run (``
    visibility_timeout_s``), so none is handled twice. ``on_message(message_id, outcome,
    disposition)`` is called once per message, ``disposition`` being ``deleted``, ``moved`` or
    ``kept``."""
    summary = RedriveSummary()
    seen: set[str] = set()
    kept: list[str] = []
    try:
        while max_messages is None or summary.received < max_messages:
            room = 10 if max_messages is None else min(10, max_messages - summary.received)
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=room,
                                         WaitTimeSeconds=wait_s,
                                         VisibilityTimeout=visibility_timeout_s)
            messages = [m for m in answer.get("Messages") or [] if m["MessageId"] not in seen]
            if not messages:
                break
            for position, message in enumerate(messages):
                seen.add(message["MessageId"])
                summary.received += 1
                outcome = _outcome(message, redriver)
                summary.add(outcome)
                disposition = _settle(sqs, queue_url, message, outcome, move_unavailable_to)
                if disposition == "kept":
                    kept.append(message["ReceiptHandle"])
                    summary.kept += 1
                elif disposition == "moved":
                    summary.moved += 1
                else:
                    summary.deleted += 1
                if on_message is not None:
                    on_message(message["MessageId"], outcome, disposition)
                if outcome.status == "failed":
                    summary.stopped_early = True
                    kept.extend(m["ReceiptHandle"] for m in messages[position + 1:])
                    return summary
    finally:
        _release(sqs, queue_url, kept)
    return summary


def _outcome(message: dict[str, Any], redriver: RangeRedriver) -> RangeOutcome:
    try:
        info = batch_info(message.get("Body", ""))
    except OnFailureMessageError as error:
        return RangeOutcome("unreadable", reason=str(error))
    return redriver.redrive(info)


def _settle(sqs: Any, queue_url: str, message: dict[str, Any], outcome: RangeOutcome,
            move_to: str | None) -> str:
    if outcome.status == "applied":
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return "deleted"
    if outcome.status == "not-in-stream" and move_to:
        sqs.send_message(QueueUrl=move_to, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return "moved"
    return "kept"


def _release(sqs: Any, queue_url: str, handles: Iterable[str]) -> None:
    for handle in handles:
        try:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle,
                                          VisibilityTimeout=0)
        except Exception as error:  # it becomes visible anyway when its timeout ends
            log.warning("could not make a kept message visible again (%s); it will be after the "
                        "visibility timeout", type(error).__name__)
