"""Reading a Kinesis data stream that a DynamoDB table sends its changes to (Kinesis Data Streams
for DynamoDB), with the interface :class:`replicator.poller.streams.StreamReader` gives the Poller.

:class:`KinesisReader` is a ``StreamReader`` over a boto3 ``kinesis`` client (AWS, moto): the
lineage order, the parent-before-child rule, resuming from positions, ``LATEST``, re-acquiring an
expired iterator ``AFTER_SEQUENCE_NUMBER`` the last record read and the bounded calls are the same
(see that module). What differs, each from the Kinesis API reference:

* Shards are listed with ``ListShards`` (paginated on ``NextToken``). A shard made by
  ``MergeShards`` has two parents (``ParentShardId`` and ``AdjacentParentShardId``); it is read
  only once both are read to their end, so one item's changes stay in order across resharding
  (AWS: "Kinesis Data Streams ... you must read the parent shards to their end before the child
  shards", *Handling resharding*).
* ``GetShardIterator`` takes ``StartingSequenceNumber``; ``GetRecords`` records carry
  ``SequenceNumber``, ``ApproximateArrivalTimestamp``, ``PartitionKey`` and ``Data`` (bytes).
  They are handed out as a Lambda event carries a Kinesis record (:func:`lambda_record`:
  ``kinesis.data`` base64, ``kinesis.sequenceNumber``, ``approximateArrivalTimestamp`` in epoch
  seconds, ``eventSource: aws:kinesis``, ``eventID`` ``<shard id>:<sequence number>``), so the
  core's one parser reads the poller's records and the Lambda handler's events alike.
* A closed shard ends with a page without ``NextShardIterator``. It also ends at an empty page
  with ``MillisBehindLatest`` 0 once ``ListShards`` gives it an ``EndingSequenceNumber``: nothing
  is behind the tip of a shard that takes no more records. (moto always returns a next
  iterator; AWS leaves it out at the end, and then this rule never has to decide.)
* Kinesis has no ``TrimmedDataAccessException``: an iterator ``AFTER_SEQUENCE_NUMBER`` a record
  the retention period removed silently starts at the oldest record left. So the first time a
  shard is resumed from a given position (the poller's checkpoint) the reader reads
  ``AT_SEQUENCE_NUMBER`` it, one record: when the stream gives back a later record, the records
  in between were trimmed and ``on_trimmed(state, sequence)`` is called (the poller raises
  ResyncRequired). An empty answer is not a loss: the shard holds nothing at or after it.
* The retention is the stream's (``DescribeStreamSummary`` ``RetentionPeriodHours``: 24 hours
  to 365 days), :meth:`KinesisReader.retention`, not DynamoDB Streams' fixed 24 hours.

Records may come more than once and out of order in a Kinesis stream fed by DynamoDB (AWS,
"Using Kinesis Data Streams to capture changes to DynamoDB"); the reader hands them out in the
shard's order, as read; ordering by the change's ``ApproximateCreationDateTime`` is the core's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.events import is_kinesis_arn
from replicator.poller.streams import Record, ShardState, StreamReader

__all__ = ["KinesisReader", "is_kinesis_arn", "kinesis_sequence", "lambda_record", "region_of"]

#: The value of ``eventSource`` in a Lambda event's Kinesis record.
EVENT_SOURCE = "aws:kinesis"
#: The iterator type of a shard read from a time (``at_timestamp``).
AT_TIMESTAMP = "AT_TIMESTAMP"
#: A Kinesis stream's default retention (``CreateStream``), when DescribeStreamSummary cannot say.
DEFAULT_RETENTION = timedelta(hours=24)


def region_of(arn: str) -> str:
    """The region field of an ARN (empty when it has none)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) > 3 else ""


