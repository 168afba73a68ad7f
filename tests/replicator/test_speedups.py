"""The C accelerator replicator._speedups against the pure-Python reference converter.

The reference (replicator/convert.py) decides; the C module may only answer "not handled" (None)
or exactly the reference's value, type for type at every node (Decimal128 compared by its BID, so
1 == True == Decimal128("1") confusions fail), and ``valid(x)`` must be True exactly when
``image(x)`` answers. Skipped where the extension is not built, unless REPLICATOR_REQUIRE_SPEEDUPS=1
(CI with a compiler), where a missing extension fails.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from bson.decimal128 import Decimal128
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator import accelerator
from replicator import operations as edge
from replicator.accelerator import slot_template
from replicator.convert import Converter
from replicator.core import Replicator
from replicator.errors import ConversionError, MalformedRecordError
from replicator.events import (
    EPOCHS,
    BadRecord,
    Change,
    parse_record,
    parse_records,
    table_arn_of,
)
from replicator.expected import planner_for
from replicator.keys import KeyMapper
from replicator.plan import Planner
from replicator.settings import Settings
from replicator.writes import PlannedWrite, WritePlan
from support.fast_set import examples
from support.planned_writes import OtherDefault, slots_of

REQUIRED = os.environ.get("REPLICATOR_REQUIRE_SPEEDUPS", "") == "1"
IMPORT_ERROR: ImportError | None = None
speedups_module: Any
try:
    speedups_module = importlib.import_module("replicator._speedups")
except ImportError as error:  # not built, or built for another Python (as importorskip would)
    if not REQUIRED:
        pytest.skip(f"replicator._speedups is not built ({error})", allow_module_level=True)
    speedups_module = None
    IMPORT_ERROR = error

if speedups_module is not None:
    # replicator.accelerator configures it when it loads it, unless REPLICATOR_PURE_PYTHON=1;
    # these tests always test it
    accelerator.configure(speedups_module)

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "fixtures" / "dynamodb-local" / "type_zoo"


MISSING = (
    f"REPLICATOR_REQUIRE_SPEEDUPS=1 but the C extension replicator._speedups does not import "
    f"({IMPORT_ERROR}); build it with `pip install -e .` (needs a C compiler)"
)
# Where the extension is required but missing, one test fails (below) and the others skip.
needs_speedups = pytest.mark.skipif(speedups_module is None, reason=MISSING)


def test_the_extension_is_built_when_required() -> None:
    if speedups_module is None:
        pytest.fail(MISSING)


@pytest.fixture
def speedups() -> Any:
    if speedups_module is None:
        pytest.skip(MISSING)
    return speedups_module


def pure_converter() -> Converter:
    """A lossless Converter that never calls the C module: the reference."""
    return Converter("lossless")


def _from_speedups(value: Any) -> bool:
    return getattr(value, "__module__", None) == "replicator._speedups"


REFERENCE = pure_converter()


def shape(value: Any) -> Any:
    """A normal form keeping the exact type of every node and the order of a dict's names."""
    kind = type(value)
    if kind is dict:
        return ("dict", [(type(name), name, shape(item)) for name, item in value.items()])
    if kind is list:
        return ("list", [shape(item) for item in value])
    if kind is Decimal128:
        return ("decimal128", value.bid)
    if kind in (bool, int, str, bytes, type(None)):
        return (kind.__name__, value)
    raise TypeError(f"not a converter output: {kind.__name__}")


def reference_or_error(image: Any) -> tuple[Any, BaseException | None]:
    try:
        return REFERENCE.image(image), None
    except Exception as error:  # ConversionError, or whatever junk input makes it raise
        return None, error


def assert_agrees(speedups: Any, image: Any) -> Any:
    """The differential check; returns the C answer (None: not handled)."""
    fast = speedups.image(image)
    assert speedups.valid(image) is (fast is not None)
    expected, error = reference_or_error(image)
    if fast is not None:
        assert error is None, f"C converted what the reference rejects: {error!r}"
        assert shape(fast) == shape(expected)
    return fast


# -- the extension and the reference used here ----------------------------------------------------
def test_the_extension_is_built_and_configured(speedups: Any) -> None:
    # accelerator.configure hands it Decimal128; Decimal128 values are built one of two ways
    assert speedups._decimal128_path() in ("slots", "constructor")
    assert speedups.image({"a": {"N": "19.99"}}) == {"a": Decimal128("19.99")}


def test_the_reference_here_never_calls_the_c_module(speedups: Any) -> None:
    # no attribute of the reference converter (nor of its tag table) is a _speedups function
    assert _from_speedups(speedups.image)
    attributes = list(vars(REFERENCE).values())
    attributes += list(getattr(REFERENCE, "_by_tag", {}).values())
    assert not any(_from_speedups(value) for value in attributes)


def test_both_ways_of_building_decimal128_agree(speedups: Any) -> None:
    # given the public-constructor path (a callable that is not the type forces it)
    image = {
        "a": {"N": "-19.99"},
        "b": {"N": "9999999999999999999999999999999999E6111"},
        "c": {"N": "1E-6176"},
        "d": {"NS": ["2.5", "1", "-1E+125"]},
    }
    slots = speedups.image(image)
    try:
        speedups.configure(lambda pair: Decimal128(pair), Decimal)
        assert speedups._decimal128_path() == "constructor"
        constructed = speedups.image(image)
    finally:
        speedups.configure(Decimal128, Decimal)
    # then both give the reference's values
    assert shape(constructed) == shape(slots) == shape(REFERENCE.image(image))
    assert speedups._decimal128_path() == "slots"  # pymongo's pure-Python Decimal128


def test_configure_checks_its_arguments(speedups: Any) -> None:
    with pytest.raises(TypeError):
        speedups.configure(Decimal128)
    with pytest.raises(TypeError):
        speedups.configure(1, 2)
    assert speedups._decimal128_path() == "slots"


# -- numbers ---------------------------------------------------------------------------------------
HANDLED_NUMBERS = [
    "0", "-0", "+0", "0e5", "0.000", "-0.0e-0", ".0", "0.", "7", "007", "+7", "-7", ".5", "5.",
    "-.5", "+5.e3", "19.99", "19.990", "1.5", "1E+0", "1e-0", "1e18", "12e17", "1E-130",
    "-1E-130", "9.99E+125", "1E+125", "9223372036854775807", "9223372036854775808",
    "-9223372036854775808", "-9223372036854775809", "9999999999999999999", "10000000000000000000",
    "18446744073709551615", "18446744073709551616", "922337203685477580.7e1",
    "-922337203685477580.8e1", "1" * 34, "1" * 35, "1" * 38, "9" * 34 + "E6111",
    "9" * 34 + "E-6176", "1E-6176", "1E6111", "1" * 34 + "E-6176", "1" * 35 + "E-9999",
    "1e000120", "1e-00120", "1E+00125", "-5E-006176", "1e+000120",
    "0.000000000000000000000000000000000000001",
    "-0.0000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000001", "1" + "0" * 125, "1" + "0" * 19,
    "123456789012345678901234567890123456.78",
]
NOT_HANDLED_NUMBERS = [
    "", ".", "e5", "+", "-", "1e", "1e+", "--1", "+-1", "1.2.3", "0x10", "inf", "NaN", "１",
    " 1", "1 ", "1\n", "1_0", "1,5", "1e1.5", "1e+1234567", "1e12345678", "0e-1234567",
    "1e+0000120", "-5E-0006176", "1e+123456", "1e1234567", "1e-123456", "1E-6177", "1E6112",
    "1" * 34 + "E-6177", "10E6111",
]


@pytest.mark.parametrize("text", HANDLED_NUMBERS)
def test_numbers_the_c_module_handles(speedups: Any, text: str) -> None:
    for image in ({"n": {"N": text}}, {"ns": {"NS": [text, "5"]}}):
        assert assert_agrees(speedups, image) is not None, text


@pytest.mark.parametrize("text", NOT_HANDLED_NUMBERS)
def test_numbers_left_to_the_reference(speedups: Any, text: str) -> None:
    # junk, exponent parts longer than 8 characters, exponents outside Decimal128's range
    for image in ({"n": {"N": text}}, {"ns": {"NS": [text, "5"]}}):
        assert assert_agrees(speedups, image) is None, text


def test_number_sets_sort_by_exact_value_and_stably(speedups: Any) -> None:
    image = {"ns": {"NS": ["10", "9.5", "1E1", "-3", "1" * 38, "0.1", "010", "-0"]}}
    converted = assert_agrees(speedups, image)
    assert converted is not None
    assert converted["ns"][:3] == [-3, 0, Decimal128("0.1")]


