"""A fake DynamoDB Streams client (the harness's StreamReader tests and the poller's) and
``wire_record``; the fixtures ``fake_streams`` and ``wire_record`` come from support.fixtures.

``FakeStreams`` answers DescribeStream, GetShardIterator and GetRecords from data held in the wire
format (``tests/harness/data/streams/*.json``: what DynamoDB sends over HTTP, ``B`` in base64,
``ApproximateCreationDateTime`` in epoch seconds). Every answer goes through botocore's own JSON
parser with the service model's output shape, so the records come back exactly as a boto3 client
returns them (bytes, timezone-aware datetimes).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from pathlib import Path
from typing import Any

STREAM_DATA = Path(__file__).resolve().parents[1] / "harness" / "data" / "streams"


@functools.cache
def _service_model() -> Any:
    """botocore's DynamoDB Streams model, loaded once: ``get_session()`` makes a new session, which
    parses the JSON models again (~0.1 s of CPU and ~10^4 objects in cycles per FakeStreams)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("dynamodbstreams")


class FakeStreams:
    """A DynamoDB Streams endpoint in memory, with the service's paging and closing rules.

    * DescribeStream pages by ``describe_page_size``; as AWS does, a full page carries
      ``LastEvaluatedShardId`` even when nothing follows (the next page is then empty).
    * A shard is closed when its ``SequenceNumberRange`` has an ``EndingSequenceNumber``; the page
      that reaches its end has no ``NextShardIterator`` (and holds the last records).
    * ``hidden_for_listings[shard]``: the shard is left out of that many listings (a listing is a
      DescribeStream call without ``ExclusiveStartShardId``): children that appear after a split.
    * ``faults``: ``{"op": "GetRecords", "shard": S, "call": N, "error": CODE}`` makes the N-th
      GetRecords on shard S fail with CODE; an ``ExpiredIteratorException`` also invalidates every
      iterator handed out for S so far. ``{"op": "GetShardIterator", "shard": S, "type": T,
      "error": CODE}`` fails the first such request.
    * ``trimmed[shard] = n``: the first n records are past retention (TRIM_HORIZON starts after
      them).
    * ``log`` records every call and ``events`` what was served, to check the order of reads.
    """

    def __init__(
        self,
        stream_arn: str = "arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2026-01-01T00:00:00.000",
        *,
        describe_page_size: int = 100,
        get_records_page_size: int = 1000,
    ) -> None:
        self.stream_arn = stream_arn
        self.describe_page_size = describe_page_size
        self.get_records_page_size = get_records_page_size
        self.shards: list[dict[str, Any]] = []
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.hidden_for_listings: dict[str, int] = {}
        self.faults: list[dict[str, Any]] = []
        self.trimmed: dict[str, int] = {}
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, ...]] = []
        self._listings = 0
        self._tokens = itertools.count(1)
        self._iterators: dict[str, tuple[str, int, int]] = {}
        self._epoch: dict[str, int] = {}
        self._reads: dict[str, int] = {}
        self._model = _service_model()

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, name: str) -> tuple[FakeStreams, dict[str, Any]]:
        data = json.loads((STREAM_DATA / name).read_text())
        fake = cls(data["StreamArn"], describe_page_size=data.get("describe_page_size", 100),
                   get_records_page_size=data.get("get_records_page_size", 1000))
        for shard in data["Shards"]:
            fake.shards.append(copy.deepcopy(shard))
            fake.records[shard["ShardId"]] = copy.deepcopy(data["records"].get(shard["ShardId"], []))
        fake.hidden_for_listings = dict(data.get("hidden_for_listings", {}))
        fake.faults = copy.deepcopy(data.get("faults", []))
        fake.trimmed = dict(data.get("trimmed", {}))
        return fake, data

    def add_shard(self, shard_id: str, parent: str | None = None, *, start: str = "1") -> None:
        shard: dict[str, Any] = {"ShardId": shard_id,
                                 "SequenceNumberRange": {"StartingSequenceNumber": start}}
        if parent is not None:
            shard["ParentShardId"] = parent
        self.shards.append(shard)
        self.records.setdefault(shard_id, [])

    def append(self, shard_id: str, *records: dict[str, Any]) -> None:
        if self._closed(shard_id):
            raise AssertionError(f"shard {shard_id} is closed")
        self.records[shard_id].extend(copy.deepcopy(list(records)))

    def close(self, shard_id: str) -> None:
        shard = self._shard(shard_id)
        records = self.records[shard_id]
        ending = records[-1]["dynamodb"]["SequenceNumber"] if records else shard[
            "SequenceNumberRange"]["StartingSequenceNumber"]
        shard["SequenceNumberRange"]["EndingSequenceNumber"] = ending

    # -- helpers ---------------------------------------------------------------------------------
    def _shard(self, shard_id: str) -> dict[str, Any]:
        for shard in self.shards:
            if shard["ShardId"] == shard_id:
                return shard
        raise self._error("ResourceNotFoundException", f"shard {shard_id} not found", "GetShardIterator")

    def _closed(self, shard_id: str) -> bool:
        return "EndingSequenceNumber" in self._shard(shard_id)["SequenceNumberRange"]

    def _error(self, code: str, message: str, operation: str) -> Exception:
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": code, "Message": message},
                            "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)

    def _answer(self, operation: str, body: dict[str, Any]) -> Any:
        from botocore.parsers import create_parser

        shape = self._model.operation_model(operation).output_shape
        parser = create_parser(self._model.metadata["protocol"])
        wire = {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}
        parsed = parser.parse(wire, shape)
        parsed.pop("ResponseMetadata", None)
        return parsed

    def _issue(self, shard_id: str, index: int) -> str:
        token = f"it-{next(self._tokens)}"
        self._iterators[token] = (shard_id, index, self._epoch.get(shard_id, 0))
        return token

    # -- the API ---------------------------------------------------------------------------------
    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str | None = None,
                        Limit: int | None = None) -> Any:
        self.log.append(("DescribeStream", {"ExclusiveStartShardId": ExclusiveStartShardId}))
        assert StreamArn == self.stream_arn
        if ExclusiveStartShardId is None:
            self._listings += 1
        visible = [s for s in self.shards
                   if self.hidden_for_listings.get(s["ShardId"], 0) < self._listings]
        start = 0
        if ExclusiveStartShardId is not None:
            ids = [s["ShardId"] for s in visible]
            start = ids.index(ExclusiveStartShardId) + 1
        size = min(Limit or self.describe_page_size, self.describe_page_size)
        page = visible[start:start + size]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn, "StreamStatus": "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES", "Shards": copy.deepcopy(page),
        }
        if len(page) == size:
            description["LastEvaluatedShardId"] = page[-1]["ShardId"]
        return self._answer("DescribeStream", {"StreamDescription": description})

    def get_shard_iterator(self, StreamArn: str, ShardId: str, ShardIteratorType: str,
                           SequenceNumber: str | None = None) -> Any:
        request = {"ShardId": ShardId, "ShardIteratorType": ShardIteratorType,
                   "SequenceNumber": SequenceNumber}
        self.log.append(("GetShardIterator", request))
        self.events.append(("iterator", ShardId, ShardIteratorType))
        assert StreamArn == self.stream_arn
        for fault in self.faults:
            if (fault["op"] == "GetShardIterator" and fault["shard"] == ShardId
                    and fault["type"] == ShardIteratorType and not fault.get("spent")):
                fault["spent"] = True
                raise self._error(fault["error"], "injected", "GetShardIterator")
        self._shard(ShardId)
        records = self.records[ShardId]
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        horizon = self.trimmed.get(ShardId, 0)
        if ShardIteratorType == "TRIM_HORIZON":
            index = horizon
        elif ShardIteratorType == "LATEST":
            index = len(records)
        elif ShardIteratorType in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if SequenceNumber not in sequences:
                raise self._error("ValidationException", "unknown sequence number", "GetShardIterator")
            index = sequences.index(SequenceNumber) + (ShardIteratorType == "AFTER_SEQUENCE_NUMBER")
            if index < horizon:
                raise self._error("TrimmedDataAccessException", "trimmed", "GetShardIterator")
        else:
            raise self._error("ValidationException", ShardIteratorType, "GetShardIterator")
        return self._answer("GetShardIterator", {"ShardIterator": self._issue(ShardId, index)})

    def get_records(self, ShardIterator: str, Limit: int | None = None) -> Any:
        self.log.append(("GetRecords", {"ShardIterator": ShardIterator, "Limit": Limit}))
        if ShardIterator not in self._iterators:
            raise self._error("ValidationException", "Invalid ShardIterator", "GetRecords")
        shard_id, index, epoch = self._iterators[ShardIterator]
        self._reads[shard_id] = self._reads.get(shard_id, 0) + 1
        for fault in self.faults:
            if (fault["op"] == "GetRecords" and fault["shard"] == shard_id
                    and fault["call"] == self._reads[shard_id]):
                if fault["error"] == "ExpiredIteratorException":
                    self._epoch[shard_id] = self._epoch.get(shard_id, 0) + 1
                self.events.append(("fault", shard_id, fault["error"]))
                raise self._error(fault["error"], "injected", "GetRecords")
        if epoch != self._epoch.get(shard_id, 0):
            raise self._error("ExpiredIteratorException", "Iterator expired", "GetRecords")
        if Limit is not None and not 1 <= Limit <= 1000:
            raise self._error("ValidationException", "Limit", "GetRecords")
        size = min(Limit or 1000, self.get_records_page_size)
        records = self.records[shard_id]
        page = records[index:index + size]
        end = index + len(page)
        body: dict[str, Any] = {"Records": copy.deepcopy(page)}
        closed = self._closed(shard_id) and end >= len(records)
        if not closed:
            body["NextShardIterator"] = self._issue(shard_id, end)
        self.events.append(("page", shard_id, str(len(page)), "closed" if closed else "open"))
        return self._answer("GetRecords", body)


def wire_record(sequence: str, event: str = "INSERT", key: str | None = None,
                created: float = 1_767_225_600.0) -> dict[str, Any]:
    """A small stream record in the wire format (for tests that add records as they go)."""
    keys = {"pk": {"S": key or f"k{sequence}"}}
    image = {**keys, "seq": {"N": sequence}}
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": created, "Keys": keys,
                                "SequenceNumber": sequence, "SizeBytes": 20,
                                "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if event != "REMOVE":
        dynamodb["NewImage"] = image
    if event != "INSERT":
        dynamodb["OldImage"] = image
    return {"eventID": f"e{sequence}", "eventName": event, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb}
