"""Breaking "An INSERT starts a new item" (docs/write-modes.md) with inputs of the kind of
tests/replicator/test_merge_incarnations.py but new ones: every batching of one delivery order,
REMOVE+INSERT+MODIFY chains of several incarnations, duplicates, DynamoDB Streams against
Kinesis, NEW_IMAGE / KEYS_ONLY views, composite / number / binary keys, and a precision switch
(a MILLISECOND INSERT over a MICROSECOND key inside its millisecond). The outcome may never
depend on how the same records are split into batches. On mongoeco through pymongo."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from harness.mongodb_only import MongoOnlyWriter
from replicator.core import Replicator
from replicator.plan import Planner
from replicator.readback import DynamoDBItemReader
from replicator.settings import FIELDS_FIELD, Settings
from support.batchings import splits
from support.fixtures import lambda_stream_record as record
from support.kinesis import T0_MS, Changes, change_json, event, item, keys, kinesis_record
from support.merge_mode import app_fields
from support.merge_mode import stored as body

MERGE = Settings(write_mode="merge")
T0_US = T0_MS * 1000


# -- Kinesis: chains of incarnations, every batching of several delivery orders -----------------
def _chain() -> tuple[Changes, list[dict[str, Any]]]:
    """Item "a": three incarnations (INSERT, MODIFY, REMOVE, INSERT, REMOVE, INSERT, MODIFY)."""
    c = Changes()
    return c, [
        c.insert("a", 1, T0_MS),            # 0  first item
        c.modify("a", 1, 2, T0_MS + 1),     # 1
        c.remove("a", 2, T0_MS + 2),        # 2
        c.insert("a", 3, T0_MS + 3),        # 3  second item
        c.remove("a", 3, T0_MS + 4),        # 4
        c.insert("a", 4, T0_MS + 5),        # 5  third item
        c.modify("a", 4, 5, T0_MS + 6),     # 6
    ]


ORDERS = {
    "in-order": [2, 3, 4, 5, 6],
    "removes-last": [3, 5, 6, 2, 4],
    "removes-reversed-last": [3, 5, 6, 4, 2],
    "inserts-reversed": [5, 3, 6, 4, 2],
    "duplicates": [3, 2, 3, 5, 4, 6, 5, 2],
}


@pytest.mark.slow
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_three_incarnations_in_every_batching_keep_none_of_the_earlier_items_fields(
        mongoeco_db: Any, order: str) -> None:
    # the first item's INSERT and MODIFY applied, another application's field written on it;
    # then the rest delivered in an order Kinesis allows (a change of the new item never before
    # its INSERT: the documented limit), cut into batches in every way
    for number, batches in enumerate(splits(ORDERS[order])):
        collection = mongoeco_db[f"items{number}"]
        replicator = Replicator(collection, MERGE)
        _c, records = _chain()
        replicator.process(event(records[0], records[1]))
        collection.update_one({"_id": "a"}, {"$set": {"app": "first item"}})
        for batch in batches:
            result = replicator.process(event(*[records[i] for i in batch]))
            assert result.quarantined == [] and result.failures == [], batches
        assert body(collection, "a") == {"_id": "a", "id": "a", "v": 5,
                                         FIELDS_FIELD: ["id", "v"]}, batches


def test_fields_written_on_the_current_item_survive_a_late_remove_of_an_earlier_one(
        mongoeco_db: Any) -> None:
    # the application writes on the second item; the first item's REMOVE arrives late (stale),
    # then the second item's MODIFY: the field stays -- it belongs to the current item
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS)))
    collection.update_one({"_id": "a"}, {"$set": {"app_old": 1}})
    remove = c.remove("a", 1, T0_MS + 2)
    replicator.process(event(c.insert("a", 2, T0_MS + 4)))
    collection.update_one({"_id": "a"}, {"$set": {"app_new": 2}})
    for batch in ([remove], [remove, c.modify("a", 2, 3, T0_MS + 6)]):
        assert replicator.process(event(*batch)).quarantined == []
    assert app_fields(body(collection, "a")) == {"app_new": 2}


# -- the harness's other application, interleaved, every batching -------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("order", ["in-order", "removes-last", "duplicates"])
def test_the_other_application_loses_nothing_it_should_keep_in_any_batching(
        mongoeco_db: Any, order: str) -> None:
    for number, batches in enumerate(splits(ORDERS[order])):
        collection = mongoeco_db[f"items{number}"]
        replicator = Replicator(collection, MERGE)
        writer = MongoOnlyWriter(collection, Planner(MERGE), every=1)
        _c, records = _chain()
        for batch in [[records[0]], [records[1]], *[[records[i] for i in b] for b in batches]]:
            assert replicator.process(event(*batch)).quarantined == []
            writer.after_batch(0.0, batch)
        assert writer.finish() == [], batches
        assert body(collection, "a") is not None


# -- DynamoDB Streams: views, ttl_deletes, key types ---------------------------------------------
KEY_CASES = {
    "composite": ({"pk": {"S": "p"}, "sk": {"N": "7"}}, ("pk", "sk")),
    "number": ({"id": {"N": "12.50"}}, ("id",)),
    "binary": ({"id": {"B": base64.b64encode(b"\x00\xffk").decode()}}, ("id",)),
}


@pytest.mark.parametrize("key_case", sorted(KEY_CASES))
@pytest.mark.parametrize("view", ["NEW_IMAGE", "KEYS_ONLY-removes", "NEW_AND_OLD_IMAGES"])
@pytest.mark.parametrize("ttl", ["delete", "ignore"])
def test_dynamodb_streams_reinsert_over_any_key_type_and_view(
        mongoeco_db: Any, key_case: str, view: str, ttl: str) -> None:
    key, names = KEY_CASES[key_case]
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes=ttl,
                                                 key_schema=names))
    image_view = "NEW_AND_OLD_IMAGES" if view == "NEW_AND_OLD_IMAGES" else "NEW_IMAGE"
    remove_view = "KEYS_ONLY" if view == "KEYS_ONLY-removes" else image_view
    old = {**key, "n": {"N": "1"}}
    replicator.process([record("100", "INSERT", key, new=old, view=image_view)])
    (document,) = list(collection.find())
    collection.update_one({"_id": document["_id"]}, {"$set": {"app": 1}})
    # a TTL expiry (kept by "ignore"), then INSERT + MODIFY of the next item, one batch and two
    expiry = record("101", "REMOVE", key, old=None if remove_view == "KEYS_ONLY" else old,
                    ttl=True, view=remove_view)
    insert = record("102", "INSERT", key, new={**key, "n": {"N": "2"}}, view=image_view)
    modify = record("103", "MODIFY", key, new={**key, "n": {"N": "3"}}, view=image_view,
                    old={**key, "n": {"N": "2"}} if image_view == "NEW_AND_OLD_IMAGES" else None)
    assert replicator.process([expiry]).failures == []
    result = replicator.process([insert, modify])
    assert result.quarantined == [] and result.failures == []
    assert app_fields(body(collection, document["_id"])) == {}
    assert body(collection, document["_id"])["n"] == 3


def test_a_dynamodb_streams_duplicate_insert_after_a_modify_is_stale_and_keeps_the_fields(
        mongoeco_db: Any) -> None:
    # a redelivered INSERT (older than what is stored) must not start the document anew
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    k = {"id": {"S": "u"}}
    insert = record("100", "INSERT", k, new={**k, "n": {"N": "1"}})
    replicator.process([insert, record("101", "MODIFY", k, new={**k, "n": {"N": "2"}})])
    collection.update_one({"_id": "u"}, {"$set": {"app": 1}})
    replicator.process([insert])
    replicator.process([insert, record("101", "MODIFY", k, new={**k, "n": {"N": "2"}})])
    assert body(collection, "u") == {"_id": "u", "id": "u", "n": 2, "app": 1,
                                     FIELDS_FIELD: ["id", "n"]}


def test_a_kinesis_insert_over_a_dynamodb_streams_document_keeps_the_fields(
        mongoeco_db: Any) -> None:
    # the switch between sources: a DynamoDB Streams number cannot be ordered against a Kinesis
    # key, so the document is merged into, not started anew
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    k = {"id": {"S": "a"}}
    replicator.process([record("100", "INSERT", k, new={**k, "v": {"N": "1"}})])
    collection.update_one({"_id": "a"}, {"$set": {"app": 1}})
    # (the Kinesis function of the switch: its own source pin, docs/kinesis.md "Switching")
    kinesis = Replicator(collection, Settings(write_mode="merge", source="kinesis"))
    c = Changes()
    result = kinesis.process(event(c.insert("a", 2, T0_MS)))
    assert result.quarantined == [] and result.failures == []
    assert app_fields(body(collection, "a")) == {"app": 1}


def test_a_kinesis_duplicate_insert_does_not_start_the_document_anew(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    c = Changes()
    insert = c.insert("a", 1, T0_MS)
    replicator.process(event(insert))
    collection.update_one({"_id": "a"}, {"$set": {"app": 1}})
    for batch in ([insert], [insert, insert]):
        assert replicator.process(event(*batch)).quarantined == []
    assert app_fields(body(collection, "a")) == {"app": 1}


# -- precision switch: a MILLISECOND re-INSERT over a MICROSECOND key in its millisecond --------
def _kr(name: str, n: int, *, created: int, precision: str | None = None,
        new: int | None = None, old: int | None = None) -> dict[str, Any]:
    return kinesis_record(change_json(
        name, keys("a"), new=None if new is None else item("a", new),
        old=None if old is None else item("a", old), created=created, precision=precision,
        event_id=f"e{n}"), n)


@pytest.mark.parametrize("offset", [1, 300, 999])
@pytest.mark.parametrize("layout", ["separate", "one-batch"])
def test_a_millisecond_reinsert_over_a_microsecond_key_inside_its_millisecond_starts_anew(
        mongoeco_db: Any, users_table: Any, offset: int, layout: str) -> None:
    # the first item's last MODIFY recorded in microseconds inside millisecond T0; precision
    # then switched to MILLISECOND; its REMOVE and the re-INSERT at T0 (ms), the REMOVE late.
    # The table holds the new item: the tie is decided for the INSERT, which came after the
    # MODIFY -- so the document the MODIFY wrote was the earlier item's, and keeps nothing
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE, item_reader=DynamoDBItemReader(users_table, "users"))
    users_table.put_item(TableName="users", Item=item("a", 7))
    first = _kr("INSERT", 1, created=T0_US - 4000, precision="MICROSECOND", new=1)
    modify = _kr("MODIFY", 2, created=T0_US + offset, precision="MICROSECOND", old=1, new=2)
    insert = _kr("INSERT", 4, created=T0_MS, new=7)
    remove = _kr("REMOVE", 3, created=T0_MS, old=2)
    replicator.process(event(first))
    if layout == "separate":
        replicator.process(event(modify))
        collection.update_one({"_id": "a"}, {"$set": {"app": "first item"}})
        batches = [[insert], [remove]]
    else:
        collection.update_one({"_id": "a"}, {"$set": {"app": "first item"}})
        batches = [[modify, insert], [remove]]
    for batch in batches:
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert body(collection, "a") == {"_id": "a", "id": "a", "v": 7, FIELDS_FIELD: ["id", "v"]}


@pytest.mark.parametrize("ttl", ["delete", "ignore", "archive"])
@pytest.mark.parametrize("late", [False, True], ids=["expiry-first", "expiry-late"])
def test_a_kinesis_reinsert_after_a_ttl_expiry_starts_anew(
        mongoeco_db: Any, ttl: str, late: bool) -> None:
    # a TTL expiry on Kinesis (userIdentity dynamodb.amazonaws.com), kept by "ignore", then the key
    # inserted again -- the expiry delivered before or after the INSERT
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes=ttl,
                                                 source="kinesis"))
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS)))
    collection.update_one({"_id": "a"}, {"$set": {"app": 1}})
    expiry, insert = c.remove("a", 1, T0_MS + 999, ttl=True), c.insert("a", 2, T0_MS + 1000)
    for batch in ([insert], [expiry]) if late else ([expiry], [insert]):
        result = replicator.process(event(*batch))
        assert result.failures == []
    assert body(collection, "a") == {"_id": "a", "id": "a", "v": 2, FIELDS_FIELD: ["id", "v"]}


def test_the_other_application_expects_the_millisecond_reinsert_to_start_anew(
        mongoeco_db: Any, users_table: Any) -> None:
    # the harness's writer follows the replicator's bounds (a MILLISECOND INSERT's whole
    # millisecond): the field it set on the MICROSECOND-keyed document is not reported lost
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE, item_reader=DynamoDBItemReader(users_table, "users"))
    writer = MongoOnlyWriter(collection, Planner(MERGE), every=1)
    users_table.put_item(TableName="users", Item=item("a", 7))
    for batch in ([_kr("INSERT", 1, created=T0_US - 4000, precision="MICROSECOND", new=1)],
                  [_kr("MODIFY", 2, created=T0_US + 300, precision="MICROSECOND", old=1, new=2)],
                  [_kr("INSERT", 4, created=T0_MS, new=7)],
                  [_kr("REMOVE", 3, created=T0_MS, old=2)]):
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
        writer.after_batch(0.0, batch)
    assert writer.writes > 0
    assert writer.finish() == []
    assert body(collection, "a")["v"] == 7