# -- binary ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "handled"),
    [
        ("", True), ("QQ==", True), ("QR==", True), ("QUE=", True), ("QUF=", True),
        ("QUFB", True), ("+/+/", True), ("AAAA////", True),
        ("QQ", False), ("QQ=", False), ("QUFB=", False), ("QQ==QQ==", False), ("=", False),
        ("A===", False), ("====", False), ("QQ==\n", False), ("Q Q==", False), ("QQ-_", False),
        ("QUé=", False), ("A=B=", False), ("AB=C", False),
    ],
)
def test_base64(speedups: Any, text: str, handled: bool) -> None:
    # only canonical base64 is decoded here, exactly as base64.b64decode(validate=True) does
    assert (assert_agrees(speedups, {"b": {"B": text}}) is not None) is handled
    assert (assert_agrees(speedups, {"bs": {"BS": [text]}}) is not None) is handled


# -- shapes the reference accepts and the C module leaves to it ------------------------------------
class DictSubclass(dict):  # type: ignore[type-arg]
    pass


class StrSubclass(str):
    pass


def stable_id(value: Any) -> str:
    """A test id that is the same in every process (repr without object addresses, such as a
    memoryview's): pytest-xdist's workers must collect the same ids."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


NOT_HANDLED_IMAGES: list[Any] = [
    None, 1, "x", [], [("a", {"S": "x"})], OrderedDict(a={"S": "x"}), DictSubclass(a={"S": "x"}),
    {1: {"S": "x"}}, {StrSubclass("a"): {"S": "x"}}, {"a": OrderedDict(S="x")},
    {"a": {"S": StrSubclass("x")}}, {"a": {StrSubclass("S"): "x"}}, {"a": {"S": "x", "N": "1"}},
    {"a": {"X": "1"}}, {"a": {"s": "x"}}, {"a": {"BOOL": 1}}, {"a": {"BOOL": None}},
    {"a": {"NULL": False}}, {"a": {"NULL": 1}}, {"a": {"N": 1}}, {"a": {"N": StrSubclass("1")}},
    {"a": {"M": OrderedDict()}}, {"a": {"M": {1: {"S": "x"}}}}, {"a": {"L": ()}},
    {"a": {"L": ({"S": "x"},)}}, {"a": {"SS": ("x",)}}, {"a": {"SS": ["x", 1]}},
    {"a": {"SS": ["x", StrSubclass("y")]}}, {"a": {"NS": ("1",)}}, {"a": {"NS": [1]}},
    {"a": {"NS": ["1", "x"]}}, {"a": {"BS": ("QQ==",)}}, {"a": {"B": bytearray(b"x")}},
    {"a": {"B": memoryview(b"x")}}, {"a": {"BS": [bytearray(b"x")]}}, {"a": {"B": 1}},
    {"a": {"L": [{"S": "x"}, {"N": "nope"}]}}, {"a": {"M": {"b": {"L": [{"M": {"c": {}}}, 1]}}}},
]


@pytest.mark.parametrize("image", NOT_HANDLED_IMAGES, ids=stable_id)
def test_unusual_input_is_left_to_the_reference(speedups: Any, image: Any) -> None:
    assert speedups.image(image) is None
    assert speedups.valid(image) is False


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for level in range(depth):
        value = {"M": {"x": value}} if level % 2 else {"L": [value]}
    return {"top": value}


def test_deep_nesting_is_left_to_the_reference(speedups: Any) -> None:
    # C takes what DynamoDB can produce (32 levels) and more, and leaves anything near MongoDB's
    # 100-level limit to the reference, which counts it exactly.
    assert assert_agrees(speedups, nested(40)) is not None
    assert assert_agrees(speedups, nested(63)) is not None
    for depth in (64, 98, 99, 100, 150, 1000, 5000):
        assert assert_agrees(speedups, nested(depth)) is None, depth


def test_the_reference_counts_nesting_as_mongodb_does() -> None:
    # The image is the document (level 1); nested(n) adds n levels: 99 -> 100 levels, accepted.
    assert REFERENCE.image(nested(99)) is not None
    for depth in (100, 1000, 5000):  # no RecursionError, whatever the depth
        with pytest.raises(ConversionError, match="deeper than MongoDB's 100 levels") as raised:
            REFERENCE.image(nested(depth), root="dynamodb.NewImage")
        path = raised.value.field_path
        assert path.startswith("dynamodb.NewImage.top") and path.count("[0]") >= 49


@pytest.mark.parametrize("name", ["a\x00b", "\ud800", "x\udfffy"])
def test_names_mongodb_cannot_store_are_left_to_the_reference(speedups: Any, name: str) -> None:
    for image in ({name: {"S": "x"}}, {"m": {"M": {name: {"N": "1"}}}},
                  {"l": {"L": [{"M": {name: {"BOOL": True}}}]}}):
        assert assert_agrees(speedups, image) is None
        with pytest.raises(ConversionError, match="field name"):
            REFERENCE.image(image)


@pytest.mark.parametrize("text", ["\ud800", "ab\udc00cd", "\U0001f600\ud83d", "é\udfff"])
def test_text_utf8_cannot_encode_is_left_to_the_reference(speedups: Any, text: str) -> None:
    for image, path in (({"s": {"S": text}}, "s"), ({"l": {"L": [{"S": text}]}}, "l[0]"),
                        ({"ss": {"SS": ["a", text]}}, "ss[1]")):
        assert assert_agrees(speedups, image) is None
        with pytest.raises(ConversionError, match="surrogate") as raised:
            REFERENCE.image(image)
        assert raised.value.field_path == path


def test_nul_in_a_string_value_and_latin1_names_stay_on_the_fast_path(speedups: Any) -> None:
    image = {"ÿ€": {"S": "a\x00b"}, "ss": {"SS": ["ÿ", "€", "\U0001f600"]}}
    assert assert_agrees(speedups, image) is not None


def test_bare_empty_maps_and_empty_containers(speedups: Any) -> None:
    image = {
        "e": {}, "l": {"L": [{}, {"M": {}}, {"L": []}]}, "m": {"M": {"x": {}}},
        "ss": {"SS": []}, "ns": {"NS": []}, "bs": {"BS": []}, "b": {"B": ""},
    }
    converted = assert_agrees(speedups, image)
    assert converted is not None
    assert converted["e"] == {} and converted["e"] is not image["e"]


def test_results_are_new_containers(speedups: Any) -> None:
    image: dict[str, Any] = {"ss": {"SS": ["b", "a"]}, "m": {"M": {}}, "l": {"L": []}}
    converted = speedups.image(image)
    assert converted["ss"] == ["a", "b"] and image["ss"]["SS"] == ["b", "a"]
    assert converted["m"] is not image["m"]["M"] and converted["l"] is not image["l"]["L"]


# -- random images (hypothesis) --------------------------------------------------------------------
def _exponent_part(digits: str, sign: str, letter: str) -> str:
    return f"{letter}{sign}{digits}"


grammar_numbers = st.builds(
    lambda sign, whole, dot, fraction, exponent: (
        f"{sign}{whole}{dot}{fraction}{exponent}" if (whole or fraction) else f"{sign}0"
    ),
    st.sampled_from(["", "", "+", "-"]),
    st.one_of(st.just(""), st.from_regex(r"0{0,3}[0-9]{1,40}", fullmatch=True)),
    st.sampled_from(["", "."]),
    st.one_of(st.just(""), st.from_regex(r"[0-9]{1,40}0{0,3}", fullmatch=True)),
    st.one_of(
        st.just(""),
        st.builds(
            _exponent_part,
            st.from_regex(r"0{0,2}[0-9]{1,8}", fullmatch=True),
            st.sampled_from(["", "+", "-"]),
            st.sampled_from(["e", "E"]),
        ),
    ),
)
edge_numbers = st.builds(
    lambda significand, exponent, negative: f"{'-' if negative else ''}{significand}E{exponent}",
    st.one_of(
        st.integers(1, 10**19),
        st.sampled_from([10**33, 10**34 - 1, 10**34, 10**35 - 1, 10**37, 10**38 - 1]),
        st.integers(10**33, 10**38),
    ),
    st.one_of(st.integers(-6200, -6140), st.integers(6080, 6140), st.integers(-40, 40)),
    st.booleans(),
)
junk_numbers = st.one_of(
    st.sampled_from(NOT_HANDLED_NUMBERS),
    st.text(alphabet="0123456789.eE+-_ １x", max_size=12),
)
number_texts = st.one_of(
    st.sampled_from(HANDLED_NUMBERS), grammar_numbers, edge_numbers, junk_numbers,
    st.integers(-(2**64), 2**64).map(str),
)

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
base64_texts = st.one_of(
    st.binary(max_size=12).map(lambda data: base64.b64encode(data).decode()),
    st.binary(min_size=1, max_size=12).map(lambda data: base64.b64encode(data).decode().rstrip("=")),
    st.text(alphabet=B64_ALPHABET + "=", max_size=12),
    st.text(alphabet=B64_ALPHABET[:4] + "=-_ \n é", max_size=9),
    st.builds(
        lambda body, tail: body + tail,
        st.text(alphabet=B64_ALPHABET, max_size=8).filter(lambda text: len(text) % 4 == 0),
        st.sampled_from(["", "A=", "AB==", "ABC=", "AB=", "==", "AB==QQ==", "=QQ="]),
    ),
)
binary_payloads = st.one_of(
    base64_texts, st.binary(max_size=8), st.binary(max_size=4).map(bytearray),
    st.binary(max_size=4).map(lambda data: memoryview(data)),
)
# Names MongoDB can store (what a well-formed image has)...
clean_names = st.one_of(
    st.sampled_from(["a", "b", "with space", "$dollar", "dot.ted", "ünï", "", "S", "N", "ÿ", "€"]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=4),
)
# ...and, for random images, names it cannot (issue #10): NUL (BSON names are NUL-terminated),
# lone surrogates (UTF-8 cannot encode them; json.loads accepts "\\ud800"), the reserved field.
BAD_NAMES = ["a\x00b", "\x00", "\ud800", "x\udfffy", "_ddb_seq"]
names = st.one_of(clean_names, st.sampled_from(BAD_NAMES), st.text(max_size=4))
# S values UTF-8 cannot encode (a lone surrogate), and ones it can (NUL is fine in a BSON string).
SURROGATE_TEXTS = ["\ud800", "ab\udc00cd", "\U0001f600\ud83d", "é\udfff"]
texts = st.one_of(st.text(max_size=6), st.sampled_from([*SURROGATE_TEXTS, "a\x00b", "ÿ", "€"]))
wrong_payloads: st.SearchStrategy[Any] = st.sampled_from(
    [None, 1, 0, 1.5, True, False, "x", b"x", [], (), {}, ["1"], StrSubclass("1")]
)


def _one(tag: str, payload: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return payload.map(lambda value: {tag: value})


scalar_values = st.one_of(
    _one("S", texts),
    _one("N", number_texts),
    _one("N", number_texts),
    _one("BOOL", st.booleans()),
    _one("NULL", st.just(True)),
    _one("B", binary_payloads),
    _one("SS", st.lists(texts, max_size=4)),
    _one("NS", st.lists(st.from_regex(r"[0-9]{1,19}", fullmatch=True), max_size=4)),
    _one("NS", st.lists(number_texts, max_size=4)),
    _one("BS", st.lists(binary_payloads, max_size=3)),
    st.just({}),
    st.builds(
        lambda tag, payload: {tag: payload},
        st.sampled_from(["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "X", "s"]),
        wrong_payloads,
    ),
    st.just({"S": "a", "N": "1"}),
    _one("SS", st.lists(st.one_of(st.text(max_size=2), wrong_payloads), max_size=3)),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        _one("M", st.dictionaries(names, children, max_size=4)),
        _one("L", st.lists(children, max_size=4)),
        _one("L", st.lists(children, max_size=2).map(tuple)),
    )


typed_values = st.recursive(scalar_values, _containers, max_leaves=12)
images = st.dictionaries(names, typed_values, max_size=6)

# Only well-formed values (every one the C module must handle), for coverage of deep trees.
well_formed_numbers = st.one_of(
    st.sampled_from(HANDLED_NUMBERS),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.from_regex(r"[+-]?[0-9]{1,38}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
well_formed_base64 = st.binary(max_size=12).map(lambda data: base64.b64encode(data).decode())
well_formed_scalars = st.one_of(
    _one("S", st.text(max_size=6)),
    _one("N", well_formed_numbers),
    _one("BOOL", st.booleans()),
    _one("NULL", st.just(True)),
    _one("B", st.one_of(well_formed_base64, st.binary(max_size=8))),
    _one("SS", st.lists(st.text(max_size=3), max_size=4)),
    _one("NS", st.lists(st.from_regex(r"[0-9]{1,18}", fullmatch=True), max_size=4)),
    _one("NS", st.lists(well_formed_numbers, max_size=4)),
    _one("BS", st.lists(st.one_of(well_formed_base64, st.binary(max_size=4)), max_size=3)),
    st.just({}),
)
well_formed_values = st.recursive(
    well_formed_scalars,
    lambda children: st.one_of(
        _one("M", st.dictionaries(clean_names, children, max_size=4)),
        _one("L", st.lists(children, max_size=4)),
    ),
    max_leaves=20,
)
well_formed_images = st.dictionaries(
    clean_names.filter(lambda name: name != "_ddb_seq"), well_formed_values, max_size=8
)


@pytest.mark.slow
@needs_speedups
@settings(
    max_examples=400, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(images)
def test_random_images_agree_with_the_reference(image: dict[str, Any]) -> None:
    assert_agrees(speedups_module, image)


@pytest.mark.slow
@needs_speedups
@settings(max_examples=150, deadline=None, database=None)
@given(well_formed_images)
def test_well_formed_images_are_handled(image: dict[str, Any]) -> None:
    assert assert_agrees(speedups_module, image) is not None


@pytest.mark.slow
@needs_speedups
@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(number_texts, max_size=5))
def test_random_numbers_agree_with_the_reference(texts: list[str]) -> None:
    image: dict[str, Any] = {f"n{position}": {"N": text} for position, text in enumerate(texts)}
    image["set"] = {"NS": texts}
    assert_agrees(speedups_module, image)


@needs_speedups
@settings(max_examples=examples(300), deadline=None, database=None)
@given(st.lists(base64_texts, max_size=4))
def test_random_base64_agrees_with_the_reference(texts: list[str]) -> None:
    image: dict[str, Any] = {f"b{position}": {"B": text} for position, text in enumerate(texts)}
    image["set"] = {"BS": texts}
    fast = assert_agrees(speedups_module, image)
    # everything base64.b64encode can produce is decoded here
    if all(_decodes(text) and _canonical(text) for text in texts):
        assert fast is not None


def _canonical(text: str) -> bool:
    return base64.b64encode(base64.b64decode(text)).decode() == text


def _decodes(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return False
    return True


# -- the conversion corpus and the type zoo --------------------------------------------------------
CORPUS = json.loads((ROOT / "corpus" / "conversion.json").read_text("utf-8"))


def _decode_input(value: Any) -> Any:
    """The corpus's input encoding: ``{"$bytes": base64}`` -> bytes, everything else as is."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {name: _decode_input(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_decode_input(item) for item in value]
    return value


