"""The shared failing inputs of issue #10 (../shared/cases/, copied to tests/data/cases/) at the plan
level: ``Replicator(collection, settings).plan(event)`` -> writes and bad records with their field
paths. Each case runs on the C accelerator's path and in pure Python (``accelerated`` fixture), and
every case also checks the kind, not only the one input (other depths, names, shapes).

The write path is not used here (another part of #10 rewrites it): where a final state matters, a
tiny guarded store below applies the planned ReplaceOne/DeleteOne as MongoDB would with the
stale-write guard.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.decimal128 import Decimal128

from replicator import accelerator, quarantine
from replicator.convert import Converter
from replicator.core import Replicator
from replicator.errors import (
    ConversionError,
    MalformedRecordError,
    RecordError,
    UnsupportedRecordError,
)
from replicator.events import BadRecord, parse_records
from replicator.keys import KeyMapper
from replicator.plan import Planner
from replicator.quarantine import quarantine_document
from replicator.readback import DynamoDBItemReader
from replicator.settings import Settings
from replicator.writes import WritePlan, guard_bound

CASES = Path(__file__).resolve().parents[1] / "data" / "cases"


def load(case: str, name: str = "event.json") -> Any:
    return json.loads((CASES / case / name).read_text())


class Collection:
    """A collection stand-in: planning never writes (no database: no side collections)."""

    name = "items"
    database = None


@pytest.fixture(params=["c", "python"])
def accelerated(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both ways: the C accelerator where built ("c"), and a pure-Python planner ("python")."""
    yield request.param == "c"


def replicator(settings: Settings | None = None, *, accelerated: bool = True) -> Replicator:
    replicator = Replicator(Collection(), settings or Settings())
    if not accelerated:
        settings = replicator.settings
        replicator.native = None
        converter = Converter(settings.numbers)
        replicator.planner = Planner(
            settings, converter=converter, key_mapper=KeyMapper(converter, settings.key_schema)
        )
    return replicator


def plan_of(event: Any, settings: Settings | None = None, *, accelerated: bool = True) -> WritePlan:
    return replicator(settings, accelerated=accelerated).plan(event)


def written(plan: WritePlan, collection: str = "main") -> dict[Any, Any]:
    """``_id`` -> the document (ReplaceOne) or None (DeleteOne) of each planned write."""
    out: dict[Any, Any] = {}
    for write in plan.writes:
        if write.collection != collection:
            continue
        out[repr(write.document_id)] = write.document if write.kind == "replace" else None
    return out


def bad_paths(plan: WritePlan) -> dict[str, str]:
    """eventID -> field path of each bad record."""
    return {b.raw["eventID"]: b.error.field_path for b in plan.bad_records}


