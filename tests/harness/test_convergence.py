"""The convergence check compares what MongoDB stores (BSON values), not Python types."""

from __future__ import annotations

import datetime

import pytest
from bson.binary import Binary
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from harness.convergence import compare
from replicator.diff import MISSING, bson_value


def _diff(expected: dict, actual: dict):  # type: ignore[no-untyped-def]
    return compare([(expected, set())], [actual])


@pytest.mark.parametrize(
    ("written", "read_back"),
    [
        (2**40, Int64(2**40)),  # pymongo decodes every int64 as Int64
        (2**63 - 1, Int64(2**63 - 1)),
        (5, Int64(5)),  # one integer, whatever its width (NimoShake#21's failure class)
        ({"$ref": "items", "$id": 7}, DBRef("items", 7)),  # decoded as DBRef
        ({"$ref": "items", "$id": 7, "$db": "other"}, DBRef("items", 7, "other")),
        (b"\x00\x01", Binary(b"\x00\x01", 0)),
        (
            datetime.datetime(2026, 1, 2, 3, 4, 5, 678000),  # naive UTC
            datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
        ),
        (Decimal128("19.99"), Decimal128("19.99")),
    ],
)
def test_the_same_stored_value_in_another_python_type_converges(
    written: object, read_back: object
) -> None:
    assert bson_value(written) == bson_value(read_back)
    diff = _diff({"_id": 1, "v": written, "nested": {"list": [written]}},
                 {"_id": 1, "v": read_back, "nested": {"list": [read_back]}})
    assert diff.converged, diff.as_dict()


@pytest.mark.parametrize(
    ("written", "read_back"),
    [
        (Decimal128("19.99"), 19.99),  # a decimal became a double
        (Decimal128("21.50"), Decimal128("21.5")),  # another Decimal128 form is another value stored
        (5, 5.0),  # an integer became a double
        (1, True),
        (b"\x00", "AA=="),  # binary kept as base64 text
        (Binary(b"\x00", 0), Binary(b"\x00", 4)),
        ({"$ref": "items", "$id": 7}, DBRef("items", 8)),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}),
    ],
)
def test_a_different_stored_value_is_a_difference(written: object, read_back: object) -> None:
    diff = _diff({"_id": 1, "v": written}, {"_id": 1, "v": read_back})
    assert not diff.converged
    assert [f.path.split(".")[0] for d in diff.changed for f in d.fields] != []


def test_an_int64_id_read_back_as_Int64_matches_the_planned_int() -> None:
    diff = compare([({"_id": 2**40, "a": 1}, set())], [{"_id": Int64(2**40), "a": 1}])
    assert diff.converged and diff.missing == [] and diff.extra == []


def test_embedded_ids_match_in_field_order_only() -> None:
    diff = compare([({"_id": {"pk": "a", "sk": 1}}, set())], [{"_id": {"sk": 1, "pk": "a"}}])
    assert diff.missing == [{"pk": "a", "sk": 1}] and diff.extra == [{"sk": 1, "pk": "a"}]


def test_sets_compare_without_order_and_by_stored_value() -> None:
    expected = {"_id": 1, "ns": [2**40, 3]}
    assert compare([(expected, {"ns"})], [{"_id": 1, "ns": [3, Int64(2**40)]}]).converged
    assert not compare([(expected, {"ns"})], [{"_id": 1, "ns": [3, 2.0**40]}]).converged


def test_missing_and_extra_fields_are_named_by_path() -> None:
    diff = _diff({"_id": ObjectId("0" * 24), "a": {"b": 1}}, {"_id": ObjectId("0" * 24),
                                                               "a": {"c": 1}})
    fields = {(f.path, f.expected, f.actual) for d in diff.changed for f in d.fields}
    assert fields == {("a.b", 1, MISSING), ("a.c", MISSING, 1)}


def test_ids_match_as_mongodb_matches_numbers_by_value() -> None:
    # DynamoDB compares numbers by value: keys 21.50 and 21.5 are one item, stored under the
    # first write's form; MongoDB's _id equality agrees (21.5 finds Decimal128("21.50")).
    expected = [({"_id": Decimal128("21.5"), "pk": Decimal128("21.5")}, set()),
                ({"_id": {"pk": 3, "sk": "a"}}, set())]
    actual = [{"_id": Decimal128("21.50"), "pk": Decimal128("21.5")},
              {"_id": {"pk": Int64(3), "sk": "a"}}]
    assert compare(expected, actual).converged
    # a different number is a different item
    other = compare([({"_id": Decimal128("21.5")}, set())], [{"_id": Decimal128("21.51")}])
    assert other.missing == [Decimal128("21.5")] and other.extra == [Decimal128("21.51")]


def test_a_set_holding_a_value_bson_cannot_encode_still_compares() -> None:
    odd = object()
    diff = compare([({"_id": 1, "s": ["a", 1]}, {"s"})], [{"_id": 1, "s": [odd, "a"]}])
    assert [f.path for d in diff.changed for f in d.fields] == ["s"]


def test_long_decimal_ids_are_not_rounded_into_one() -> None:
    a, b = Decimal128("1234567890123456789012345678901234"), Decimal128("1234567890123456789012345678901235")
    diff = compare([({"_id": a}, set())], [{"_id": b}])
    assert diff.missing == [a] and diff.extra == [b]
