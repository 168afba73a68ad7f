"""The Replicator end to end on mongomock: guard, partial failures, quarantine, read-back, and
the Lambda handler built from the environment."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import pymongo
import pytest
from pymongo.errors import AutoReconnect, BulkWriteError

from harness.backends.mongomock_target import mongomock_client
from replicator import accelerator, handler
from replicator.core import Replicator
from replicator.errors import ConfigurationError, UnsupportedRecordError
from replicator.settings import SEQUENCE_FIELD, Settings


def item(id_: str, v: int | str = 1) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}}


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


def stored(collection: Any) -> dict[str, dict[str, Any]]:
    return {doc["_id"]: doc for doc in collection.find()}


# -- the stale-write guard -----------------------------------------------------------------------
def test_replayed_batch_changes_nothing(mongo_db: Any, stream_record: Any) -> None:
    # given a batch that was applied
    collection = mongo_db["items"]
    replicator = Replicator(collection)
    batch = {"Records": [
        stream_record("100", "INSERT", keys("a"), new=item("a", 1)),
        stream_record("101", "INSERT", keys("b"), new=item("b", 1)),
        stream_record("102", "MODIFY", keys("a"), new=item("a", 2), old=item("a", 1)),
        stream_record("103", "REMOVE", keys("b"), old=item("b", 1)),
    ]}
    first = replicator.process(batch)
    before = stored(collection)

    # when Lambda delivers it again
    again = replicator.process(batch)

    # then nothing changes, and nothing is reported as failed
    assert (first.applied, first.stale) == (2, 0)
    # (a's upsert is refused as stale; b's delete matches nothing, a no-op counted as applied)
    assert (again.applied, again.stale) == (1, 1)
    assert again.lambda_response() == {"batchItemFailures": []}
    assert stored(collection) == before == {
        "a": {"_id": "a", "id": "a", "v": 2, "_ddb_seq": "102".zfill(40)}}


def test_older_write_after_a_newer_one_does_not_regress(mongo_db: Any, stream_record: Any) -> None:
    collection = mongo_db["items"]
    replicator = Replicator(collection)
    replicator.process([stream_record("200", "MODIFY", keys("a"), new=item("a", 2))])

    late = replicator.process([stream_record("150", "MODIFY", keys("a"), new=item("a", 1))])

    assert (late.applied, late.stale, late.failures) == (0, 1, [])
    assert collection.find_one({"_id": "a"})["v"] == 2


def test_late_delete_does_not_delete_a_newer_document(mongo_db: Any, stream_record: Any) -> None:
    collection = mongo_db["items"]
    replicator = Replicator(collection)
    replicator.process([stream_record("200", "INSERT", keys("a"), new=item("a", 2))])

    replicator.process([stream_record("150", "REMOVE", keys("a"), old=item("a", 1))])

    assert collection.find_one({"_id": "a"}) == {
        "_id": "a", "id": "a", "v": 2, "_ddb_seq": "200".zfill(40)}


def test_older_change_after_a_delete_does_not_bring_the_document_back(
    mongo_db: Any, stream_record: Any
) -> None:
    collection = mongo_db["items"]
    replicator = Replicator(collection)
    replicator.process([stream_record("100", "INSERT", keys("a"), new=item("a", 1)),
                        stream_record("200", "REMOVE", keys("a"), old=item("a", 1))])

    late = replicator.process([stream_record("150", "MODIFY", keys("a"), new=item("a", 5))])

    assert collection.count_documents({}) == 0
    assert (late.applied, late.stale) == (0, 1)


def test_without_guard_the_last_delivery_wins(mongo_db: Any, stream_record: Any) -> None:
    collection = mongo_db["items"]
    replicator = Replicator(collection, Settings(guard=False))
    replicator.process([stream_record("200", "MODIFY", keys("a"), new=item("a", 2))])
    replicator.process([stream_record("150", "MODIFY", keys("a"), new=item("a", 1))])
    assert collection.find_one({"_id": "a"}) == {"_id": "a", "id": "a", "v": 1}


# -- partial failures ----------------------------------------------------------------------------
class FailingCollection:
    """A pymongo-like collection whose bulk_write raises the given error (not mongomock, so the
    replicator takes its real bulk_write path). Side collections live in ``database``."""

    def __init__(self, database: Any, error: Exception | None) -> None:
        self.database = database
        self.name = "items"
        self.error = error
        self.calls: list[tuple[list[Any], bool]] = []

    def bulk_write(self, operations: list[Any], ordered: bool = True) -> None:
        self.calls.append((list(operations), ordered))
        if self.error is not None:
            raise self.error

    def find(self, *args: Any, **kwargs: Any) -> Any:
        """Reads (the read-back after a duplicate key) see ``database["items"]``."""
        return self.database["items"].find(*args, **kwargs)


def batch_of_four_keys(stream_record: Any) -> list[dict[str, Any]]:
    """Planned writes in this order: k0 (98), k1 (99 + 102), k2 (100), k3 (101)."""
    return [
        stream_record("98", "INSERT", keys("k0"), new=item("k0")),
        stream_record("99", "INSERT", keys("k1"), new=item("k1")),
        stream_record("100", "INSERT", keys("k2"), new=item("k2")),
        stream_record("101", "INSERT", keys("k3"), new=item("k3")),
        stream_record("102", "MODIFY", keys("k1"), new=item("k1", 2), old=item("k1")),
    ]


MESSAGES = {112: "WriteConflict error: this operation conflicted with another operation",
            121: "Document failed validation", 11000: "E11000 duplicate key error"}


def write_errors(*indexes: int, code: int = 112, **extra: Any) -> BulkWriteError:
    """A server's answer refusing the writes at ``indexes``; by default with a transient code
    (112 WriteConflict), which the replicator retries."""
    return BulkWriteError({
        "writeErrors": [{"index": i, "code": code, "errmsg": MESSAGES.get(code, "refused"),
                         **extra} for i in indexes],
        "writeConcernErrors": [],
    })


@pytest.mark.parametrize(
    ("failed_indexes", "expected"),
    [
        ((2, 3), "100"),  # k2 (100) and k3 (101)
        ((1, 3), "99"),  # k1 stands for 99 and 102: its lowest; and 99 < 101 as numbers
        ((0,), "98"),
        ((3,), "101"),
    ],
)
def test_write_errors_report_the_lowest_failed_sequence_number(
    mongo_db: Any, stream_record: Any, failed_indexes: tuple[int, ...], expected: str
) -> None:
    # given a target that refuses the writes at some indexes of the bulk, for a passing reason
    collection = FailingCollection(mongo_db, write_errors(*failed_indexes))
    replicator = Replicator(collection)

    # when a batch is processed
    result = replicator.process(batch_of_four_keys(stream_record))

    # then Lambda is told exactly the lowest sequence number among the failed records
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": expected}]}
    assert result.applied == 4 - len(failed_indexes)
    # and the bulk was one unordered bulk_write of the planned operations
    ((operations, ordered),) = collection.calls
    assert ordered is False
    assert [op._filter["_id"] for op in operations] == ["k0", "k1", "k2", "k3"]


def test_duplicate_key_on_a_guarded_upsert_is_stale_when_a_newer_version_is_stored(
    mongo_db: Any, stream_record: Any
) -> None:
    mongo_db["items"].insert_one({"_id": "k2", SEQUENCE_FIELD: "200".zfill(40)})
    error = write_errors(2, code=11000, keyPattern={"_id": 1})
    result = Replicator(FailingCollection(mongo_db, error)).process(
        batch_of_four_keys(stream_record))
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.applied, result.stale) == (3, 1)


@pytest.mark.parametrize("stored", [None, "99"])
def test_duplicate_key_without_a_newer_version_stored_is_a_race_and_retried(
    mongo_db: Any, stream_record: Any, stored: str | None
) -> None:
    # E11000 on _id is no proof: an upsert racing an insert of the same _id gets it too
    if stored is not None:
        mongo_db["items"].insert_one({"_id": "k2", SEQUENCE_FIELD: stored.zfill(40)})
    for pattern in ({"keyPattern": {"_id": 1}}, {}):
        error = write_errors(2, code=11000, **pattern)
        result = Replicator(FailingCollection(mongo_db, error)).process(
            batch_of_four_keys(stream_record))
        assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "100"}]}
        assert (result.applied, result.stale, result.quarantined) == (3, 0, [])


def test_duplicate_key_on_another_unique_index_is_quarantined(
    mongo_db: Any, stream_record: Any
) -> None:
    error = write_errors(2, code=11000, keyPattern={"email": 1}, keyValue={"email": "a@x"})
    result = Replicator(FailingCollection(mongo_db, error)).process(
        batch_of_four_keys(stream_record))
    assert result.lambda_response() == {"batchItemFailures": []}
    assert (result.applied, result.stale) == (3, 0)
    (kept,) = mongo_db["items_quarantine"].find()
    assert kept["sequence_number"] == "100" and kept["error"]["kind"] == "constraint"
    assert json.loads(kept["raw_record"]) == batch_of_four_keys(stream_record)[2]


def test_transient_error_for_everything_reports_the_lowest_of_the_batch(
    mongo_db: Any, stream_record: Any
) -> None:
    collection = FailingCollection(mongo_db, AutoReconnect("connection reset"))
    result = Replicator(collection).process(batch_of_four_keys(stream_record))
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "98"}]}
    assert result.applied == 0
    assert {why for _, why in result.failures} == {"AutoReconnect: connection reset"}


def test_write_concern_error_fails_the_unacknowledged_writes(
    mongo_db: Any, stream_record: Any
) -> None:
    error = BulkWriteError({"writeErrors": [],
                            "writeConcernErrors": [{"code": 64, "errmsg": "waiting timed out"}]})
    result = Replicator(FailingCollection(mongo_db, error)).process(
        batch_of_four_keys(stream_record))
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "98"}]}
    assert len(result.failures) == 4


# -- quarantine ----------------------------------------------------------------------------------
def batch_with_a_malformed_record(stream_record: Any) -> list[dict[str, Any]]:
    malformed = stream_record("101", "INSERT", keys("bad"), new=item("bad"))
    del malformed["dynamodb"]["Keys"]
    return [
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        malformed,
        stream_record("102", "INSERT", keys("b"), new=item("b")),
    ]


def test_malformed_record_is_quarantined_and_the_rest_applied(
    mongo_db: Any, stream_record: Any
) -> None:
    # given a batch with a malformed record in the middle
    records = batch_with_a_malformed_record(stream_record)
    replicator = Replicator(mongo_db["items"])

    # when it is processed
    result = replicator.process({"Records": records})

    # then the rest is applied, nothing is retried, and the bad record is kept with its error
    assert set(stored(mongo_db["items"])) == {"a", "b"}
    assert result.lambda_response() == {"batchItemFailures": []}
    (entry,) = mongo_db["items_quarantine"].find()
    assert json.loads(entry["raw_record"]) == records[1]
    assert entry["sequence_number"] == "101"
    assert entry["index"] == 1
    assert entry["error"]["type"] == "MalformedRecordError"
    assert entry["error"]["field_path"] == "dynamodb.Keys"
    assert "SequenceNumber 101" in entry["error"]["message"]
    assert isinstance(entry["quarantined_at"], datetime)
    assert [b.index for b in result.quarantined] == [1]


def test_unconvertible_record_is_quarantined_with_its_field_path(
    mongo_db: Any, stream_record: Any
) -> None:
    replicator = Replicator(mongo_db["items"])
    replicator.process([stream_record("100", "INSERT", keys("a"), new=item("a", "NaN"))])
    (entry,) = mongo_db["items_quarantine"].find()
    assert entry["error"]["type"] == "ConversionError"
    assert entry["error"]["field_path"] == "dynamodb.NewImage.v"
    assert mongo_db["items"].count_documents({}) == 0


def test_replayed_bad_record_is_quarantined_once(mongo_db: Any, stream_record: Any) -> None:
    replicator = Replicator(mongo_db["items"])
    records = batch_with_a_malformed_record(stream_record)
    replicator.process({"Records": records})
    replicator.process({"Records": records})
    assert mongo_db["items_quarantine"].count_documents({}) == 1


def test_quarantine_collection_name_is_configurable(mongo_db: Any, stream_record: Any) -> None:
    replicator = Replicator(mongo_db["items"], Settings(quarantine_collection="dead_letters"))
    replicator.process(batch_with_a_malformed_record(stream_record))
    assert mongo_db["dead_letters"].count_documents({}) == 1
    assert mongo_db["items_quarantine"].count_documents({}) == 0


def test_fail_mode_reports_the_bad_record_and_holds_back_what_follows(
    mongo_db: Any, stream_record: Any
) -> None:
    replicator = Replicator(mongo_db["items"], Settings(bad_records="fail"))

    result = replicator.process(batch_with_a_malformed_record(stream_record))

    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    assert set(stored(mongo_db["items"])) == {"a"}  # b (102) waits for the redelivery
    assert mongo_db["items_quarantine"].count_documents({}) == 0


def test_fail_mode_without_a_readable_sequence_number_fails_the_batch(
    mongo_db: Any, stream_record: Any
) -> None:
    records = batch_with_a_malformed_record(stream_record)
    del records[1]["dynamodb"]["SequenceNumber"]
    replicator = Replicator(mongo_db["items"], Settings(bad_records="fail"))
    with pytest.raises(ConfigurationError, match="record index 1 has no readable SequenceNumber"):
        replicator.process(records)


# -- KEYS_ONLY and read-back ---------------------------------------------------------------------
class FakeItemReader:
    """Answers from a dict of current items (by the ``id`` string); records what was asked."""

    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items
        self.asked: list[list[Mapping[str, Any]]] = []

    def read(self, keys: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any] | None]:
        self.asked.append(list(keys))
        return [self.items.get(k["id"]["S"]) for k in keys]


def keys_only(stream_record: Any, seq: str, name: str, id_: str) -> dict[str, Any]:
    return stream_record(seq, name, keys(id_), view="KEYS_ONLY")


def test_keys_only_without_an_item_reader_is_quarantined_with_the_fix(
    mongo_db: Any, stream_record: Any
) -> None:
    # Issue #10: one record the configuration cannot handle is quarantined, not a batch error.
    replicator = Replicator(mongo_db["items"])
    plan = replicator.plan([keys_only(stream_record, "100", "INSERT", "a")])
    assert plan.writes == []
    (bad,) = plan.bad_records
    assert isinstance(bad.error, UnsupportedRecordError)
    assert "KEYS_ONLY stream" in str(bad.error) and "item reader" in str(bad.error)
    assert bad.error.field_path == "dynamodb.NewImage"


def test_keys_only_with_an_item_reader_applies_the_read_item(
    mongo_db: Any, stream_record: Any
) -> None:
    # given a reader that knows the current items (c is gone by now)
    reader = FakeItemReader({"a": item("a", 7), "b": item("b", 8)})
    replicator = Replicator(mongo_db["items"], item_reader=reader)
    replicator.process([stream_record("90", "INSERT", keys("c"), new=item("c"))])

    # when KEYS_ONLY records arrive
    result = replicator.process([
        keys_only(stream_record, "100", "INSERT", "a"),
        keys_only(stream_record, "101", "MODIFY", "b"),
        keys_only(stream_record, "102", "MODIFY", "c"),
        keys_only(stream_record, "103", "REMOVE", "zz"),
    ])

    # then the read items are written, a vanished item is deleted, REMOVEs are not read back
    assert result.lambda_response() == {"batchItemFailures": []}
    assert reader.asked == [[keys("a"), keys("b"), keys("c")]]
    assert stored(mongo_db["items"]) == {
        "a": {"_id": "a", "id": "a", "v": 7, "_ddb_seq": "100".zfill(40)},
        "b": {"_id": "b", "id": "b", "v": 8, "_ddb_seq": "101".zfill(40)},
    }


# -- the Lambda handler --------------------------------------------------------------------------
PASSWORD = "S3cr3t-Pa55w0rd"
URI = f"mongodb://app:{PASSWORD}@db.example:27017/?authSource=admin"


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Environment for the handler, and pymongo.MongoClient patched to a mongomock client;
    returns the list of client constructions."""
    monkeypatch.setenv("MONGODB_URI", URI)
    monkeypatch.setenv("MONGODB_DATABASE", "app")
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    monkeypatch.delenv("REPLICATOR_READ_BACK_TABLE", raising=False)
    calls: list[tuple[Any, ...]] = []

    def fake_client(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return mongomock_client()

    monkeypatch.setattr(pymongo, "MongoClient", fake_client)
    handler.reset()
    yield calls
    handler.reset()


def test_handler_creates_the_client_once_across_invocations(
    lambda_env: list[Any], stream_record: Any
) -> None:
    # when two events arrive in the same container
    first = handler.lambda_handler(
        {"Records": [stream_record("100", "INSERT", keys("a"), new=item("a"))]})
    second = handler.lambda_handler(
        {"Records": [stream_record("101", "INSERT", keys("b"), new=item("b"))]})

    # then one client served both, with the URI from the environment
    assert first == second == {"batchItemFailures": []}
    ((args, kwargs),) = lambda_env
    assert args == (URI,)
    assert kwargs["retryWrites"] is True
    collection = handler._get_replicator().collection
    assert (collection.database.name, collection.name) == ("app", "users")
    assert sorted(d["_id"] for d in collection.find()) == ["a", "b"]


def test_handler_reads_replicator_settings_from_the_environment(
    lambda_env: list[Any], monkeypatch: pytest.MonkeyPatch, stream_record: Any
) -> None:
    monkeypatch.setenv("REPLICATOR_KEY_SCHEMA", "pk, sk")
    monkeypatch.setenv("REPLICATOR_GUARD", "false")
    composite = {"sk": {"N": "1"}, "pk": {"S": "p"}}
    handler.lambda_handler({"Records": [stream_record("100", "INSERT", composite, new=composite)]})
    (document,) = handler._get_replicator().collection.find()
    assert document == {"_id": {"pk": "p", "sk": 1}, "sk": 1, "pk": "p"}  # no _ddb_seq


def test_the_planning_path_is_logged_once_at_cold_start_not_per_batch(
    lambda_env: list[Any], stream_record: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="replicator")
    for n in range(3):
        handler.lambda_handler({"Records": [stream_record(str(100 + n), "INSERT", keys("a"),
                                                          new=item("a"))]})
    said = [r.getMessage() for r in caplog.records if "planning:" in r.getMessage()]
    assert len(said) == 1
    expected = ("pure Python" if accelerator.native is None else "C accelerator")
    assert expected in said[0]


@pytest.mark.parametrize("missing", [("MONGODB_URI",), ("MONGODB_DATABASE", "MONGODB_COLLECTION")])
def test_missing_environment_variables_are_named(
    lambda_env: list[Any], monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]
) -> None:
    for name in missing:
        monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError) as raised:
        handler.lambda_handler({"Records": []})
    # The URI may also come from Secrets Manager or SSM (replicator/uri_source.py).
    named = ["MONGODB_URI_SECRET_ARN or MONGODB_URI_PARAMETER or MONGODB_URI" if n == "MONGODB_URI"
             else n for n in missing]
    assert str(raised.value) == f"set the environment variable(s) {', '.join(named)}"
    assert PASSWORD not in str(raised.value)
    assert lambda_env == []  # no client was made


