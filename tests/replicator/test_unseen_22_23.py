"""Issue 23 against inputs its own tests did not use (a fresh reviewer's break pass): Kinesis
Data Streams records combined with write_mode="merge", Kinesis record shapes at the edges of
what AWS documents, and MongoDB-side tampering with merge mode's ``_ddb_fields``.

On mongoeco through pymongo (the default target); read-back reads moto's DynamoDB."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from replicator.core import Replicator
from replicator.events import parse_records
from replicator.readback import DynamoDBItemReader
from replicator.settings import FIELDS_FIELD, SEQUENCE_FIELD, Settings
from support.fast_set import fast_first
from support.fixtures import lambda_stream_record as record
from support.kinesis import T0_MS, Changes, change_json, event, item, keys, kinesis_record

MERGE = Settings(write_mode="merge")
APP = {"app": "kept"}


def document(collection: Any, id_: str = "a") -> dict[str, Any] | None:
    found = collection.find_one({"_id": id_})
    if found is not None:
        found.pop(SEQUENCE_FIELD, None)
    return found


# -- Kinesis + merge mode ------------------------------------------------------------------------
@pytest.mark.parametrize("one_batch", [True, False], ids=["one-batch", "two-batches"])
def test_a_remove_and_reinsert_in_one_millisecond_drops_the_applications_fields(
        mongoeco_db: Any, users_table: Any, one_batch: bool) -> None:
    # docs/write-modes.md: a REMOVE deletes the document with the other applications' fields,
    # whether the re-insert comes in the same batch or not. In one batch the two changes of one
    # millisecond are a tie, which read-back decides for the INSERT: that write must still start
    # from nothing (it kept "app" before the fix: the tie's candidates ignored the REMOVE)
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE, item_reader=DynamoDBItemReader(users_table, "users"))
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS - 5)))
    collection.update_one({"_id": "a"}, {"$set": APP})
    users_table.put_item(TableName="users", Item=item("a", 2))
    remove, insert = c.remove("a", 1, T0_MS), c.insert("a", 2, T0_MS)
    if one_batch:
        result = replicator.process(event(remove, insert))
        assert result.applied == 1 and result.quarantined == []
    else:
        replicator.process(event(remove))
        replicator.process(event(insert))
    assert document(collection) == {"_id": "a", "id": "a", "v": 2, FIELDS_FIELD: ["id", "v"]}


def test_duplicates_and_reorders_keep_the_applications_fields(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    c = Changes()
    insert = c.record("INSERT", "a", new=1, at=T0_MS)
    modify = c.modify("a", 1, 2, T0_MS + 10)
    replicator.process(event(modify))
    collection.update_one({"_id": "a"}, {"$set": APP})
    again = replicator.process(event(insert, modify, insert))  # older, duplicate, duplicate
    assert again.applied == 0 and again.already == 1  # one coalesced write: the duplicate
    # the same change re-put into the stream (a new Kinesis number, the same order key)
    data = json.loads(base64.b64decode(modify["kinesis"]["data"]))
    replicator.process(event(kinesis_record({**data, "eventID": "another"}, 99)))
    assert document(collection) == {"_id": "a", "id": "a", "v": 2, FIELDS_FIELD: ["id", "v"],
                                    **APP}


def test_a_tie_with_the_stored_document_decided_by_read_back_keeps_the_fields(
        mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE, item_reader=DynamoDBItemReader(users_table, "users"))
    c = Changes()
    replicator.process(event(c.modify("a", 1, 2, T0_MS)))
    collection.update_one({"_id": "a"}, {"$set": APP})
    users_table.put_item(TableName="users", Item={**item("a", 3), "w": {"S": "x"}})
    change = c.record("MODIFY", "a", new=3, old=2, at=T0_MS)
    data = json.loads(base64.b64decode(change["kinesis"]["data"]))
    data["dynamodb"]["NewImage"]["w"] = {"S": "x"}
    result = replicator.process(event(kinesis_record(data, 50)))
    assert result.applied == 1
    assert document(collection) == {"_id": "a", "id": "a", "v": 3, "w": "x",
                                    FIELDS_FIELD: ["id", "v", "w"], **APP}


def test_kinesis_ttl_archive_in_merge_mode(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes="archive"))
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS)))
    collection.update_one({"_id": "a"}, {"$set": APP})
    replicator.process(event(c.remove("a", 1, T0_MS + 5, ttl=True)))
    assert document(collection) is None
    archived = mongoeco_db["items_ttl_archive"].find_one({"_id": "a"})
    assert archived is not None and archived["v"] == 1
    # a late redelivery of the INSERT does not bring it back
    late = replicator.process(event(c.insert("a", 1, T0_MS)))
    assert late.applied == 0 and document(collection) is None


def test_a_kinesis_change_whose_keys_disagree_with_its_new_image_is_quarantined(
        mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    change = change_json("INSERT", keys("a"), new=item("b"))
    result = Replicator(collection).process(event(kinesis_record(change, 1)))
    assert result.applied == 0 and len(result.quarantined) == 1
    assert "dynamodb.NewImage.id" in str(result.quarantined[0].error)
    assert list(collection.find()) == []


# -- Kinesis records at the edges ----------------------------------------------------------------
@pytest.mark.parametrize("value", [None, -1, 1796601600000.5, "1796601600000", True, 10**20],
                         ids=["missing", "negative", "float", "string", "bool", "huge"])
def test_a_creation_time_that_is_no_time_is_the_records_error(value: Any) -> None:
    change = change_json("INSERT", keys("a"), new=item("a"))
    if value is None:
        del change["dynamodb"]["ApproximateCreationDateTime"]
    else:
        change["dynamodb"]["ApproximateCreationDateTime"] = value
    changes, bad = parse_records([kinesis_record(change, 7)])
    assert changes == [] and len(bad) == 1
    assert "at kinesis.data.dynamodb.ApproximateCreationDateTime:" in str(bad[0].error)


def test_shapes_aws_allows_parse() -> None:
    base = change_json("INSERT", keys("a"), new=item("a"))
    no_size = copy.deepcopy(base)
    del no_size["dynamodb"]["SizeBytes"]
    remove = change_json("REMOVE", keys("a"))  # no OldImage (nothing to archive, still a delete)
    zero = change_json("INSERT", keys("a"), new=item("a"), created=0)
    changes, bad = parse_records([kinesis_record(no_size, 1), kinesis_record(remove, 2),
                                  kinesis_record(zero, 3)])
    assert bad == [] and len(changes) == 3
    assert changes[1].order_key is not None and changes[1].order_key.endswith(".-")
    assert changes[2].order_key is not None and changes[2].order_key.startswith("K" + "0" * 17)


def test_a_change_without_its_table_name_is_the_records_error() -> None:
    change = change_json("INSERT", keys("a"), new=item("a"))
    del change["tableName"]
    _, bad = parse_records([kinesis_record(change, 1)])
    assert "at kinesis.data.tableName:" in str(bad[0].error)


def test_mixed_precisions_within_one_millisecond(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    # the table went 1 -> 2 at T0 + 0.3 ms (recorded in µs), then 2 -> 3 at T0 + 0.9 ms (recorded
    # in ms after the precision was switched back)
    two = change_json("MODIFY", keys("a"), old=item("a", 1), new=item("a", 2),
                      created=T0_MS * 1000 + 300, precision="MICROSECOND")
    three = change_json("MODIFY", keys("a"), old=item("a", 2), new=item("a", 3), created=T0_MS)
    replicator = Replicator(collection)
    replicator.process(event(kinesis_record(two, 1)))
    result = replicator.process(event(kinesis_record(three, 2)))
    # either written or held for a decision (quarantined as a tie); never silently stale
    assert document(collection) == {"_id": "a", "id": "a", "v": 3} or result.quarantined


# -- merge mode: what other applications do to the document --------------------------------------
@pytest.mark.parametrize("tampered", ["oops", 5, {"a": 1}, None],
                         ids=["string", "number", "object", "null"])
def test_a_field_list_another_application_overwrote_keeps_everything(
        mongoeco_db: Any, tampered: Any) -> None:
    # MongoDB's $in refuses a non-array (code 40081): every later change of the item was
    # quarantined and the document stuck, before the pipeline checked $isArray
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    k = {"id": {"S": "a"}}
    replicator.process([record("100", "INSERT", k, new={**k, "v": {"N": "1"}})])
    collection.update_one({"_id": "a"}, {"$set": {FIELDS_FIELD: tampered, **APP}})
    result = replicator.process([record("200", "MODIFY", k, new={**k, "v": {"N": "2"}})])
    assert result.applied == 1 and result.quarantined == [] and result.failures == []
    assert document(collection) == {"_id": "a", "id": "a", "v": 2, FIELDS_FIELD: ["id", "v"],
                                    **APP}


def test_a_field_list_another_application_removed_keeps_everything(mongoeco_db: Any) -> None:
    # as a document written in replace mode: nothing known to be the table's, nothing removed
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    k = {"id": {"S": "a"}}
    replicator.process([record("100", "INSERT", k, new={**k, "v": {"N": "1"}, "w": {"N": "1"}})])
    collection.update_one({"_id": "a"}, {"$unset": {FIELDS_FIELD: ""}, "$set": APP})
    replicator.process([record("200", "MODIFY", k, new={**k, "v": {"N": "2"}})])
    assert document(collection) == {"_id": "a", "id": "a", "v": 2, "w": 1,
                                    FIELDS_FIELD: ["id", "v"], **APP}


def test_nested_maps_are_the_tables_whole(mongoeco_db: Any) -> None:
    # merge is top-level only (docs/write-modes.md: `_ddb_fields` lists top-level names): a
    # field another application adds inside a table map is replaced with the map
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    k = {"id": {"S": "a"}}
    replicator.process([record("100", "INSERT", k, new={**k, "m": {"M": {"x": {"N": "1"}}}})])
    collection.update_one({"_id": "a"}, {"$set": {"m.app": 1}})
    replicator.process([record("200", "MODIFY", k, new={**k, "m": {"M": {"x": {"N": "2"}}}})])
    assert document(collection) == {"_id": "a", "id": "a", "m": {"x": 2},
                                    FIELDS_FIELD: ["id", "m"]}


# -- a copy into a Kinesis-fed collection ----------------------------------------------------------
@pytest.mark.parametrize("source", ["kinesis", "auto"])
def test_a_copy_passes_the_source_pin_and_orders_below_kinesis_changes(
        mongoeco_db: Any, source: str) -> None:
    # `replicator sync` with REPLICATOR_SOURCE=kinesis (or a migration file's source = "kinesis")
    # copied nothing: every scanned item was quarantined as "a DynamoDB Streams record"
    from replicator.item_records import COPY_SEQUENCE, item_record

    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(source=source, key_schema=("id",)))
    c = Changes()
    replicator.process(event(c.insert("k", 5, T0_MS)))  # a Kinesis change already applied
    copied = [item_record(item(i, 1), ("id",), COPY_SEQUENCE, f"copy-{i}") for i in "abk"]
    result = replicator.process({"Records": copied})
    assert result.quarantined == [] and result.applied == 2 and result.stale == 1
    assert {d["_id"]: d["v"] for d in collection.find()} == {"a": 1, "b": 1, "k": 5}
    # the copy pinned nothing: Kinesis changes still come in over the copied documents
    later = replicator.process(event(c.modify("a", 1, 2, T0_MS + 1)))
    assert later.applied == 1 and later.quarantined == []
    assert collection.find_one({"_id": "a"})["v"] == 2


# -- merge mode under shuffled, duplicated Kinesis histories -------------------------------------
@pytest.mark.parametrize("seed", fast_first(range(6), 2))
def test_shuffled_histories_converge_in_merge_mode_beside_another_application(
        seed: int, mongoeco_db: Any, users_table: Any) -> None:
    """test_kinesis.py's histories (same-millisecond changes, cycles, REMOVEs and re-inserts),
    delivered shuffled and duplicated with read-back, in merge mode, while another application
    sets a field on every document after each batch: the table's part converges and nothing is
    quarantined or failed (the pipeline's $cond after a REMOVE, the tie's compare-and-set and
    the other application's fields together)."""
    from support.kinesis import shuffled_history

    rng, delivered, final = shuffled_history(seed, users_table)
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE, item_reader=DynamoDBItemReader(users_table, "users"))
    problems: list[str] = []
    while delivered:
        size = rng.randint(1, 6)
        batch, delivered = delivered[:size], delivered[size:]
        result = replicator.process(event(*batch))
        problems += [str(q.error) for q in result.quarantined] + [w for _, w in result.failures]
        collection.update_many({}, {"$set": APP})
    assert problems == []
    documents = {d["_id"]: d for d in collection.find()}
    assert {i: d["v"] for i, d in documents.items()} == final
    for document in documents.values():
        assert document[FIELDS_FIELD] == ["id", "v"]


