"""Every kind of write outcome, on the harness's mongomock adapter and on mongoeco (a wire server
driven by the real pymongo client; skipped where mongoeco is not installed).

Each planned write is applied, stale (shown by reading the stored version back), retried
(batchItemFailures) or rejected and quarantined with its raw record -- and nothing raises out of
``process()``. docs/write-errors.md has the table of codes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator import apply
from replicator.core import Replicator
from replicator.item_records import item_record, kinesis_item_record
from replicator.settings import SEQUENCE_FIELD, Settings
from replicator.tombstones import DELETED_AT, TombstoneStore
from replicator.writes import PlannedWrite, guard_condition
from support.planned_writes import from_operation

TARGETS = ["mongomock", "mongoeco"]


@pytest.fixture(params=TARGETS)
def target_db(request: pytest.FixtureRequest) -> Any:
    """A fresh database on each target: the mongomock adapter, a mongoeco server."""
    if request.param == "mongomock":
        return request.getfixturevalue("mongo_db")
    return request.getfixturevalue("mongoeco_db")


def item(id_: str, v: int | str = 1, **more: Any) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}, **more}


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


def pad(sequence: str) -> str:
    return sequence.zfill(40)


def planned(operation: Any, sequence: str) -> PlannedWrite:
    return from_operation(operation, (sequence,))


def quarantined(database: Any, name: str = "items") -> dict[str, dict[str, Any]]:
    return {d["sequence_number"]: d for d in database[f"{name}_quarantine"].find()}


class ServerAnswer:
    """A collection whose ``bulk_write`` answers as a server would, with a chosen error; reads
    and side collections go to ``database`` (the simulated part is only the answer)."""

    def __init__(self, database: Any, error: Exception, name: str = "items") -> None:
        self.database = database
        self.name = name
        self.error = error

    def bulk_write(self, operations: list[Any], ordered: bool = True, **_: Any) -> Any:
        raise self.error

    def find(self, *args: Any, **kwargs: Any) -> Any:
        return self.database[self.name].find(*args, **kwargs)


def write_error(index: int, code: int, errmsg: str = "refused", **extra: Any) -> BulkWriteError:
    return BulkWriteError({"writeErrors": [{"index": index, "code": code, "errmsg": errmsg,
                                            **extra}],
                           "writeConcernErrors": [], "upserted": []})


# -- E11000 ----------------------------------------------------------------------------------
def test_a_stale_upsert_is_stale_on_every_target(target_db: Any, stream_record: Any) -> None:
    replicator = Replicator(target_db["items"])
    replicator.process([stream_record("200", "INSERT", keys("a"), new=item("a", 2))])
    late = replicator.process([stream_record("100", "MODIFY", keys("a"), new=item("a", 1))])
    assert (late.applied, late.stale, late.quarantined) == (0, 1, [])
    assert late.lambda_response() == {"batchItemFailures": []}
    assert target_db["items"].find_one({"_id": "a"})["v"] == 2


def test_a_duplicate_key_from_a_unique_secondary_index_is_quarantined_on_every_target(
    target_db: Any, shared_case: Any
) -> None:
    # the shared case unique-index-dupkey: two users share an email; MongoDB has a unique index
    event = shared_case("unique-index-dupkey")
    target_db["users"].create_index("email", unique=True)
    replicator = Replicator(target_db["users"], Settings(key_schema=("uid",)))

    result = replicator.process(event)

    # user-2 is never counted as "a newer version is already there": it is kept, with why
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.applied, result.stale) == (1, 0)
    kept = quarantined(target_db, "users")["1200000000000000000002"]
    assert kept["error"]["kind"] == "constraint" and kept["error"]["code"] == 11000
    assert "email" in kept["error"]["reason"]
    assert json.loads(kept["raw_record"]) == event["Records"][1]
    assert [d["_id"] for d in target_db["users"].find()] == ["user-1"]
    # and a redelivery changes nothing (the quarantine entry is the same)
    again = replicator.process(event)
    assert again.lambda_response() == {"batchItemFailures": []}
    assert target_db["users_quarantine"].count_documents({}) == 1


def prefixed_id(keys: dict[str, Any]) -> str:
    """An id_mapping (Settings.id_mapping names it): the _id is not the key's own value."""
    return "user/" + "/".join(str(v) for v in keys.values())


