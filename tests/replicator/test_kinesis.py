"""Kinesis Data Streams for DynamoDB as a source: records, order by creation time, duplicates,
reordering, equal timestamps (the image chain, read-back, quarantine), tombstones, TTL, the
source pin and switching, retention settings, and batchItemFailures (docs/kinesis.md).

On mongoeco (the default target); the read-back reads moto's DynamoDB (the ``aws`` fixture)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.events import (
    EventName,
    kds_order_key,
    order_relation,
    parse_kinesis_record,
    parse_records,
)
from replicator.readback import DynamoDBItemReader
from replicator.settings import SEQUENCE_FIELD, Settings
from support.fixtures import lambda_stream_record
from support.kinesis import T0_MS, Changes, change_json, event, item, keys, kinesis_record

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kinesis" / "lambda-event.json"


def docs(collection: Any) -> dict[str, Any]:
    return {d["_id"]: d for d in collection.find()}


def values(collection: Any) -> dict[str, Any]:
    return {i: d.get("v") for i, d in docs(collection).items()}


def quarantined(db: Any, name: str = "items") -> list[dict[str, Any]]:
    return list(db[f"{name}_quarantine"].find())


# -- the record shape ----------------------------------------------------------------------------
def test_the_aws_shaped_fixture_parses_into_changes() -> None:
    recorded = json.loads(FIXTURE.read_text())
    changes, bad = parse_records(recorded)
    assert bad == []
    assert [c.event_name for c in changes] == [EventName.INSERT, EventName.MODIFY,
                                               EventName.REMOVE]
    first = changes[0]
    assert first.sequence_number == recorded["Records"][0]["kinesis"]["sequenceNumber"]
    assert first.event_source_arn == "arn:aws:dynamodb:us-east-1:123456789012:table/Music"
    assert first.table_name == "Music"
    assert first.created_at is not None and first.created_at.microsecond == 512000
    # the third record says MICROSECOND precision: its time is not multiplied
    assert changes[2].order_key is not None and changes[2].order_key.startswith("K01646714527512345.")
    assert changes[2].is_ttl_delete


def test_bad_base64_bad_json_and_other_records_are_quarantined_alone(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    changes = Changes()
    good = changes.insert("a", 1)
    batch = event(
        good,  # the first table seen is pinned (Settings.source_table unset)
        kinesis_record("%%% not base64 %%%", 90),
        kinesis_record(b"{not json", 91),
        kinesis_record(b"[1, 2]", 92),
        kinesis_record({**change_json("INSERT", keys("b"), new=item("b")), "eventSource": "aws:s3"},
                       93),
        kinesis_record(change_json("INSERT", keys("c"), new=item("c"), table="other"), 94),
    )
    result = Replicator(collection).process(batch)
    assert values(collection) == {"a": 1}
    assert len(result.quarantined) == 5 and result.failures == []
    kept = {q["sequence_number"]: q for q in quarantined(mongoeco_db)}
    assert "kinesis.data" in kept["4" * 54 + "90"]["error"]["message"]
    assert "not JSON" in kept["4" * 54 + "91"]["error"]["message"]
    assert "JSON object" in kept["4" * 54 + "92"]["error"]["message"]
    assert "kinesis.data.eventSource" in kept["4" * 54 + "93"]["error"]["message"]
    assert "table" in kept["4" * 54 + "94"]["error"]["message"]
    # the raw form is kept: the base64 text as it came
    assert "%%% not base64 %%%" in kept["4" * 54 + "90"]["raw_record"]


def test_a_change_without_its_new_image_is_malformed() -> None:
    record = kinesis_record(change_json("MODIFY", keys("a"), old=item("a")), 1)
    changes, bad = parse_records([record])
    assert changes == [] and "kinesis.data.dynamodb.NewImage" in str(bad[0].error)


def test_times_in_milli_and_microseconds() -> None:
    ms = parse_kinesis_record(kinesis_record(change_json("INSERT", keys("a"), new=item("a"),
                                                         created=1_000), 1))
    us = parse_kinesis_record(kinesis_record(change_json("INSERT", keys("a"), new=item("a"),
                                                         created=1_000_001,
                                                         precision="MICROSECOND"), 2))
    assert ms.order_key is not None and us.order_key is not None
    assert ms.order_key < us.order_key  # 1.000000 s < 1.000001 s
    assert order_relation(ms.order_key, us.order_key) == "older"
    with pytest.raises(Exception, match="precision"):
        parse_kinesis_record(kinesis_record(change_json("INSERT", keys("a"), new=item("a"),
                                                        precision="NANOSECOND"), 3))


# -- order: duplicates and reordering ------------------------------------------------------------
def test_reordered_and_duplicated_changes_converge_to_the_newest(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    c = Changes()
    insert, first, second = (c.insert("a", 1, T0_MS), c.modify("a", 1, 2, T0_MS + 10),
                             c.modify("a", 2, 3, T0_MS + 20))
    replicator.process(event(second))
    later = replicator.process(event(first, insert, second))  # older ones and a duplicate
    assert values(collection) == {"a": 3}
    assert later.applied == 0 and later.stale == 1 and later.already == 1
    assert docs(collection)["a"][SEQUENCE_FIELD].startswith("K01796601600020000.")


def test_arrival_order_is_not_the_order(mongoeco_db: Any) -> None:
    # the Kinesis sequence numbers say "3 then 2"; the creation times say "2 then 3"
    collection = mongoeco_db["items"]
    c = Changes()
    newer = c.modify("a", 2, 3, T0_MS + 20)
    older = c.modify("a", 1, 2, T0_MS + 10)
    Replicator(collection).process(event(newer, older))
    assert values(collection) == {"a": 3}


# -- equal timestamps ----------------------------------------------------------------------------
def test_equal_times_in_one_batch_follow_the_image_chain(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    # three changes in one millisecond, delivered backwards
    batch = [c.modify("a", 3, 4, T0_MS), c.modify("a", 2, 3, T0_MS), c.modify("a", 1, 2, T0_MS)]
    result = Replicator(collection).process(event(*batch))
    assert values(collection) == {"a": 4} and result.quarantined == []


def test_a_remove_then_insert_of_one_time_is_ordered_by_the_chain(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection).process(event(c.insert("a", 1, T0_MS - 5)))
    batch = [c.insert("a", 2, T0_MS), c.remove("a", 1, T0_MS)]  # the INSERT arrives first
    Replicator(collection).process(event(*batch))
    assert values(collection) == {"a": 2}


def test_a_cycle_in_one_time_is_a_tie_quarantined_without_read_back(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    # 1 -> 2 -> 1 in one millisecond: "2 -> 1" and "1 -> 2" both read as a chain
    batch = [c.modify("a", 2, 1, T0_MS), c.modify("a", 1, 2, T0_MS)]
    result = Replicator(collection).process(event(*batch))
    assert values(collection) == {}
    assert len(result.quarantined) == 2 and result.failures == []
    message = quarantined(mongoeco_db)[0]["error"]["message"]
    assert "REPLICATOR_READ_BACK_TABLE" in message and "MICROSECOND" in message


def test_a_duplicate_of_the_stored_change_is_already_there(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    change = c.modify("a", 1, 2, T0_MS)
    Replicator(collection).process(event(change))
    again = Replicator(collection).process(event(kinesis_record(
        json.loads(base64.b64decode(change["kinesis"]["data"])), 77)))  # re-put: new number
    assert again.already == 1 and again.quarantined == [] and values(collection) == {"a": 2}


def test_a_tie_with_the_stored_document_is_quarantined_without_read_back(
        mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection).process(event(c.modify("a", 2, 3, T0_MS)))
    result = Replicator(collection).process(event(c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {"a": 3}  # never older than what is there
    assert len(result.quarantined) == 1
    assert quarantined(mongoeco_db)[0]["error"]["reason"].startswith(
        "equal ApproximateCreationDateTime")


@pytest.fixture
def table(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="users", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return client


def test_read_back_decides_a_tie_with_the_stored_document(mongoeco_db: Any, table: Any) -> None:
    collection = mongoeco_db["items"]
    reader = DynamoDBItemReader(table, "users")
    c = Changes()
    # the table went 1 -> 2 -> 3 within one millisecond; 2->3 arrived first, then 1->2
    table.put_item(TableName="users", Item=item("a", 3))
    replicator = Replicator(collection, item_reader=reader)
    replicator.process(event(c.modify("a", 2, 3, T0_MS)))
    late = replicator.process(event(c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {"a": 3} and late.quarantined == [] and late.stale == 1
    # now the reverse: 1->2 stored first, 2->3 arrives: the table says 3 is current
    collection.delete_many({})
    replicator.process(event(c.modify("a", 1, 2, T0_MS)))
    newer = replicator.process(event(c.modify("a", 2, 3, T0_MS)))
    assert values(collection) == {"a": 3} and newer.applied == 1


def test_read_back_decides_a_cycle_and_a_remove_tie(mongoeco_db: Any, table: Any) -> None:
    collection = mongoeco_db["items"]
    reader = DynamoDBItemReader(table, "users")
    replicator = Replicator(collection, item_reader=reader)
    c = Changes()
    table.put_item(TableName="users", Item=item("a", 1))
    replicator.process(event(c.modify("a", 2, 1, T0_MS), c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {"a": 1}
    # an INSERT stored, a REMOVE of the same time arrives: the item is gone from the table
    table.put_item(TableName="users", Item=item("b", 5))
    replicator.process(event(c.insert("b", 5, T0_MS)))
    table.delete_item(TableName="users", Key=keys("b"))
    replicator.process(event(c.remove("b", 5, T0_MS)))
    assert "b" not in values(collection)
    assert mongoeco_db["items_tombstones"].find_one({"_id": "b"})["seq"].endswith(".-")


def test_a_tie_no_candidate_of_which_is_current_is_superseded(mongoeco_db: Any,
                                                              table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(table, "users"))
    c = Changes()
    table.put_item(TableName="users", Item=item("a", 9))  # moved on since
    replicator.process(event(c.modify("a", 2, 1, T0_MS), c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {}
    replicator.process(event(c.modify("a", 1, 9, T0_MS + 1)))  # the change that made it
    assert values(collection) == {"a": 9}


# -- tombstones and TTL --------------------------------------------------------------------------
def test_a_late_change_does_not_bring_back_a_removed_item(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS), c.remove("a", 1, T0_MS + 30)))
    late = replicator.process(event(c.modify("a", 1, 2, T0_MS + 10)))
    assert values(collection) == {} and late.stale == 1


def test_ttl_removals_from_kinesis_follow_ttl_deletes(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    replicator = Replicator(collection, Settings(ttl_deletes="archive"))
    replicator.process(event(c.insert("a", 1, T0_MS), c.insert("b", 2, T0_MS)))
    replicator.process(event(c.remove("a", 1, T0_MS + 5, ttl=True)))
    assert values(collection) == {"b": 2}
    archived = mongoeco_db["items_ttl_archive"].find_one({"_id": "a"})
    assert archived is not None and archived["v"] == 1
    ignoring = Replicator(mongoeco_db["kept"], Settings(ttl_deletes="ignore"))
    ignoring.process(event(c.insert("a", 1, T0_MS)))
    ignoring.process(event(c.remove("a", 1, T0_MS + 5, ttl=True)))
    assert values(mongoeco_db["kept"]) == {"a": 1}


# -- the source: pin, switching, settings --------------------------------------------------------
def test_a_batch_mixing_the_two_sources_quarantines_the_other_kind(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    stream = lambda_stream_record("100", keys={"id": {"S": "s"}}, new=item("s"))
    result = Replicator(collection).process(event(c.insert("a", 1), stream))
    assert values(collection) == {"a": 1}
    assert len(result.quarantined) == 1
    assert "Kinesis Data Streams" in str(result.quarantined[0].error)
    pinned = Replicator(mongoeco_db["other"], Settings(source="dynamodb"))
    refused = pinned.process(event(c.insert("a", 1)))
    assert refused.quarantined and values(mongoeco_db["other"]) == {}


def test_switching_dynamodb_streams_to_kinesis_and_back(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    streams = Replicator(collection, Settings(source="dynamodb"))
    streams.process(event(lambda_stream_record("900", keys=keys("a"), new=item("a", 1))))
    c = Changes()
    # a Kinesis key sorts after every DynamoDB Streams sequence number: Kinesis takes over
    Replicator(collection, Settings(source="kinesis")).process(event(c.modify("a", 1, 2)))
    assert values(collection) == {"a": 2}
    # back: a DynamoDB Streams write cannot be ordered against a Kinesis key: quarantined, said
    back = Replicator(collection, Settings(source="dynamodb")).process(
        event(lambda_stream_record("901", "MODIFY", keys=keys("a"), new=item("a", 3))))
    assert values(collection) == {"a": 2}
    assert len(back.quarantined) == 1 and "Switching" in str(back.quarantined[0].error)


def test_retention_settings() -> None:
    assert Settings().tombstone_retention_s == 48 * 3600
    year = 365 * 24 * 3600
    assert Settings(stream_retention_s=year).tombstone_retention_s == year + 24 * 3600
    with pytest.raises(ConfigurationError, match="REPLICATOR_STREAM_RETENTION_S"):
        Settings(stream_retention_s=7 * 24 * 3600, tombstone_retention_s=2 * 24 * 3600)
    with pytest.raises(ConfigurationError, match="365 days"):
        Settings(stream_retention_s=year + 1)
    with pytest.raises(ConfigurationError, match="source"):
        Settings(source="sqs")  # type: ignore[arg-type]
    settings = Settings.from_env({"REPLICATOR_SOURCE": "kinesis",
                                  "REPLICATOR_STREAM_RETENTION_S": "604800"})
    assert settings.tombstone_retention_s == 604800 + 86400


# -- the batch response ----------------------------------------------------------------------------
def test_batch_item_failures_name_the_lowest_kinesis_sequence_number(mongoeco_db: Any) -> None:
    c = Changes()
    batch = event(c.insert("a", 1), c.insert("b", 1))
    result = Replicator(mongoeco_db["items"]).process(batch, deadline_s=0.0)
    assert result.lambda_response() == {
        "batchItemFailures": [{"itemIdentifier": batch["Records"][0]["kinesis"]["sequenceNumber"]}]}


def test_order_keys() -> None:
    key = kds_order_key(5, {"id": {"S": "a"}})
    assert key.startswith("K00000000000000005.") and len(key) == 35
    assert kds_order_key(5, None).endswith(".-")
    assert order_relation("0" * 40, key) == "older"  # a DynamoDB Streams number, a copy's "0"
    assert order_relation(key, "0" * 40) == "other-source"
    assert order_relation(kds_order_key(5, {"id": {"B": b"\x01"}}),
                          kds_order_key(5, {"id": {"B": "AQ=="}})) == "same"
    assert order_relation(kds_order_key(5, {"s": {"SS": ["x", "y"]}}),
                          kds_order_key(5, {"s": {"SS": ["y", "x"]}})) == "same"
    assert order_relation(kds_order_key(5, {"v": {"N": "1"}}), key) == "tie"
