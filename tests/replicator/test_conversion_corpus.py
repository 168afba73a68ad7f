"""tests/corpus/conversion.json, run by one generic test per direction (like pymongo's bson_corpus).

The corpus is data: DynamoDB JSON in, expected BSON value out in a small tagged JSON encoding (its
``encoding`` entry describes it). Values are compared in a typed normal form, so 1, 1.0, True and
Decimal128("1") all differ, and so does the order of a document's names.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.decimal128 import Decimal128

from replicator import errors
from replicator.convert import Converter

CORPUS = json.loads(
    (Path(__file__).resolve().parents[1] / "corpus" / "conversion.json").read_text("utf-8")
)
DYNAMODB_TAGS = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
CONVERTERS = {"lossless": Converter("lossless"), "float": Converter("float")}


# -- the encoding --------------------------------------------------------------------------------
def decode_input(value: Any) -> Any:
    """``{"$bytes": base64}`` -> bytes (boto3's shape of B); everything else as is."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {name: decode_input(item) for name, item in value.items()}
    if isinstance(value, list):
        return [decode_input(item) for item in value]
    return value


TAGS = {
    "$int": int,
    "$numberDecimal": Decimal128,
    "$double": float,
    "$binary": base64.b64decode,
    "$str": str,
}


def decode_expected(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        raise ValueError(f"bare JSON number {value!r} in the corpus: tag it ($int, $double, ...)")
    if isinstance(value, list):
        return [decode_expected(item) for item in value]
    if len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "$doc":
            return {name: decode_expected(item) for name, item in payload.items()}
        if tag in TAGS:
            return TAGS[tag](payload)
    return {name: decode_expected(item) for name, item in value.items()}


def typed(value: Any) -> Any:
    """A normal form that keeps every distinction BSON keeps (type, digits, name order)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("double", value)
    if isinstance(value, Decimal128):
        return ("decimal128", str(value))
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("null",)
    if isinstance(value, list):
        return ("array", [typed(item) for item in value])
    if isinstance(value, dict):
        return ("document", [(name, typed(item)) for name, item in value.items()])
    raise TypeError(f"not a BSON-ready value: {type(value).__name__}")


def convert(case: dict[str, Any]) -> Any:
    converter = CONVERTERS[case.get("numbers", "lossless")]
    value = decode_input(case["input"])
    return converter.image(value) if case.get("image") else converter.value(value)


# -- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CORPUS["valid"], ids=[c["description"] for c in CORPUS["valid"]])
def test_valid_conversion(case: dict[str, Any]) -> None:
    # given a DynamoDB JSON value and its expected BSON value
    expected = decode_expected(case["expected"])

    # when it is converted
    actual = convert(case)

    # then the value, its type and (for documents) its name order are exactly the expected ones
    assert typed(actual) == typed(expected)
    # and it is BSON-ready: it encodes, and decodes back to the same typed value
    assert typed(bson.decode(bson.encode({"v": actual}))["v"]) == typed(expected)


@pytest.mark.parametrize(
    "case", CORPUS["invalid"], ids=[c["description"] for c in CORPUS["invalid"]]
)
def test_invalid_conversion(case: dict[str, Any]) -> None:
    # given a value that cannot be converted
    error_class = getattr(errors, case["error"])

    # when it is converted, then the named error says where
    with pytest.raises(error_class) as raised:
        convert(case)
    assert raised.value.field_path == case["field_path"]
    if case["field_path"]:
        assert f" at {case['field_path']}:" in str(raised.value)


def test_corpus_covers_every_dynamodb_type() -> None:
    # the corpus itself: every type tag appears in the valid cases, in both number modes
    seen: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            seen.update(name for name in value if name in DYNAMODB_TAGS)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for case in CORPUS["valid"]:
        walk(case["input"])
    assert seen == DYNAMODB_TAGS
    assert {c.get("numbers", "lossless") for c in CORPUS["valid"]} == {"lossless", "float"}


def test_the_expected_encoding_refuses_bare_numbers() -> None:
    # the runner cannot be fooled by an untagged number in the corpus
    with pytest.raises(ValueError, match="bare JSON number"):
        decode_expected([1])


def test_conversion_error_is_located_with_the_record_once_known() -> None:
    # given a conversion error (raised before the record is known)
    with pytest.raises(errors.ConversionError) as raised:
        Converter().image({"price": {"N": "cheap"}}, root="dynamodb.NewImage")
    error = raised.value

    # when the planner locates it
    error.located(index=3, event_id="ev-3", sequence_number="123")

    # then its message names the record and the path
    assert str(error) == (
        "record index 3, eventID ev-3, SequenceNumber 123 at dynamodb.NewImage.price: "
        "not a number: 'cheap'"
    )
    assert error.as_dict()["field_path"] == "dynamodb.NewImage.price"