@pytest.mark.parametrize(("sequence", "key_schema", "id_mapping"), [
    ("0", ("uid",), None),                        # a copy's or an export's records
    ("4100000000000000000007", ("uid",), None),   # a recovery window's records
    ("0", ("uid", "n"), None),                    # a composite key: the _id is a document
    ("0", ("uid",), f"{__name__}:prefixed_id"),   # an id_mapping
], ids=["copy", "window", "composite", "id-mapping"])
def test_records_of_one_sequence_number_each_keep_their_own_record_when_rejected(
    target_db: Any, sequence: str, key_schema: tuple[str, ...], id_mapping: str | None
) -> None:
    """Rejected writes of a batch whose records share one sequence number (every record of a
    copy or an export carries "0"; a gap recovery's window one number) are each quarantined
    with their own raw record. Before: the record was found by sequence number alone, so every
    rejected write was kept as the batch's first record (one that was written) and the
    rejected items' records were lost (found by the export-load work of issue 21)."""
    target_db["users"].create_index("email", unique=True)
    replicator = Replicator(target_db["users"],
                            Settings(key_schema=key_schema, id_mapping=id_mapping))
    emails = ["a@x", "same", "c@x", "same", "e@x", "same", "g@x"]  # the 4th and 6th refused
    records = [
        item_record({"uid": {"S": f"user-{i}"}, "n": {"N": str(i)}, "email": {"S": email}},
                    key_schema, sequence, f"copy-{i}")
        for i, email in enumerate(emails)
    ]
    result = replicator.process(records)
    assert result.lambda_response() == {"batchItemFailures": []}
    assert result.applied == 5 and len(result.quarantined) == 2
    kept = {json.loads(d["raw_record"])["eventID"]: d
            for d in target_db["users_quarantine"].find()}
    assert sorted(kept) == ["copy-3", "copy-5"]
    for event_id, entry in kept.items():
        raw = json.loads(entry["raw_record"])
        index = int(event_id.split("-")[1])
        assert raw["dynamodb"]["NewImage"]["uid"] == {"S": f"user-{index}"}
        assert entry["error"]["kind"] == "constraint" and entry["error"]["code"] == 11000
    assert [b.index for b in result.quarantined] == [3, 5]