def record(event_id: str, sequence: str, keys: dict[str, Any], new: dict[str, Any] | None,
           name: str = "INSERT", arn: str | None = "arn:aws:dynamodb:us-east-1:1:table/T/stream/x",
           **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": keys, "SequenceNumber": sequence,
                            "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if new is not None:
        body["NewImage"] = new
    raw: dict[str, Any] = {"eventID": event_id, "eventName": name, "dynamodb": body, **extra}
    if arn is not None:
        raw["eventSourceARN"] = arn
    return raw


def nested_list(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"L": [value]}
    return value


def nested_map(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"M": {"x": value}}
    return value


# -- deep-nesting ---------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [40, 99, 100, 101, 200, 1000, 5000])
@pytest.mark.parametrize("nest", [nested_list, nested_map])
def test_deep_nesting(accelerated: bool, depth: int, nest: Any) -> None:
    # "deep" holds `depth` levels under the document (level 1): depth 99 is a document of exactly
    # 100 levels, MongoDB's limit (SERVER-26703), so 99 is written and 100 on are quarantined.
    event = load("deep-nesting")
    event["Records"][1]["dynamodb"]["NewImage"]["deep"] = nest(depth, {"S": "bottom"})
    plan = plan_of(event, accelerated=accelerated)  # never RecursionError
    assert "'good'" in written(plan)
    if depth <= 99:
        assert "'deep'" in written(plan) and plan.bad_records == []
        return
    assert "'deep'" not in written(plan)
    (bad,) = plan.bad_records
    assert isinstance(bad.error, ConversionError) and "100 levels" in bad.error.reason
    assert bad.error.field_path.startswith("dynamodb.NewImage.deep")
    assert bad.error.sequence_number == "101"
    # the quarantine document itself can be stored (and built) at any depth
    bson.encode(quarantine_document(bad))


def test_deep_nesting_in_a_superseded_record_is_still_quarantined(accelerated: bool) -> None:
    # whether a bad record is reported must not depend on how records were batched
    deep = {"pk": {"S": "a"}, "deep": nested_list(150, {"S": "x"})}
    good = {"pk": {"S": "a"}}
    plan = plan_of([record("e1", "1", {"pk": {"S": "a"}}, deep),
                    record("e2", "2", {"pk": {"S": "a"}}, good)], accelerated=accelerated)
    assert list(bad_paths(plan)) == ["e1"] and "'a'" in written(plan)


# -- nul-field-name -------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["top", "nested map", "map in a list"])
def test_nul_field_name(accelerated: bool, where: str) -> None:
    event = load("nul-field-name")
    image = event["Records"][1]["dynamodb"]["NewImage"]
    if where != "top":
        value = image.pop("a\u0000b")
        inner = {"M": {"a\u0000b": value}}
        image["m"] = inner if where == "nested map" else {"L": [inner]}
    plan = plan_of(event, accelerated=accelerated)
    assert list(written(plan)) == ["'good'"]
    expected = {"top": "dynamodb.NewImage['a\\x00b']",
                "nested map": "dynamodb.NewImage.m['a\\x00b']",
                "map in a list": "dynamodb.NewImage.m[0]['a\\x00b']"}[where]
    assert bad_paths(plan) == {"e101": expected}
    assert "NUL" in plan.bad_records[0].error.reason
    bson.encode(quarantine_document(plan.bad_records[0]))


# -- lone-surrogate -------------------------------------------------------------------------------
def test_lone_surrogate(accelerated: bool) -> None:
    plan = plan_of(load("lone-surrogate"), accelerated=accelerated)
    assert list(written(plan)) == ["'good'"]
    paths = bad_paths(plan)
    assert paths["e101"] == "dynamodb.NewImage.s"
    assert paths["e102"] in ("dynamodb.NewImage.s", "dynamodb.NewImage.n")  # both are wrong
    for bad in plan.bad_records:  # quarantinable: id and raw text encode, the document is BSON
        document = quarantine_document(bad)
        bson.encode(document)
        assert "\\ud800" in document["raw_record"]
        assert json.loads(document["raw_record"]) == bad.raw


@pytest.mark.parametrize("where", ["name", "key", "string set", "nested"])
def test_lone_surrogate_elsewhere(accelerated: bool, where: str) -> None:
    keys, image = {"pk": {"S": "bad"}}, {"pk": {"S": "bad"}}
    if where == "name":
        image["x\udc00"] = {"S": "v"}
    elif where == "key":
        keys = image = {"pk": {"S": "b\ud800"}}
    elif where == "string set":
        image["ss"] = {"SS": ["a", "\ud800"]}
    else:
        image["m"] = {"M": {"l": {"L": [{"S": "\udfff"}]}}}
    plan = plan_of([record("e1", "1", keys, image),
                    record("e2", "2", {"pk": {"S": "ok"}}, {"pk": {"S": "ok"}})],
                   accelerated=accelerated)
    assert list(written(plan)) == ["'ok'"]
    (bad,) = plan.bad_records
    assert "surrogate" in bad.error.reason
    bson.encode(quarantine_document(bad))


def test_quarantine_id_and_raw_text_never_raise() -> None:
    # quarantine._quarantine_id hashed json.dumps(...).encode(): UnicodeEncodeError on a surrogate
    for raw in ({"s": "\ud800"}, {"\udfff": 1}, "abc\ud800", nested_list(5000, 1), [b"\x00", 1.5]):
        bad = BadRecord(index=0, raw=raw, error=MalformedRecordError("x"))
        document = quarantine_document(bad)
        bson.encode(document)
        text = document["raw_record"]
        if text.startswith('{"L": [{"L"'):  # deeper than json.loads itself can read back
            assert text.count('{"L": [') == 5000 and text.endswith("]}")
        else:
            assert json.loads(text) == json.loads(json.dumps(raw, default=repr).replace(
                "b'\\x00'", "x")) or isinstance(raw, list)
    # stable: a redelivery gets the same id; distinct raw records get distinct ids
    a, b = ({"s": "\ud800"}, {"s": "\ud801"})
    ids = {quarantine._quarantine_id(BadRecord(0, raw, MalformedRecordError("x"))) for raw in (a, a, b)}
    assert len(ids) == 2


# -- config-error-poison-pill ---------------------------------------------------------------------
def test_config_error_poison_pill(accelerated: bool, caplog: pytest.LogCaptureFixture) -> None:
    replicate = replicator(accelerated=accelerated)
    with caplog.at_level(logging.WARNING, logger="replicator"):
        plan = replicate.plan(load("config-error-poison-pill"))  # never raises
        again = replicate.plan(load("config-error-poison-pill"))
    assert list(written(plan)) == ["'good'"]
    assert bad_paths(plan) == {"e101": "dynamodb.Keys", "e102": "dynamodb.NewImage",
                               "e103": "dynamodb.NewImage"}
    assert all(isinstance(b.error, UnsupportedRecordError) for b in plan.bad_records)
    messages = {b.raw["eventID"]: str(b.error) for b in plan.bad_records}
    assert "key_schema" in messages["e101"] and "REPLICATOR_KEY_SCHEMA" in messages["e101"]
    assert "image-less stream" in messages["e102"] and "item reader" in messages["e102"]
    assert "KEYS_ONLY stream" in messages["e103"] and "NEW_AND_OLD_IMAGES" in messages["e103"]
    assert bad_paths(again) == bad_paths(plan)
    # the configuration problem is logged once per kind and Replicator, not per record or batch
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("configuration")]
    assert len(logged) == 2, logged


