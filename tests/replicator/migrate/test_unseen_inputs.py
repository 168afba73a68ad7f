"""Adversarial inputs of issue #18's kinds and issue #19 item 5 (a reviewer's attempts to break
the fixes), on the wire target: moto in-process, mongoeco through the real pymongo client."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.migration import diff
from replicator.core import Replicator
from replicator.migrate.export import load_manifest, write_export
from replicator.migrate.gap import recover
from replicator.migrate.sync import sync_export
from replicator.settings import Settings
from support.exports import replace_data_file

sys.path.insert(0, str(Path(__file__).parent))
from test_expected import Scenario, delete, put
from test_trust import _gap, _item, _poller, _values, _windows_as_exports

BIG38 = "9" * 38


# -- user code --------------------------------------------------------------------------------
def prefix_id(keys: dict[str, Any]) -> Any:
    return "order#" + keys["pk"]


def rename_v(document: dict[str, Any]) -> dict[str, Any]:
    if "v" in document:
        document["version"] = document.pop("v")
    return document


def weird_id(keys: dict[str, Any]) -> Any:
    pk = keys["pk"]
    if pk == "dollar":
        return {"$set": 1}
    if pk == "list":
        return [1, 2]
    if pk == "dict":
        return {"a": {"b": 1}}
    if pk == "none":
        return None
    if pk == "obj":
        return object()
    if pk == "decimal":
        import decimal
        return decimal.Decimal("1.5")
    if pk == "set":
        return {1, 2}
    if pk == "date":
        import datetime as dt
        return dt.date(2026, 1, 1)
    return "id-" + pk


def _record(seq: int, key: str) -> dict[str, Any]:
    return {"eventID": f"e{seq}", "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {"ApproximateCreationDateTime": 1700000000, "Keys": {"pk": {"S": key}},
                         "NewImage": {"pk": {"S": key}, "v": {"N": "1"}},
                         "SequenceNumber": str(seq), "SizeBytes": 40,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/o/stream/2024"}


# -- 1. three windows: the middle deletes, the last re-creates ------------------------------------
def test_three_windows_delete_then_recreate(moto: Any, wire_target: Any, tmp_path: Path) -> None:
    def during(client: Any) -> None:
        client.put_item(TableName="brk-three", Item=_item("x", 2))
        client.delete_item(TableName="brk-three", Key={"pk": {"S": "x"}})
        client.put_item(TableName="brk-three", Item=_item("x", 7))
        client.delete_item(TableName="brk-three", Key={"pk": {"S": "y"}})

    table, _, collection, poller = _gap(moto, wire_target, "brk-three", {"x": 1, "y": 1}, during)
    windows = [
        {"from_hours_ago": 72, "to_hours_ago": 48,
         "lines": [{"Keys": {"pk": {"S": "x"}}, "NewImage": _item("x", 2)}]},
        {"from_hours_ago": 48, "to_hours_ago": 24,
         "lines": [{"Keys": {"pk": {"S": "x"}}}, {"Keys": {"pk": {"S": "y"}}}]},
        {"from_hours_ago": 24, "to_hours_ago": 0.1,
         "lines": [{"Keys": {"pk": {"S": "x"}}, "NewImage": _item("x", 7)}]},
    ]
    manifests = _windows_as_exports(tmp_path, windows, datetime.now(timezone.utc))
    recover(poller, exports=[manifests[2], manifests[0], manifests[1]])
    assert _values(collection) == {"x": 7}
    assert diff(moto, table, collection).converged


# -- 2. composite key with a 38-digit numeric sort key, recover + verify --------------------------
def test_38_digit_sort_keys_survive_recover_and_verify(moto: Any, wire_target: Any) -> None:
    settings = Settings(key_schema=("pk", "sk"))
    sks = [BIG38, "-" + BIG38, "1" + "0" * 37, "0.1" + "0" * 36 + "1", "12345678901234567890"]
    items = [{"pk": {"S": "p"}, "sk": {"N": sk}, "v": {"N": str(n)}} for n, sk in enumerate(sks)]
    scenario = Scenario(moto, wire_target, TableSpec("brk-big38", ("pk", "S"), ("sk", "N")),
                        settings, items)
    scenario.replicate()
    assert scenario.verify().ok
    poller = scenario.gap(delete("brk-big38", {"pk": {"S": "p"}, "sk": {"N": sks[1]}}),
                          put("brk-big38", {"pk": {"S": "p"}, "sk": {"N": sks[0]},
                                            "v": {"N": "99"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert scenario.collection.count_documents({"_ddb_seq": {"$exists": True}}) == 4
    assert scenario.converged().converged
    verified = scenario.verify(poller)
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()


def test_binary_partition_and_sort_key_verify(moto: Any, wire_target: Any) -> None:
    settings = Settings(key_schema=("pk", "sk"))
    items = [{"pk": {"S": "p"}, "sk": {"B": b}, "v": {"N": "1"}}
             for b in (b"", b"\x80\x00", b"$x", b"." * 5)
             if b]  # DynamoDB refuses an empty binary key
    scenario = Scenario(moto, wire_target, TableSpec("brk-bin", ("pk", "S"), ("sk", "B")),
                        settings, items)
    scenario.replicate()
    verified = scenario.verify()
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()


# -- 3. Int64 inside a list of maps, number sets --------------------------------------------------
def test_verify_int64_in_list_of_maps_and_number_sets(moto: Any, wire_target: Any) -> None:
    items = [{"pk": {"S": "a"},
              "l": {"L": [{"M": {"ms": {"N": "1733568000123"}, "n": {"N": "-9223372036854775808"}}},
                          {"M": {"inner": {"L": [{"N": "4294967297"}, {"NS": ["2147483648"]}]}}}]},
              "ns": {"NS": ["9223372036854775807", "2147483648", "0.5", "-1"]},
              "big": {"N": "18446744073709551616"},
              "m": {"M": {"deep": {"M": {"x": {"N": "3000000000"}}}}}}]
    scenario = Scenario(moto, wire_target, TableSpec("brk-int64", ("pk", "S")),
                        Settings(key_schema=("pk",)), items)
    scenario.replicate()
    report = scenario.verify()
    assert report.ok and report.first_pass_differences == 0, report.as_dict()


# -- 4. transform + id_mapping together through verify and recover --------------------------------
@pytest.mark.slow
def test_transform_and_id_mapping_together(moto: Any, wire_target: Any) -> None:
    settings = Settings(key_schema=("pk",), id_mapping=f"{__name__}:prefix_id",
                        transforms=(f"{__name__}:rename_v",))
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in "abc"]
    scenario = Scenario(moto, wire_target, TableSpec("brk-both", ("pk", "S")), settings, items)
    scenario.replicate()
    assert scenario.collection.find_one({"_id": "order#a"})["version"] == 1
    verified = scenario.verify()
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()
    poller = scenario.gap(delete("brk-both", {"pk": {"S": "b"}}),
                          put("brk-both", {"pk": {"S": "c"}, "v": {"N": "5"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert scenario.collection.find_one({"_id": "order#c"})["version"] == 5
    assert {d["_id"] for d in scenario.collection.find({})} == {"order#a", "order#c"}
    assert scenario.verify(poller).ok


# -- 5. export files -----------------------------------------------------------------------------
def test_truncated_gzip_matching_its_manifest_is_refused_not_crash(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    table = moto.create_table(TableSpec("brk-trunc", ("pk", "S")))
    client = moto.dynamodb()
    lines = [{"Item": _item(f"k{n}", n)} for n in range(40)]
    for line in lines:
        client.put_item(TableName="brk-trunc", Item=line["Item"])
    root = write_export(tmp_path, [lines])
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    data = gzip.compress(body)
    replace_data_file(root, 0, data[: len(data) * 2 // 3], 40)  # md5 of the truncated bytes: consistent
    collection = wire_target.collection("trust", "brk_trunc")
    try:
        report = sync_export(_poller(moto.streams(), client, table, collection),
                             load_manifest(str(root)))
    except Exception as error:  # a clear refusal naming the file is acceptable
        assert "00000-" in str(error), repr(error)
        assert type(error).__name__ not in ("EOFError", "BadGzipFile", "OSError"), repr(error)
        return
    # otherwise: never consistent with items missing
    assert report.consistent_at is None or diff(moto, table, collection).converged


@pytest.mark.xfail(strict=True, reason=(
    "known, left open: an export line that parses but fails conversion (an unknown type tag, "
    "N 'abc', depth > 100, a NUL name) is quarantined by the core as the stream-shaped record "
    "it became -- its item kept whole, file and line only in its eventID -- not in the "
    "{export_file, line, text} shape of a line that does not parse"))
def test_valid_json_lines_that_are_not_items_are_quarantined(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    table = moto.create_table(TableSpec("brk-notitem", ("pk", "S")))
    client = moto.dynamodb()
    good = [{"Item": _item(f"k{n}", n)} for n in range(3)]
    for line in good:
        client.put_item(TableName="brk-notitem", Item=line["Item"])
    deep: Any = {"S": "x"}
    for _ in range(120):
        deep = {"M": {"a": deep}}
    bad = ["[1, 2]", '"just a string"', "null", "42", '{"Item": "x"}', '{"Item": []}',
           '{"Item": {"pk": {"S": "q"}, "w": {"Q": 1}}}', '{"Item": {"pk": {"N": "abc"}}}',
           json.dumps({"Item": {"pk": {"S": "deep"}, "d": deep}}), "{}",
           '{"Item": {"pk": {"S": "nul\\u0000"}, "f\\u0000": {"S": "x"}}}',
           '{"Item": {"pk": {"S": "dol"}, "$where": {"S": "x"}}}']
    texts = [json.dumps(good[0]), *bad, json.dumps(good[1]), json.dumps(good[2])]
    root = write_export(tmp_path, [good])
    replace_data_file(root, 0, gzip.compress("".join(t + "\n" for t in texts).encode()), len(texts))
    collection = wire_target.collection("trust", "brk_notitem")
    report = sync_export(_poller(moto.streams(), client, table, collection),
                         load_manifest(str(root)))
    assert report.export is not None
    assert report.export.lines == len(texts)
    kept = list(collection.database["brk_notitem_quarantine"].find({}))
    raws = [json.loads(k["raw_record"]) for k in kept]
    # issue 18 kind 3: a poison line is kept with its raw text, file and line number
    shapes = [sorted(r) for r in raws if not {"export_file", "line", "text"} <= set(r)]
    assert not shapes, f"{len(shapes)} of {len(raws)} quarantined lines lack file/line/text: {shapes}"
    lines = sorted(r["line"] for r in raws)
    loaded = sorted(d["_id"] for d in collection.find({}))
    # every bad line is either quarantined (with its line number) or loaded; none lost, none fatal
    assert {"k0", "k1", "k2"} <= set(loaded)
    assert len(lines) + len(loaded) == len(texts), (lines, loaded)
    assert set(range(2, 2 + len(bad))) >= set(lines)
    for k in kept:
        assert k["error"]["message"], k


# -- 6. id_mapping returning invalid _ids -----------------------------------------------------------
@pytest.mark.parametrize("bad", ["dollar", "list", "none", "obj", "decimal", "set", "date"])
def test_an_id_mapping_returning_an_invalid_id_is_quarantined_per_record(
    wire_target: Any, bad: str
) -> None:
    settings = Settings(id_mapping=f"{__name__}:weird_id")
    name = f"brk_weird_{bad}"
    collection = wire_target.collection("expected", name)
    collection.drop()
    collection.database[f"{name}_quarantine"].drop()
    event = {"Records": [_record(100, "a"), _record(101, bad), _record(102, "c")]}
    result = Replicator(collection, settings).handle(event)
    assert result == {"batchItemFailures": []}, result
    assert {d["_id"] for d in collection.find({})} == {"id-a", "id-c"}
    kept = list(collection.database[f"{name}_quarantine"].find({}))
    assert len(kept) == 1, kept


def test_an_id_mapping_returning_a_nested_dict_is_a_valid_id(wire_target: Any) -> None:
    settings = Settings(id_mapping=f"{__name__}:weird_id")
    collection = wire_target.collection("expected", "brk_weird_dictok")
    collection.drop()
    event = {"Records": [_record(100, "a"), _record(101, "dict")]}
    assert Replicator(collection, settings).handle(event) == {"batchItemFailures": []}
    assert collection.count_documents({}) == 2


# -- 7. environment values with whitespace ------------------------------------------------------
@pytest.mark.parametrize("raw", [" pk , sk ", "pk,sk\n", "\tpk,\nsk ", "pk, sk,"])
def test_key_schema_from_env_with_whitespace(raw: str) -> None:
    settings = Settings.from_env({"REPLICATOR_KEY_SCHEMA": raw})
    assert tuple(settings.key_schema) == ("pk", "sk")


@pytest.mark.parametrize("raw", [" , ", "pk,,sk", "p k"])
def test_key_schema_from_env_nonsense_is_a_clear_error_or_sane(raw: str) -> None:
    try:
        settings = Settings.from_env({"REPLICATOR_KEY_SCHEMA": raw})
    except Exception as error:
        assert "REPLICATOR_KEY_SCHEMA" in str(error), repr(error)
        return
    assert all(part and part == part.strip() for part in settings.key_schema), settings.key_schema
    assert settings.key_schema != (), "an all-blank key schema silently became empty"


# -- 8. id_mapping + a transform that drops the key attribute: the way back is gone -------------
def drop_pk(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("pk", None)
    return document


@pytest.mark.xfail(strict=True, reason=(
    "known, left open (docs/migration.md, Limits): with an id_mapping AND a transform that drops "
    "the key attributes, a document cannot be mapped back to its item, so the re-copy leaves a "
    "gone item's document in place (logged) and still reports consistent; verify finds it"))
def test_id_mapping_with_key_dropped_recover_removes_or_refuses(moto: Any, wire_target: Any) -> None:
    settings = Settings(key_schema=("pk",), id_mapping=f"{__name__}:prefix_id",
                        transforms=(f"{__name__}:drop_pk",))
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in "abc"]
    scenario = Scenario(moto, wire_target, TableSpec("brk-dropk", ("pk", "S")), settings, items)
    scenario.replicate()
    assert set(scenario.collection.find_one({"_id": "order#a"})) == {"_id", "v", "_ddb_seq"}
    poller = scenario.gap(delete("brk-dropk", {"pk": {"S": "b"}}))
    try:
        report = recover(poller, segments=1, page_size=10)
    except Exception as error:  # a refusal is acceptable, if it names the reason
        assert "id_mapping" in str(error), repr(error)
        return
    # completed: then the gone item's document must be gone, or the report must not be clean
    remaining = {d["_id"] for d in scenario.collection.find({})}
    assert "order#b" not in remaining or report.consistent_at is None, (remaining, report)


def test_id_mapping_with_key_dropped_verify_sees_a_planted_extra(
    moto: Any, wire_target: Any
) -> None:
    settings = Settings(key_schema=("pk",), id_mapping=f"{__name__}:prefix_id",
                        transforms=(f"{__name__}:drop_pk",))
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in "ab"]
    scenario = Scenario(moto, wire_target, TableSpec("brk-dropv", ("pk", "S")), settings, items)
    scenario.replicate()
    assert scenario.verify().ok
    # a document the replicator wrote for an item since deleted (it has a _ddb_seq)
    scenario.collection.insert_one({"_id": "order#zz", "v": 1, "_ddb_seq": "0" * 40})
    report = scenario.verify()
    assert not report.ok, report.as_dict()


# -- 9. AWS's real incremental line shape: Metadata and OldImage ------------------------------
def test_incremental_lines_with_metadata_and_old_image(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    def during(client: Any) -> None:
        client.put_item(TableName="brk-meta", Item=_item("a", 5))
        client.delete_item(TableName="brk-meta", Key={"pk": {"S": "b"}})

    table, _, collection, poller = _gap(moto, wire_target, "brk-meta", {"a": 1, "b": 1}, during)
    micros = int(datetime.now(timezone.utc).timestamp() * 1e6)
    windows = [{"from_hours_ago": 30, "to_hours_ago": 1, "lines": [
        {"Metadata": {"WriteTimestampMicros": {"N": str(micros)}},
         "Keys": {"pk": {"S": "a"}}, "NewImage": _item("a", 5), "OldImage": _item("a", 1)},
        {"Metadata": {"WriteTimestampMicros": {"N": str(micros + 1)}},
         "Keys": {"pk": {"S": "b"}}, "OldImage": _item("b", 1)}]}]
    manifests = _windows_as_exports(tmp_path, windows, datetime.now(timezone.utc))
    recover(poller, exports=manifests)
    assert _values(collection) == {"a": 5}
    assert diff(moto, table, collection).converged


# -- 10. numeric partition keys across the int64 / Decimal128 / text boundaries ----------------
def test_numeric_partition_keys_of_every_magnitude_recover_and_verify(
    moto: Any, wire_target: Any
) -> None:
    pks = ["9223372036854775807", "9223372036854775808", "-9223372036854775809",
           "1" * 34, "1" * 35, "-" + "9" * 38, "0.5", "1E+100", "1E-100"]
    items = [{"pk": {"N": pk}, "v": {"N": "1"},
              "big": {"N": "9.9999999999999999999999999999999999999E+125"},
              "tiny": {"N": "1E-130"}} for pk in pks]
    scenario = Scenario(moto, wire_target, TableSpec("brk-numpk", ("pk", "N")),
                        Settings(key_schema=("pk",)), items)
    scenario.replicate()
    verified = scenario.verify()
    assert verified.ok and verified.first_pass_differences == 0, verified.as_dict()
    poller = scenario.gap(delete("brk-numpk", {"pk": {"N": pks[4]}}))
    report = recover(poller, segments=1, page_size=20)
    assert report.documents_deleted == 1
    assert scenario.collection.count_documents({}) == len(pks) - 1
    assert scenario.converged().converged


# -- 11. an id_mapping that raises for one item, through sync and recover ----------------------
def numeric(keys: dict[str, Any]) -> Any:
    return int(keys["pk"])


def test_recover_with_an_id_mapping_raising_for_one_item(moto: Any, wire_target: Any) -> None:
    settings = Settings(key_schema=("pk",), id_mapping=f"{__name__}:numeric")
    items = [{"pk": {"S": k}, "v": {"N": "1"}} for k in ("1", "2", "3", "legacy-7")]
    scenario = Scenario(moto, wire_target, TableSpec("brk-idraise", ("pk", "S")), settings, items)
    scenario.replicate()
    assert {d["_id"] for d in scenario.collection.find({})} == {1, 2, 3}
    poller = scenario.gap(delete("brk-idraise", {"pk": {"S": "2"}}),
                          put("brk-idraise", {"pk": {"S": "3"}, "v": {"N": "9"}}))
    report = recover(poller, segments=1, page_size=10)
    assert report.documents_deleted == 1
    assert {d["_id"]: d["v"] for d in scenario.collection.find({})} == {1: 1, 3: 9}
    verified = scenario.verify(poller)
    assert verified.counts() == {"missing": 1, "extra": 0, "changed": 0}, verified.as_dict()


@pytest.mark.parametrize(("name", "raw", "field", "want"), [
    ("REPLICATOR_ID_MAPPING", " test_break:prefix_id\n", "id_mapping", "test_break:prefix_id"),
    ("REPLICATOR_TRANSFORMS", " test_break:rename_v ,\n", "transforms", ("test_break:rename_v",)),
])
def test_other_env_values_with_whitespace(name: str, raw: str, field: str, want: Any) -> None:
    try:
        settings = Settings.from_env({name: raw})
    except Exception as error:
        assert name in str(error), repr(error)
        return
    assert getattr(settings, field) == want
