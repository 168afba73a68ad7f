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
from support.fast_set import fast_first
from support.fixtures import lambda_stream_record
from support.kinesis import (
    T0_MS,
    Changes,
    change_json,
    event,
    item,
    keys,
    kinesis_record,
    shuffled_history,
)

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
def test_equal_times_in_one_batch_are_a_tie_even_when_they_chain(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection).process(event(c.insert("a", 1, T0_MS - 1)))
    # three changes in one millisecond that chain 1->2->3->4: the batch may still lack one
    batch = [c.modify("a", 3, 4, T0_MS), c.modify("a", 2, 3, T0_MS), c.modify("a", 1, 2, T0_MS)]
    result = Replicator(collection).process(event(*batch))
    assert values(collection) == {"a": 1}  # kept: never a guess
    assert len(result.quarantined) == 3 and result.failures == []


def test_a_chain_is_no_proof_the_table_decides(mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS - 1)))
    # the table went 1->2->3->1 in one millisecond; 1->2 and 3->1 come first, and chain as
    # 3->1->2 (ending at 2), but the table ends at 1
    users_table.put_item(TableName="users", Item=item("a", 1))
    one_two, two_three, three_one = (c.modify("a", 1, 2, T0_MS), c.modify("a", 2, 3, T0_MS),
                                     c.modify("a", 3, 1, T0_MS))
    replicator.process(event(one_two, three_one))
    replicator.process(event(two_three))
    assert values(collection) == {"a": 1}


def test_a_remove_and_an_insert_of_one_time(mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection).process(event(c.insert("a", 1, T0_MS - 5)))
    batch = [c.insert("a", 2, T0_MS), c.remove("a", 1, T0_MS)]  # the INSERT arrives first
    refused = Replicator(collection).process(event(*batch))
    assert values(collection) == {"a": 1} and len(refused.quarantined) == 2
    users_table.put_item(TableName="users", Item=item("a", 2))
    Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users")).process(event(*batch))
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