def _corpus_input(case: dict[str, Any]) -> Any:
    value = _decode_input(case["input"])
    return value if case.get("image") else {"v": value}


def test_the_corpus_agrees(speedups: Any) -> None:
    handled = 0
    for case in CORPUS["valid"]:
        if case.get("numbers", "lossless") != "lossless":
            continue
        handled += assert_agrees(speedups, _corpus_input(case)) is not None
    assert handled > 0
    for case in CORPUS["invalid"]:
        if case.get("numbers", "lossless") != "lossless":
            continue
        image = _corpus_input(case)
        assert speedups.image(image) is None, case["description"]
        assert speedups.valid(image) is False, case["description"]


def _zoo_images() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((ZOO / "final_items.json").read_text("utf-8"))
    events = json.loads((ZOO / "events.json").read_text("utf-8"))
    items += [r["dynamodb"]["NewImage"] for r in events["Records"] if "NewImage" in r["dynamodb"]]
    return items


def _needs_slow_path(value: Any) -> bool:
    """Numbers the C module leaves to the reference's general path (exponent part > 8 chars, or
    outside Decimal128's exponent range)."""
    if isinstance(value, dict):
        for tag, payload in value.items():
            if tag == "N" and isinstance(payload, str) and _slow_number(payload):
                return True
            if tag == "NS" and any(_slow_number(text) for text in payload):
                return True
            if tag in ("M", "L") and any(
                _needs_slow_path(item)
                for item in (payload.values() if isinstance(payload, dict) else payload)
            ):
                return True
    return False


def _slow_number(text: str) -> bool:
    _, _, exponent_text = text.lower().partition("e")
    if exponent_text and len(exponent_text) + 1 > 8:
        return True
    _, digits, exponent = _exact(text)
    if digits == (0,) or _fits_int64(text):
        return False
    return len(digits) <= 34 and not -6176 <= exponent <= 6111


