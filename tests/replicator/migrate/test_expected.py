"""Issue #18 kinds 4 and 5, issue #19 item 5: one expected document, one comparison by BSON value,
on the wire target (mongoeco's server through the real pymongo client, which decodes int64 as
``Int64``) with moto as the source.

The shared failing inputs (tests/data/cases/: recover-with-id-mapping, verify-foreign-document,
verify-int64-numbers, id-mapping-raises) are tests here, and so are other inputs of the same kinds:
a 36-digit numeric sort key in a composite key, a binary key, a transform that renames fields (the
key attribute too), ``Int64`` inside nested maps, lists and number sets.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from harness.backends.base import Table, TableSpec
from harness.convergence import check
from harness.migration import TrimmedStreams
from replicator import accelerator
from replicator.core import Replicator
from replicator.diff import differences, document_differences, id_key
from replicator.errors import ResyncRequired
from replicator.expected import ExpectedDocuments, planner_for
from replicator.migrate.gap import recover
from replicator.migrate.verify import Verifier
from replicator.poller import Poller
from replicator.poller.streams import StreamReader
from replicator.settings import Settings

CASES = Path(__file__).resolve().parents[2] / "data" / "cases"
BIG = "123456789012345678901234567890123456"  # 36 significant digits: stored as exact text


# -- user code the settings name (loaded by dotted path, as the Replicator loads it) ----------------
def rename(document: dict[str, Any]) -> dict[str, Any]:
    """A transform that renames fields, the key attribute among them."""
    document["order_id"] = document.pop("pk")
    if "v" in document:
        document["version"] = document.pop("v")
    return document


def refuse_poison(document: dict[str, Any]) -> dict[str, Any]:
    """A transform that raises on one item (its records are quarantined)."""
    if document.get("poison"):
        raise ValueError("poisoned item")
    return document


def here(name: str) -> str:
    return f"{__name__}:{name}"


@pytest.fixture
def case_module(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``case_module(case)``: the case folder's ``idmap.py`` importable as ``idmap``."""

    def use(case: str) -> None:
        monkeypatch.syspath_prepend(str(CASES / case))
        monkeypatch.delitem(sys.modules, "idmap", raising=False)

    return use


# -- scenario helpers --------------------------------------------------------------------------------
class Scenario:
    """A table replicated into a wire-target collection by the poller, with ``settings``."""

    def __init__(self, moto: Any, wire_target: Any, spec: TableSpec, settings: Settings,
                 items: list[dict[str, Any]]) -> None:
        self.moto = moto
        self.table: Table = moto.create_table(spec)
        self.client = moto.dynamodb()
        self.settings = settings
        self.collection = wire_target.collection("expected", spec.name.replace("-", "_"))
        self.collection.drop()
        for item in items:
            self.client.put_item(TableName=spec.name, Item=item)
        self.streams: Any = moto.streams()

    def poller(self) -> Poller:
        spec = self.table.spec
        return Poller(self.streams, self.client, spec.name, self.collection, self.settings,
                      stream_arn=self.table.stream_arn, key_schema=spec.key_schema,
                      poll_interval=0.01, log_interval=3600, batch_size=500)

    def replicate(self) -> None:
        self.poller().run(once=True)

    def gap(self, *writes: Callable[[Any], Any]) -> Poller:
        """``writes`` during a gap whose records expire (TrimmedStreams); the poller then
        refuses (ResyncRequired), and a fresh one is returned for ``recover``."""
        for write in writes:
            write(self.client)
        records = StreamReader(self.moto.streams(), self.table.stream_arn,
                               sleep=lambda _: None).drain(idle_polls=1)
        trim_at = max((r["dynamodb"]["SequenceNumber"] for rs in records.values() for r in rs),
                      key=int)
        self.streams = TrimmedStreams(self.moto.streams(), trim_at)
        with pytest.raises(ResyncRequired):
            self.poller().run(once=True)
        return self.poller()

    def verify(self, poller: Poller | None = None, segments: int = 2) -> Any:
        follower = poller or self.poller()
        return Verifier(self.client, self.table.spec.name, self.collection, self.settings,
                        segments=segments, page_size=10,
                        wait_for_replication=lambda: follower.run(once=True)).run()

    def converged(self) -> Any:
        items = self.client.scan(TableName=self.table.spec.name, ConsistentRead=True)["Items"]
        return check(items, self.collection, planner_for(self.settings))

    def ids(self) -> set[Any]:
        return {id_key(d["_id"]) for d in self.collection.find({}, {"_id": 1})}