def test_the_batch_line_names_no_other_records_eventid_for_a_copys_failed_write(
    mongo_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy's records all carry sequence number "0": when one of its writes fails, the batch
    line must not name another record's eventID as where the redelivery starts (it named the
    batch's first record); when every write fails, the first record is where it starts."""
    records = [item_record({"id": {"S": f"k{i}"}, "v": {"N": "1"}}, ("id",), "0", f"copy-{i}")
               for i in range(3)]
    for failing, named in ((write_error(1, 91), None), (BulkWriteError({
            "writeErrors": [{"index": i, "code": 91, "errmsg": "shutting down"} for i in range(3)],
            "writeConcernErrors": [], "upserted": []}), "copy-0")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="replicator"):
            result = Replicator(ServerAnswer(mongo_db, failing),
                                Settings(key_schema=("id",), tombstones=False)).process(records)
        assert result.failures and result.quarantined == []
        (line,) = [r.getMessage() for r in caplog.records if "redelivered" in r.getMessage()]
        assert "from SequenceNumber 0" in line
        assert ("(eventID" in line) == (named is not None)
        if named is not None:
            assert f"(eventID {named})" in line


def test_a_kinesis_copys_rejected_writes_each_keep_their_own_record(target_db: Any) -> None:
    """The same over a Kinesis data stream: `sync --kinesis-stream`'s copy records all carry
    the Kinesis sequence number "0" (item_records.kinesis_item_record)."""
    target_db["users"].create_index("email", unique=True)
    replicator = Replicator(target_db["users"], Settings(key_schema=("uid",), source="kinesis"))
    emails = ["a@x", "same", "c@x", "same"]  # the 4th refused
    records = [
        kinesis_item_record({"uid": {"S": f"user-{i}"}, "email": {"S": email}}, ("uid",),
                            1_700_000_000_000_000, f"copy-{i}", table="users",
                            stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/users")
        for i, email in enumerate(emails)
    ]
    result = replicator.process(records)
    assert result.lambda_response() == {"batchItemFailures": []}
    assert result.applied == 3 and [b.index for b in result.quarantined] == [3]
    (entry,) = target_db["users_quarantine"].find()
    assert json.loads(entry["raw_record"])["eventID"] == "copy-3"


def test_the_adapter_reports_mongods_key_pattern_for_id_and_for_secondary_indexes(
    mongo_db: Any,
) -> None:
    collection = mongo_db["items"]
    collection.create_index("email", unique=True)
    collection.insert_one({"_id": 1, "email": "a", SEQUENCE_FIELD: pad("9")})
    guard = {SEQUENCE_FIELD: guard_condition(pad("5"))}
    with pytest.raises(BulkWriteError) as raised:
        collection.bulk_write([
            ReplaceOne({"_id": 1, **guard}, {"_id": 1, "email": "a"}, upsert=True),
            ReplaceOne({"_id": 2}, {"_id": 2, "email": "b"}, upsert=True),
            ReplaceOne({"_id": 3}, {"_id": 3, "email": "a"}, upsert=True),
        ], ordered=False)
    details = raised.value.details
    assert [(e["index"], e["code"], e["keyPattern"], e["keyValue"])
            for e in details["writeErrors"]] == [
        (0, 11000, {"_id": 1}, {"_id": 1}), (2, 11000, {"email": 1}, {"email": "a"})]
    assert details["upserted"] == [{"index": 1, "_id": 2}] and details["nUpserted"] == 1


# -- permanent and transient server errors --------------------------------------------------
@pytest.mark.parametrize("code", [121, 2, 17280, 10334, 52, 61, 15])
def test_a_permanent_write_error_is_quarantined_and_the_batch_goes_on(
    mongo_db: Any, shared_case: Any, code: int
) -> None:
    # the shared case permanent-server-error: a server refuses record 100 for good
    event = shared_case("permanent-server-error")
    # The case nests 120 levels (over MongoDB's 100); the planner may refuse that itself, so the
    # document here is one the planner passes, and the server's answer is what refuses it.
    deep: dict[str, Any] = {"S": "bottom"}
    for _ in range(20):
        deep = {"M": {"x": deep}}
    event["Records"][0]["dynamodb"]["NewImage"]["x"] = deep
    collection = ServerAnswer(mongo_db, write_error(0, code, "Document failed validation"))
    replicator = Replicator(collection, Settings(key_schema=("pk",), tombstones=False))

    result = replicator.process(event)

    assert result.lambda_response() == {"batchItemFailures": []}
    kept = quarantined(mongo_db)["100"]
    assert kept["error"]["code"] == code and kept["error"]["covered_sequence_numbers"] == ["100"]
    assert json.loads(kept["raw_record"]) == event["Records"][0]
    assert result.applied == 1  # record 101


def test_a_validator_refusal_on_mongoeco_is_quarantined(
    mongoeco_db: Any, stream_record: Any
) -> None:
    mongoeco_db.create_collection("items", validator={"$jsonSchema": {"required": ["name"]}})
    replicator = Replicator(mongoeco_db["items"])
    result = replicator.process([
        stream_record("100", "INSERT", keys("a"), new=item("a", name={"S": "named"})),
        stream_record("101", "INSERT", keys("b"), new=item("b")),
    ])
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.applied, len(result.quarantined)) == (1, 1)
    assert quarantined(mongoeco_db)["101"]["error"]["code"] == 121
    assert [d["_id"] for d in mongoeco_db["items"].find()] == ["a"]


@pytest.mark.parametrize("code", [91, 189, 262, 50, 112, 11600, 11602, 10107, 13435, 64, 6, 89,
                                  9001])
def test_a_transient_write_error_is_retried_never_quarantined(
    mongo_db: Any, stream_record: Any, code: int
) -> None:
    collection = ServerAnswer(mongo_db, write_error(0, code))
    result = Replicator(collection).process(
        [stream_record("100", "INSERT", keys("a"), new=item("a"))])
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert result.quarantined == [] and mongo_db["items_quarantine"].count_documents({}) == 0


def test_the_retryable_write_error_label_makes_any_code_transient(mongo_db: Any) -> None:
    error = write_error(0, 2)
    error._add_error_label("RetryableWriteError")
    result = apply.write(ServerAnswer(mongo_db, error), [
        planned(ReplaceOne({"_id": "a"}, {"_id": "a"}, upsert=True), "100")])
    assert len(result.failed) == 1 and result.rejected == []


def test_a_write_concern_error_retries_the_writes_it_did_not_acknowledge(mongo_db: Any) -> None:
    error = BulkWriteError({"writeErrors": [], "upserted": [], "writeConcernErrors": [
        {"code": 64, "errmsg": "waiting for replication timed out"}]})
    result = apply.write(ServerAnswer(mongo_db, error), [
        planned(ReplaceOne({"_id": "a"}, {"_id": "a"}, upsert=True), "100")])
    assert len(result.failed) == 1 and result.applied == []


@pytest.mark.parametrize("error", [
    AutoReconnect("connection reset"),
    ServerSelectionTimeoutError("no servers"),
    NotPrimaryError("not primary"),
    OperationFailure("command failed", code=2),
])
def test_an_exception_for_the_whole_command_retries_every_write(
    mongo_db: Any, stream_record: Any, error: Exception
) -> None:
    result = Replicator(ServerAnswer(mongo_db, error)).process([
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        stream_record("101", "INSERT", keys("b"), new=item("b")),
    ])
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert len(result.failures) == 2 and result.quarantined == []


# -- encoding errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(("document", "path", "error"), [
    ({"_id": "bad", "a\x00b": 1}, "a\x00b", "InvalidDocument"),
    ({"_id": "bad", "n": {"a\x00b": 1}}, "n.a\x00b", "InvalidDocument"),
    ({"_id": "bad", "s": "ab\ud800cd"}, "s", "UnicodeEncodeError"),
    ({"_id": "bad", "l": [1, {"s": "\ud800"}]}, "l.1.s", "UnicodeEncodeError"),
    ({"_id": "bad", "big": 2**64}, "big", "OverflowError"),
    ({"_id": "bad", "what": object()}, "what", "InvalidDocument"),
])
def test_an_unencodable_write_is_rejected_with_its_path_and_the_rest_is_sent(
    target_db: Any, document: dict[str, Any], path: str, error: str
) -> None:
    # operations the planner would not make (it validates names): apply.py is the safety net
    writes = [
        planned(ReplaceOne({"_id": "good"}, {"_id": "good", "v": 1}, upsert=True), "100"),
        planned(ReplaceOne({"_id": "bad"}, document, upsert=True), "101"),
        planned(UpdateOne({"_id": "bad2"}, [{"$replaceWith": {"$literal": {
            "_id": "bad2", **{k: v for k, v in document.items() if k != "_id"}}}}], upsert=True),
            "102"),
        planned(ReplaceOne({"_id": "good2"}, {"_id": "good2", "v": 2}, upsert=True), "103"),
    ]
    result = apply.write(target_db["items"], writes)
    assert [w.sequence_numbers for w in result.applied] == [("100",), ("103",)]
    assert [(w.sequence_numbers, r.field_path, r.kind) for w, r in result.rejected] == [
        (("101",), path, "encoding"), (("102",), path, "encoding")]
    assert all(r.reason.startswith(error) for _, r in result.rejected)
    assert sorted(d["_id"] for d in target_db["items"].find()) == ["good", "good2"]