def _exact(text: str) -> tuple[int, tuple[int, ...], int]:
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    while len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    return sign, digits, exponent


def _fits_int64(text: str) -> bool:
    value = Decimal(text)
    return value == value.to_integral_value() and -(2**63) <= value < 2**63


def test_the_type_zoo_is_handled_and_agrees(speedups: Any) -> None:
    images = _zoo_images()
    assert len(images) >= 10
    for image in images:
        converted = assert_agrees(speedups, image)
        slow = any(_needs_slow_path(value) for value in image.values())
        assert (converted is not None) is not slow, sorted(image)


# -- document() and has_dollar_name(): the planner's short cuts ------------------------------------


@pytest.mark.slow
@needs_speedups
@settings(max_examples=200, deadline=None, database=None)
@given(images, st.one_of(st.text(max_size=5), st.integers(), st.dictionaries(names, st.integers())))
def test_document_is_the_id_then_the_image(image: dict[str, Any], document_id: Any) -> None:
    fast = speedups_module.document(image, document_id)
    if "_id" in image:
        assert fast is None  # the planner checks an _id attribute against the key's _id
        return
    converted = speedups_module.image(image)
    if converted is None:
        assert fast is None
    else:
        assert shape(fast) == shape({"_id": document_id} | converted)
        assert next(iter(fast)) == "_id" and fast["_id"] is document_id


@needs_speedups
@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, False),
        ({"a": 1, "b.c": 2}, False),
        ({"a": 1, "$x": 2}, True),
        ({"": 1, "x$": 2}, False),
        ({"$": 1}, True),
        ({1: "not a str name"}, None),
        ([("$a", 1)], None),
    ],
)
def test_has_dollar_name(document: Any, expected: bool | None) -> None:
    assert speedups_module.has_dollar_name(document) is expected


# -- parse_changes(): replicator.events.parse_record's well-formed case -----------------------------

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
    st.text(max_size=4), st.just([]), st.just({}), st.just(datetime(2024, 1, 2, 3, 4, 5)),
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    """A stream record, valid or broken in one or more places."""
    name = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE", "UNKNOWN_TO_SDK_VERSION", "PUT"]))
    body: dict[str, Any] = {
        "Keys": {"pk": {"S": draw(st.text(max_size=3))}},
        "SequenceNumber": draw(st.from_regex(r"[0-9]{1,40}", fullmatch=True)),
        "StreamViewType": draw(st.sampled_from(
            ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY", "ALL"]
        )),
        "ApproximateCreationDateTime": draw(st.sampled_from(
            [1_700_000_000, 1_700_000_001.5, datetime(2024, 1, 1, tzinfo=timezone.utc), None]
        )),
    }
    if draw(st.booleans()):
        body["NewImage"] = {"pk": {"S": "a"}, "n": {"N": "1"}}
    if draw(st.booleans()):
        body["OldImage"] = {"pk": {"S": "a"}}
    record: dict[str, Any] = {
        "eventID": draw(st.one_of(st.text(max_size=4), JUNK)),
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": draw(st.one_of(st.just("arn:aws:dynamodb:r:1:table/t/stream/s"), JUNK)),
        "dynamodb": body,
    }
    if draw(st.booleans()):
        record["userIdentity"] = draw(st.one_of(
            st.just({"type": "Service", "principalId": "dynamodb.amazonaws.com"}),
            st.just({"type": "Service", "principalId": "someone"}),
            st.just({"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}),  # boto3's
            st.just({"Type": "Service", "PrincipalId": "someone"}),
            st.just({"PrincipalId": 5}),
            st.just({}),
            JUNK,
        ))
    # Break it: replace or drop a few fields, at the top or in the body.
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from([record, body]))
        field = draw(st.sampled_from(sorted(where)))
        if draw(st.booleans()):
            del where[field]
        else:
            where[field] = draw(JUNK)
    return draw(st.one_of(st.just(record), JUNK)) if draw(st.integers(0, 20)) == 0 else record


@pytest.mark.slow
@needs_speedups
@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(records(), max_size=6))
def test_parse_changes_agrees_with_parse_record(batch: list[Any]) -> None:
    expected: list[Any] = []
    for index, raw in enumerate(batch):  # first, so creation times are remembered as in real use
        try:
            expected.append(parse_record(raw, index))
        except MalformedRecordError:
            expected.append(None)
    fast, holes = speedups_module.parse_changes(batch)
    assert len(fast) == len(batch) and holes == fast.count(None)
    for raw, mine, reference in zip(batch, fast, expected, strict=True):
        if mine is None:
            continue  # left to parse_record
        assert reference is not None, f"C parsed a record parse_record refuses: {raw!r}"
        assert type(mine) is Change and mine.__dict__ == reference.__dict__
        assert list(mine.__dict__) == list(reference.__dict__) and mine.raw is raw


@pytest.mark.slow
@needs_speedups
@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(records(), max_size=8))
def test_parse_records_is_the_same_with_and_without_the_accelerator(batch: list[Any]) -> None:
    def summary(result: tuple[list[Change], list[BadRecord]]) -> Any:
        changes, bad = result
        return [c.__dict__ for c in changes], [(b.index, str(b.error)) for b in bad]

    assert summary(parse_records(batch, native=speedups_module)) == summary(parse_records(batch))


def test_parse_changes_leaves_an_unseen_creation_time_to_python(speedups: Any) -> None:
    record = {
        "eventID": "1", "eventName": "INSERT",
        "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1",
                     "ApproximateCreationDateTime": 1_234_567_891.25, "NewImage": {}},
    }
    EPOCHS.pop(1_234_567_891.25, None)
    assert speedups.parse_changes([record]) == ([None], 1)
    change = parse_record(record)  # remembers the time
    assert speedups.parse_changes([record])[0][0].__dict__ == change.__dict__


# -- plan_records: a whole batch planned in C, against Planner.plan in pure Python ----------------

PLANNER_SETTINGS = [
    Settings(),
    Settings(guard=False),
    Settings(key_schema=("pk",)),
    Settings(key_schema=("pk", "sk")),
    Settings(key_schema=("sk", "pk"), sequence_field="_written_by"),
    Settings(ttl_deletes="ignore"),
    Settings(ttl_deletes="archive", bad_records="fail"),
    Settings(bad_records="fail", guard=False),
    Settings(numbers="float"),
    Settings(numbers="float", key_schema=("pk", "sk")),
    Settings(source_table="t"),
]
# The Replicator pins the stream of its table; records of another table are quarantined.
PINNED = "arn:aws:dynamodb:r:1:table/t/stream/s"
ARNS = [PINNED, "arn:aws:dynamodb:r:1:table/t/stream/s2", "arn:aws:dynamodb:r:1:table/other/stream/s"]
TTL_IDENTITIES = [
    {"type": "Service", "principalId": "dynamodb.amazonaws.com"},  # Lambda's shape
    {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},  # GetRecords' (boto3) shape
]
class _Nowhere:
    """A collection stand-in: planning never writes."""

    name = "items"
    database = None


def reference_plan(settings: Settings, batch: list[Any]) -> WritePlan | Exception:
    """Replicator.plan's Python way (table pinning, read-back, planner), in pure Python."""
    replicator = Replicator(_Nowhere(), settings)
    replicator.native = None
    converter = Converter(settings.numbers)
    replicator.planner = Planner(
        settings, converter=converter, key_mapper=KeyMapper(converter, settings.key_schema)
    )
    replicator.source.table_arn, replicator.source.stream_arn = table_arn_of(PINNED), PINNED
    try:
        return replicator.plan(batch)
    except Exception as error:  # none expected: every record's problem is a bad record
        return error


def c_plan(settings: Settings, batch: list[Any]) -> list[PlannedWrite] | None:
    if settings.numbers != "lossless":
        return None  # the Planner never asks the C planner (test below)
    answer = speedups_module.plan_records(
        batch, settings.key_schema, settings.guard, settings.sequence_field,
        settings.ttl_deletes == "delete", PINNED,
    )
    assert answer is None or type(answer) is list
    return answer