def put(table: str, item: dict[str, Any]) -> Callable[[Any], Any]:
    return lambda client: client.put_item(TableName=table, Item=item)


def delete(table: str, key: dict[str, Any]) -> Callable[[Any], Any]:
    return lambda client: client.delete_item(TableName=table, Key=key)


# -- kind 4: recover with an id_mapping (shared case recover-with-id-mapping) ------------------------
@pytest.mark.slow
def test_recover_with_an_id_mapping_deletes_the_gone_item_and_a_rerun_completes(
    moto: Any, wire_target: Any, case_module: Callable[[str], None]
) -> None:
    case_module("recover-with-id-mapping")
    settings = Settings(key_schema=("pk",), id_mapping="idmap:order_id")
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in "abcd"]
    scenario = Scenario(moto, wire_target, TableSpec("idmap-gap", ("pk", "S")), settings, items)
    scenario.replicate()
    assert scenario.ids() == {id_key(f"order#{k}") for k in "abcd"}
    poller = scenario.gap(delete("idmap-gap", {"pk": {"S": "c"}}),
                          put("idmap-gap", {"pk": {"S": "b"}, "v": {"N": "2"}}))
    report = recover(poller, segments=2, page_size=2)
    assert report.documents_deleted == 1
    assert report.copy is not None and report.copy.items_written == 1  # b only: a, d are equal
    assert scenario.ids() == {id_key(f"order#{k}") for k in "abd"}
    assert scenario.collection.find_one({"_id": "order#b"})["v"] == 2
    state = scenario.collection.database["idmap_gap_sync"].find_one({"_id": "idmap-gap#recovery"})
    assert state is not None and state["done"] is True
    # run again: it completes again and changes nothing
    again = recover(scenario.poller(), segments=2, page_size=2)
    assert again.documents_deleted == 0 and again.copy is not None
    assert again.copy.items_written == 0
    assert scenario.converged().converged
    verified = scenario.verify()
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()


