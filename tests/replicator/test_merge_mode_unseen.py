"""write_mode="merge" against inputs its own tests did not use (HELPERS.md: break your change with
new inputs of the issue's kinds): names that look like aggregation variables, the deepest item the
converter accepts, a unique index another application relies on, TTL deletes kept by
``ttl_deletes="ignore"``, no guard, and an attribute that takes over an application's field.
On mongoeco through pymongo."""

from __future__ import annotations

from typing import Any

import pytest

from replicator.core import Replicator
from replicator.settings import FIELDS_FIELD, Settings
from support.fixtures import lambda_stream_record as record
from support.merge_mode import stored

MERGE = Settings(write_mode="merge")
APP = {"app_note": "kept"}


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


def item(id_: str, **attributes: Any) -> dict[str, Any]:
    return {**keys(id_), **attributes}


@pytest.fixture
def collection(mongoeco_db: Any) -> Any:
    return mongoeco_db["items"]


def test_names_that_look_like_aggregation_variables_are_plain_names(collection: Any) -> None:
    # "$$ROOT", "$field.k", "$literal" as attribute names must neither be evaluated nor clash
    names = {"$$ROOT": {"N": "1"}, "$$field.k": {"S": "v"}, "$literal": {"M": {"$in": {"N": "2"}}},
             "$ifNull": {"L": [{"S": "x"}]}}
    replicator = Replicator(collection, MERGE)
    result = replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", **names))])
    assert result.applied == 1 and result.quarantined == []
    collection.update_one({"_id": "u1"}, {"$set": APP})
    assert stored(collection) == {"_id": "u1", "id": "u1", "$$ROOT": 1, "$$field.k": "v",
                                  "$literal": {"$in": 2}, "$ifNull": ["x"],
                                  FIELDS_FIELD: sorted(["id", *names]), **APP}
    replicator.process([record("101", "MODIFY", keys("u1"), new=item("u1", **{"$$ROOT": {"N": "3"}}))])
    assert stored(collection) == {"_id": "u1", "id": "u1", "$$ROOT": 3,
                                  FIELDS_FIELD: ["$$ROOT", "id"], **APP}


def test_the_deepest_item_the_converter_accepts_is_merged(collection: Any) -> None:
    # the pipeline wraps the item four levels deeper than a replacement does
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(99):  # 100 maps deep is a ConversionError (MongoDB's nesting limit)
        value = {"M": {"m": value}}
    replicator = Replicator(collection, MERGE)
    result = replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", deep=value))])
    assert result.failures == [] and (result.applied, len(result.quarantined)) == (1, 0)
    document = stored(collection)
    assert document is not None
    depth, inner = 0, document["deep"]
    while isinstance(inner, dict):
        inner, depth = inner["m"], depth + 1
    assert (depth, inner) == (99, "bottom")


def test_a_unique_index_violation_is_quarantined_and_the_rest_merged(collection: Any) -> None:
    collection.create_index("email", unique=True)
    replicator = Replicator(collection, MERGE)
    replicator.process([record("100", "INSERT", keys("a"), new=item("a", email={"S": "x@y"}))])
    result = replicator.process([
        record("101", "INSERT", keys("b"), new=item("b", email={"S": "x@y"})),
        record("102", "MODIFY", keys("a"), new=item("a", email={"S": "x@y"}, n={"N": "1"})),
    ])
    assert (result.applied, len(result.quarantined), result.failures) == (1, 1, [])
    assert stored(collection, "b") is None
    assert stored(collection, "a") == {"_id": "a", "id": "a", "email": "x@y", "n": 1,
                                       FIELDS_FIELD: ["email", "id", "n"]}


def test_a_kept_ttl_expiry_then_an_insert_starts_a_new_document(collection: Any) -> None:
    # ttl_deletes="ignore" keeps the document at a TTL REMOVE, with the applications' fields; the
    # INSERT after it is a new item of the key, which keeps none of them (docs/write-modes.md, "An
    # INSERT starts a new item": a Kinesis REMOVE delivered late cannot be told from a kept expiry)
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes="ignore"))
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    collection.update_one({"_id": "u1"}, {"$set": APP})
    result = replicator.process([
        record("101", "REMOVE", keys("u1"), old=item("u1", a={"N": "1"}), ttl=True),
        record("102", "INSERT", keys("u1"), new=item("u1", b={"N": "2"})),
    ])
    assert result.applied == 1
    assert stored(collection) == {"_id": "u1", "id": "u1", "b": 2, FIELDS_FIELD: ["b", "id"]}


def test_without_the_guard_merge_still_removes_and_keeps(collection: Any) -> None:
    replicator = Replicator(collection, Settings(write_mode="merge", guard=False))
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1", a={"N": "1"}))])
    collection.update_one({"_id": "u1"}, {"$set": APP})
    replicator.process([record("101", "MODIFY", keys("u1"), new=item("u1", b={"N": "2"}))])
    assert collection.find_one({"_id": "u1"}) == {"_id": "u1", "id": "u1", "b": 2,
                                                  FIELDS_FIELD: ["b", "id"], **APP}


def test_an_attribute_named_like_an_applications_field_takes_it_over(collection: Any) -> None:
    # the table wins a name it starts using; once it drops the attribute, the field is gone:
    # the replicator cannot know the name was the application's before (docs/write-modes.md)
    replicator = Replicator(collection, MERGE)
    replicator.process([record("100", "INSERT", keys("u1"), new=item("u1"))])
    collection.update_one({"_id": "u1"}, {"$set": APP})
    replicator.process([record("101", "MODIFY", keys("u1"),
                               new=item("u1", app_note={"S": "table"}))])
    assert stored(collection) == {"_id": "u1", "id": "u1", "app_note": "table",
                                  FIELDS_FIELD: ["app_note", "id"]}
    replicator.process([record("102", "MODIFY", keys("u1"), new=item("u1"))])
    assert stored(collection) == {"_id": "u1", "id": "u1", FIELDS_FIELD: ["id"]}