def assert_same_plan(settings: Settings, batch: list[Any]) -> list[PlannedWrite] | None:
    """The differential check; returns the C answer (None: Python plans the batch)."""
    fast = c_plan(settings, batch)
    expected = reference_plan(settings, batch)
    if fast is None:
        return None
    assert not isinstance(expected, Exception), f"C planned what the reference refuses: {expected!r}"
    assert expected.bad_records == [] and expected.deferred == [], "C planned a batch with bad records"
    assert WritePlan(writes=fast) == expected
    assert [type(w) for w in fast] == [PlannedWrite] * len(fast)
    assert [(shape(w.filter), shape(w.document)) for w in fast] == [
        (shape(w.filter), shape(w.document)) for w in expected.writes
    ]
    # every field, its type too (filter and document: their shapes, above)
    assert [[(f.name, type(getattr(w, f.name))) for f in fields(w)] for w in fast] == [
        [(f.name, type(getattr(w, f.name))) for f in fields(w)] for w in expected.writes
    ]
    assert_same_figures(settings, batch, fast)
    return fast


def assert_same_figures(settings: Settings, batch: list[Any], fast: list[PlannedWrite]) -> None:
    """plan_records' figures (WritePlan.native_figures) against the references the Replicator
    uses without them: core._sequences_of with min/max (the batch summary's range) and
    core._newest_created of every write (all applied), in pure Python."""
    figures: list[Any] = ["left"]
    again = speedups_module.plan_records(
        batch, settings.key_schema, settings.guard, settings.sequence_field,
        settings.ttl_deletes == "delete", PINNED, figures,
    )
    assert again == fast
    first, last, highest, plain = figures
    sequences = core_module._sequences_of(batch)
    assert (first, last) == ((min(sequences, key=core_module._PADDED),
                              max(reversed(sequences), key=core_module._PADDED))
                             if sequences else (None, None))
    assert (first, last) == speedups_module.sequence_range(batch)
    if plain:
        newest = None if highest is None else core_module._created_at(highest)
        assert newest == core_module._newest_created(batch, fast)
    else:
        assert any(isinstance(r["dynamodb"].get("ApproximateCreationDateTime"), datetime)
                   for r in batch)


KEY_S = st.sampled_from(["a", "b", "c", "é"])
KEY_N = st.sampled_from(["1", "2", "10", "-3", "9223372036854775807", "9223372036854775808", "1.5"])
SEQUENCE_NUMBERS = st.one_of(
    st.sampled_from(["1", "2", "10", "010", "0002", "4" * 40, "5" * 39, "0" * 40]),
    st.from_regex(r"[0-9]{1,40}", fullmatch=True),
)


@st.composite
def plannable_records(draw: st.DrawFn, broken: bool = True) -> Any:
    """A record of a small key space, so batches coalesce; with ``broken``, sometimes with what
    the C planner must leave to Python (bad images, an _id attribute, TTL deletes, key types...)."""
    name = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    keys: dict[str, Any] = {"pk": {"S": draw(KEY_S)}}
    if draw(st.booleans()):
        keys["sk"] = {"N": draw(KEY_N)} if broken else {"N": draw(st.sampled_from(["1", "2", "10"]))}
    image_of = images if broken and draw(st.integers(0, 4)) == 0 else well_formed_images
    body: dict[str, Any] = {
        "Keys": keys,
        "SequenceNumber": draw(SEQUENCE_NUMBERS),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "ApproximateCreationDateTime": draw(st.sampled_from(
            [1_700_000_000, 1_700_000_001.5, datetime(2024, 1, 1, tzinfo=timezone.utc), None]
        )),
    }
    if name != "REMOVE":
        body["NewImage"] = {**draw(image_of), **{k: v for k, v in keys.items()}}
        if broken and draw(st.integers(0, 9)) == 0:
            body["NewImage"]["_id"] = draw(st.sampled_from([{"S": "a"}, {"N": "1"}]))
        if broken and draw(st.integers(0, 9)) == 0:  # the reserved field (either setting's)
            body["NewImage"][draw(st.sampled_from(["_ddb_seq", "_written_by"]))] = {"N": "42"}
        if broken and draw(st.integers(0, 9)) == 0:  # Keys and NewImage disagree (value or type)
            body["NewImage"]["pk"] = draw(st.sampled_from(
                [{"S": "zz"}, {"N": "1"}, {"B": "YQ=="}, {"S": keys["pk"]["S"]}]))
        if broken and draw(st.integers(0, 14)) == 0:  # deep: near and beyond MongoDB's limit
            body["NewImage"]["deep"] = nested(draw(st.sampled_from([62, 64, 99, 100, 300])))["top"]
    if name != "INSERT" and draw(st.booleans()):
        body["OldImage"] = {**draw(image_of), **keys}
    record: dict[str, Any] = {
        "eventID": "e", "eventName": name, "eventSource": "aws:dynamodb",
        "eventSourceARN": PINNED, "dynamodb": body,
    }
    if broken and draw(st.integers(0, 6)) == 0:
        record["eventSourceARN"] = draw(st.sampled_from(ARNS))
    if draw(st.integers(0, 6)) == 0:
        del record["eventSourceARN"]  # GetRecords' records have none
    if name == "REMOVE" and draw(st.integers(0, 4)) == 0:
        record["userIdentity"] = draw(st.sampled_from(TTL_IDENTITIES))
    if broken and draw(st.integers(0, 14)) == 0:
        return draw(records())  # anything parse_changes meets, valid or not
    if broken and draw(st.integers(0, 14)) == 0:
        del body["NewImage" if "NewImage" in body else "Keys"]
        body["StreamViewType"] = "KEYS_ONLY"
    return record


@pytest.mark.slow
@needs_speedups
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(PLANNER_SETTINGS), st.lists(plannable_records(), max_size=10))
def test_plan_records_agrees_with_the_planner(settings: Settings, batch: list[Any]) -> None:
    assert_same_plan(settings, batch)


@pytest.mark.slow
@needs_speedups
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.sampled_from(
        [s for s in PLANNER_SETTINGS if s.ttl_deletes == "delete" and s.numbers == "lossless"]
    ),
    st.lists(plannable_records(broken=False), max_size=12),
)
def test_plan_records_plans_well_formed_batches(settings: Settings, batch: list[Any]) -> None:
    """Not vacuous: the common case is the C planner's (composite keys need the key schema)."""
    composite = ["sk" in r["dynamodb"]["Keys"] for r in batch]
    schema = settings.key_schema or ()
    # No key schema: one key attribute each. One name: any Keys. Two: both in every record.
    plannable = {0: not any(composite), 1: True, 2: all(composite)}[len(schema)]
    assert (assert_same_plan(settings, batch) is not None) == plannable


def test_plan_records_leaves_the_uncommon_to_python(speedups: Any) -> None:
    insert = {"eventName": "INSERT", "dynamodb": {
        "Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1", "StreamViewType": "NEW_AND_OLD_IMAGES",
        "NewImage": {"pk": {"S": "a"}, "n": {"N": "1"}}}}
    assert c_plan(Settings(), [insert]) is not None

    def variant(change: Any) -> list[Any]:
        record = json.loads(json.dumps(insert))
        change(record)
        return [insert, record]

    uncommon = {
        "a bad image": lambda r: r["dynamodb"]["NewImage"].update(n={"N": "x"}),
        "an _id attribute": lambda r: r["dynamodb"]["NewImage"].update(_id={"S": "a"}),
        "a B key": lambda r: r["dynamodb"].update(Keys={"pk": {"B": "AA=="}}),
        "a decimal key": lambda r: r["dynamodb"].update(Keys={"pk": {"N": "1.5"}}),
        "a read-back": lambda r: r["dynamodb"].update(StreamViewType="KEYS_ONLY", NewImage=None),
        "DynamoDB Local's TTL": lambda r: r.update(eventName="UNKNOWN_TO_SDK_VERSION"),
        "a malformed record": lambda r: r.pop("dynamodb"),
        "an unreadable time": lambda r: r["dynamodb"].update(ApproximateCreationDateTime="now"),
        "a time past 9999": lambda r: r["dynamodb"].update(ApproximateCreationDateTime=1e13),
        "a NUL in a name": lambda r: r["dynamodb"]["NewImage"].update({"a\x00b": {"S": "x"}}),
        "a lone surrogate": lambda r: r["dynamodb"]["NewImage"].update(s={"S": "\ud800"}),
        "a lone surrogate key": lambda r: r["dynamodb"].update(Keys={"pk": {"S": "\udc00"}}),
        "the reserved field": lambda r: r["dynamodb"]["NewImage"].update(_ddb_seq={"N": "1"}),
        "Keys not the image's": lambda r: r["dynamodb"]["NewImage"].update(pk={"S": "b"}),
        "a key the image lacks": lambda r: r["dynamodb"]["NewImage"].pop("pk"),
        "65 levels": lambda r: r["dynamodb"]["NewImage"].update(nested(64)),
        "another table": lambda r: r.update(eventSourceARN=ARNS[2]),
        "another stream": lambda r: r.update(eventSourceARN=ARNS[1]),
    }
    for why, change in uncommon.items():
        assert c_plan(Settings(), variant(change)) is None, why
    assert c_plan(Settings(), variant(lambda r: r.update(eventSourceARN=PINNED))) is not None
    assert c_plan(Settings(), variant(lambda r: r["dynamodb"]["NewImage"].update(
        nested(62)))) is not None
    # no stream pinned yet: a record naming one goes the Python way, which pins it
    assert speedups.plan_records(variant(lambda r: r.update(eventSourceARN=PINNED)), None,
                                 True, "_ddb_seq", True, None) is None
    for identity in TTL_IDENTITIES:
        ttl = variant(lambda r, identity=identity: r.update(eventName="REMOVE", userIdentity=identity))
        assert c_plan(Settings(ttl_deletes="delete"), ttl) is not None
        assert c_plan(Settings(ttl_deletes="ignore"), ttl) is None


