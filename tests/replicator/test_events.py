"""Stream records -> Change: both record shapes, TTL detection, and malformed records."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest

from replicator import accelerator
from replicator.errors import MalformedRecordError
from replicator.events import (
    EventName,
    StreamViewType,
    parse_record,
    parse_records,
    records_of,
    table_arn_of,
)
from replicator.plan import Planner
from replicator.settings import Settings
from support.planned_writes import operations

BLOB = bytes(range(1, 17))
BLOB_B64 = "AQIDBAUGBwgJCgsMDQ4PEA=="
EPOCH = 1795712760  # 2026-11-26T17:06:00Z


def lambda_shape() -> dict[str, Any]:
    """A record as Lambda delivers it: B as base64 text, epoch seconds."""
    return {
        "eventID": "e100",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2026-01-01",
        "dynamodb": {
            "ApproximateCreationDateTime": float(EPOCH),
            "Keys": {"id": {"B": BLOB_B64}},
            "NewImage": {"id": {"B": BLOB_B64}, "blobs": {"BS": ["/w==", "AAE="]},
                         "n": {"N": "19.99"}},
            "SequenceNumber": "000000000000000000100",
            "SizeBytes": 40,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def boto3_shape() -> dict[str, Any]:
    """The same record as boto3's get_records returns it: B as bytes, a datetime."""
    record = lambda_shape()
    body = record["dynamodb"]
    body["ApproximateCreationDateTime"] = datetime.fromtimestamp(EPOCH, tz=timezone.utc)
    body["Keys"] = {"id": {"B": BLOB}}
    body["NewImage"] = {"id": {"B": BLOB}, "blobs": {"BS": [b"\xff", b"\x00\x01"]},
                        "n": {"N": "19.99"}}
    return record


# -- both shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [lambda_shape, boto3_shape], ids=["lambda", "boto3"])
def test_both_record_shapes_parse(shape: Any) -> None:
    # given a record in either shape
    raw = shape()

    # when it is parsed
    change = parse_record(raw, index=4)

    # then every field is read
    assert change.index == 4
    assert change.event_name is EventName.INSERT
    assert change.sequence_number == "000000000000000000100"
    assert change.stream_view_type is StreamViewType.NEW_AND_OLD_IMAGES
    assert change.created_at == datetime(2026, 11, 26, 17, 6, tzinfo=timezone.utc)
    assert change.event_id == "e100"
    assert change.table_name == "users"
    assert change.keys == raw["dynamodb"]["Keys"]
    assert change.new_image == raw["dynamodb"]["NewImage"]
    assert change.old_image is None
    assert change.is_ttl_delete is False


def test_both_shapes_plan_the_same_write() -> None:
    # given the same record in both shapes
    planner = Planner(Settings())

    # when each is planned
    plans = [operations(planner.plan([parse_record(shape())]))
             for shape in (lambda_shape, boto3_shape)]

    # then the operations are equal, binary as bytes, sets sorted
    assert plans[0] == plans[1]
    document = planner.plan([parse_record(lambda_shape())]).writes[0].document
    assert document["_id"] == BLOB
    assert document["blobs"] == [b"\x00\x01", b"\xff"]


def test_naive_datetime_is_taken_as_utc() -> None:
    raw = boto3_shape()
    raw["dynamodb"]["ApproximateCreationDateTime"] = datetime(2026, 1, 2, 3, 4, 5)
    assert parse_record(raw).created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_get_records_list_and_lambda_event_give_the_same_changes() -> None:
    records = [lambda_shape(), lambda_shape()]
    records[1]["dynamodb"]["SequenceNumber"] = "000000000000000000101"
    from_event, bad_event = parse_records({"Records": copy.deepcopy(records)})
    from_list, bad_list = parse_records(records)
    assert from_event == from_list
    assert [c.index for c in from_list] == [0, 1]
    assert bad_event == bad_list == []


def test_event_without_records_list_is_malformed() -> None:
    with pytest.raises(MalformedRecordError) as raised:
        records_of({"records": []})
    assert raised.value.field_path == "Records"


@pytest.mark.parametrize("event", ["abc", b"ab", None, 5, 1.5, {"Records": None},
                                   {"Records": "abc"}, {"Records": {"a": 1}}])
