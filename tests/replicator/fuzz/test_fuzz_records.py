"""Fuzzed stream records: valid ones from the reference table (harness.model), malformed ones made
from them in every way the brief lists, mixed into one batch.

Properties:

- ``Replicator.process`` never raises on a batch mixing valid and malformed records;
- every malformed record is in the quarantine collection with ``raw_record`` JSON text that loads
  back to the raw record, an error whose message names the record (index, eventID and
  SequenceNumber where readable) and, where a field is at fault, its field path;
- no valid record is quarantined, and every valid record is applied: the collection equals the
  table (harness.convergence.check) and equals what a second replicator fed only the valid records
  writes;
- ``parse_record`` and ``Converter().image`` raise only RecordError subclasses on arbitrary
  JSON-like input (and on near-valid input that reaches deep), and ``process`` raises nothing on
  it (a record the configuration cannot handle is quarantined, issue #10).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backends.mongomock_target import mongomock_client
from harness.convergence import check, read_target
from harness.model import ModelTable, lambda_value
from replicator.convert import Converter
from replicator.core import Replicator
from replicator.errors import MalformedRecordError, RecordError
from replicator.events import parse_record
from replicator.settings import Settings
from support.fast_set import examples
from support.strategies import ATTRIBUTE_NAMES, apply_operation, nested_names, operations, values

KEY_SCHEMA = ("pk",)
SETTINGS = Settings(key_schema=KEY_SCHEMA)
FUZZ = settings(
    max_examples=examples(150),  # 30 in the fast set (support/fast_set.py)
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- valid records -------------------------------------------------------------------------------
@st.composite
def tables(draw: st.DrawFn) -> ModelTable:
    """A reference table after a few writes; its records are the valid stream."""
    view = draw(st.sampled_from(["NEW_AND_OLD_IMAGES", "NEW_IMAGE"]))
    table = ModelTable(KEY_SCHEMA, view_type=view)
    for operation in draw(st.lists(operations(KEY_SCHEMA), min_size=1, max_size=8)):
        apply_operation(table, operation)
    return table


# -- malformed records ---------------------------------------------------------------------------
def step(name: str) -> str:
    """A field path step as the replicator writes it (``.name``, or ``['odd name']``)."""
    return f".{name}" if name.isidentifier() else f"[{name!r}]"


# Bad typed values, each with the path suffix the error must point at below it.
BAD_LEAVES: list[tuple[Any, str]] = [
    *[({"N": text}, "") for text in (
        "12e", "1.2.3", "", "abc", "NaN", "Infinity", "-Infinity", "--1", "1e", "0x10", " 1", "1 ",
        "\u0661\u0662", "1_000", "+", ".", "e5", "1e7000", "-1e-7000", "1e99999999999",
        "1E-99999999999",
    )],
    ({"N": 12}, ""), ({"N": None}, ""), ({"N": 1.5}, ""), ({"N": ["1"]}, ""),
    ({"B": "abc"}, ""), ({"B": "!!!!"}, ""), ({"B": 5}, ""), ({"B": None}, ""), ({"B": ["AA=="]}, ""),
    ({"NULL": False}, ""), ({"NULL": "true"}, ""), ({"NULL": None}, ""), ({"NULL": 1}, ""),
    ({"BOOL": "yes"}, ""), ({"BOOL": 1}, ""), ({"BOOL": None}, ""), ({"BOOL": "true"}, ""),
    ({"S": 5}, ""), ({"S": None}, ""), ({"S": ["a"]}, ""), ({"S": True}, ""),
    ({"SS": ["a", 1]}, "[1]"), ({"SS": "abc"}, ""), ({"SS": [None]}, "[0]"), ({"SS": {"a": 1}}, ""),
    ({"NS": ["1", "x"]}, "[1]"), ({"NS": [1]}, "[0]"), ({"NS": ["NaN"]}, "[0]"), ({"NS": "1"}, ""),
    ({"NS": ["2", "1e7000"]}, "[1]"), ({"NS": [["1"]]}, "[0]"),
    ({"BS": ["AA==", "!!"]}, "[1]"), ({"BS": [5]}, "[0]"), ({"BS": "AA=="}, ""),
    ({"M": []}, ""), ({"M": "x"}, ""), ({"M": None}, ""), ({"L": {}}, ""), ({"L": "x"}, ""),
    ({"XYZ": 1}, ""), ({"s": "lower case tag"}, ""), ({"S": "a", "N": "1"}, ""),
    ({"M": {"inner": "not typed"}}, ".inner"), ({"L": [5]}, "[0]"),
    ("plain", ""), (5, ""), ([], ""), (None, ""), (True, ""),
]
# Key values of a type a DynamoDB key cannot have (S, N and B only), or not converting.
BAD_KEYS: list[Any] = [
    {"BOOL": True}, {"NULL": True}, {"M": {}}, {"L": []}, {"SS": ["a"]}, {"NS": ["1"]},
    {"BS": ["AA=="]}, {"S": 5}, {"N": "x"}, {"B": "!!"}, {"XYZ": "?"}, {"N": "1e7000"},
]
NOT_OBJECTS: list[Any] = [[], "record", 5, None, True, 1.5, ["not", "a", "record"]]
BAD_SEQUENCES: list[Any] = [
    "", "abc", 123, 12.5, "12a", "1" * 41, "-5", "1.5", " 12", "12 ", "\u0661\u0662\u0663",
    "\u00b2", "1\u00b2", [], {}, True,
]
BAD_NAMES: list[Any] = ["INSERTED", "", "insert", "remove", 5, None, [], "MODIFIED", "DELETE"]
BAD_VIEWS: list[Any] = ["NEW", 5, "", [], "new_image"]
NOT_IMAGES: list[Any] = [[], "image", 5, True, [{"a": {"S": "x"}}]]
BAD_TIMES: list[Any] = ["yesterday", [], {}, True, 1e20, -1e20, 1e300, "1795712760"]


lambda_values = values.map(lambda_value)


@st.composite
def bad_leaf_deep(draw: st.DrawFn) -> tuple[Any, str]:
    """A bad leaf wrapped in 0-4 levels of M/L among valid siblings; (value, path below it)."""
    value, suffix = draw(st.sampled_from(BAD_LEAVES))
    steps: list[str] = [suffix]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name = draw(nested_names)
            siblings = draw(st.dictionaries(nested_names, lambda_values, max_size=2))
            siblings.pop(name, None)
            value = {"M": {**siblings, name: value}}
            steps.insert(0, step(name))
        else:
            before = draw(st.lists(lambda_values, max_size=2))
            after = draw(st.lists(lambda_values, max_size=2))
            value = {"L": [*before, value, *after]}
            steps.insert(0, f"[{len(before)}]")
    return value, "".join(steps)


KEY_NOT_TYPED: list[Any] = ["k0", {}, {"S": "k0", "N": "1"}, 5, None, []]
#: Every way to break a record, each with the choices it picks from (None: nothing to choose).
KINDS: dict[str, list[Any]] = {
    "not_an_object": NOT_OBJECTS,
    "no_dynamodb": [None],
    "dynamodb_not_object": NOT_OBJECTS,
    "no_sequence": [None],
    "bad_sequence": BAD_SEQUENCES,
    "bad_event_name": BAD_NAMES,
    "no_event_name": [None],
    "no_keys": [None],
    "keys_not_object": [{}, *NOT_OBJECTS],
    "key_not_typed": KEY_NOT_TYPED,
    "key_wrong_type": BAD_KEYS,
    "key_missing": [None],
    "bad_value": BAD_LEAVES,
    "new_image_not_object": NOT_IMAGES,
    "old_image_not_object": NOT_IMAGES,
    "no_new_image": [None],
    "bad_view": BAD_VIEWS,
    "bad_time": BAD_TIMES,
    "conflicting_id": [None],
}
# The richest kind gets more draws.
KIND_WEIGHTS = [kind for kind in KINDS for _ in range(6 if kind == "bad_value" else 1)]


def make_malformed(
    base: dict[str, Any], number: int, kind: str, choice: Any, attribute: str = "a"
) -> tuple[Any, str | None]:
    """A malformed copy of ``base`` and the field path its error must name (None: no field).

    ``bad_value``: ``choice`` is ``(typed value, path below it)``, put at ``attribute`` of the
    image the replicator reads (the new image, or a REMOVE's old image).
    """
    record = json.loads(json.dumps(base))
    record["eventID"] = f"bad-{number}"
    body = record["dynamodb"]
    if kind == "not_an_object":
        return json.loads(json.dumps(choice)), None
    if kind in ("no_dynamodb", "dynamodb_not_object"):
        record["dynamodb"] = choice
        if kind == "no_dynamodb":
            del record["dynamodb"]
        return record, "dynamodb"
    if kind in ("no_sequence", "bad_sequence"):
        body["SequenceNumber"] = choice
        if kind == "no_sequence":
            del body["SequenceNumber"]
        return record, "dynamodb.SequenceNumber"
    if kind in ("no_event_name", "bad_event_name"):
        record["eventName"] = choice
        if kind == "no_event_name":
            del record["eventName"]
        return record, "eventName"
    if kind in ("no_keys", "keys_not_object"):
        body["Keys"] = choice
        if kind == "no_keys":
            del body["Keys"]
        return record, "dynamodb.Keys"
    if kind in ("key_not_typed", "key_wrong_type"):
        body["Keys"] = {"pk": choice}
        return record, "dynamodb.Keys.pk"
    if kind == "key_missing":
        body["Keys"] = {"id": body["Keys"]["pk"]}
        return record, "dynamodb.Keys.pk"
    if kind == "bad_value":
        value, below = choice
        image_name = "OldImage" if record["eventName"] == "REMOVE" else "NewImage"
        body.setdefault(image_name, {})[attribute] = json.loads(json.dumps(value))
        return record, f"dynamodb.{image_name}{step(attribute)}{below}"
    if kind in ("new_image_not_object", "old_image_not_object"):
        image_name = "NewImage" if kind == "new_image_not_object" else "OldImage"
        body[image_name] = choice
        return record, f"dynamodb.{image_name}"
    if kind == "no_new_image" and record["eventName"] != "REMOVE":
        body.pop("NewImage", None)  # the record keeps its StreamViewType, which promises one
        return record, "dynamodb.NewImage"
    if kind == "bad_view":
        body["StreamViewType"] = choice
        return record, "dynamodb.StreamViewType"
    if kind == "bad_time":
        body["ApproximateCreationDateTime"] = choice
        return record, "dynamodb.ApproximateCreationDateTime"
    # conflicting_id (and no_new_image on a REMOVE): an "_id" attribute unlike the key's _id
    record["eventName"] = "INSERT"
    body["NewImage"] = {**body.get("NewImage", body["Keys"]), "_id": {"S": "not-the-key"}}
    return record, "dynamodb.NewImage._id"


@st.composite
def malformed(draw: st.DrawFn, base: dict[str, Any], number: int) -> tuple[Any, str | None]:
    kind = draw(st.sampled_from(KIND_WEIGHTS))
    choice = draw(bad_leaf_deep() if kind == "bad_value" else st.sampled_from(KINDS[kind]))
    attribute = draw(st.sampled_from([*ATTRIBUTE_NAMES, "pk"]))
    return make_malformed(base, number, kind, choice, attribute)


@st.composite
def mixed_batches(draw: st.DrawFn) -> tuple[ModelTable, list[Any], dict[int, str | None]]:
    """(table, batch, {index of a malformed record: the field path it must name})."""
    table = draw(tables())
    batch: list[Any] = [json.loads(json.dumps(r)) for r in table.records]
    bad: list[tuple[Any, str | None]] = []
    for number in range(draw(st.integers(1, 6))):
        base = draw(st.sampled_from(table.records)) if table.records else _any_record()
        bad.append(draw(malformed(base, number)))
    for raw, path in bad:
        batch.insert(draw(st.integers(0, len(batch))), (id(raw), raw, path))
    expected: dict[int, str | None] = {}
    for index, entry in enumerate(batch):
        if isinstance(entry, tuple):
            batch[index], expected[index] = entry[1], entry[2]
    return table, batch, expected


def _any_record() -> dict[str, Any]:
    table = ModelTable(KEY_SCHEMA)
    record = table.put({"pk": {"S": "k0"}, "a": {"S": "x"}})
    assert record is not None
    return record


def _readable_sequence(raw: Any) -> str | None:
    body = raw.get("dynamodb") if isinstance(raw, dict) else None
    sequence = body.get("SequenceNumber") if isinstance(body, dict) else None
    if isinstance(sequence, str) and sequence.isascii() and sequence.isdigit() and len(sequence) <= 40:
        return sequence
    return None


def _canonical(raw: Any) -> str:
    return json.dumps(raw, sort_keys=True)


# -- the batch property --------------------------------------------------------------------------
@pytest.mark.slow
@FUZZ
@given(mixed_batches())
def test_malformed_records_are_quarantined_and_never_stop_the_batch(
    case: tuple[ModelTable, list[Any], dict[int, str | None]],
) -> None:
    check_batch(*case)


def _exhaustive_table() -> ModelTable:
    table = ModelTable(KEY_SCHEMA)
    table.put({"pk": {"S": "k0"}, "a": {"N": "1"}})
    table.update({"pk": {"S": "k0"}}, {"b": {"SS": ["x", "y"]}}, ["a"])
    table.put({"pk": {"S": "k1"}, "c": {"B": b"\x00\xff"}})
    table.delete({"pk": {"S": "k0"}})
    return table


EXHAUSTIVE = [(kind, choice) for kind, choices in KINDS.items() for choice in choices]


@pytest.mark.parametrize(
    ("kind", "choice"), EXHAUSTIVE, ids=[f"{kind}-{i}" for i, (kind, _) in enumerate(EXHAUSTIVE)]
)
def test_every_malformation_is_quarantined(kind: str, choice: Any) -> None:
    """Every listed malformation, made from an INSERT, a MODIFY, a PUT of another key and a REMOVE,
    between the valid records (bad values nested at ``a['x y'][1]``)."""
    table = _exhaustive_table()
    if kind == "bad_value":
        leaf, below = choice
        choice = ({"M": {"x y": {"L": [{"S": "ok"}, leaf]}}}, f"['x y'][1]{below}")
    for base in table.records:
        raw, path = make_malformed(base, 0, kind, choice)
        batch: list[Any] = [json.loads(json.dumps(r)) for r in table.records]
        batch.insert(2, raw)
        check_batch(table, batch, {2: path})


def check_batch(table: ModelTable, batch: list[Any], expected: dict[int, str | None]) -> None:
    """Process ``batch``; check quarantine (``expected``: malformed index -> field path) and that
    the valid records are all applied."""
    database = mongomock_client()["db"]
    collection = database["items"]
    result = Replicator(collection, SETTINGS).process({"Records": batch})

    assert not result.failures, result.failures
    assert result.records == len(batch)

    # every malformed record is quarantined, with its raw form, the record and the field path
    quarantined = list(database["items_quarantine"].find())
    by_raw: dict[str, list[dict[str, Any]]] = {}
    for document in quarantined:
        raw = json.loads(document["raw_record"])
        by_raw.setdefault(_canonical(raw), []).append(document)
    assert set(by_raw) == {_canonical(batch[i]) for i in expected}, (
        "the quarantine holds exactly the malformed records (and no valid one)"
    )
    for index, path in expected.items():
        raw = batch[index]
        documents = by_raw[_canonical(raw)]
        assert len(documents) == 1
        document = documents[0]
        assert json.loads(document["raw_record"]) == raw
        same_raw = [i for i in expected if _canonical(batch[i]) == _canonical(raw)]
        assert document["index"] in same_raw
        error = document["error"]
        message = error["message"]
        assert f"index {document['index']}" in message, message
        sequence = _readable_sequence(raw)
        assert document["sequence_number"] == sequence
        if sequence is not None:
            assert f"SequenceNumber {sequence}" in message, message
        event_id = raw.get("eventID") if isinstance(raw, dict) else None
        if isinstance(event_id, str):
            assert f"eventID {event_id}" in message, message
        if path is not None:
            assert error["field_path"], message
            assert error["field_path"].startswith(path), (error["field_path"], path, message)
            assert error["field_path"] in message

    # every valid record is applied: the collection is the table ...
    planner = Replicator(collection, SETTINGS).planner
    diff = check(table.items(), collection, planner)
    assert diff.converged, diff.as_dict()
    # ... and exactly what the valid records alone write
    alone = mongomock_client()["db"]["items"]
    valid = [raw for index, raw in enumerate(batch) if index not in expected]
    alone_result = Replicator(alone, SETTINGS).process({"Records": valid})
    assert not alone_result.failures and not alone_result.quarantined
    assert _documents(collection) == _documents(alone)


def _documents(collection: Any) -> list[Any]:
    return sorted(repr(d) for d in read_target(collection, []))


# -- arbitrary input -----------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children,
                                                                       max_size=4),
    max_leaves=12,
)
TAG_NAMES = ["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "XYZ", ""]
# Names and texts MongoDB cannot store or the replicator reserves (issue #10): NUL in a name, lone
# surrogates (json.loads accepts "\\ud800"), the sequence field, _id.
field_names = st.one_of(
    st.text(max_size=4), st.sampled_from(["a\x00b", "\x00", "\ud800", "x\udfff", "_ddb_seq", "_id"])
)
surrogate_texts = st.sampled_from(["\ud800", "a\udc00b", "\U0001f600\ud83d"])


def _deep(depth: int, tag: str) -> Any:
    value: Any = {"S": "bottom"}
    for _ in range(depth):
        value = {"L": [value]} if tag == "L" else {"M": {"x": value}}
    return value


# Nesting near and far beyond MongoDB's 100 levels (and the interpreter's recursion limit).
deep_values = st.builds(_deep, st.sampled_from([98, 99, 100, 101, 1000, 5000]),
                        st.sampled_from(["L", "M"]))
number_texts = st.one_of(
    st.from_regex(r"[+-]?[0-9]{0,40}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,12})?", fullmatch=True),
    st.text(max_size=6),
)
# Typed-looking values: a known (or unknown) tag over anything, recursively through M and L.
typed_values = st.recursive(
    st.one_of(
        st.builds(lambda tag, v: {tag: v}, st.sampled_from(TAG_NAMES), json_values),
        number_texts.map(lambda n: {"N": n}),
        st.lists(number_texts, max_size=3).map(lambda n: {"NS": n}),
        surrogate_texts.map(lambda t: {"S": t}),
        json_values,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: {"L": items}),
        st.dictionaries(field_names, children, max_size=3).map(lambda m: {"M": m}),
    ),
    max_leaves=10,
)
images = st.one_of(
    st.dictionaries(field_names, st.one_of(typed_values, deep_values), max_size=4), json_values
)


def _mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``strategy``, sometimes any JSON value (so most records get deep into parsing)."""
    return st.integers(0, 9).flatmap(lambda roll: strategy if roll else json_values)


key_values = st.one_of(
    st.text(min_size=1, max_size=4).map(lambda v: {"S": v}),
    number_texts.map(lambda v: {"N": v}),
    st.sampled_from(["AA==", "/w==", "!!"]).map(lambda v: {"B": v}),
    typed_values,
)
near_records = st.fixed_dictionaries(
    {
        "eventName": _mostly(st.sampled_from(["INSERT", "MODIFY", "REMOVE", "UNKNOWN_TO_SDK_VERSION"])),
        "dynamodb": _mostly(st.fixed_dictionaries(
            {
                "SequenceNumber": _mostly(st.integers(0, 10**42).map(str)),
                "Keys": _mostly(st.fixed_dictionaries({"pk": _mostly(key_values)})),
            },
            optional={
                "NewImage": images,
                "OldImage": images,
                "StreamViewType": _mostly(st.sampled_from(
                    ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"])),
                "ApproximateCreationDateTime": st.one_of(
                    st.integers(),
                    st.floats(allow_nan=False),
                    st.sampled_from([1e20, -1e20, 1e300, 10**30, -(10**15), 2**63]),
                    json_values,
                ),
            },
        )),
    },
    optional={
        "eventID": _mostly(st.text(max_size=6)),
        "eventSourceARN": st.one_of(json_values, st.sampled_from([
            "arn:aws:dynamodb:r:1:table/t/stream/s", "arn:aws:dynamodb:r:1:table/u/stream/s"])),
        "userIdentity": _mostly(st.sampled_from([
            {"principalId": "dynamodb.amazonaws.com"},  # Lambda's shape
            {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},  # boto3's GetRecords
        ])),
    },
)


@pytest.mark.slow
@FUZZ
@given(st.one_of(json_values, near_records))
def test_parse_record_raises_only_record_errors(raw: Any) -> None:
    try:
        parse_record(raw, 3)
    except RecordError as error:
        assert "index 3" in str(error)


@FUZZ
@given(st.one_of(images, json_values, st.dictionaries(st.text(max_size=3), json_values)))
def test_converter_raises_only_record_errors(image: Any) -> None:
    try:
        Converter().image(image, root="dynamodb.NewImage")
    except RecordError as error:
        assert error.field_path.startswith("dynamodb.NewImage"), error.field_path


@pytest.mark.slow
@FUZZ
@given(st.lists(st.one_of(near_records, json_values), min_size=1, max_size=4))
def test_process_never_raises_on_arbitrary_records(records: list[Any]) -> None:
    collection = mongomock_client()["db"]["items"]
    # No record can make it raise: one without a new image and no item reader is quarantined.
    result = Replicator(collection, SETTINGS).process({"Records": records})
    assert result.records == len(records)
    # Nothing is retried for a cause in the record: every record is applied, stale or kept.
    # (mongomock, unlike MongoDB, cannot store a Decimal128 _id; the harness's adapter rejects
    # such a write for good, so its record is quarantined.)
    assert result.failures == [], result.failures


@FUZZ
@given(st.one_of(json_scalars, st.binary(max_size=3), st.dictionaries(
    st.sampled_from(["Records", "records"]), st.one_of(json_scalars, st.dictionaries(
        st.text(max_size=2), json_scalars)), max_size=1)))
def test_a_non_event_is_one_clear_error(event: Any) -> None:
    # Not a list of records nor an object with a "Records" list: one MalformedRecordError naming
    # the event or Records (never a str quarantined character by character, never a TypeError).
    collection = mongomock_client()["db"]["items"]
    with pytest.raises(MalformedRecordError) as raised:
        Replicator(collection, SETTINGS).process(event)
    assert raised.value.field_path in ("event", "Records")
    assert collection.database["items_quarantine"].count_documents({}) == 0


@pytest.mark.parametrize("text", ["1e7000", "-1E-7000", "1e99999999999", "9.9E+6145"])
def test_numbers_outside_every_range_are_conversion_errors(text: str) -> None:
    with pytest.raises(RecordError) as caught:
        Converter().image({"a": {"L": [{"N": text}]}}, root="dynamodb.NewImage")
    assert caught.value.field_path == "dynamodb.NewImage.a[0]"