def lambda_record(record: Mapping[str, Any], *, shard_id: str, stream_arn: str) -> Record:
    """One ``GetRecords`` record (boto3's shape: ``Data`` bytes, ``ApproximateArrivalTimestamp``
    a datetime) as a Lambda event's Kinesis record (AWS docs, "Using Lambda with Kinesis Data
    Streams", example event): ``Data`` standard base64 text, the arrival time in epoch seconds."""
    data = record["Data"]
    text = base64.b64encode(bytes(data)).decode("ascii") if isinstance(
        data, (bytes, bytearray, memoryview)) else str(data)
    arrived = record.get("ApproximateArrivalTimestamp")
    if isinstance(arrived, datetime):
        moment = arrived if arrived.tzinfo else arrived.replace(tzinfo=timezone.utc)
        arrival: Any = moment.timestamp()
    else:
        arrival = arrived
    sequence = str(record["SequenceNumber"])
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.get("PartitionKey"),
            "sequenceNumber": sequence,
            "data": text,
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": EVENT_SOURCE,
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": region_of(stream_arn),
        "eventSourceARN": stream_arn,
    }


def kinesis_sequence(record: Mapping[str, Any]) -> str:
    """The Kinesis sequence number of a Lambda-shaped Kinesis record (``kinesis.sequenceNumber``)."""
    return str(record["kinesis"]["sequenceNumber"])


