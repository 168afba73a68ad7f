"""Streams captured from DynamoDB Local (tests/fixtures/dynamodb-local/<case>/), replayed.

Each case holds ``table.json`` (the CreateTable request), ``events.json`` (the Lambda event) and
``final_items.json`` (a scan of the table at the end). Replaying the events must leave the collection
equal to the final items, converted the same way. The replicator writes to the embedded default
target, mongoeco, through the real pymongo client (so Int64, DBRef, error shapes and ``$`` names are
a server's); those tests skip where mongoeco cannot run (Python < 3.13). The original design
(harness/baselines/original.py) is replayed on the in-process mongomock target, to show where and why it
diverges.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.decimal128 import Decimal128

from harness.backends.base import TableSpec, started, target_backend
from harness.baselines.original import OriginalHandler, lossy_image
from harness.captures.format import Capture, load_capture_dir
from harness.captures.replay import replay
from harness.convergence import Diff, compare, expected_documents, read_target
from harness.mongodb_only import PREFIX
from replicator.core import Replicator
from replicator.errors import UnsupportedRecordError
from replicator.plan import Planner
from replicator.settings import SEQUENCE_FIELD, Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamodb-local"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "events.json").exists())
REPLAYABLE = [case for case in CASES if case != "keys_only"]


def load(case: str, name: str) -> Any:
    return json.loads((FIXTURES / case / f"{name}.json").read_text("utf-8"))


def key_schema(case: str) -> tuple[str, ...]:
    """Partition key first, from the CreateTable request."""
    schema = load(case, "table")["KeySchema"]
    return tuple(k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH"))


@pytest.fixture(scope="module")
def mongoeco() -> Iterator[Any]:
    """One mongoeco server for the module (each test takes its own collection)."""
    pytest.importorskip("mongoeco", reason="the mongoeco target needs Python >= 3.13")
    with started(target_backend("mongoeco")) as target:
        yield target


@pytest.fixture
def collection(mongoeco: Any) -> Iterator[Any]:
    collection = mongoeco.collection("replica", f"c{uuid.uuid4().hex[:12]}")
    yield collection
    collection.drop()


def diff_against_final_items(case: str, collection: Any) -> Diff:
    planner = Planner(Settings(key_schema=key_schema(case)))
    expected = expected_documents(load(case, "final_items"), planner)
    return compare(expected, read_target(collection, [SEQUENCE_FIELD]))


def test_every_captured_case_is_here() -> None:
    assert CASES == ["attribute_removal", "composite_key", "keys_only", "new_image_batch_txn",
                     "seed_table", "type_zoo"]


# -- the replicator, on mongoeco through pymongo -------------------------------------------------
@pytest.mark.parametrize("case", REPLAYABLE)
def test_replay_converges_to_the_final_items(case: str, collection: Any) -> None:
    # given the captured stream of a case
    replicator = Replicator(collection, Settings(key_schema=key_schema(case)))

    # when it is replayed as one batch
    result = replicator.process(load(case, "events"))

    # then nothing failed and the collection is the final table, converted losslessly
    assert result.failures == [] and result.quarantined == []
    diff = diff_against_final_items(case, collection)
    assert diff.converged, diff.as_dict()
    assert collection.count_documents({}) == len(load(case, "final_items"))


@pytest.mark.parametrize("write_mode", ["replace", "merge"])
# batch sizes 1 (the costliest: a round per record) and 1000 (one batch, as 100 is for every capture
# here) only in the whole suite; 7 and 100 keep several batches and one in the fast set
@pytest.mark.parametrize("batch_size", [pytest.param(1, marks=pytest.mark.slow), 7, 100,
                                        pytest.param(1000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", REPLAYABLE)
def test_replay_twice_in_any_batch_size_still_converges(
    case: str, batch_size: int, write_mode: str, collection: Any
) -> None:
    # given the stream delivered twice over (Lambda retries, a replayed capture), in batches
    capture = load_capture_dir(FIXTURES / case)
    merge = write_mode == "merge"

    # when each delivery goes through the harness's replay (Lambda's partial-failure rules); in
    # merge mode another MongoDB application adds fields of its own after every batch
    results = [replay(capture, collection, batch_size=batch_size,
                      settings=Settings(write_mode=write_mode), mongodb_only=merge)
               for _ in range(2)]

    # then no batch failed and the collection equals the final table after each delivery
    for result in results:
        assert result.error is None and result.redelivered == 0
        assert result.diff is not None and result.diff.converged, result.diff.as_dict()
        assert all(r == {"batchItemFailures": []} for r in result.responses)
    if merge and capture.final_items:
        # (and the other application's fields are there to be kept: the check is not vacuous)
        assert collection.count_documents({f"{PREFIX}round": {"$exists": True}}) > 0


def test_composite_key_ids_are_stored_partition_key_first(collection: Any) -> None:
    Replicator(collection, Settings(key_schema=key_schema("composite_key"))).process(
        load("composite_key", "events"))
    ids = [document["_id"] for document in collection.find()]
    assert len(ids) == 19
    assert all(list(document_id) == ["pk", "sk"] for document_id in ids)


def test_type_zoo_values_are_kept_exactly(collection: Any) -> None:
    Replicator(collection, Settings(key_schema=key_schema("type_zoo"))).process(
        load("type_zoo", "events"))

    document = collection.find_one({"_id": 3})

    assert document["money"] == Decimal128("19.99")
    assert str(document["money"]) == "19.99"
    assert document["blob"] == bytes(range(3, 19))
    assert document["blobs"] == [b"\x00\x01", b"\xff"]
    assert document["int64_edge"] == 2**63 - 1
    assert type(document["int64_edge"]) is bson.int64.Int64  # pymongo's decoding of int64
    assert str(document["over_int64"]) == "9223372036854775808"
    assert document["big"] == "12345678901234567890123456789012345678"
    assert str(document["huge_exp"]) == "1E+125"
    assert str(document["tiny"]) == "-1E-130"
    assert document["zero_frac"] == 5
    assert document["scores"] == [-2, Decimal128("1.5"), 3, 100]  # the MODIFY added 100
    assert document["tags"] == ["a", "added", "b", "ts"]
    assert document["dotted.name"] == "field name with a dot"
    assert document["profile"]["history"] == [1, "two", [False, None], {}]
    # a server stores a top-level $-name as it is (MongoDB 5.0+, through $replaceWith/$literal)
    assert document["$dollar"] == "leading dollar"


# A table keyed by decimals: DynamoDB compares numbers by value, so keys 21.50 and 21.5 name one
# item (and a scan shows it as 21.5); MongoDB's _id equality agrees (21.5 finds Decimal128 21.50).
DECIMAL_TABLE = TableSpec("prices", partition_key=("price", "N"))


def _decimal_record(sequence: int, name: str, key: str, image: dict[str, Any] | None) -> Any:
    record: dict[str, Any] = {
        "eventID": f"e{sequence}", "eventName": name, "eventSource": "aws:dynamodb",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/prices/stream/x",
        "dynamodb": {"Keys": {"price": {"N": key}}, "SequenceNumber": f"{sequence:021d}",
                     "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }
    if image is not None:
        record["dynamodb"]["NewImage"] = {"price": {"N": key}, **image}
    return record


DECIMAL_CAPTURE = Capture(
    DECIMAL_TABLE,
    {"Records": [
        _decimal_record(1, "INSERT", "1.5", {"label": {"S": "one and a half"}}),
        _decimal_record(2, "INSERT", "21.50", {"label": {"S": "first"}}),
        _decimal_record(3, "MODIFY", "21.5", {"label": {"S": "second"}, "n": {"N": "2"}}),
        _decimal_record(4, "INSERT", "3", {"label": {"S": "gone"}}),
        _decimal_record(5, "REMOVE", "3.0", None),
    ]},
    [{"price": {"N": "1.5"}, "label": {"S": "one and a half"}},
     {"price": {"N": "21.5"}, "label": {"S": "second"}, "n": {"N": "2"}}],
)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_a_table_keyed_by_decimals_converges(batch_size: int, collection: Any) -> None:
    results = [replay(DECIMAL_CAPTURE, collection, batch_size=batch_size) for _ in range(2)]

    for result in results:
        assert result.error is None
        assert result.diff is not None and result.diff.converged, result.diff.as_dict()
    assert collection.count_documents({}) == 2
    assert collection.find_one({"_id": Decimal128("21.50")})["label"] == "second"
    assert collection.find_one({"_id": Decimal128("21.5")})["n"] == 2


def test_keys_only_without_item_reader_quarantines_each_record_with_the_fix(collection: Any) -> None:
    # Issue #10: judged per record (quarantined with the fix), never a batch-wide exception.
    replicator = Replicator(collection, Settings(key_schema=key_schema("keys_only")))
    events = load("keys_only", "events")
    plan = replicator.plan(events)
    image_less = [r for r in events["Records"] if r["eventName"] != "REMOVE"]
    assert len(plan.bad_records) == len(image_less) > 0
    assert all(isinstance(b.error, UnsupportedRecordError) for b in plan.bad_records)
    message = str(plan.bad_records[0].error)
    assert "SequenceNumber 000000000000000000379" in message
    assert "KEYS_ONLY stream" in message
    assert "item reader" in message and "NEW_AND_OLD_IMAGES" in message

    result = replicator.process(events)
    assert result.failures == []
    assert len(result.quarantined) == len(image_less)


def test_keys_only_with_an_item_reader_converges(collection: Any) -> None:
    # given a reader that answers from the table's final state (as a consistent read would)
    final = {item["id"]["S"]: item for item in load("keys_only", "final_items")}

    class FinalStateReader:
        def read(self, keys: Any) -> list[Any]:
            return [final.get(key["id"]["S"]) for key in keys]

    replicator = Replicator(collection, Settings(key_schema=("id",)),
                            item_reader=FinalStateReader())

    replicator.process(load("keys_only", "events"))

    diff = diff_against_final_items("keys_only", collection)
    assert diff.converged, diff.as_dict()


# -- the original design -------------------------------------------------------------------------
def baseline_replay(case: str, events: Any = None) -> tuple[dict[str, int], Any]:
    collection = target_backend("mongomock").collection("baseline", "items")
    response = OriginalHandler(collection).handle(events or load(case, "events"))
    return response, collection


def converges_by_its_own_conversion(case: str, collection: Any) -> bool:
    """Baseline documents vs the final items through the baseline's own (lossy) conversion, so
    only what it does with the changes counts, not how it converts values."""
    names = key_schema(case)
    expected = {}
    for item in load(case, "final_items"):
        document = lossy_image(item)
        expected[repr(tuple(document[n] for n in names))] = document
    actual = {}
    for document in collection.find():
        document.pop("_id")
        actual[repr(tuple(document.get(n) for n in names))] = document
    return actual == expected


@pytest.mark.parametrize(
    ("case", "status", "converges"),
    [
        ("attribute_removal", 200, False),  # $set keeps removed attributes
        ("composite_key", 200, False),  # _id is the partition key alone: items collapse
        ("keys_only", 500, False),  # no NewImage: every INSERT fails
        ("new_image_batch_txn", 200, True),
        ("seed_table", 200, True),
        ("type_zoo", 500, False),  # $dollar refused; ints above int64 overflow
    ],
)
def test_which_cases_the_original_design_gets_wrong(
    case: str, status: int, converges: bool
) -> None:
    response, collection = baseline_replay(case)
    assert response == {"statusCode": status}
    assert converges_by_its_own_conversion(case, collection) is converges


def test_original_keeps_attributes_that_dynamodb_removed() -> None:
    # given items whose later MODIFY dropped attributes (id 1: b and c.y; id 2: all but "only")
    final = {item["id"]["N"]: item for item in load("attribute_removal", "final_items")}
    assert "b" not in final["1"] and set(final["2"]) == {"id", "only"}

    response, collection = baseline_replay("attribute_removal")

    # then the original's $set left them in place
    assert response == {"statusCode": 200}
    assert collection.find_one({"_id": 1}) == {"_id": 1, "a": "keep", "b": 1, "c": {"x": 1},
                                               "id": 1}
    assert collection.find_one({"_id": 2}) == {
        "_id": 2, "a": "keep", "b": 2, "c": {"x": 1, "y": 2}, "id": 2,
        "only": "replaced whole item"}
    stale = {d["_id"] for d in collection.find() if lossy_image(final[str(d["_id"])]) !=
             {k: v for k, v in d.items() if k != "_id"}}
    assert stale == {1, 2, 3, 5, 6, 7, 9, 10}  # every modified item; 4 and 8 never changed


def test_original_collapses_a_composite_key_to_its_partition_key() -> None:
    response, collection = baseline_replay("composite_key")
    assert response == {"statusCode": 200}
    ids = sorted(d["_id"] for d in collection.find())
    assert ids == ["user#0", "user#1", "user#3", "user#4"]  # 19 items in DynamoDB


def test_original_fails_the_type_zoo_and_still_answers_a_status_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given the captured type zoo: every item has a top-level "$dollar" and ints above int64
    caplog.set_level(logging.ERROR, logger="harness.baseline")

    response, collection = baseline_replay("type_zoo")

    # then every record fails, nothing is stored, and Lambda only sees statusCode 500 (which an
    # event source mapping does not read: the batch counts as processed)
    assert response == {"statusCode": 500}
    assert collection.count_documents({}) == 0
    failures = [r.getMessage() for r in caplog.records if "record failed" in r.getMessage()]
    assert len(failures) == 9
    assert all("$dollar" in message for message in failures)


def _without(events: Any, *names: str) -> Any:
    events = copy.deepcopy(events)
    for record in events["Records"]:
        for image in ("NewImage", "OldImage"):
            for name in names:
                record["dynamodb"].get(image, {}).pop(name, None)
    return events


def test_original_overflows_on_integers_above_int64(caplog: pytest.LogCaptureFixture) -> None:
    # given the type zoo without "$dollar": big, huge_exp and over_int64 become Python ints
    caplog.set_level(logging.ERROR, logger="harness.baseline")
    events = _without(load("type_zoo", "events"), "$dollar")

    response, collection = baseline_replay("type_zoo", events)

    assert response == {"statusCode": 500}
    assert collection.count_documents({}) == 0
    assert "8-byte ints" in caplog.text
    with pytest.raises(OverflowError):  # pymongo's own encoder refuses them too
        bson.encode({"over_int64": 9223372036854775808})


def test_original_turns_decimals_into_floats_and_keeps_binary_as_text(collection: Any) -> None:
    # given the type zoo reduced to what the original can store at all
    events = _without(load("type_zoo", "events"), "$dollar", "big", "huge_exp", "over_int64")

    response, collection = baseline_replay("type_zoo", events)
    original = collection.find_one({"_id": 3})

    # then it stored all 7 items, but lossily
    assert response == {"statusCode": 200}
    assert collection.count_documents({}) == 7
    assert type(original["money"]) is float and original["money"] == 19.99
    assert type(original["tiny"]) is float and original["tiny"] == -1e-130
    assert original["blob"] == "AwQFBgcICQoLDA0ODxAREg=="  # base64 text, not bytes
    assert original["blobs"] == ["/w==", "AAE="]  # arrival order, text
    assert original["scores"] == [-2, 1.5, 3, 100]
    assert type(original["scores"][1]) is float
    assert original["dotted"] == {"name": "field name with a dot"}  # $set read the dot as a path
    assert "dotted.name" not in original

    # while the replicator keeps the same values exactly
    Replicator(collection, Settings(key_schema=key_schema("type_zoo"))).process(events)
    exact = collection.find_one({"_id": 3})
    assert exact["money"] == Decimal128("19.99")
    assert exact["blob"] == bytes(range(3, 19))
    assert exact["blobs"] == [b"\x00\x01", b"\xff"]
    assert exact["dotted.name"] == "field name with a dot"