def test_the_planner_uses_plan_records_only_for_the_common_settings() -> None:
    def converter() -> Converter:
        return Converter(native=accelerator.native)

    uses = {
        "defaults": planner_for(Settings()),
        "a shard key": planner_for(Settings(shard_key=("pk",))),
        "a transform": Planner(Settings(), converter=converter(), transforms=[lambda d: d],
                               native_batches=True),
        "an id mapping": Planner(Settings(), converter=converter(), native_batches=True,
                                 key_mapper=KeyMapper(converter(), None, lambda k: 1)),
        "pure Python": planner_for(Settings(), accelerate=False),
        "float numbers": planner_for(Settings(numbers="float")),
        "the gate not asked": Planner(Settings(), converter=converter()),
        "a pure converter": Planner(Settings(), native_batches=True),
    }
    records = [{"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1"}}]
    planned = {name: p.plan_records(records) is not None for name, p in uses.items()}
    expected = {name: name == "defaults" and accelerator.native is not None for name in uses}
    assert planned == expected


def test_plan_records_checks_its_arguments(speedups: Any) -> None:
    with pytest.raises(TypeError):
        speedups.plan_records((), None, True, "_seq", True)
    with pytest.raises(TypeError):
        speedups.plan_records([], ("a", "b", "c"), True, "_seq", True)
    with pytest.raises(TypeError):
        speedups.plan_records([], None, True, 5, True)
    assert speedups.plan_records([], None, True, "_seq", True) == []


def test_plan_records_lets_the_first_of_equal_sequence_numbers_win(speedups: Any) -> None:
    """A record delivered twice in a batch, or "10" next to "010": the first in batch order wins,
    as the guard ($lt) lets the first applied one win when they come in separate batches."""
    def insert(sequence: str, n: str) -> dict[str, Any]:
        return {"eventName": "INSERT", "dynamodb": {
            "Keys": {"pk": {"S": "a"}}, "SequenceNumber": sequence,
            "NewImage": {"pk": {"S": "a"}, "n": {"N": n}}}}

    for batch in ([insert("10", "1"), insert("010", "2")], [insert("7", "1"), insert("7", "2")],
                  [insert("0002", "1"), insert("2", "2"), insert("1", "3")]):
        fast = assert_same_plan(Settings(), batch)
        assert fast is not None
        first = batch[0]["dynamodb"]["NewImage"]["n"]["N"]
        assert isinstance(fast[0].document, dict) and fast[0].document["n"] == int(first)


def test_plan_records_writes_dollar_names_through_a_pipeline(speedups: Any) -> None:
    batch = [{"eventName": "MODIFY", "dynamodb": {
        "Keys": {"pk": {"S": "a"}}, "SequenceNumber": "5",
        "NewImage": {"pk": {"S": "a"}, "$price": {"N": "1"}}}}]
    fast = assert_same_plan(Settings(), batch)
    assert fast is not None and fast[0].kind == "update"


def test_plan_records_leaves_the_garbage_collector_alone(speedups: Any) -> None:
    """It never switches the process-wide cyclic GC (issue 11): with the young generation's
    threshold at 1, building a plan allocates enough for collections to run during the call, and
    the GC is on or off after it as it was before."""
    import gc

    batch = [{"eventName": "INSERT", "dynamodb": {
        "Keys": {"pk": {"S": str(n)}}, "SequenceNumber": str(n + 1),
        "NewImage": {"pk": {"S": str(n)}, "tags": {"L": [{"S": "x"}]}}}} for n in range(50)]
    phases: list[str] = []
    was, threshold = gc.isenabled(), gc.get_threshold()

    def seen(phase: str, info: dict[str, Any]) -> None:
        phases.append(phase)

    try:
        gc.enable()
        gc.set_threshold(1)
        gc.callbacks.append(seen)
        assert c_plan(Settings(), batch) is not None
        gc.callbacks.remove(seen)
        assert "start" in phases and gc.isenabled()
        gc.disable()
        assert c_plan(Settings(), batch) is not None and not gc.isenabled()
        with pytest.raises(TypeError):
            speedups.plan_records(batch, None, True, 5, True)
        assert not gc.isenabled()
    finally:
        if seen in gc.callbacks:
            gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
        (gc.enable if was else gc.disable)()


def test_every_setting_is_decided_for_the_c_gate() -> None:
    """A planning setting added to Settings must be added to accelerator.C_PLANNING (with whether
    the C planner implements its value) or to NOT_PLANNING: the C path cannot silently ignore it."""
    fields = set(Settings.field_names())
    assert set(accelerator.C_PLANNING) | accelerator.NOT_PLANNING == fields
    assert not set(accelerator.C_PLANNING) & accelerator.NOT_PLANNING


@pytest.mark.parametrize("settings, declined", [
    (Settings(), []),
    (Settings(numbers="float"), ["numbers"]),
    (Settings(transforms=("replicator.transforms.example",)), ["transforms"]),
    (Settings(id_mapping="m:f", shard_key=("t",)), ["id_mapping", "shard_key"]),
])
def test_the_gate_names_the_settings_the_c_planner_does_not_implement(
    settings: Settings, declined: list[str]
) -> None:
    assert accelerator.declined_by(settings) == declined
    path = accelerator.planning_path(settings)
    if accelerator.native is None:
        assert path.startswith("pure Python (") and accelerator.unavailable in path
    elif declined:
        assert path.startswith("pure Python") and all(name in path for name in declined)
    else:
        assert path.startswith("C accelerator")


def test_configure_planner_refuses_a_class_it_cannot_build(speedups: Any) -> None:
    """plan_records fills PlannedWrite's slots directly: only a plain class (object.__new__)
    whose slots are exactly the fields it knows, in order, and whose constructor gives the same
    write as the slots filled, will do."""
    slots = accelerator.planned_write_slots()

    class OwnNew:
        def __new__(cls) -> OwnNew:
            return super().__new__(cls)

    @dataclass(frozen=True, slots=True)
    class Reordered:  # the same names, another order
        filter: Any
        kind: Any

    other = slots_of(OtherDefault)
    try:
        for cls, descriptors in ((OwnNew, slots), (PlannedWrite, slots[:-1]),
                                 (PlannedWrite, slots[1:2] + slots[:1] + slots[2:]),
                                 (Reordered, slots_of(Reordered)),
                                 (PlannedWrite, other), (OtherDefault, other)):
            with pytest.raises(TypeError):
                speedups.configure_planner(cls, descriptors)
    finally:
        accelerator.configure(speedups)
    # configured again: plans as before
    assert speedups.plan_records([], None, True, "_seq", True) == []


# -- operations: planned writes -> pymongo operations, against operations.operation-----------------
def operation_shape(operation: Any) -> Any:
    """Every slot of a pymongo operation, type for type and in order (== ignores dict order, and
    ReplaceOne's == may not look at every slot)."""
    slots = [name for klass in type(operation).__mro__ for name in vars(klass).get("__slots__", ())]
    return type(operation).__name__, [
        (name, shape(getattr(operation, name, "<unset>"))) for name in slots
    ]


EDGE_WRITES = [
    PlannedWrite.replace({"_id": "a", "$or": []}, {"_id": "a", "n": 1}, ("1",)),
    PlannedWrite.delete({"_id": "b"}, ("2",)),
    PlannedWrite.update({"_id": "c"}, [{"$replaceWith": {"$literal": {"$p": 1}}}], ("3",)),
    PlannedWrite.update({"_id": "d"}, {"$set": {"x": 1}}, ("4",), upsert=False),
]