def test_read_back_decides_a_tie_with_the_stored_document(mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    reader = DynamoDBItemReader(users_table, "users")
    c = Changes()
    # the table went 1 -> 2 -> 3 within one millisecond; 2->3 arrived first, then 1->2
    users_table.put_item(TableName="users", Item=item("a", 3))
    replicator = Replicator(collection, item_reader=reader)
    replicator.process(event(c.modify("a", 2, 3, T0_MS)))
    late = replicator.process(event(c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {"a": 3} and late.quarantined == [] and late.stale == 1
    # now the reverse: 1->2 stored first, 2->3 arrives: the table says 3 is current
    collection.delete_many({})
    replicator.process(event(c.modify("a", 1, 2, T0_MS)))
    newer = replicator.process(event(c.modify("a", 2, 3, T0_MS)))
    assert values(collection) == {"a": 3} and newer.applied == 1


def test_read_back_decides_a_cycle_and_a_remove_tie(mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    reader = DynamoDBItemReader(users_table, "users")
    replicator = Replicator(collection, item_reader=reader)
    c = Changes()
    users_table.put_item(TableName="users", Item=item("a", 1))
    replicator.process(event(c.modify("a", 2, 1, T0_MS), c.modify("a", 1, 2, T0_MS)))
    assert values(collection) == {"a": 1}
    # an INSERT stored, a REMOVE of the same time arrives: the item is gone from the table
    users_table.put_item(TableName="users", Item=item("b", 5))
    replicator.process(event(c.insert("b", 5, T0_MS)))
    users_table.delete_item(TableName="users", Key=keys("b"))
    replicator.process(event(c.remove("b", 5, T0_MS)))
    assert "b" not in values(collection)
    assert mongoeco_db["items_tombstones"].find_one({"_id": "b"})["seq"].endswith(".-")


def test_a_tie_no_candidate_of_which_is_current_is_superseded(mongoeco_db: Any,
                                                              users_table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    c = Changes()
    users_table.put_item(TableName="users", Item=item("a", 9))  # moved on since
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


def test_a_kinesis_delete_marker_holds_its_order_key_on_the_accelerated_path(
    mongoeco_db: Any,
) -> None:
    """The C tombstone builder knows DynamoDB sequence numbers only; a Kinesis sequence number of
    40 digits or fewer (here 1, 2) must not be taken for one: the marker holds the REMOVE's
    order key, so a late change of an older time stays out and a newer one comes back."""
    from replicator import accelerator

    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    assert replicator.native is accelerator.native  # the C module where it was built
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS), c.insert("b", 1, T0_MS)))
    replicator.process(event(c.remove("a", 1, T0_MS + 30)))
    marker = mongoeco_db["items_tombstones"].find_one({"_id": "a"})
    assert marker is not None and marker["seq"].startswith("K"), marker
    assert replicator.process(event(c.modify("a", 1, 2, T0_MS + 10))).stale == 1
    replicator.process(event(c.insert("a", 3, T0_MS + 40)))
    assert values(collection) == {"a": 3, "b": 1}


def test_the_tombstone_guard_marks_a_kinesis_delete_with_its_order_key_with_the_accelerator(
    mongoeco_db: Any,
) -> None:
    """TombstoneStore.guard with the C module handed in: a Kinesis write's marker holds its order
    key, not its Kinesis sequence number padded as if it were a DynamoDB one."""
    from replicator import accelerator
    from replicator.tombstones import TombstoneStore
    from replicator.writes import main_write

    if accelerator.native is None:
        pytest.skip(f"no C accelerator here: {accelerator.unavailable}")
    key = "K00001700000000000001.-"
    delete = main_write("delete", {"_id": "a"}, None, ("2",), key)
    upsert = main_write("replace", {"_id": "b"}, {"_id": "b", "v": 1}, ("3",),
                        "K00001700000000000002.0123456789abcdef")
    TombstoneStore(mongoeco_db["items_tombstones"]).guard([delete, upsert], accelerator.native)
    marker = mongoeco_db["items_tombstones"].find_one({"_id": "a"})
    assert marker is not None and marker["seq"] == key, marker


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
    # a copy's "0" is older than any Kinesis change (stale); a DynamoDB Streams change cannot
    # be ordered against it
    assert order_relation(key, "0" * 40) == "newer"
    assert order_relation(key, "1".zfill(40)) == "other-source"
    assert order_relation(kds_order_key(5, {"id": {"B": b"\x01"}}),
                          kds_order_key(5, {"id": {"B": "AQ=="}})) == "same"
    assert order_relation(kds_order_key(5, {"s": {"SS": ["x", "y"]}}),
                          kds_order_key(5, {"s": {"SS": ["y", "x"]}})) == "same"
    assert order_relation(kds_order_key(5, {"v": {"N": "1"}}), key) == "tie"


# -- unseen inputs of the same kinds (written to break the change) --------------------------------
def test_a_dynamodb_first_mixed_batch_on_the_accelerated_path(mongoeco_db: Any) -> None:
    from replicator import accelerator

    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    replicator.native = accelerator.native  # None in a pure-Python run: the same answer
    c = Changes()
    stream = lambda_stream_record("100", keys=keys("s"), new=item("s", 7))
    result = replicator.process(event(stream, c.insert("a", 1)))
    assert values(collection) == {"s": 7}
    assert len(result.quarantined) == 1 and result.failures == []


def test_composite_and_binary_keys_from_kinesis(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    both = {"pk": {"B": "AAEC"}, "sk": {"N": "5"}}
    first = change_json("INSERT", both, new={**both, "v": {"S": "x"}}, created=T0_MS)
    second = change_json("MODIFY", both, old={**both, "v": {"S": "x"}},
                         new={**both, "v": {"S": "y"}}, created=T0_MS + 1)
    Replicator(collection, Settings(key_schema=("pk", "sk"))).process(
        event(kinesis_record(second, 2), kinesis_record(first, 1)))
    (document,) = list(collection.find())
    assert document["_id"] == {"pk": b"\x00\x01\x02", "sk": 5} and document["v"] == "y"


@pytest.mark.parametrize("data, path", [
    ("", "kinesis.data"),
    (base64.b64encode(b"\xff\xfe\xfa not utf").decode(), "kinesis.data"),
    (base64.b64encode(json.dumps({**change_json("INSERT", keys("a"), new=item("a")),
                                  "dynamodb": {"Keys": {}, "ApproximateCreationDateTime": 1}})
                      .encode()).decode(), "kinesis.data.dynamodb.Keys"),
    (base64.b64encode(json.dumps({**change_json("INSERT", keys("a"), new=item("a")),
                                  "dynamodb": {"Keys": keys("a"), "NewImage": item("a"),
                                               "ApproximateCreationDateTime": 1.5}})
                      .encode()).decode(), "kinesis.data.dynamodb.ApproximateCreationDateTime"),
    (base64.b64encode(json.dumps({**change_json("INSERT", keys("a"), new=item("a")),
                                  "eventName": "UPSERT"}).encode()).decode(),
     "kinesis.data.eventName"),
    (base64.b64encode(json.dumps({**change_json("INSERT", keys("a"), new=item("a")),
                                  "recordFormat": "application/x-protobuf"}).encode()).decode(),
     "kinesis.data.recordFormat"),
])
def test_each_malformed_change_names_its_path(data: str, path: str) -> None:
    changes, bad = parse_records([kinesis_record(data, 5)])
    assert changes == [] and len(bad) == 1
    assert f"at {path}:" in str(bad[0].error)
    assert bad[0].sequence_number == "4" * 55 + "5"


def test_bad_records_fail_names_the_kinesis_sequence_number(mongoeco_db: Any) -> None:
    c = Changes()
    good, broken = c.insert("a", 1), kinesis_record("%%%", 9)
    result = Replicator(mongoeco_db["items"], Settings(bad_records="fail")).process(
        event(good, broken))
    assert result.lambda_response() == {
        "batchItemFailures": [{"itemIdentifier": broken["kinesis"]["sequenceNumber"]}]}


def test_a_tie_between_a_tombstone_and_an_insert_of_one_time(mongoeco_db: Any,
                                                             users_table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS - 1)))
    replicator.process(event(c.remove("a", 1, T0_MS)))  # a tombstone of time T0
    # the item was put again in the same millisecond: the table holds it
    users_table.put_item(TableName="users", Item=item("a", 2))
    result = replicator.process(event(c.insert("a", 2, T0_MS)))
    assert values(collection) == {"a": 2} and result.applied == 1
    # a redelivery of the REMOVE now ties with the document: the table says the item exists
    again = replicator.process(event(c.remove("a", 1, T0_MS)))
    assert values(collection) == {"a": 2} and again.applied == 0


def test_a_same_time_write_landing_meanwhile_is_retried_not_taken_as_stale(
        mongoeco_db: Any) -> None:
    from replicator import apply
    from replicator.plan import Planner

    collection = mongoeco_db["items"]
    c = Changes()
    stored = parse_kinesis_record(c.modify("a", 2, 3, T0_MS))
    collection.insert_one({"_id": "a", "v": 3, SEQUENCE_FIELD: stored.order_key})
    # planned without the pre-read (as if the other write landed after it)
    change = parse_kinesis_record(c.modify("a", 1, 2, T0_MS))
    plan = Planner(Settings()).plan([change])
    outcome = apply.write(collection, plan.writes)
    assert outcome.stale == [] and len(outcome.failed) == 1
    assert values(collection) == {"a": 3}


def test_the_guard_off_still_orders_within_a_batch(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection, Settings(guard=False)).process(
        event(c.modify("a", 2, 3, T0_MS + 2), c.modify("a", 1, 2, T0_MS + 1)))
    assert values(collection) == {"a": 3}
    assert SEQUENCE_FIELD not in docs(collection)["a"]


# -- the Lambda handler ----------------------------------------------------------------------------
def test_the_handler_takes_a_kinesis_event(monkeypatch: pytest.MonkeyPatch,
                                           mongoeco_server_uri: str) -> None:
    from replicator import handler

    monkeypatch.setenv("MONGODB_URI", mongoeco_server_uri)
    monkeypatch.setenv("MONGODB_DATABASE", "kinesis_handler")
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    monkeypatch.setenv("REPLICATOR_SOURCE", "kinesis")
    monkeypatch.setenv("REPLICATOR_STREAM_RETENTION_S", "604800")
    monkeypatch.delenv("REPLICATOR_READ_BACK_TABLE", raising=False)
    handler.reset()
    try:
        c = Changes()
        broken = kinesis_record(b"{", 50)
        response = handler.lambda_handler(
            event(c.modify("a", 1, 2, T0_MS + 2), c.insert("a", 1, T0_MS), broken))
        replicator = handler._get_replicator()
        assert replicator.settings.tombstone_retention_s == 604800 + 86400
        collection = replicator.collection
        assert response == {"batchItemFailures": []}
        assert values(collection) == {"a": 2}
        assert collection.database["users_quarantine"].count_documents({}) == 1
        # a DynamoDB Streams record reaching this function is refused, not applied
        handler.lambda_handler(event(lambda_stream_record("7", keys=keys("z"), new=item("z"))))
        assert "z" not in values(collection)
    finally:
        client = handler._get_replicator().collection.database.client
        client.drop_database("kinesis_handler")
        handler.reset()


# -- shuffled and duplicated histories converge ----------------------------------------------------
def _deliver(seed: int, collection: Any, users_table: Any) -> tuple[dict[str, Any], list[str]]:
    """One seeded history, delivered shuffled, 30 % duplicated, in batches of 1-6 (the read-back
    reads the table's final items): the final items, and what went wrong on the way (a record
    quarantined or failed, a document whose time went back)."""
    rng, delivered, final = shuffled_history(seed, users_table)
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    seen: dict[str, str] = {}
    problems = []
    while delivered:
        size = rng.randint(1, 6)
        batch, delivered = delivered[:size], delivered[size:]
        result = replicator.process(event(*batch))
        problems += [str(q.error) for q in result.quarantined] + [w for _, w in result.failures]
        for name, document in docs(collection).items():
            key = document[SEQUENCE_FIELD]
            if order_relation(seen.get(name), key) not in ("older", "same", "tie"):
                problems.append(f"{name} went back from {seen.get(name)} to {key}")
            seen[name] = key
    return final, problems


@pytest.mark.slow
def test_the_histories_catch_a_planted_last_arrival_wins(mongoeco_db: Any, users_table: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from replicator import ties

    def last_arrival_wins(pending: list[Any], plan: Any, *rest: Any) -> None:
        for tie in pending:
            plan.writes.extend(tie.candidates[-1][1])

    monkeypatch.setattr(ties, "_decide", last_arrival_wins)
    caught = []
    for seed in range(6):
        final, problems = _deliver(seed, mongoeco_db[f"c{seed}"], users_table)
        if problems or values(mongoeco_db[f"c{seed}"]) != final:
            caught.append(seed)
    assert caught  # the checks below can fail


@pytest.mark.parametrize("seed", fast_first(range(12), 3))
def test_shuffled_duplicated_deliveries_converge_with_read_back(
        seed: int, mongoeco_db: Any, users_table: Any) -> None:
    final, problems = _deliver(seed, mongoeco_db["items"], users_table)
    assert problems == []
    assert values(mongoeco_db["items"]) == final


def test_kinesis_get_records_shape_as_boto3_returns_it(mongoeco_db: Any) -> None:
    """The poller may hand in Kinesis GetRecords' records as they are (Data as bytes)."""
    c = Changes()
    lambda_shaped = [c.insert("a", 1, T0_MS), c.modify("a", 1, 2, T0_MS + 1)]
    boto3_shaped = [{"SequenceNumber": r["kinesis"]["sequenceNumber"],
                     "ApproximateArrivalTimestamp": 1796601600.5,
                     "Data": base64.b64decode(r["kinesis"]["data"]),
                     "PartitionKey": r["kinesis"]["partitionKey"]} for r in lambda_shaped]
    bad = {"SequenceNumber": "4" * 55 + "9", "Data": b"\x00", "PartitionKey": "p"}
    result = Replicator(mongoeco_db["items"]).process([boto3_shaped[1], boto3_shaped[0], bad])
    assert values(mongoeco_db["items"]) == {"a": 2}
    assert [q.sequence_number for q in result.quarantined] == [bad["SequenceNumber"]]
    assert result.table == "users"


def test_tombstones_outlive_a_year_long_stream(mongoeco_db: Any) -> None:
    year = 365 * 24 * 3600
    c = Changes()
    replicator = Replicator(mongoeco_db["items"], Settings(source="kinesis",
                                                           stream_retention_s=year))
    replicator.process(event(c.insert("a", 1, T0_MS), c.remove("a", 1, T0_MS + 1)))
    indexes = mongoeco_db["items_tombstones"].index_information().values()
    assert [i["expireAfterSeconds"] for i in indexes if "expireAfterSeconds" in i] == [
        year + 24 * 3600]
    # a change from long before the delete, still in the stream, stays out
    late = replicator.process(event(c.modify("a", 0, 1, T0_MS - 300 * 24 * 3600 * 1000)))
    assert values(mongoeco_db["items"]) == {} and late.stale == 1


# -- recover ---------------------------------------------------------------------------------------
def test_recover_says_a_kinesis_collection_needs_a_replay(mongoeco_db: Any, users_table: Any) -> None:
    from replicator.migrate.gap import newest_stored_sequence
    from replicator.poller import Poller

    collection = mongoeco_db["items"]
    c = Changes()
    Replicator(collection).process(event(c.insert("a", 1)))
    poller = Poller(boto3.client("dynamodbstreams", region_name="us-east-1"), users_table, "users",
                    collection, Settings(key_schema=("id",)), key_schema=("id",),
                    stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/x")
    with pytest.raises(ConfigurationError, match="recovery is a replay"):
        newest_stored_sequence(poller)


def test_the_source_pin_holds_on_the_accelerated_path_too(mongoeco_db: Any) -> None:
    from replicator import accelerator

    c = Changes()
    stream = lambda_stream_record("100", keys=keys("s"), new=item("s", 7))
    pinned = Replicator(mongoeco_db["k"], Settings(source="kinesis"))
    pinned.native = accelerator.native
    refused = pinned.process(event(stream))  # a well-formed DynamoDB Streams batch
    assert values(mongoeco_db["k"]) == {} and len(refused.quarantined) == 1
    auto = Replicator(mongoeco_db["d"])
    auto.native = accelerator.native
    auto.process(event(stream))  # pins DynamoDB Streams, whichever path planned it
    later = auto.process(event(c.insert("a", 1)))
    assert values(mongoeco_db["d"]) == {"s": 7} and len(later.quarantined) == 1
