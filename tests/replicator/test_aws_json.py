"""replicator/aws_json.py: Scan and GetRecords read with json.loads give the core the same
documents as botocore's parser, type for type, on every attribute type (moto in-process).

"Type for type": the documents are compared as BSON bytes (``bson.encode``), which differ for
an ``int`` and an ``Int64``, a ``Decimal128`` and a ``float``, ``bytes`` and ``str``. nox runs this
module with and without the C accelerator (``REPLICATOR_PURE_PYTHON=1``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import bson
import pytest
from botocore.exceptions import ClientError

from harness.backends.base import TableSpec
from replicator import aws_json
from replicator.convert import Converter
from replicator.events import creation_time_of

BIG = "12345678901234567890123456789012345678"  # 38 digits


def every_type(n: int) -> dict[str, Any]:
    """An item (boto3 client shapes: B as bytes) with every attribute type, nested and empty."""
    return {
        "s": {"S": f"naïve café 李 🙂 {n}"}, "empty_s": {"S": ""},
        "n": {"N": str(n)}, "neg": {"N": "-0.000001"}, "big": {"N": BIG},
        "big_neg": {"N": "-" + BIG[:35]}, "frac": {"N": "1234567890123456789012345.6789012345"},
        "b": {"B": bytes([n % 256, 0, 255, 10])}, "empty_b": {"B": b""},
        "ss": {"SS": ["a", "é", "🙂"]}, "ns": {"NS": ["1", "2.5", BIG]},
        "bs": {"BS": [b"\x00", b"\xff\xfe", bytes([n % 256])]},
        "m": {"M": {"inner": {"M": {"deep": {"L": [{"B": b"\x01\x02"}, {"NULL": True},
                                                    {"BS": [b"x"]}]}}},
                    "empty_m": {"M": {}}, "empty_l": {"L": []}}},
        "l": {"L": [{"S": "x"}, {"N": "3"}, {"BOOL": False}, {"M": {"k": {"B": b"\x7f"}}},
                    {"L": [{"NS": ["7", "8"]}]}]},
        "null": {"NULL": True}, "yes": {"BOOL": True}, "no": {"BOOL": False},
    }


def bson_of(image: dict[str, Any]) -> bytes:
    return bson.encode(Converter("lossless").image(image))


@pytest.fixture
def table(moto: Any) -> Iterator[tuple[Any, Any, str]]:
    """A table keyed by a binary partition and a numeric sort key, five items written."""
    spec = TableSpec("zoo", ("pk", "B"), ("sk", "N"))
    created = moto.create_table(spec)
    client = moto.dynamodb()
    for n in range(5):
        client.put_item(TableName="zoo", Item={"pk": {"B": bytes([n, 200])}, "sk": {"N": str(n)},
                                               **every_type(n)})
    yield client, moto.streams(), created.stream_arn


def test_scan_pages_give_the_documents_botocore_gives(table: tuple[Any, Any, str]) -> None:
    client, _streams, _arn = table
    parsed: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for into, read in ((parsed, client.scan), (raw, lambda **r: aws_json.scan(client, **r))):
        request: dict[str, Any] = {"TableName": "zoo", "Limit": 2,
                                   "ReturnConsumedCapacity": "TOTAL"}
        while True:  # pages of 2: LastEvaluatedKey (a binary key) goes back as ExclusiveStartKey
            page = read(**request)
            into.extend(page["Items"])
            assert page["ConsumedCapacity"]["CapacityUnits"] > 0
            if "LastEvaluatedKey" not in page:
                break
            key = page["LastEvaluatedKey"]
            assert isinstance(key["pk"]["B"], bytes), key  # botocore's shape, as it serializes
            request["ExclusiveStartKey"] = key
    assert len(raw) == len(parsed) == 5
    assert isinstance(raw[0]["b"]["B"], str) and isinstance(parsed[0]["b"]["B"], bytes)
    assert [bson_of(i) for i in raw] == [bson_of(i) for i in parsed]
    # outside aws_json.scan the same client answers as botocore does
    assert isinstance(client.scan(TableName="zoo")["Items"][0]["b"]["B"], bytes)


def test_get_records_gives_the_records_botocore_gives(table: tuple[Any, Any, str]) -> None:
    client, streams, arn = table
    client.delete_item(TableName="zoo", Key={"pk": {"B": bytes([1, 200])}, "sk": {"N": "1"}})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

    def iterator() -> str:
        return str(streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"])

    parsed = streams.get_records(ShardIterator=iterator())
    raw = aws_json.get_records(streams, ShardIterator=iterator())
    assert isinstance(raw["NextShardIterator"], str)
    assert len(raw["Records"]) == len(parsed["Records"]) == 6
    for mine, theirs in zip(raw["Records"], parsed["Records"], strict=True):
        body, expected = mine["dynamodb"], theirs["dynamodb"]
        assert isinstance(body["ApproximateCreationDateTime"], (int, float))
        assert isinstance(expected["ApproximateCreationDateTime"], datetime)
        assert creation_time_of(mine) == creation_time_of(theirs) is not None
        for field in ("eventID", "eventName", "eventSource", "awsRegion"):
            assert mine.get(field) == theirs.get(field)
        for field in ("SequenceNumber", "SizeBytes", "StreamViewType"):
            assert body[field] == expected[field]
        for image in ("Keys", "NewImage", "OldImage"):
            assert (image in body) is (image in expected)
            if image in body:
                assert bson_of(body[image]) == bson_of(expected[image]), image
    assert [r["eventName"] for r in raw["Records"]][-1] == "REMOVE"
    assert isinstance(raw["Records"][0]["dynamodb"]["Keys"]["pk"]["B"], str)


def test_errors_keep_botocores_parsing(moto: Any) -> None:
    client = moto.dynamodb()
    with pytest.raises(ClientError) as raised:
        aws_json.scan(client, TableName="no-such-table")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_client_that_is_not_botocore_is_called_as_it_is() -> None:
    class Source:
        def scan(self, **request: Any) -> dict[str, Any]:
            return {"Items": [{"pk": {"B": base64.b64decode("AQI=")}}], "asked": request}

    page = aws_json.scan(Source(), TableName="t")
    assert page["asked"] == {"TableName": "t"} and page["Items"][0]["pk"]["B"] == b"\x01\x02"