def assert_same_operations(speedups: Any, writes: list[PlannedWrite]) -> None:
    built = speedups.operations(writes)
    expected = [edge.operation(w) for w in writes]
    assert built is not None
    assert [operation_shape(o) for o in built] == [operation_shape(o) for o in expected]


def test_operations_agree_with_apply_operation(speedups: Any) -> None:
    assert_same_operations(speedups, EDGE_WRITES)
    # a shape it does not build (a replacement without upsert): Python builds the whole list
    odd = PlannedWrite("replace", {"_id": 1}, {"_id": 1}, False, ("1",))
    assert speedups.operations([*EDGE_WRITES, odd]) is None
    assert edge.operations([*EDGE_WRITES, odd], speedups) == [
        edge.operation(w) for w in [*EDGE_WRITES, odd]]


def test_slot_template_describes_how_the_class_fills_its_slots() -> None:
    operation_filter, document = {"_id": 1}, {"_id": 1}
    descriptors, values, filter_at, document_at, _ = slot_template(
        ReplaceOne, operation_filter, document, upsert=True)
    names = [d.__name__ for d in descriptors]
    assert names[filter_at] == "_filter" and values[filter_at] is operation_filter
    assert names[document_at] == "_doc" and values[document_at] is document
    assert values[names.index("_upsert")] is True
    assert slot_template(DeleteOne, operation_filter)[3] == -1

    class WithDict:
        def __init__(self, operation_filter: Any) -> None:
            self.filter = operation_filter

    assert slot_template(WithDict, {}) is None


@pytest.mark.parametrize("templates", ["class calls", "a lying template"])
def test_operations_are_the_same_whichever_way_they_are_built(speedups: Any, templates: str) -> None:
    replace = slot_template(ReplaceOne, {}, {}, upsert=True)
    delete = slot_template(DeleteOne, {})
    if templates == "class calls":
        replace = delete = None
    else:  # filter and document swapped: its ReplaceOne differs from the class's, so unused
        replace = (*replace[:2], replace[3], replace[2], replace[4])
    try:
        speedups.configure_operations(ReplaceOne, DeleteOne, UpdateOne, replace, delete)
        expected = ("constructor", "constructor" if templates == "class calls" else "slots")
        assert speedups._operation_path() == expected
        # the constructor path answers None for a kind it does not fill: Python builds those
        built = speedups.operations(EDGE_WRITES)
        assert built is None or [operation_shape(o) for o in built] == [
            operation_shape(edge.operation(w)) for w in EDGE_WRITES]
    finally:
        accelerator.configure(speedups)
    assert speedups._operation_path() == ("slots", "slots")


def test_configure_operations_refuses_a_malformed_template(speedups: Any) -> None:
    replace = slot_template(ReplaceOne, {}, {}, upsert=True)
    try:
        for bad in [(), ("x",) * 5, (replace[0], replace[1][:-1], *replace[2:]),
                    (*replace[:2], 99, replace[3], replace[4])]:
            with pytest.raises(TypeError):
                speedups.configure_operations(ReplaceOne, DeleteOne, UpdateOne, bad, None)
    finally:
        accelerator.configure(speedups)


# -- the tombstones' markers and probe, and a batch's figures, in C (issue 21) -------------------
from replicator import core as core_module  # noqa: E402
from replicator import tombstones as tombstone_module  # noqa: E402

_digits = st.one_of(st.text("0123456789", min_size=1, max_size=40),
                    st.text("0123456789", min_size=1, max_size=3).map(lambda d: "00" + d))
_sequence = st.one_of(_digits, _digits, _digits, st.sampled_from(["", "-1", "+7", "1" * 41, "١٢"]))
_document_ids = st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1),
                          st.sampled_from([None, 1.5, b"b"]))


@st.composite
def tombstone_writes(draw: Any) -> list[PlannedWrite]:
    writes = []
    for n in range(draw(st.integers(0, 8))):
        numbers = tuple(draw(st.lists(_sequence, min_size=1, max_size=3)))
        document_id = draw(_document_ids)
        operation_filter: dict[str, Any] = {"_id": document_id, "$or": [{"x": n}]}
        if draw(st.integers(0, 20)) == 0:
            operation_filter = {"other": n}  # no _id: C leaves the batch to Python
        kind = draw(st.sampled_from(["delete", "replace", "update"]))
        if kind == "delete":
            writes.append(PlannedWrite.delete(operation_filter, numbers))
        elif kind == "replace":
            writes.append(PlannedWrite.replace(operation_filter, {"_id": document_id}, numbers))
        else:
            writes.append(PlannedWrite.update(operation_filter, {"$set": {"n": n}}, numbers))
    return writes


def _deep(value: Any) -> Any:
    """A value type for type at every node, dicts in their order (== ignores it)."""
    if isinstance(value, dict):
        return "dict", [(k, _deep(v)) for k, v in value.items()]
    if isinstance(value, list):
        return "list", [_deep(v) for v in value]
    return type(value).__name__, repr(value)


def _slots(operation: Any) -> Any:
    names = [n for klass in type(operation).__mro__ for n in vars(klass).get("__slots__", ())]
    return type(operation).__name__, [(n, _deep(getattr(operation, n, "<unset>"))) for n in names]


def _reference_operations(writes: list[PlannedWrite], now: datetime) -> Any:
    try:
        return tombstone_module._operations(writes, now)
    except KeyError:  # a filter without _id: the reference cannot build it either
        return None


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(writes=tombstone_writes())
def test_tombstone_operations_are_the_references(speedups: Any, writes: list[PlannedWrite]) -> None:
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    built = speedups.tombstone_operations(writes, now, tombstone_module.SEQUENCE,
                                          tombstone_module.DELETED_AT)
    plain = all(isinstance(w.filter, dict) and "_id" in w.filter
                and w.sequence_numbers[-1].isascii() and w.sequence_numbers[-1].isdigit()
                and len(w.sequence_numbers[-1]) <= 40 for w in writes)
    assert (built is not None) == plain  # taken exactly when every write is of the usual shape
    if built is None:
        return
    expected = _reference_operations(writes, now)
    deletes, upserts, operations = built
    assert [id(w) for w in deletes] == [id(w) for w in expected[0]]
    assert [id(w) for w in upserts] == [id(w) for w in expected[1]]
    assert [_slots(o) for o in operations] == [_slots(o) for o in expected[2]]


@pytest.mark.parametrize("templates", ["class calls", "slots"])
def test_tombstone_operations_are_the_same_whichever_way_they_are_built(
        speedups: Any, templates: str) -> None:
    from pymongo.operations import UpdateMany

    writes = [PlannedWrite.delete({"_id": "a"}, ("12",)),
              PlannedWrite.replace({"_id": "b"}, {"_id": "b"}, ("7", "9")),
              PlannedWrite.replace({"_id": 3}, {"_id": 3}, ("10",))]
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    try:
        if templates == "class calls":
            speedups.configure_tombstones(UpdateOne, UpdateMany, None, None)
        expected_path = ("constructor",) * 2 if templates == "class calls" else ("slots",) * 2
        assert speedups._tombstone_path() == expected_path
        _, _, operations = speedups.tombstone_operations(writes, now, "seq", "deleted_at")
        assert [_slots(o) for o in operations] == [
            _slots(o) for o in tombstone_module._operations(writes, now)[2]]
        assert operations[-1]._filter == {"_id": {"$in": ["b", 3]}, "seq": {"$gt": "9".zfill(40)}}
    finally:
        accelerator.configure(speedups)
    assert speedups._tombstone_path() == ("slots", "slots")


_times = st.one_of(st.integers(0, 2**40), st.floats(allow_nan=True), st.none(),
                   st.datetimes(timezones=st.sampled_from([timezone.utc])),
                   st.sampled_from([True, "1700000000", datetime(2024, 1, 1, tzinfo=timezone.utc),
                                    datetime(2024, 1, 1)]))


@st.composite
def figure_records(draw: Any) -> list[Any]:
    records: list[Any] = []
    for _ in range(draw(st.integers(0, 8))):
        body: dict[str, Any] = {}
        if draw(st.booleans()) or draw(st.booleans()):
            body["SequenceNumber"] = draw(st.one_of(_sequence, st.integers(0, 9)))
        if draw(st.booleans()):
            body["ApproximateCreationDateTime"] = draw(_times)
        shape = draw(st.integers(0, 30))
        records.append(body if shape == 0 else OrderedDict(dynamodb=body) if shape == 1
                       else {"dynamodb": "x"} if shape == 2 else {"dynamodb": body})
    return records