class KinesisReader(StreamReader):
    """Reads every shard of one Kinesis data stream in lineage order; see the module docstring.

    Takes the same arguments as :class:`StreamReader` (``client``: a boto3 ``kinesis`` client,
    ``stream_arn``: the data stream's ARN); ``limit`` is GetRecords' (1..1000 here, Kinesis
    allows 10,000). ``at_timestamp`` (an aware datetime): a shard with no position is read from
    ``AT_TIMESTAMP`` that time (the first record that reached the stream at or after it) instead
    of its ``starting_position`` -- also when such a position expired before a record was read,
    since a time, unlike ``LATEST``, can be asked for again (``replicator sync`` over Kinesis).
    """

    def __init__(self, client: Any, stream_arn: str, *, at_timestamp: datetime | None = None,
                 **options: Any) -> None:
        #: shard id -> the position given in ``positions`` not yet checked against trimming
        self._unchecked: dict[str, str] = dict(options.get("positions") or {})
        self.at_timestamp = at_timestamp
        super().__init__(client, stream_arn, **options)
        self.calls.setdefault("ListShards", 0)

    # -- listing -----------------------------------------------------------------------------------
    def _describe_all(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamARN": self.stream_arn}
        seen: set[str] = set()
        while True:
            self.calls["ListShards"] = self.calls.get("ListShards", 0) + 1
            answer = self.client.list_shards(**request)
            shards.extend(answer.get("Shards", []))
            token = answer.get("NextToken")
            if not token:
                break
            if token in seen:
                raise RuntimeError(f"ListShards pagination loops at NextToken {token[:20]!r}")
            seen.add(token)
            # AWS: a request with NextToken names no stream.
            request = {"NextToken": token}
        unique: dict[str, dict[str, Any]] = {}
        for shard in shards:
            unique.setdefault(shard["ShardId"], shard)
        return list(unique.values())

    def retention(self) -> timedelta:
        """How long the stream keeps a record (``RetentionPeriodHours``)."""
        try:
            summary = self.client.describe_stream_summary(StreamARN=self.stream_arn)
        except Exception as error:
            if type(error).__module__.startswith("botocore"):
                return DEFAULT_RETENTION
            raise
        hours = summary.get("StreamDescriptionSummary", {}).get("RetentionPeriodHours")
        return timedelta(hours=int(hours)) if hours else DEFAULT_RETENTION

    def created_at(self) -> datetime | None:
        """When the data stream was created (``DescribeStreamSummary``
        ``StreamCreationTimestamp``, UTC); None when the call is not answered. A stream deleted
        and created again under its name keeps its ARN, not this."""
        try:
            summary = self.client.describe_stream_summary(StreamARN=self.stream_arn)
        except Exception as error:
            if type(error).__module__.startswith("botocore"):
                return None
            raise
        created = summary.get("StreamDescriptionSummary", {}).get("StreamCreationTimestamp")
        if not isinstance(created, datetime):
            return None
        return created.astimezone(timezone.utc) if created.tzinfo else created.replace(
            tzinfo=timezone.utc)

    # -- iterators ---------------------------------------------------------------------------------
    def _get_iterator(self, shard_id: str, kind: str, sequence: str | None = None) -> str | None:
        request: dict[str, Any] = {"StreamARN": self.stream_arn, "ShardId": shard_id,
                                   "ShardIteratorType": kind}
        if sequence is not None:
            request["StartingSequenceNumber"] = sequence
        if kind == AT_TIMESTAMP:
            request["Timestamp"] = self.at_timestamp
        self.calls["GetShardIterator"] += 1
        iterator = self.client.get_shard_iterator(**request).get("ShardIterator")
        return str(iterator) if iterator else None

    def _resume_iterator(self, state: ShardState) -> str | None:
        if (self.at_timestamp is not None and state.last_sequence is None
                and state.start in ("TRIM_HORIZON", AT_TIMESTAMP)):
            # The stream holds everything since that time only while it is within the
            # retention: ``on_position_lost`` (the Poller's) refuses an older one, first
            # acquisition or after an expired iterator (a copy that outlasted the retention).
            state.start = AT_TIMESTAMP
            state.positioned_at = self.at_timestamp
            if self.on_position_lost is not None:
                self.on_position_lost(state)
            state.acquired = True
            return self._get_iterator(state.shard_id, AT_TIMESTAMP)
        position = self._unchecked.pop(state.shard_id, None)
        if position is not None and position == state.last_sequence:
            head = self._first_at(state.shard_id, position)
            if head is not None and int(head) > int(position):
                # The record at the position is gone and a later one is the oldest: trimmed.
                state.trimmed.append(position)
                if self.on_trimmed is not None:
                    self.on_trimmed(state, position)
                state.acquired = True
                return self._get_iterator(state.shard_id, "TRIM_HORIZON")
        return super()._resume_iterator(state)

    def _first_at(self, shard_id: str, sequence: str) -> str | None:
        """The sequence number of the first record the shard holds at or after ``sequence``."""
        iterator = self._get_iterator(shard_id, "AT_SEQUENCE_NUMBER", sequence)
        if not iterator:
            return None
        self.calls["GetRecords"] += 1
        page = self.client.get_records(ShardIterator=iterator, Limit=1, StreamARN=self.stream_arn)
        records = page.get("Records") or []
        return str(records[0]["SequenceNumber"]) if records else None

    # -- reading -----------------------------------------------------------------------------------
    def _get_page(self, state: ShardState) -> dict[str, Any]:
        page = self.client.get_records(ShardIterator=state.iterator, Limit=self.limit,
                                       StreamARN=self.stream_arn)
        return {
            "Records": [lambda_record(record, shard_id=state.shard_id, stream_arn=self.stream_arn)
                        for record in page.get("Records") or []],
            "NextShardIterator": page.get("NextShardIterator"),
            "MillisBehindLatest": page.get("MillisBehindLatest"),
        }

    def sequence_of(self, record: Record) -> str:
        return kinesis_sequence(record)

    def _at_end(self, state: ShardState, page: Mapping[str, Any]) -> bool:
        return (state.closed and not page.get("Records")
                and page.get("MillisBehindLatest") == 0)

    def _range_page(self, shard_id: str, iterator: str) -> dict[str, Any]:
        # read_range (replicator redrive of a KinesisBatchInfo range): Kinesis GetRecords, the
        # records in the Lambda shape. An open shard's pages after the range's end are never
        # needed: the range's records were in the stream before the message was sent.
        page = self.client.get_records(ShardIterator=iterator, Limit=self.limit,
                                       StreamARN=self.stream_arn)
        return {"Records": [lambda_record(record, shard_id=shard_id, stream_arn=self.stream_arn)
                            for record in page.get("Records") or []],
                "NextShardIterator": page.get("NextShardIterator")}