def test_anything_but_an_event_or_a_list_of_records_is_one_error(event: Any) -> None:
    # issue #10: a str was split into characters (each quarantined), None raised a bare TypeError
    with pytest.raises(MalformedRecordError) as raised:
        records_of(event)
    assert raised.value.field_path in ("event", "Records")
    assert type(event).__name__ in str(raised.value) or "Records" in str(raised.value)


def test_a_list_or_tuple_of_records_is_an_event() -> None:
    assert records_of([1, 2]) == [1, 2] and records_of((1,)) == [1]


@pytest.mark.parametrize(("arn", "table"), [
    ("arn:aws:dynamodb:r:1:table/T/stream/2024-01-01T00:00:00.000", "arn:aws:dynamodb:r:1:table/T"),
    ("arn:aws:dynamodb:r:1:table/T", "arn:aws:dynamodb:r:1:table/T"),
    (None, None), ("", None), (5, None),
])
def test_table_arn_is_the_event_source_arn_before_stream(arn: Any, table: str | None) -> None:
    assert table_arn_of(arn) == table


def test_sequence_numbers_sort_numerically() -> None:
    # given sequence numbers of different lengths (DynamoDB Local pads to 21 digits, AWS does not)
    low, high = lambda_shape(), lambda_shape()
    low["dynamodb"]["SequenceNumber"] = "99"
    high["dynamodb"]["SequenceNumber"] = "100"

    # then the sort key orders them as numbers, not as text
    assert parse_record(low).sort_key < parse_record(high).sort_key
    assert parse_record(high).sort_key == "100".zfill(40)


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE", None])
def test_insert_without_new_image_parses_where_the_view_has_none(view: str | None) -> None:
    raw = lambda_shape()
    del raw["dynamodb"]["NewImage"]
    if view is None:
        del raw["dynamodb"]["StreamViewType"]
    else:
        raw["dynamodb"]["StreamViewType"] = view
    change = parse_record(raw)
    assert change.new_image is None
    assert change.stream_view_type == (StreamViewType(view) if view else None)


# -- TTL -----------------------------------------------------------------------------------------
def test_aws_ttl_delete_is_recognized_by_the_service_principal(stream_record: Any) -> None:
    raw = stream_record("200", "REMOVE", old={"id": {"S": "u1"}}, ttl=True)
    change = parse_record(raw)
    assert change.event_name is EventName.REMOVE
    assert change.is_ttl_delete is True


@pytest.mark.parametrize(
    "identity",
    [None, {"type": "Service", "principalId": "someone.amazonaws.com"}, "dynamodb.amazonaws.com"],
    ids=["no identity", "other principal", "not an object"],
)
def test_other_removes_are_not_ttl(stream_record: Any, identity: Any) -> None:
    raw = stream_record("200", "REMOVE", old={"id": {"S": "u1"}})
    if identity is not None:
        raw["userIdentity"] = identity
    change = parse_record(raw)
    assert change.event_name is EventName.REMOVE
    assert change.is_ttl_delete is False


@pytest.mark.parametrize("accelerate", [True, False])
@pytest.mark.parametrize("identity", [
    {"type": "Service", "principalId": "dynamodb.amazonaws.com"},  # Lambda event
    {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},  # GetRecords through boto3
])
def test_ttl_delete_in_both_identity_shapes(
    stream_record: Any, identity: dict[str, str], accelerate: bool
) -> None:
    raw = stream_record("200", "REMOVE", old={"id": {"S": "u1"}})
    raw["userIdentity"] = identity
    (change,), bad = parse_records([raw], native=accelerator.native if accelerate else None)
    assert bad == [] and change.is_ttl_delete is True
    assert parse_record(raw).is_ttl_delete is True


def test_dynamodb_local_ttl_delete_is_a_remove(stream_record: Any) -> None:
    # given DynamoDB Local's TTL record: literal UNKNOWN_TO_SDK_VERSION, only an OldImage
    raw = stream_record("200", "UNKNOWN_TO_SDK_VERSION", old={"id": {"S": "u1"}})
    assert "userIdentity" not in raw

    change = parse_record(raw)

    assert change.event_name is EventName.REMOVE
    assert change.is_ttl_delete is True
    assert change.old_image == {"id": {"S": "u1"}}


def test_unknown_event_name_with_a_new_image_is_malformed(stream_record: Any) -> None:
    raw = stream_record("200", "UNKNOWN_TO_SDK_VERSION", new={"id": {"S": "u1"}})
    with pytest.raises(MalformedRecordError) as raised:
        parse_record(raw)
    assert raised.value.field_path == "eventName"