def test_a_reinsert_arriving_before_its_remove_drops_the_applications_fields(
        mongoeco_db: Any) -> None:
    # an INSERT starts a new item (more layouts and histories: test_merge_incarnations.py)
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS)))
    collection.update_one({"_id": "a"}, {"$set": APP})
    remove, insert = c.remove("a", 1, T0_MS + 1), c.insert("a", 2, T0_MS + 2)
    replicator.process(event(insert))  # reordered: the newer change first
    replicator.process(event(remove))  # its guarded delete matches nothing
    assert document(collection) == {"_id": "a", "id": "a", "v": 2, FIELDS_FIELD: ["id", "v"]}


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_kinesis_shard_key_moves_tombstones_and_late_changes(mongoeco_db: Any, mode: str) -> None:
    # a shard key on a non-key attribute: Kinesis carries both images, so a move is written
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(shard_key=("region",), write_mode=mode))
    k = keys("a")

    def at(region: str, v: int) -> dict[str, Any]:
        return {**k, "region": {"S": region}, "v": {"N": str(v)}}

    numbers = iter(range(1, 100))

    def change(name: str, ms: int, new: Any = None, old: Any = None) -> dict[str, Any]:
        return kinesis_record(change_json(name, k, new=new, old=old, created=T0_MS + ms,
                                          event_id=f"{name}{ms}"), next(numbers))

    replicator.process(event(change("INSERT", 0, new=at("eu", 1))))
    collection.update_one({"_id": "a"}, {"$set": APP})
    moved = replicator.process(event(change("MODIFY", 2, new=at("us", 2), old=at("eu", 1))))
    assert moved.applied == 1 and moved.quarantined == [] and moved.failures == []
    late = replicator.process(event(change("MODIFY", 1, new=at("eu", 9), old=at("eu", 1))))
    assert late.applied == 0 and late.stale == 1
    expected = {"_id": "a", "id": "a", "region": "us", "v": 2}
    if mode == "merge":
        expected.update({FIELDS_FIELD: ["id", "region", "v"], **APP})
    assert document(collection) == expected
    replicator.process(event(change("REMOVE", 3, old=at("us", 2))))
    again = replicator.process(event(change("MODIFY", 2, new=at("us", 2), old=at("eu", 1))))
    assert again.applied == 0 and document(collection) is None
    assert mongoeco_db["items_tombstones"].find_one({"_id": "a"})["seq"].endswith(".-")