def test_config_error_poison_pill_with_the_configuration_fixed(accelerated: bool) -> None:
    class Reader:
        def read(self, keys: Any) -> list[Any]:
            return [{**k, "read": {"BOOL": True}} for k in keys]

    replicate = Replicator(Collection(), Settings(key_schema=("pk",)), item_reader=Reader())
    plan = replicate.plan(load("config-error-poison-pill"))
    # e101's Keys name "junk", which its NewImage lacks: inconsistent, whatever the settings
    assert bad_paths(plan) == {"e101": "dynamodb.NewImage.junk"}
    assert sorted(written(plan)) == ["'good'", "'y'", "'z'"]
    assert written(plan)["'z'"]["read"] is True  # read back


# -- ttl-identity-boto3-shape ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["event.json", "getrecords_response_body.json"])
@pytest.mark.parametrize("mode", ["ignore", "archive", "delete"])
def test_ttl_identity_boto3_shape(accelerated: bool, shape: str, mode: str) -> None:
    records = load("ttl-identity-boto3-shape", shape)["Records"]
    changes, bad = parse_records(records, native=accelerator.native if accelerated else None)
    assert bad == [] and [c.is_ttl_delete for c in changes] == [False, True]
    plan = plan_of(records, Settings(ttl_deletes=mode), accelerated=accelerated)  # type: ignore[arg-type]
    main, archive = written(plan), written(plan, "archive")
    if mode == "ignore":  # the document stays: its INSERT is written, the expiry is not
        assert main["'sess-1'"]["cart"] == ["x", "y"] and archive == {}
    else:
        assert main == {"'sess-1'": None}  # deleted
        if mode == "archive":
            assert archive["'sess-1'"]["expires"] == 1700000100
        else:
            assert archive == {}


# -- float-mode-key-collision / float-mode-infinity -----------------------------------------------
def test_float_mode_key_collision(accelerated: bool) -> None:
    plan = plan_of(load("float-mode-key-collision"), Settings(numbers="float"),
                   accelerated=accelerated)
    documents = written(plan)
    assert len(documents) == 4 and plan.bad_records == []  # four items, four _ids
    ids = [w.filter["_id"] for w in plan.writes]
    assert Decimal128("0.3") in ids and Decimal128("0.29999999999999999") in ids
    assert 1234567890123456780 in ids and 1234567890123456781 in ids
    # values stay floats as documented (the key attribute in the document too: it is a value)
    assert all(type(d["acct"]) is float or type(d["acct"]) is int for d in documents.values())