# -- malformed records ---------------------------------------------------------------------------
DELETE = object()


def _set(path: str, value: Any) -> Any:
    def mutate(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = record
        for name in parents:
            target = target[name]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return mutate


MALFORMED = [
    ("no dynamodb", _set("dynamodb", DELETE), "dynamodb", False),
    ("dynamodb is a list", _set("dynamodb", []), "dynamodb", False),
    ("no SequenceNumber", _set("dynamodb.SequenceNumber", DELETE), "dynamodb.SequenceNumber",
     False),
    ("SequenceNumber with a letter", _set("dynamodb.SequenceNumber", "12a"),
     "dynamodb.SequenceNumber", False),
    ("SequenceNumber of 41 digits", _set("dynamodb.SequenceNumber", "1" * 41),
     "dynamodb.SequenceNumber", False),
    ("SequenceNumber of non-ASCII digits", _set("dynamodb.SequenceNumber", "١٢٣"),
     "dynamodb.SequenceNumber", False),
    ("SequenceNumber as a number", _set("dynamodb.SequenceNumber", 102),
     "dynamodb.SequenceNumber", False),
    ("unknown eventName", _set("eventName", "UPSERT"), "eventName", True),
    ("no eventName", _set("eventName", DELETE), "eventName", True),
    ("no Keys", _set("dynamodb.Keys", DELETE), "dynamodb.Keys", True),
    ("empty Keys", _set("dynamodb.Keys", {}), "dynamodb.Keys", True),
    ("untyped key value", _set("dynamodb.Keys", {"id": "u1"}), "dynamodb.Keys.id", True),
    ("key value with two tags", _set("dynamodb.Keys", {"id": {"S": "u1", "N": "1"}}),
     "dynamodb.Keys.id", True),
    ("unknown StreamViewType", _set("dynamodb.StreamViewType", "EVERYTHING"),
     "dynamodb.StreamViewType", True),
    ("INSERT without NewImage on NEW_AND_OLD_IMAGES", _set("dynamodb.NewImage", DELETE),
     "dynamodb.NewImage", True),
    ("NewImage is a list", _set("dynamodb.NewImage", []), "dynamodb.NewImage", True),
    ("OldImage is text", _set("dynamodb.OldImage", "old"), "dynamodb.OldImage", True),
    ("creation time as text", _set("dynamodb.ApproximateCreationDateTime", "yesterday"),
     "dynamodb.ApproximateCreationDateTime", True),
    ("creation time as a bool", _set("dynamodb.ApproximateCreationDateTime", True),
     "dynamodb.ApproximateCreationDateTime", True),
]


@pytest.mark.parametrize(
    ("mutate", "field_path", "names_sequence"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_record_is_named_by_index_event_id_sequence_and_path(
    stream_record: Any, mutate: Any, field_path: str, names_sequence: bool
) -> None:
    # given a batch whose third record is malformed
    records = [
        stream_record("100", "INSERT", {"id": {"S": "a"}}, new={"id": {"S": "a"}}),
        stream_record("101", "INSERT", {"id": {"S": "b"}}, new={"id": {"S": "b"}}),
        stream_record("102", "INSERT", {"id": {"S": "c"}}, new={"id": {"S": "c"}}),
    ]
    mutate(records[2])

    # when the batch is parsed
    changes, bad = parse_records({"Records": records})

    # then the others parse, and the bad one carries a located MalformedRecordError
    assert [c.sequence_number for c in changes] == ["100", "101"]
    (bad_record,) = bad
    error = bad_record.error
    assert isinstance(error, MalformedRecordError)
    assert bad_record.index == error.index == 2
    assert error.field_path == field_path
    assert error.event_id == "e102"
    message = str(error)
    assert message.startswith("record index 2, eventID e102")
    assert f" at {field_path}: " in message
    if names_sequence:
        assert "SequenceNumber 102" in message
        assert bad_record.sequence_number == "102"
    else:
        assert "SequenceNumber" not in message.split(" at ")[0]
        assert bad_record.sequence_number is None


def test_record_that_is_not_an_object_is_malformed() -> None:
    changes, bad = parse_records({"Records": ["not a record"]})
    assert changes == []
    assert str(bad[0].error) == "record index 0: a record must be an object, got str"
    assert bad[0].raw == "not a record"
