"""The reference table (harness.model) emits what DynamoDB Streams emits."""

from __future__ import annotations

import base64

import pytest

from harness.model import ModelTable
from replicator.events import EventName, parse_record

K0 = {"pk": {"S": "k0"}}


def test_put_update_delete_emit_insert_modify_remove_with_images() -> None:
    table = ModelTable()
    insert = table.put({**K0, "a": {"N": "1"}, "b": {"B": b"\x00\xff"}})
    assert insert is not None and insert["eventName"] == "INSERT"
    body = insert["dynamodb"]
    assert body["Keys"] == K0
    assert body["NewImage"] == {**K0, "a": {"N": "1"}, "b": {"B": base64.b64encode(b"\x00\xff").decode()}}
    assert "OldImage" not in body
    assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(body["ApproximateCreationDateTime"], int) and body["SizeBytes"] > 0
    assert insert["eventSource"] == "aws:dynamodb" and insert["awsRegion"] == "us-east-1"
    assert insert["eventSourceARN"].startswith("arn:aws:dynamodb:us-east-1:")

    modify = table.update(K0, {"c": {"S": "x"}}, ["a"])
    assert modify is not None and modify["eventName"] == "MODIFY"
    assert modify["dynamodb"]["OldImage"] == body["NewImage"]
    assert modify["dynamodb"]["NewImage"] == {**K0, "b": body["NewImage"]["b"], "c": {"S": "x"}}

    remove = table.delete(K0)
    assert remove is not None and remove["eventName"] == "REMOVE"
    assert remove["dynamodb"]["OldImage"] == modify["dynamodb"]["NewImage"]
    assert "NewImage" not in remove["dynamodb"]
    assert table.items() == []

    sequences = [r["dynamodb"]["SequenceNumber"] for r in table.records]
    assert all(len(s) == 21 and s.isdigit() for s in sequences)
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert len({r["eventID"] for r in table.records}) == 3
    for index, record in enumerate(table.records):
        assert parse_record(record, index).event_name is EventName(record["eventName"])


def test_writes_that_change_nothing_emit_nothing() -> None:
    table = ModelTable()
    assert table.delete(K0) is None  # a missing item
    table.put({**K0, "n": {"N": "1.50"}, "s": {"NS": ["1", "2"]}, "b": {"BS": [b"a", b"b"]}})
    # equal numbers, sets in another order, B as bytes or base64: the same item
    same = {**K0, "n": {"N": "1.5"}, "s": {"NS": ["2.0", "1"]}, "b": {"BS": ["Yg==", b"a"]}}
    assert table.put(same) is None
    assert table.update(K0, {"n": {"N": "15E-1"}}) is None
    assert table.update(K0, remove=["missing"]) is None
    assert len(table.records) == 1


def test_update_creates_a_missing_item_and_history_is_kept() -> None:
    table = ModelTable(("pk", "sk"))
    key = {"pk": {"S": "k0"}, "sk": {"N": "1"}}
    record = table.update(key, {"a": {"BOOL": True}})
    assert record is not None and record["eventName"] == "INSERT"
    table.delete(key)
    (key_id,) = table.key_ids()
    history = table.history(key_id)
    assert [state for _, state in history] == [None, {**key, "a": {"BOOL": True}}, None]
    assert [p.position for p in table.positions] == [1, 2]
    with pytest.raises(ValueError):
        table.update(key, {"pk": {"S": "other"}})


@pytest.mark.parametrize(
    ("view", "new", "old"),
    [("NEW_IMAGE", True, False), ("OLD_IMAGE", False, True), ("KEYS_ONLY", False, False)],
)
def test_view_types_decide_the_images(view: str, new: bool, old: bool) -> None:
    table = ModelTable(view_type=view)
    table.put({**K0, "a": {"S": "1"}})
    record = table.put({**K0, "a": {"S": "2"}})
    assert record is not None
    assert ("NewImage" in record["dynamodb"]) is new
    assert ("OldImage" in record["dynamodb"]) is old
    assert record["dynamodb"]["StreamViewType"] == view


def test_ttl_expiry_names_the_service() -> None:
    table = ModelTable()
    table.put({**K0, "a": {"S": "1"}})
    record = table.expire(K0)
    assert record is not None
    assert record["userIdentity"]["principalId"] == "dynamodb.amazonaws.com"
    assert parse_record(record).is_ttl_delete


@pytest.mark.parametrize(
    "item",
    [
        {"a": {"S": "no key"}},
        {**K0, "a": {"SS": []}},
        {**K0, "a": {"NS": ["1", "1.0"]}},
        {**K0, "a": {"N": "1E+126"}},
        {**K0, "a": {"N": "1" * 39}},
        {**K0, "a": {"NULL": False}},
        {"pk": {"BOOL": True}},
        {"pk": {"S": ""}},
    ],
)
def test_items_dynamodb_would_refuse_are_refused(item: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ModelTable().put(item)