@pytest.mark.parametrize("error", [
    RecursionError("maximum recursion depth exceeded while encoding"),
    # pymongo's own check of the server's maxBsonObjectSize: bson encodes the document fine
    DocumentTooLarge("BSON document too large (16793600 bytes)"),
])
def test_an_encoding_error_no_single_operation_shows_is_bisected_down_to_its_write(
    mongo_db: Any, error: Exception
) -> None:
    class RefusesC:
        """Refuses any bulk holding the write of "c" (as an encoder limit would)."""

        name = "items"
        database = mongo_db

        def __init__(self) -> None:
            self.calls: list[int] = []

        def bulk_write(self, operations: list[Any], ordered: bool = True, **_: Any) -> Any:
            self.calls.append(len(operations))
            if any(op._filter["_id"] == "c" for op in operations):
                raise error
            return mongo_db["items"].bulk_write(operations, ordered=ordered)

    collection = RefusesC()
    writes = [planned(ReplaceOne({"_id": k}, {"_id": k}, upsert=True), str(100 + n))
              for n, k in enumerate("abcd")]
    result = apply.write(collection, writes)
    assert [w.filter["_id"] for w in result.applied] == ["a", "b", "d"]
    ((rejected, why),) = result.rejected
    assert rejected.filter["_id"] == "c"
    assert why.reason.startswith(type(error).__name__) and why.kind == "encoding"
    assert collection.calls == [4, 2, 2, 1, 1]