@settings(max_examples=examples(400), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=figure_records(), data=st.data())
def test_a_batchs_figures_in_c_are_the_references(speedups: Any, records: list[Any],
                                                  data: Any) -> None:
    sequences = core_module._sequences_of(records)
    span = speedups.sequence_range(records)
    if span is not None:
        assert span == ((min(sequences, key=core_module._PADDED),
                         max(reversed(sequences), key=core_module._PADDED)) if sequences
                        else (None, None))
    readable = [s for s in sequences if isinstance(s, str)]
    wanted = data.draw(st.lists(st.sampled_from(readable), unique=True) if readable
                       else st.just([]))
    writes = [PlannedWrite.delete({"_id": n}, (s,)) for n, s in enumerate(wanted)]
    try:
        expected: Any = core_module._newest_created(records, writes)
    except (OverflowError, ValueError, OSError) as error:  # the reference's own refusal
        expected = type(error)
    try:
        got: Any = core_module._newest_created(records, writes, speedups)
    except (OverflowError, ValueError, OSError) as error:
        got = type(error)
    assert got == expected


def test_a_batchs_figures_are_taken_in_c_for_a_lambda_event(speedups: Any) -> None:
    records = [{"dynamodb": {"SequenceNumber": s, "ApproximateCreationDateTime": t}}
               for s, t in [("300", 5), ("20", 9.5), ("0020", 7), ("300", 9.5), ("1", 2)]]
    assert speedups.sequence_range(records) == ("1", "300")
    assert speedups.sequence_range([*records, {"dynamodb": {}}]) is None  # Python decides
    assert speedups.newest_created(records, {"300", "0020"}) == (9.5, None)
    assert speedups.newest_created(records, {"7"}) == (None, None)
    assert speedups.newest_created([*records, []], {"1"}) is None
    # a copy's records: one aware datetime per page, every record sequence number "0"
    page = datetime(2026, 12, 7, tzinfo=timezone.utc)
    copied = [{"dynamodb": {"SequenceNumber": "0", "ApproximateCreationDateTime": page}}] * 3
    assert speedups.sequence_range(copied) == ("0", "0")
    assert speedups.newest_created(copied, {"0"}) == (None, page)
    naive = [{"dynamodb": {"SequenceNumber": "0", "ApproximateCreationDateTime": datetime(2026, 1, 1)}}]
    assert speedups.newest_created(naive, {"0"}) is None  # Python takes it as UTC


def test_the_markers_naive_utc_time_is_the_same_bson_date_as_the_aware_one() -> None:
    # TombstoneStore.guard stamps markers with a naive UTC time (half the encoding cost): pymongo
    # takes a naive datetime as UTC, so the server stores the same date
    import bson

    aware = datetime(2026, 12, 7, 15, 30, 1, 123000, tzinfo=timezone.utc)
    assert bson.encode({"deleted_at": aware.replace(tzinfo=None)}) == bson.encode(
        {"deleted_at": aware})


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.lists(st.one_of(_sequence, st.sampled_from(["1", "01", "", "x"])),
                                min_size=1, max_size=4), max_size=12),
       odd=st.integers(0, 12))
def test_the_covered_sequence_numbers_in_c_are_the_references(
    speedups: Any, groups: list[list[str]], odd: int
) -> None:
    # core._newest_created's ``wanted``: C reads each write's sequence_numbers from its slot
    writes = [PlannedWrite.delete({"_id": n}, tuple(g)) for n, g in enumerate(groups)]
    assert speedups.covered_sequences(writes) == {s for w in writes for s in w.sequence_numbers}
    if writes and odd < len(writes):
        # not a tuple of str: Python decides
        writes[odd] = dataclasses.replace(writes[odd], sequence_numbers=[*groups[odd]])
        assert speedups.covered_sequences(writes) is None
        writes[odd] = dataclasses.replace(writes[odd], sequence_numbers=(1,))
        assert speedups.covered_sequences(writes) is None
    assert speedups.covered_sequences(tuple(writes)) is None


# -- issue 21, round 2: what the C planner now does differently, against the references ----------
_set_texts = st.one_of(
    st.text(alphabet="ab", max_size=3),  # many equal members, prefixes of each other
    st.text(alphabet=st.characters(max_codepoint=0xFF, exclude_categories=("Cs",)), max_size=3),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=2),
)


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(_set_texts, max_size=40),
       numbers=st.lists(st.from_regex(r"[0-9]{1,18}", fullmatch=True), max_size=40))
def test_sets_sorted_in_c_are_the_references(speedups: Any, members: list[str],
                                             numbers: list[str]) -> None:
    # SS and NS members sorted without PyList_Sort: up to 16 by insertion, more by qsort (NS)
    # or PyList_Sort (SS); the input list is left as it was
    image = {"ss": {"SS": list(members)}, "ns": {"NS": list(numbers)}}
    fast = assert_agrees(speedups, image)
    if all(m.isascii() or max(map(ord, m)) <= 0xFF for m in members):
        assert fast is not None
    assert image == {"ss": {"SS": members}, "ns": {"NS": numbers}}


def test_records_with_unusual_names_and_keys_are_planned_as_the_reference(speedups: Any) -> None:
    # eventName / StreamViewType found by their text (not their hash), Keys compared without ==
    # where their tag and text are the same: equal texts of other objects, other kinds, near misses
    def record(sequence: str, name: str, view: str, keys: Any, new: Any) -> dict[str, Any]:
        body = {"SequenceNumber": sequence, "Keys": keys, "StreamViewType": view,
                "ApproximateCreationDateTime": 1765100000 + int(sequence)}
        if new is not None:
            body["NewImage"] = new
        return {"eventID": sequence, "eventName": name, "dynamodb": body,
                "eventSourceARN": PINNED}

    fresh = "".join(["INS", "ERT"])  # equal text, another object, no hash computed
    key = {"pk": {"S": "".join(["k", "1"])}}
    image = {"pk": {"S": "k1"}, "v": {"N": "1"}}
    cases = [
        [record("1", fresh, "".join(["NEW_AND_OLD", "_IMAGES"]), key, image)],
        [record("1", "INSERT", "NEW_IMAGE", key, {"pk": {"S": "k2"}, "v": {"N": "1"}})],
        [record("1", "INSERT", "NEW_IMAGE", key, {"pk": {"N": "1"}})],
        [record("1", "INSERT", "NEW_IMAGE", {"pk": {"N": "7"}}, {"pk": {"N": "07"}})],
        [record("1", "INSERT", "NEW_IMAGE", key, {"pk": {"S": "k1", "N": "1"}})],
        [record("1", "INSERTS", "NEW_IMAGE", key, image)],
        [record("1", "INSER", "NEW_IMAGE", key, image)],
        [record("1", "INSERT", "NEW_IMAGES", key, image)],
        [record("1", "INSERT", "ÑEW_IMAGE", key, image)],
        [record("2", "MODIFY", "NEW_AND_OLD_IMAGES", key, image),
         record("1", "INSERT", "NEW_AND_OLD_IMAGES", key, image),
         record("3", "REMOVE", "NEW_AND_OLD_IMAGES", key, None)],
    ]
    planned = [assert_same_plan(Settings(), batch) is not None for batch in cases]
    # C plans the equal texts of other objects; the near misses and disagreeing keys are Python's
    assert planned == [True, *[False] * 8, True]


def test_plan_records_figures(speedups: Any) -> None:
    def record(sequence: str, created: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"SequenceNumber": sequence, "Keys": {"pk": {"S": sequence}},
                                "NewImage": {"pk": {"S": sequence}}}
        if created is not None:
            body["ApproximateCreationDateTime"] = created
        return {"eventName": "INSERT", "dynamodb": body}

    batch = [record("300", 5), record("20", 9.5), record("0020", 9), record("0300", 9.5),
             record("1", None)]
    figures: list[Any] = []
    assert speedups.plan_records(batch, None, True, "_seq", True, None, figures) is not None
    assert figures == ["1", "0300", 9.5, True]
    assert figures[2] is batch[1]["dynamodb"]["ApproximateCreationDateTime"]  # the first of equal
    page = datetime(2026, 12, 7, tzinfo=timezone.utc)
    figures = []
    assert speedups.plan_records([record("1", page)], None, True, "_seq", True, None,
                                 figures) is not None
    assert figures == ["1", "1", None, False]
    figures = ["untouched"]  # Python decides: nothing filled in
    assert speedups.plan_records([record("1", 5), {"x": 1}], None, True, "_seq", True, None,
                                 figures) is None
    assert figures == ["untouched"]
    assert speedups.plan_records([], None, True, "_seq", True, None, figures) == []
    assert figures == [None, None, None, True]
    with pytest.raises(TypeError):
        speedups.plan_records([], None, True, "_seq", True, None, ())