def test_float_mode_composite_keys_stay_exact(accelerated: bool) -> None:
    def insert(event_id: str, sequence: str, sk: str) -> dict[str, Any]:
        keys = {"pk": {"S": "a"}, "sk": {"N": sk}}
        return record(event_id, sequence, keys, dict(keys))

    plan = plan_of([insert("e1", "1", "0.3"), insert("e2", "2", "0.29999999999999999")],
                   Settings(numbers="float", key_schema=("pk", "sk")), accelerated=accelerated)
    assert len(plan.writes) == 2 and plan.bad_records == []


@pytest.mark.parametrize(("text", "stored"), [
    ("1e400", None), ("-1e400", None), ("1e-400", None), ("-1E-400", None),
    ("1e300", 1e300), ("0e-400", 0.0), ("0.000", 0), ("1.5", 1.5),
])
def test_float_mode_infinity(accelerated: bool, text: str, stored: float | None) -> None:
    event = load("float-mode-infinity")
    event["Records"][0]["dynamodb"]["NewImage"] = {"pk": {"S": "a"}, "n": {"N": text}}
    plan = plan_of(event, Settings(numbers="float"), accelerated=accelerated)
    if stored is None:
        assert bad_paths(plan) == {"e100": "dynamodb.NewImage.n"}
        assert "numbers='lossless'" in plan.bad_records[0].error.reason
    else:
        assert written(plan)["'a'"]["n"] == stored


def test_float_mode_infinity_case(accelerated: bool) -> None:
    plan = plan_of(load("float-mode-infinity"), Settings(numbers="float"), accelerated=accelerated)
    assert written(plan) == {}
    assert bad_paths(plan)["e100"] in ("dynamodb.NewImage.big", "dynamodb.NewImage.tiny")
    lossless = plan_of(load("float-mode-infinity"), accelerated=accelerated)
    assert written(lossless)["'a'"]["big"] == Decimal128("1E+400")


# -- reserved-field-collision ---------------------------------------------------------------------
def test_reserved_field_collision(accelerated: bool) -> None:
    plan = plan_of(load("reserved-field-collision"), accelerated=accelerated)
    assert written(plan) == {}
    assert bad_paths(plan) == {"e1600000000000000000001": "dynamodb.NewImage._ddb_seq",
                               "e1600000000000000000002": "dynamodb.NewImage._id"}
    assert "sequence_field" in plan.bad_records[0].error.reason


def test_reserved_field_follows_the_setting_and_the_guard(accelerated: bool) -> None:
    event = load("reserved-field-collision")
    del event["Records"][1]
    renamed = plan_of(event, Settings(sequence_field="_written_by"), accelerated=accelerated)
    (document,) = written(renamed).values()
    assert document["_ddb_seq"] == 42 and document["_written_by"].endswith("1")
    unguarded = plan_of(event, Settings(guard=False), accelerated=accelerated)
    assert next(iter(written(unguarded).values()))["_ddb_seq"] == 42  # nothing overwrites it
    clash = copy.deepcopy(event)
    clash["Records"][0]["dynamodb"]["NewImage"]["_written_by"] = {"S": "etl"}
    assert bad_paths(plan_of(clash, Settings(sequence_field="_written_by"),
                             accelerated=accelerated)) == {
        "e1600000000000000000001": "dynamodb.NewImage._written_by"}


# -- keys-disagree-with-image ---------------------------------------------------------------------
def test_keys_disagree_with_image(accelerated: bool) -> None:
    plan = plan_of(load("keys-disagree-with-image"), accelerated=accelerated)
    assert written(plan) == {}
    assert bad_paths(plan) == {"e100": "dynamodb.NewImage.pk", "e101": "dynamodb.NewImage.pk"}
    assert all(isinstance(b.error, MalformedRecordError) for b in plan.bad_records)


@pytest.mark.parametrize(("key", "image", "agrees"), [
    ({"B": "YWI="}, {"B": "YWI="}, True),
    ({"N": "1"}, {"N": "1.0"}, True),  # the same number: the same _id
    ({"N": "1"}, {"N": "2"}, False),
    ({"S": "1"}, {"N": "1"}, False),
    ({"B": "YWI="}, {"S": "YWI="}, False),
    ({"S": "a"}, None, False),  # the image lacks the key attribute
])
def test_keys_and_image_compared_as_the_id_would_be(
    accelerated: bool, key: Any, image: Any, agrees: bool
) -> None:
    new = {"v": {"S": "x"}} if image is None else {"pk": image}
    plan = plan_of([record("e1", "1", {"pk": key}, new)], accelerated=accelerated)
    assert (plan.bad_records == []) is agrees
    if not agrees:
        assert bad_paths(plan) == {"e1": "dynamodb.NewImage.pk"}