# -- kind 4: every key kind maps back to its item ------------------------------------------------------
def test_recover_keeps_the_documents_of_existing_36_digit_composite_keys(
    moto: Any, wire_target: Any
) -> None:
    """A 35-38-digit number is stored as its exact text: recover used to read it back as a
    string key, find no item, and delete the document of an existing item."""
    settings = Settings(key_schema=("pk", "sk"))
    spec = TableSpec("big-sk", ("pk", "S"), ("sk", "N"))
    items = [{"pk": {"S": "p"}, "sk": {"N": BIG[:-1] + d}, "v": {"N": d}} for d in "1234"]
    scenario = Scenario(moto, wire_target, spec, settings, items)
    scenario.replicate()
    stored = scenario.collection.find_one({"_id": {"pk": "p", "sk": BIG[:-1] + "1"}})
    assert stored is not None and stored["sk"] == BIG[:-1] + "1"  # text, not a number
    poller = scenario.gap(delete("big-sk", {"pk": {"S": "p"}, "sk": {"N": BIG[:-1] + "4"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert scenario.ids() == {id_key({"pk": "p", "sk": BIG[:-1] + d}) for d in "123"}
    assert scenario.converged().converged
    # a planted document of a 36-digit key with no item is extra; a tampered one is changed
    scenario.collection.insert_one({"_id": {"pk": "p", "sk": BIG[:-1] + "9"}, "pk": "p",
                                    "sk": BIG[:-1] + "9", "_ddb_seq": "0" * 40})
    scenario.collection.update_one({"_id": {"pk": "p", "sk": BIG[:-1] + "2"}}, {"$set": {"v": 7}})
    verified = scenario.verify(poller)
    assert verified.counts() == {"missing": 0, "extra": 1, "changed": 1}, verified.as_dict()
    assert verified.foreign == []


def test_binary_keys_verify_clean_and_recover_deletes_only_the_gone_item(
    moto: Any, wire_target: Any
) -> None:
    # The binary attribute is the sort key: moto's Parallel Scan of a binary partition key fails
    # (it hashes the key as text: AttributeError in moto 5's is_within_segment); a binary
    # partition key maps back in test_every_key_kind_maps_back_to_its_item.
    settings = Settings(key_schema=("pk", "sk"))
    keys = [b"\x00\x01", b"\xff", b"abc"]
    items = [{"pk": {"S": "p"}, "sk": {"B": k}, "v": {"N": str(n)}} for n, k in enumerate(keys)]
    spec = TableSpec("bin-key", ("pk", "S"), ("sk", "B"))
    scenario = Scenario(moto, wire_target, spec, settings, items)
    scenario.replicate()
    assert scenario.verify().ok
    poller = scenario.gap(delete("bin-key", {"pk": {"S": "p"}, "sk": {"B": b"\xff"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert scenario.ids() == {id_key({"pk": "p", "sk": Binary(k)}) for k in (b"\x00\x01", b"abc")}
    verified = scenario.verify(poller)
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()


def test_a_transform_that_renames_fields_verifies_clean_and_recovers(
    moto: Any, wire_target: Any
) -> None:
    """verify and recover expect what the Replicator writes: with its transforms (here the key
    attribute is renamed too, so the way back goes through ``_id``)."""
    settings = Settings(key_schema=("pk",), transforms=(here("rename"),))
    items = [{"pk": {"S": f"o{n}"}, "v": {"N": str(n)}} for n in range(5)]
    scenario = Scenario(moto, wire_target, TableSpec("renamed", ("pk", "S")), settings, items)
    scenario.replicate()
    stored = scenario.collection.find_one({"_id": "o1"})
    assert set(stored) == {"_id", "order_id", "version", "_ddb_seq"}
    assert stored["order_id"] == "o1" and stored["version"] == 1
    verified = scenario.verify()
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()
    poller = scenario.gap(delete("renamed", {"pk": {"S": "o2"}}),
                          put("renamed", {"pk": {"S": "o3"}, "v": {"N": "30"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert report.copy is not None and report.copy.items_written == 1
    assert scenario.collection.find_one({"_id": "o3"})["version"] == 30
    assert scenario.converged().converged
    assert scenario.verify(poller).ok


def test_verify_names_an_item_the_replicator_quarantines_instead_of_crashing(
    moto: Any, wire_target: Any
) -> None:
    settings = Settings(key_schema=("pk",), transforms=(here("refuse_poison"),))
    items = [{"pk": {"S": "a"}}, {"pk": {"S": "p"}, "poison": {"BOOL": True}}]
    scenario = Scenario(moto, wire_target, TableSpec("poison", ("pk", "S")), settings, items)
    scenario.replicate()
    assert scenario.ids() == {id_key("a")}  # p's record is in the quarantine
    report = scenario.verify()
    assert report.counts() == {"missing": 1, "extra": 0, "changed": 0}
    [divergence] = json.loads(report.to_json())["divergent"]
    assert divergence["_id"] == "p"
    assert "poisoned item" in divergence["fields"][0]["table"]


# -- kind 4: a document the replicator did not write (shared case verify-foreign-document) -----------
def test_verify_reports_a_foreign_document_and_still_the_real_divergence(
    moto: Any, wire_target: Any
) -> None:
    settings = Settings(key_schema=("pk",))
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in "abc"]
    scenario = Scenario(moto, wire_target, TableSpec("foreign", ("pk", "S")), settings, items)
    scenario.replicate()
    application_id = scenario.collection.insert_one({"note": "the application's own"}).inserted_id
    assert isinstance(application_id, ObjectId)
    scenario.collection.update_one({"_id": "b"}, {"$set": {"v": 99}})
    report = scenario.verify()
    assert report.counts() == {"missing": 0, "extra": 0, "changed": 1}
    assert [d.document_id for d in report.divergences] == ["b"]
    assert [(f.path, f.expected, f.actual) for f in report.divergences[0].fields] == [("v", 1, 99)]
    assert report.foreign == [application_id]
    data = json.loads(report.to_json())  # the report renders (Extended JSON for the ObjectId)
    assert data["foreign"] == [{"$oid": str(application_id)}]
    # recover never touches it (it has no sequence number from before the gap)
    recover(scenario.poller(), segments=1, page_size=10)
    assert scenario.collection.find_one({"_id": application_id}) is not None
    assert scenario.collection.find_one({"_id": "b"})["v"] == 1  # repaired


# -- kind 5: compare by BSON value (shared case verify-int64-numbers) ------------------------------------
def test_verify_of_numbers_beyond_int32_on_the_wire_target_is_clean(
    moto: Any, wire_target: Any
) -> None:
    items = json.loads((CASES / "verify-int64-numbers" / "items.json").read_text())
    items.append({"pk": {"S": "nested"},
                  "m": {"M": {"ms": {"N": "1733568000123"}, "l": {"L": [{"N": "4294967296"},
                                                                         {"N": "1"}]}}},
                  "ns": {"NS": ["9007199254740993", "1", "-2147483649"]},
                  "d": {"N": "19.99"}, "b": {"BOOL": True}})
    settings = Settings(key_schema=("pk",))
    scenario = Scenario(moto, wire_target, TableSpec("int64", ("pk", "S")), settings, items)
    scenario.replicate()
    stored = scenario.collection.find_one({"_id": "a"})
    assert type(stored["created_ms"]) is Int64  # pymongo's decoding: what verify must accept
    nested = scenario.collection.find_one({"_id": "nested"})
    assert type(nested["m"]["l"][0]) is Int64
    report = scenario.verify()
    assert report.ok and report.first_pass_differences == 0, report.as_dict()
    # still strict where the stored value differs
    scenario.collection.update_one({"_id": "nested"}, {"$set": {"d": 19.99, "b": 1}})
    report = scenario.verify()
    assert report.counts()["changed"] == 1
    assert sorted(f.path for f in report.divergences[0].fields) == ["b", "d"]


# -- issue #19 item 5: an id_mapping that raises (shared case id-mapping-raises) --------------------------
def test_an_id_mapping_that_raises_quarantines_its_record_and_the_batch_goes_on(
    wire_target: Any, case_module: Callable[[str], None]
) -> None:
    case_module("id-mapping-raises")
    event = json.loads((CASES / "id-mapping-raises" / "event.json").read_text())
    settings = Settings(id_mapping="idmap:numeric_id")
    # The C accelerator never plans with an id_mapping: the pure path below is the only one.
    assert "id_mapping" in accelerator.declined_by(settings)
    collection = wire_target.collection("expected", "idmap_raises")
    collection.drop()
    collection.database["idmap_raises_quarantine"].drop()
    replicator = Replicator(collection, settings)
    assert replicator.handle(event) == {"batchItemFailures": []}
    assert {d["_id"] for d in collection.find({})} == {17, 18}
    kept = list(collection.database["idmap_raises_quarantine"].find({}))
    assert len(kept) == 1
    text = json.dumps(kept[0], default=str)
    assert "legacy-7" in text and "ValueError" in text and "id_mapping" in text


def test_an_id_mapping_that_raises_is_one_bad_record_in_the_plan() -> None:
    from replicator.convert import Converter
    from replicator.events import parse_records
    from replicator.keys import KeyMapper
    from replicator.plan import Planner

    def mapping(key: dict[str, Any]) -> Any:
        if key["pk"] == "bad":
            raise KeyError("no such order")
        return "x" + key["pk"]

    converter = Converter()
    planner = Planner(Settings(), converter=converter,
                      key_mapper=KeyMapper(converter, None, mapping))
    records = [{"eventID": f"e{n}", "eventName": "INSERT",
                "dynamodb": {"Keys": {"pk": {"S": k}}, "NewImage": {"pk": {"S": k}},
                             "SequenceNumber": str(100 + n)}}
               for n, k in enumerate(["a", "bad", "c"])]
    plan = planner.plan(*parse_records(records))
    assert sorted(w.document_id for w in plan.writes) == ["xa", "xc"]
    [bad] = plan.bad_records
    assert bad.index == 1 and bad.error.field_path == "dynamodb.Keys"
    assert "KeyError" in str(bad.error) and "SequenceNumber 101" in str(bad.error)


# -- the way back, without I/O ---------------------------------------------------------------------------
def _documents(settings: Settings, item: dict[str, Any]) -> tuple[ExpectedDocuments, Any]:
    expected = ExpectedDocuments(settings, key_types={"pk": _tag(item["pk"]),
                                                      **({"sk": _tag(item["sk"])}
                                                         if "sk" in item else {})})
    return expected, expected.document(item)


def _tag(attribute: dict[str, Any]) -> str:
    return next(iter(attribute))


@pytest.mark.parametrize(
    ("settings", "item"),
    [
        (Settings(key_schema=("pk",)), {"pk": {"S": "a"}}),
        (Settings(key_schema=("pk",)), {"pk": {"N": "5"}}),
        (Settings(key_schema=("pk",)), {"pk": {"N": "1.5"}}),
        (Settings(key_schema=("pk",)), {"pk": {"N": BIG}}),
        (Settings(key_schema=("pk",)), {"pk": {"S": BIG}}),
        (Settings(key_schema=("pk",)), {"pk": {"B": b"\x00\xff"}}),
        (Settings(key_schema=("pk", "sk")), {"pk": {"S": "p"}, "sk": {"N": "-" + BIG}}),
        (Settings(key_schema=("pk", "sk")), {"pk": {"B": b"k"}, "sk": {"S": "s"}}),
        (Settings(key_schema=("pk",), numbers="float"), {"pk": {"N": "0.1"}}),
        (Settings(key_schema=("pk",), transforms=(here("rename"),)), {"pk": {"N": BIG}}),
    ],
)
def test_every_key_kind_maps_back_to_its_item(settings: Settings, item: dict[str, Any]) -> None:
    expected, document = _documents(settings, {**item, "v": {"N": "1"}})
    assert expected.key_of(document) == item
    # as pymongo hands it back: Int64 for int64, Binary for bytes under subtype 0 stays bytes
    import bson

    assert expected.key_of(bson.decode(bson.encode(document))) == item


def test_an_id_mapping_maps_back_through_the_key_attributes(
    case_module: Callable[[str], None]
) -> None:
    case_module("recover-with-id-mapping")
    expected = ExpectedDocuments(Settings(key_schema=("pk",), id_mapping="idmap:order_id"))
    document = expected.document({"pk": {"S": "c"}, "v": {"N": "1"}})
    assert document["_id"] == "order#c"
    assert expected.key_of(document) == {"pk": {"S": "c"}}
    # a document whose key attribute says another item is not that item's
    assert expected.key_of({**document, "pk": "d"}) is None


def test_a_document_the_replicator_did_not_write_maps_to_no_key() -> None:
    expected = ExpectedDocuments(Settings(key_schema=("pk", "sk")), key_types={"pk": "S",
                                                                               "sk": "N"})
    assert expected.key_of({"_id": ObjectId()}) is None
    assert expected.key_of({"_id": {"sk": 1, "pk": "a"}}) is None  # fields out of order
    assert expected.key_of({"_id": {"pk": "a", "sk": "x"}}) is None  # not a number
    assert expected.key_of({"_id": {"pk": "a", "sk": Int64(3)}}) == {"pk": {"S": "a"},
                                                                     "sk": {"N": "3"}}


# -- one comparison ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"n": 5}, {"n": Int64(5)}),
        ({"m": {"l": [1, {"x": 2**40}]}}, {"m": {"l": [Int64(1), {"x": Int64(2**40)}]}}),
        ({"t": datetime(2026, 1, 2, 3, 4, 5, 678000)},
         {"t": datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=timezone.utc)}),
        ({"b": b"\x01"}, {"b": Binary(b"\x01", 0)}),
    ],
)
def test_one_stored_value_in_two_python_types_is_no_difference(
    expected: dict[str, Any], actual: dict[str, Any]
) -> None:
    assert list(differences(expected, actual)) == []


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"d": Decimal128("19.99")}, {"d": 19.99}),
        ({"i": 1}, {"i": True}),
        ({"i": 5}, {"i": 5.0}),
        ({"d": Decimal128("21.50")}, {"d": Decimal128("21.5")}),
        ({"t": datetime(2026, 1, 2, 3, 4, 5, 678000)},
         {"t": datetime(2026, 1, 2, 3, 4, 5, 679000, tzinfo=timezone.utc)}),
    ],
)
def test_a_different_stored_value_is_a_difference(expected: dict[str, Any],
                                                  actual: dict[str, Any]) -> None:
    assert [f.path for f in differences(expected, actual)] == list(expected)


def test_sets_compare_without_order_and_ids_by_mongodb_equality() -> None:
    assert document_differences({"_id": 1, "ns": [2**40, 3]}, {"_id": Int64(1),
                                                                "ns": [3, Int64(2**40)]},
                                {"ns"}) == []
    assert id_key(Decimal128("21.50")) == id_key(21.5) == id_key(Decimal128("21.5"))


@pytest.fixture(autouse=True)
def _no_leaked_modules() -> Iterator[None]:
    yield
    sys.modules.pop("idmap", None)
