"""The harness's mongomock adapter answers with pymongo's contract (harness.backends.mongomock_target)."""

from __future__ import annotations

from typing import Any

import pytest
from bson.decimal128 import Decimal128
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError
from pymongo.operations import DeleteOne, InsertOne, ReplaceOne, UpdateOne

from harness.backends.base import target_backend
from harness.backends.mongomock_target import (
    DOLLAR_ESCAPE,
    MongomockClient,
    MongomockCollection,
    MongomockDatabase,
    escape_field_name,
    mongomock_client,
    unescape_field_name,
)


@pytest.fixture
def collection() -> Any:
    return mongomock_client()["db"]["items"]


def test_wrapped_all_the_way_and_a_standalone_hello(collection: Any) -> None:
    assert isinstance(collection, MongomockCollection)
    assert isinstance(collection.database, MongomockDatabase)
    assert isinstance(collection.database.client, MongomockClient)
    hello = collection.database.client.admin.command("hello")
    assert hello["isWritablePrimary"] and "setName" not in hello and hello.get("msg") != "isdbgrid"


def test_the_target_backend_hands_out_adapters() -> None:
    target = target_backend("mongomock")
    target.start()
    assert isinstance(target.collection("db", "items"), MongomockCollection)


def test_a_bulk_result_like_pymongos(collection: Any) -> None:
    collection.insert_one({"_id": "old", "v": 0})
    result = collection.bulk_write([
        ReplaceOne({"_id": "old"}, {"_id": "old", "v": 1}, upsert=True),
        UpdateOne({"_id": "new"}, {"$set": {"v": 2}}, upsert=True),
        DeleteOne({"_id": "old"}),
        InsertOne({"_id": "ins"}),
    ], ordered=False)
    assert (result.matched_count, result.modified_count, result.upserted_count,
            result.deleted_count, result.inserted_count) == (1, 1, 1, 1, 1)
    assert result.upserted_ids == {1: "new"}


@pytest.mark.parametrize(("ordered", "applied"), [(True, ["a"]), (False, ["a", "c"])])
def test_ordered_stops_at_the_first_error_unordered_goes_on(
    collection: Any, ordered: bool, applied: list[str]
) -> None:
    collection.insert_one({"_id": "b"})
    with pytest.raises(BulkWriteError) as raised:
        collection.bulk_write([InsertOne({"_id": "a"}), InsertOne({"_id": "b"}),
                               InsertOne({"_id": "c"})], ordered=ordered)
    (error,) = raised.value.details["writeErrors"]
    assert (error["index"], error["code"], error["keyPattern"]) == (1, 11000, {"_id": 1})
    assert sorted(d["_id"] for d in collection.find()) == sorted([*applied, "b"])


def test_an_unencodable_operation_fails_the_whole_bulk_before_anything_is_applied(
    collection: Any,
) -> None:
    with pytest.raises(InvalidDocument):
        collection.bulk_write([InsertOne({"_id": "a"}), InsertOne({"_id": "b", "x\x00": 1})])
    assert collection.count_documents({}) == 0


def test_dollar_names_are_stored_escaped_and_read_back_as_they_were(collection: Any) -> None:
    document = {"_id": "d", "$price": 4, DOLLAR_ESCAPE + "odd": 1, "a.b": 2}
    collection.bulk_write([UpdateOne({"_id": "d"}, [{"$replaceWith": {"$literal": document}}],
                                     upsert=True)])
    assert collection.find_one({"_id": "d"}) == document
    assert list(collection.find()) == [document]
    assert "$price" not in collection.inner.find_one({"_id": "d"})  # mongomock's own storage
    for name in ("$x", DOLLAR_ESCAPE + "x", DOLLAR_ESCAPE * 2 + "x", "x"):
        assert unescape_field_name(escape_field_name(name)) == name


def test_a_decimal_id_is_a_write_error_naming_the_limitation(collection: Any) -> None:
    with pytest.raises(BulkWriteError) as raised:
        collection.bulk_write([ReplaceOne({"_id": {"pk": Decimal128("1.5")}},
                                          {"_id": {"pk": Decimal128("1.5")}}, upsert=True)])
    (error,) = raised.value.details["writeErrors"]
    assert error["code"] == 2 and "mongomock cannot store a Decimal128" in error["errmsg"]


def test_create_index_with_other_options_is_index_options_conflict(collection: Any) -> None:
    from pymongo.errors import OperationFailure

    collection.create_index("t", expireAfterSeconds=10)
    with pytest.raises(OperationFailure) as raised:
        collection.create_index("t", expireAfterSeconds=20)
    assert raised.value.code == 85
    collection.database.command("collMod", "items",
                                index={"keyPattern": {"t": 1}, "expireAfterSeconds": 20})
    assert collection.index_information()["t_1"]["expireAfterSeconds"] == 20


def test_wrapping_an_adapter_shares_its_storage(collection: Any) -> None:
    again = MongomockCollection(collection)
    again.insert_one({"_id": 1})
    assert again.inner is collection.inner and collection.find_one({"_id": 1}) == {"_id": 1}