def test_composite_keys_disagreeing_with_image(accelerated: bool) -> None:
    keys = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    plan = plan_of([record("e1", "1", keys, {"pk": {"S": "a"}, "sk": {"N": "2"}}),
                    record("e2", "2", keys, dict(keys))],
                   Settings(key_schema=("pk", "sk")), accelerated=accelerated)
    assert bad_paths(plan) == {"e1": "dynamodb.NewImage.sk"} and len(plan.writes) == 1


# -- event-shape ----------------------------------------------------------------------------------
@pytest.mark.parametrize("event", ["abc", b"ab", None, 5, {"Records": None}, {"Records": "abc"},
                                   {"records": []}])
def test_event_shape(accelerated: bool, event: Any) -> None:
    replicate = replicator(accelerated=accelerated)
    with pytest.raises(MalformedRecordError) as raised:
        replicate.plan(event)
    assert raised.value.field_path in ("event", "Records")
    with pytest.raises(MalformedRecordError):
        replicate.process(event)  # one clear error, before anything is written


def test_event_shape_case() -> None:
    with pytest.raises(MalformedRecordError, match="got str") as raised:
        replicator().plan(load("event-shape"))
    assert raised.value.field_path == "event"


def test_a_list_of_records_is_still_an_event(accelerated: bool) -> None:
    records = load("keys-disagree-with-image")["Records"]
    assert plan_of(records, accelerated=accelerated).bad_records  # GetRecords' Records list
    assert plan_of(tuple(records), accelerated=accelerated).bad_records


# -- records of another table ---------------------------------------------------------------------
ARN_T = "arn:aws:dynamodb:us-east-1:1:table/T/stream/2024-01-01T00:00:00.000"
ARN_T2 = "arn:aws:dynamodb:us-east-1:1:table/T/stream/2025-01-01T00:00:00.000"  # a new stream
ARN_U = "arn:aws:dynamodb:us-east-1:1:table/U/stream/2024-01-01T00:00:00.000"


def test_records_of_another_table_are_refused_never_merged(accelerated: bool) -> None:
    item = {"pk": {"S": "a"}}
    replicate = replicator(accelerated=accelerated)
    first = replicate.plan([record("t1", "1", item, item, arn=ARN_T),
                            record("u1", "2", item, {**item, "v": {"S": "U"}}, arn=ARN_U),
                            record("n1", "3", {"pk": {"S": "b"}}, {"pk": {"S": "b"}}, arn=None)])
    assert bad_paths(first) == {"u1": "eventSourceARN"}
    assert "table/U" in str(first.bad_records[0].error)
    assert sorted(written(first)) == ["'a'", "'b'"] and "v" not in written(first)["'a'"]
    # later batches: the pin holds, whichever table comes first in them
    later = replicate.plan([record("u2", "4", item, item, arn=ARN_U),
                            record("t2", "5", item, item, arn=ARN_T2)])
    assert bad_paths(later) == {"u2": "eventSourceARN"}
    assert [w.sequence_numbers for w in later.writes] == [("5",)]
    # the common batch of the pinned stream stays on the C planner's path
    if accelerated and replicate.planner._native_plan is not None:
        assert replicate.planner.plan_records([record("t3", "6", item, item, arn=ARN_T2)],
                                              replicate.source.stream_arn) is not None


@pytest.mark.parametrize("source", ["U", "arn:aws:dynamodb:us-east-1:1:table/U", ARN_U])
def test_source_table_setting(accelerated: bool, source: str) -> None:
    item = {"pk": {"S": "a"}}
    plan = plan_of([record("t1", "1", item, item, arn=ARN_T),
                    record("u1", "2", item, item, arn=ARN_U)],
                   Settings(source_table=source), accelerated=accelerated)
    assert bad_paths(plan) == {"t1": "eventSourceARN"}
    assert [w.sequence_numbers for w in plan.writes] == [("2",)]