@pytest.mark.parametrize("case", ["nul-field-name", "lone-surrogate"])
def test_a_record_that_cannot_be_encoded_is_quarantined_and_the_batch_goes_on(
    target_db: Any, shared_case: Any, case: str
) -> None:
    event = shared_case(case)
    replicator = Replicator(target_db["items"], Settings(key_schema=("pk",)))
    result = replicator.process(event)  # never raises, on every delivery
    again = replicator.process(event)
    assert result.lambda_response() == again.lambda_response() == {"batchItemFailures": []}
    assert [d["_id"] for d in target_db["items"].find()] == ["good"]
    kept = quarantined(target_db)
    assert set(kept) == {r["dynamodb"]["SequenceNumber"] for r in event["Records"][1:]}
    for record in event["Records"][1:]:
        entry = kept[record["dynamodb"]["SequenceNumber"]]
        assert json.loads(entry["raw_record"]) == record  # the exact record, surrogates too
        # the planner names the attribute (dotted, or subscripted when the name is unprintable)
        assert entry["error"]["field_path"].startswith("dynamodb.NewImage")
    path = kept["101"]["error"]["field_path"]
    if case == "lone-surrogate":
        assert path == "dynamodb.NewImage.s"
    else:  # however the NUL is rendered
        assert path.startswith("dynamodb.NewImage") and path.rstrip("']").endswith("b") \
            and ("a\x00b" in path or "a\\x00b" in path)


def test_a_rejected_write_keeps_the_record_whose_content_it_carries(
    mongo_db: Any, stream_record: Any
) -> None:
    # k's changes are coalesced into one write carrying 101's image; 101 is what cannot be stored
    collection = ServerAnswer(mongo_db, write_error(0, 121, "Document failed validation"))
    batch = [stream_record("100", "INSERT", keys("k"), new=item("k", 1)),
             stream_record("101", "MODIFY", keys("k"), new=item("k", 2), old=item("k", 1))]
    result = Replicator(collection, Settings(tombstones=False)).process(batch)
    assert result.lambda_response() == {"batchItemFailures": []}
    (entry,) = mongo_db["items_quarantine"].find()
    assert json.loads(entry["raw_record"]) == batch[1]
    assert entry["error"]["covered_sequence_numbers"] == ["100", "101"]
    assert entry["index"] == 1


