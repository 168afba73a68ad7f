"""harness.esm.lambda_events: GetRecords records (boto3 shapes) -> Lambda event records."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from harness.esm.lambda_events import epoch_seconds, lambda_event, to_lambda_record
from replicator.events import EventName, parse_records

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/items/stream/2024-01-01T00:00:00.000"
CREATED = datetime(2024, 5, 6, 7, 8, 9, 250_000, tzinfo=timezone.utc)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def boto3_record() -> dict:
    """A MODIFY as boto3's low-level dynamodbstreams client returns it."""
    return {
        "eventID": "c81e728d9d4c2f636f067f89cc14862c",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": CREATED,
            "Keys": {"pk": {"B": b"\x00\x01key"}, "sk": {"N": "7"}},
            "NewImage": {
                "pk": {"B": b"\x00\x01key"},
                "sk": {"N": "7"},
                "blob": {"B": b"\xff\xfe"},
                "blobs": {"BS": [b"a", b"\x00"]},
                "nested": {"M": {
                    "inner": {"B": b"deep"},
                    "list": {"L": [{"B": b"in-list"}, {"S": "text"},
                                   {"M": {"x": {"BS": [b"xx"]}}}]},
                }},
                "strings": {"SS": ["a", "b"]},
                "flag": {"BOOL": True},
                "nothing": {"NULL": True},
            },
            "OldImage": {"pk": {"B": b"\x00\x01key"}, "sk": {"N": "7"}, "blob": {"B": b"old"}},
            "SequenceNumber": "111000000000000000001",
            "SizeBytes": 123,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_bytes_become_base64_at_every_depth() -> None:
    out = to_lambda_record(boto3_record(), stream_arn=ARN, region="us-east-1")
    body = out["dynamodb"]
    assert body["Keys"] == {"pk": {"B": b64(b"\x00\x01key")}, "sk": {"N": "7"}}
    image = body["NewImage"]
    assert image["blob"] == {"B": b64(b"\xff\xfe")}
    assert image["blobs"] == {"BS": [b64(b"a"), b64(b"\x00")]}
    nested = image["nested"]["M"]
    assert nested["inner"] == {"B": b64(b"deep")}
    assert nested["list"]["L"][0] == {"B": b64(b"in-list")}
    assert nested["list"]["L"][1] == {"S": "text"}
    assert nested["list"]["L"][2] == {"M": {"x": {"BS": [b64(b"xx")]}}}
    assert image["strings"] == {"SS": ["a", "b"]}
    assert image["flag"] == {"BOOL": True} and image["nothing"] == {"NULL": True}
    assert body["OldImage"]["blob"] == {"B": b64(b"old")}
    assert body["SequenceNumber"] == "111000000000000000001"
    assert body["SizeBytes"] == 123 and body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    json.dumps(out)  # the whole record is JSON now


def test_creation_time_becomes_epoch_seconds() -> None:
    out = to_lambda_record(boto3_record(), stream_arn=ARN, region="us-east-1")
    value = out["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(value, float)
    assert value == pytest.approx(CREATED.timestamp())
    # boto3 gives local-time aware datetimes; the instant is what counts
    record = boto3_record()
    record["dynamodb"]["ApproximateCreationDateTime"] = CREATED.astimezone(
        timezone(timedelta(hours=-5)))
    again = to_lambda_record(record, stream_arn=ARN, region="us-east-1")
    assert again["dynamodb"]["ApproximateCreationDateTime"] == pytest.approx(CREATED.timestamp())
    # a naive datetime is UTC, a number stays a number (already Lambda-shaped)
    assert epoch_seconds(datetime(1970, 1, 2)) == 86400.0
    assert epoch_seconds(1700000000) == 1700000000.0
    assert epoch_seconds("soon") is None


def test_envelope_fields() -> None:
    out = to_lambda_record(boto3_record(), stream_arn=ARN, region="us-east-1")
    assert out["eventSourceARN"] == ARN
    assert out["awsRegion"] == "eu-west-1"  # kept
    assert out["eventVersion"] == "1.1" and out["eventSource"] == "aws:dynamodb"
    assert out["eventID"] == "c81e728d9d4c2f636f067f89cc14862c" and out["eventName"] == "MODIFY"
    record = boto3_record()
    del record["awsRegion"], record["eventSource"]
    record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    out = to_lambda_record(record, stream_arn=ARN, region="ap-south-1")
    assert out["awsRegion"] == "ap-south-1"  # set
    assert out["eventSource"] == "aws:dynamodb"
    assert out["userIdentity"] == record["userIdentity"]
    assert list(out)[-1] == "eventSourceARN"


def test_pure_input_untouched_and_output_unshared() -> None:
    record = boto3_record()
    before = copy.deepcopy(record)
    out = to_lambda_record(record, stream_arn=ARN, region="us-east-1")
    assert record == before
    out["dynamodb"]["NewImage"]["strings"]["SS"].append("c")
    out["dynamodb"]["Keys"]["sk"]["N"] = "8"
    assert record == before


def test_lambda_event_and_the_replicator_parses_it() -> None:
    records = [to_lambda_record(boto3_record(), stream_arn=ARN, region="us-east-1")]
    event = lambda_event(records)
    assert event == {"Records": records} and event["Records"] is not records
    changes, bad = parse_records(json.loads(json.dumps(event)))
    assert not bad
    change = changes[0]
    assert change.event_name is EventName.MODIFY
    assert change.keys["pk"] == {"B": b64(b"\x00\x01key")}
    assert change.created_at == CREATED
    assert change.table_name == "items"


def test_lambda_event_of_nothing() -> None:
    assert lambda_event([]) == {"Records": []}
    assert lambda_event(iter([{"a": 1}])) == {"Records": [{"a": 1}]}