def test_invalid_replicator_setting_is_a_configuration_error(
    lambda_env: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLICATOR_TTL_DELETES", "forever")
    with pytest.raises(ConfigurationError, match="ttl_deletes must be one of") as raised:
        handler.lambda_handler({"Records": []})
    assert PASSWORD not in str(raised.value)


def test_password_never_appears_in_logs(
    lambda_env: list[Any], stream_record: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given logs captured at every level, and a batch with a bad record (logged as an error)
    caplog.set_level(logging.DEBUG)
    records = batch_with_a_malformed_record(stream_record)

    response = handler.lambda_handler({"Records": records})

    assert response == {"batchItemFailures": []}
    # the batch's one line counts and names the quarantined record
    assert "1 quarantined" in caplog.text and "quarantined: record index 1" in caplog.text
    assert "replicating into app.users" in caplog.text
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in repr(r.args) for r in caplog.records)


def test_password_is_not_in_the_error_of_an_invalid_uri(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given the real pymongo and a URI it refuses (replicator.mongo.connect: a ConfigurationError)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://app:{PASSWORD}@db.example:notaport/")
    monkeypatch.setenv("MONGODB_DATABASE", "app")
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    handler.reset()
    try:
        with pytest.raises(ConfigurationError) as raised:
            handler.lambda_handler({"Records": []})
    finally:
        handler.reset()
    assert "Port" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in caplog.text