# -- inserted ---------------------------------------------------------------------------------
def test_the_result_lists_the_upserts_that_inserted_a_document(target_db: Any) -> None:
    target_db["items"].insert_one({"_id": "old"})
    result = apply.write(target_db["items"], [
        planned(ReplaceOne({"_id": "old"}, {"_id": "old", "v": 1}, upsert=True), "100"),
        planned(ReplaceOne({"_id": "new"}, {"_id": "new", "v": 1}, upsert=True), "101"),
        planned(DeleteOne({"_id": "none"}), "102"),
    ])
    assert [w.sequence_numbers for w in result.inserted] == [("101",)]
    assert len(result.applied) == 3


def test_the_inserted_upserts_come_in_the_order_of_the_writes(target_db: Any) -> None:
    # apply reads the upserted indexes from pymongo's raw bulk result (issue 21): interleaved
    # inserts, updates of existing documents and deletes, each insert named once, in order
    for name in ("e1", "e2", "e3"):
        target_db["items"].insert_one({"_id": name})
    writes = [
        planned(DeleteOne({"_id": "e3"}), "200"),
        planned(ReplaceOne({"_id": "n1"}, {"_id": "n1", "v": 1}, upsert=True), "201"),
        planned(ReplaceOne({"_id": "e1"}, {"_id": "e1", "v": 1}, upsert=True), "202"),
        planned(UpdateOne({"_id": "n2"}, {"$set": {"v": 2}}, upsert=True), "203"),
        planned(ReplaceOne({"_id": "e2"}, {"_id": "e2", "v": 1}, upsert=True), "204"),
        planned(ReplaceOne({"_id": "n3"}, {"_id": "n3", "v": 1}, upsert=True), "205"),
    ]
    result = apply.write(target_db["items"], writes)
    assert [w.sequence_numbers for w in result.inserted] == [("201",), ("203",), ("205",)]
    assert all(w is writes[i] for w, i in zip(result.inserted, (1, 3, 5), strict=True))
    assert len(result.applied) == 6


# -- the tombstone probe race -----------------------------------------------------------------
class Interleaved:
    """A collection that runs ``hook`` once, right before its first call of ``method``: a
    concurrent writer's batch lands exactly there (no threads, no timing)."""

    def __init__(self, inner: Any, method: str, hook: Any) -> None:
        self.inner = inner
        self.method = method
        self.hook = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.method or self.hook is None:
            return attribute

        def interleaved(*args: Any, **kwargs: Any) -> Any:
            hook, self.hook = self.hook, None
            hook()
            return attribute(*args, **kwargs)

        return interleaved


@pytest.mark.parametrize("where", ["between the probe and the write",
                                   "between the write and the re-check"])
def test_a_delete_landing_inside_the_tombstone_window_never_resurrects_the_document(
    target_db: Any, shared_case: Any, where: str
) -> None:
    # the shared case tombstone-probe-race: INSERT a@500 and REMOVE a@700 in flight at once
    upsert, delete = shared_case("tombstone-probe-race")["Records"]
    settings = Settings(key_schema=("pk",))
    main, tombstones = target_db["items"], target_db["items_tombstones"]
    other = Replicator(main, settings, tombstones=tombstones)

    def concurrent_delete() -> None:
        assert other.process([delete]).lambda_response() == {"batchItemFailures": []}

    if where == "between the probe and the write":
        replicator = Replicator(Interleaved(main, "bulk_write", concurrent_delete), settings,
                                tombstones=tombstones)
    else:
        replicator = Replicator(main, settings,
                                tombstones=Interleaved(tombstones, "find", concurrent_delete))
    result = replicator.process([upsert])

    assert result.lambda_response() == {"batchItemFailures": []}
    assert main.find_one({"_id": "a"}) is None  # deleted at 700: 500 must not come back
    if where == "between the probe and the write":
        assert (result.applied, result.stale) == (0, 1)  # our re-check removed it
    # a late redelivery of the INSERT is blocked by the tombstone
    late = Replicator(main, settings, tombstones=tombstones).process([upsert])
    assert (late.applied, late.stale) == (0, 1) and main.find_one({"_id": "a"}) is None