# -- the same sequence number with different content ----------------------------------------------
class GuardedStore:
    """Applies planned ReplaceOne/DeleteOne as MongoDB does with the stale-write guard: the filter
    matches when ``_id`` is equal and the stored sequence is lower or absent; otherwise the upsert
    would hit the stored ``_id`` (E11000): stale, nothing changes."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    def apply(self, plan: WritePlan, field: str = "_ddb_seq") -> None:
        for write in plan.writes:
            key = repr(write.document_id)
            stored = self.documents.get(key)
            sequence = guard_bound(write.filter, field)
            if stored is not None and field in stored and not stored[field] < sequence:
                continue  # stale
            if write.kind == "delete":
                self.documents.pop(key, None)
            else:
                assert isinstance(write.document, dict)
                self.documents[key] = write.document


@pytest.mark.parametrize("sequences", [("7", "7"), ("10", "010"), ("0002", "2")])
def test_equal_sequence_numbers_give_the_same_result_however_batched(
    accelerated: bool, sequences: tuple[str, str]
) -> None:
    keys = {"pk": {"S": "a"}}
    pair = [record("first", sequences[0], keys, {**keys, "v": {"S": "first"}}),
            record("second", sequences[1], keys, {**keys, "v": {"S": "second"}})]
    together, apart = GuardedStore(), GuardedStore()
    replicate = replicator(accelerated=accelerated)
    together.apply(replicate.plan(pair))
    for one in pair:
        apart.apply(replicate.plan([one]))
    assert together.documents == apart.documents
    assert together.documents["'a'"]["v"] == "first"  # the first applied wins, as the guard does


# -- read-back of a binary key --------------------------------------------------------------------
def test_read_back_sends_binary_keys_as_bytes() -> None:
    class Client:
        """boto3's low-level client: B values are bytes both ways (botocore base64s them)."""

        def __init__(self) -> None:
            self.asked: list[Any] = []

        def batch_get_item(self, RequestItems: Any) -> Any:
            keys = RequestItems["T"]["Keys"]
            self.asked.extend(keys)
            items = [{"pk": k["pk"], "v": {"S": "found"}} for k in keys
                     if isinstance(k["pk"].get("B"), bytes)]
            return {"Responses": {"T": items}}

    client = Client()
    reader = DynamoDBItemReader(client, "T")
    found = reader.read([{"pk": {"B": "AAEC"}}, {"pk": {"S": "s"}}, {"pk": {"B": b"\x00\x01\x02"}}])
    assert client.asked[0] == {"pk": {"B": b"\x00\x01\x02"}}
    assert all(not isinstance(k["pk"].get("B"), str) for k in client.asked)
    assert found[0] is not None and found[0]["v"] == {"S": "found"}
    assert found[1] is None and found[2] is not None


def test_errors_of_this_part_are_record_errors() -> None:
    for error in (UnsupportedRecordError("x", problem="p"), ConversionError("x")):
        assert isinstance(error, RecordError)


@pytest.mark.parametrize("depth", [50, 5000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_a_deep_key_is_refused_without_recursing(accelerated: bool, depth: int) -> None:
    # Keys and NewImage holding the same deeply nested "key": no RecursionError comparing them
    key = nested_list(depth, {"S": "x"})
    plan = plan_of([record("e1", "1", {"pk": key}, {"pk": key}),
                    record("e2", "2", {"pk": {"S": "ok"}}, {"pk": {"S": "ok"}})],
                   accelerated=accelerated)
    assert bad_paths(plan) == {"e1": "dynamodb.Keys.pk"} and list(written(plan)) == ["'ok'"]
    bson.encode(quarantine_document(plan.bad_records[0]))


@pytest.mark.parametrize("name", ["a\x00", "\ud800"])
def test_a_key_name_mongodb_cannot_store(accelerated: bool, name: str) -> None:
    # a REMOVE without OldImage under ttl_deletes="archive" is refused before its key names are
    # stored anywhere (archiving the keys alone would lose the item): nothing written, kept whole
    ttl = record("e1", "1", {name: {"S": "x"}}, None, name="REMOVE",
                 userIdentity={"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"})
    plan = plan_of([ttl], Settings(ttl_deletes="archive"), accelerated=accelerated)
    assert written(plan, "archive") == {} and written(plan) == {}
    (bad,) = plan.bad_records
    assert bad.error.field_path == "dynamodb.OldImage"