def test_the_re_check_never_removes_a_newer_write(mongo_db: Any, stream_record: Any) -> None:
    # our insert at 200 lands after the probe; a delete at 300 has written its tombstone (its
    # deleteOne still to come); a write at 400 replaces ours before our re-check reads
    main, tombstones = mongo_db["items"], mongo_db["items_tombstones"]

    def delete_tombstone_written() -> None:
        tombstones.insert_one({"_id": "a", "seq": pad("300")})

    def newer_write() -> None:
        Replicator(main, tombstones=tombstones).process(
            [stream_record("400", "MODIFY", keys("a"), new=item("a", 4))])

    replicator = Replicator(Interleaved(main, "bulk_write", delete_tombstone_written),
                            tombstones=Interleaved(tombstones, "find", newer_write))
    result = replicator.process([stream_record("200", "INSERT", keys("a"), new=item("a", 2))])

    assert result.lambda_response() == {"batchItemFailures": []}
    assert main.find_one({"_id": "a"})["v"] == 4


@pytest.mark.parametrize(("stored", "remains"), [("500", False), ("800", True)])
def test_a_blocked_upsert_removes_a_version_older_than_the_delete_and_only_that(
    target_db: Any, stream_record: Any, stored: str, remains: bool
) -> None:
    # an earlier delivery inserted a@500 after a delete@700, and could not re-check (it failed)
    target_db["items"].insert_one({"_id": "a", "id": "a", SEQUENCE_FIELD: pad(stored)})
    target_db["items_tombstones"].insert_one({"_id": "a", "seq": pad("700")})
    result = Replicator(target_db["items"]).process(
        [stream_record("500", "INSERT", keys("a"), new=item("a", 5))])
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.applied, result.stale) == (0, 1)
    assert (target_db["items"].find_one({"_id": "a"}) is not None) is remains


# -- decimal keys -----------------------------------------------------------------------------
def test_a_decimal_key_on_mongomock_is_quarantined_with_the_limitation_named(
    mongo_db: Any, shared_case: Any
) -> None:
    event = shared_case("mongomock-decimal-key")
    replicator = Replicator(mongo_db["items"], Settings(key_schema=("pk",)))
    for _ in range(2):  # never retried forever
        result = replicator.process(event)
        assert result.lambda_response() == {"batchItemFailures": []}
    (entry,) = mongo_db["items_quarantine"].find()
    assert "mongomock cannot store a Decimal128" in entry["error"]["reason"]
    assert "mongoeco" in entry["error"]["reason"]


def test_a_decimal_key_on_mongoeco_is_stored(mongoeco_db: Any, shared_case: Any) -> None:
    from bson.decimal128 import Decimal128

    event = shared_case("mongomock-decimal-key")
    result = Replicator(mongoeco_db["items"], Settings(key_schema=("pk",))).process(event)
    assert result.lambda_response() == {"batchItemFailures": []} and result.applied == 1
    assert mongoeco_db["items"].find_one({"_id": Decimal128("1.50")})["pk"] == Decimal128("1.5")


# -- side collections -------------------------------------------------------------------------
class Unreachable:
    """A collection on a server that cannot be reached: every call raises AutoReconnect."""

    def __init__(self, database: Any, name: str) -> None:
        self.database = database
        self.name = name

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise AutoReconnect(f"{self.name}: connection refused")

        return call


@pytest.mark.parametrize("side", ["tombstones", "quarantine", "archive"])
def test_an_unreachable_side_collection_gives_batch_item_failures_not_an_exception(
    mongo_db: Any, stream_record: Any, side: str
) -> None:
    kwargs = {side: Unreachable(mongo_db, side)}
    replicator = Replicator(mongo_db["items"], Settings(ttl_deletes="archive"), **kwargs)
    result = replicator.process([
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        {"eventID": "broken", "dynamodb": {"SequenceNumber": "101"}},  # for the quarantine
        stream_record("102", "REMOVE", keys("b"), old=item("b"), ttl=True),  # for the archive
    ])
    failed = {sequence for sequence, _ in result.failures}
    expected = {"tombstones": {"100", "102"}, "quarantine": {"101"}, "archive": {"102"}}[side]
    assert failed == expected


def test_a_changed_tombstone_retention_is_set_with_coll_mod(mongo_db: Any) -> None:
    collection = mongo_db["items_tombstones"]
    write = planned(DeleteOne({"_id": "a"}), "100")
    assert TombstoneStore(collection, 2 * 86400).guard([write]).clear == [write]
    assert TombstoneStore(collection, 3 * 86400).guard([write]).clear == [write]
    (spec,) = [s for s in collection.index_information().values()
               if s["key"] == [(DELETED_AT, 1)]]
    assert spec["expireAfterSeconds"] == 3 * 86400


def test_a_create_index_conflict_goes_to_coll_mod(mongo_db: Any) -> None:
    # another writer made the index with another retention between our look and our create
    collection = mongo_db["items_tombstones"]
    store = TombstoneStore(collection, 3 * 86400)
    original = collection.index_information
    collection.index_information = lambda: {}  # type: ignore[method-assign]
    collection.inner.create_index(DELETED_AT, expireAfterSeconds=2 * 86400)
    store.guard([planned(DeleteOne({"_id": "a"}), "100")])
    collection.index_information = original  # type: ignore[method-assign]
    (spec,) = [s for s in collection.index_information().values()
               if s["key"] == [(DELETED_AT, 1)]]
    assert spec["expireAfterSeconds"] == 3 * 86400


def test_mongoeco_without_coll_mod_keeps_the_retention_and_goes_on(
    mongoeco_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # mongoeco 4.11 answers "unsupported wire command: collMod": a deviation, not a stall
    collection = mongoeco_db["items_tombstones"]
    write = planned(DeleteOne({"_id": "a"}), "100")
    TombstoneStore(collection, 2 * 86400).guard([write])
    with caplog.at_level(logging.WARNING, logger="replicator.tombstones"):
        outcome = TombstoneStore(collection, 3 * 86400).guard([write])
    assert outcome.clear == [write] and outcome.failed == []
    assert "cannot change the tombstone TTL" in caplog.text


def test_the_archive_write_is_guarded_and_keeps_dollar_names(
    target_db: Any, stream_record: Any
) -> None:
    replicator = Replicator(target_db["items"], Settings(ttl_deletes="archive"))
    newer = stream_record("700", "REMOVE", keys("a"), old=item("a", 7, **{"$x": {"S": "d"}}),
                          ttl=True)
    older = stream_record("500", "REMOVE", keys("a"), old=item("a", 5), ttl=True)
    assert replicator.process([newer]).lambda_response() == {"batchItemFailures": []}
    late = replicator.process([older])  # a late redelivery of an older expiry
    assert late.lambda_response() == {"batchItemFailures": []}
    archived = target_db["items_ttl_archive"].find_one({"_id": "a"})
    assert archived["v"] == 7 and archived["$x"] == "d" and archived[SEQUENCE_FIELD] == pad("700")


def test_replicator_has_no_mock_in_it() -> None:
    from pathlib import Path

    import replicator

    root = Path(replicator.__file__).parent
    mentions = [str(p.relative_to(root)) for p in root.rglob("*.py")
                if "mongomock" in p.read_text(encoding="utf-8").lower()]
    # cli.py's mongomock:// scheme is being moved out by another change of issue #10
    assert [m for m in mentions if m != "cli.py"] == []


def test_invalid_document_is_among_the_encoding_errors() -> None:
    assert issubclass(InvalidDocument, apply.ENCODING_ERRORS)
