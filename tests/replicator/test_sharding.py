"""Shard-key-aware plans, the transaction path of apply.py, and the container targets without
Docker. Runs everywhere: no server, no Docker (the real-MongoDB tests are in tests/real_mongodb)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from harness.backends import mongo_topology, testcontainers_target
from harness.backends.base import TARGETS, BackendUnavailable, target_backend
from harness.backends.mongomock_target import mongomock_client
from replicator import apply
from replicator.core import Replicator
from replicator.errors import ConfigurationError, UnsupportedRecordError
from replicator.events import StreamViewType, parse_records
from replicator.operations import operation
from replicator.plan import Planner
from replicator.settings import Settings
from replicator.sharding import same_shard_values
from replicator.writes import PlannedWrite, ShardKeyMove, WritePlan
from support.planned_writes import from_operation

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2026-01-01T00:00:00.000"
TENANT = Settings(key_schema=("id",), shard_key=("tenant",))


# -- records -------------------------------------------------------------------------------------
def item(id_: str, tenant: str | None = "t1", v: int = 1, **extra: Any) -> dict[str, Any]:
    image: dict[str, Any] = {"id": {"S": id_}, "v": {"N": str(v)}}
    if tenant is not None:
        image["tenant"] = {"S": tenant}
    image.update(extra)
    return image


def record(
    seq: str,
    name: str,
    id_: str = "u1",
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    view: str = "NEW_AND_OLD_IMAGES",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Keys": {"id": {"S": id_}},
        "SequenceNumber": seq,
        "StreamViewType": view,
        "ApproximateCreationDateTime": 1795712760,
    }
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {"eventID": f"e{seq}", "eventName": name, "eventSource": "aws:dynamodb",
            "eventSourceARN": ARN, "dynamodb": body}


def plan(records: list[dict[str, Any]], settings: Settings = TENANT) -> WritePlan:
    changes, bad = parse_records({"Records": records})
    return Planner(settings).plan(changes, bad)


def pad(seq: str) -> str:
    return seq.zfill(40)


def guard(seq: str) -> dict[str, Any]:
    return {"_ddb_seq": {"$not": {"$gte": pad(seq)}}}


def doc(id_: str, tenant: str, v: int, seq: str, **extra: Any) -> dict[str, Any]:
    return {"_id": id_, "id": id_, "v": v, "tenant": tenant, **extra, "_ddb_seq": pad(seq)}


# -- the plan: shard key in every filter ---------------------------------------------------------
def test_insert_is_a_move_from_an_unknown_value() -> None:
    # An INSERT has no old image, yet a copy may be stored at another value (a TTL delete kept by
    # ttl_deletes="ignore", a pre-filled collection, moto's key-only INSERT before the full one):
    # the transaction path looks; the single write (no transactions: unsharded) filters on _id.
    result = plan([record("100", "INSERT", new=item("u1", "t1", 1))])
    document = doc("u1", "t1", 1, "100")
    assert result.writes == [
        from_operation(
            ReplaceOne({"_id": "u1", **guard("100")}, document, upsert=True),
            ("100",),
            shard_key_move=ShardKeyMove(
                document_id="u1",
                shard_key=("tenant",),
                old=None,
                new={"tenant": "t1"},
                write=from_operation(ReplaceOne({"_id": "u1", "tenant": "t1", **guard("100")},
                                                document, upsert=True), ("100",)),
                sequence_field="_ddb_seq",
                sequence=pad("100"),
            ),
        )
    ]


def test_write_filter_has_the_shard_key_of_the_new_image() -> None:
    result = plan([record("200", "MODIFY", new=item("u1", "t1", 2), old=item("u1", "t1", 1))])
    assert result.writes == [
        from_operation(
            ReplaceOne({"_id": "u1", "tenant": "t1", **guard("200")},
                       doc("u1", "t1", 2, "200"), upsert=True),
            ("200",),
        )
    ]
    assert result.writes[0].shard_key_move is None


def test_delete_filter_has_the_shard_key_of_the_old_image() -> None:
    result = plan([record("300", "REMOVE", old=item("u1", "t9", 4))])
    assert result.writes == [
        from_operation(DeleteOne({"_id": "u1", "tenant": "t9", **guard("300")}), ("300",))
    ]


def test_delete_without_old_image_takes_the_shard_key_from_the_keys() -> None:
    settings = Settings(key_schema=("id",), shard_key=("id",))
    result = plan([record("300", "REMOVE", view="KEYS_ONLY")], settings)
    assert result.writes == [
        from_operation(DeleteOne({"_id": "u1", "id": "u1", **guard("300")}), ("300",))
    ]


def test_shard_key_value_change_is_a_move() -> None:
    result = plan([record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1))])
    document = doc("u1", "t2", 2, "200")
    assert result.writes == [
        from_operation(
            # the single write: OLD shard key in the filter (retryable write / no transactions)
            ReplaceOne({"_id": "u1", "tenant": "t1", **guard("200")}, document, upsert=True),
            ("200",),
            shard_key_move=ShardKeyMove(
                document_id="u1",
                shard_key=("tenant",),
                old={"tenant": "t1"},
                new={"tenant": "t2"},
                write=from_operation(ReplaceOne({"_id": "u1", "tenant": "t2", **guard("200")},
                                                document, upsert=True), ("200",)),
                sequence_field="_ddb_seq",
                sequence=pad("200"),
            ),
        )
    ]


def test_coalesced_moves_start_from_the_oldest_old_image() -> None:
    result = plan([
        record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
        record("201", "MODIFY", new=item("u1", "t3", 3), old=item("u1", "t2", 2)),
    ])
    (write,) = result.writes
    assert write.sequence_numbers == ("200", "201")
    assert operation(write) == ReplaceOne(
        {"_id": "u1", "tenant": "t1", **guard("201")}, doc("u1", "t3", 3, "201"), upsert=True
    )
    assert write.shard_key_move is not None
    assert (write.shard_key_move.old, write.shard_key_move.new) == (
        {"tenant": "t1"}, {"tenant": "t3"})


def test_move_then_back_in_one_batch_is_a_plain_write() -> None:
    result = plan([
        record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
        record("201", "MODIFY", new=item("u1", "t1", 3), old=item("u1", "t2", 2)),
    ])
    assert result.writes == [
        from_operation(
            ReplaceOne({"_id": "u1", "tenant": "t1", **guard("201")},
                       doc("u1", "t1", 3, "201"), upsert=True),
            ("200", "201"),
        )
    ]


def test_delete_after_a_coalesced_move_targets_where_the_document_is_stored() -> None:
    result = plan([
        record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
        record("201", "REMOVE", old=item("u1", "t2", 2)),
    ])
    assert result.writes == [
        from_operation(DeleteOne({"_id": "u1", "tenant": "t1", **guard("201")}),
                     ("200", "201"))
    ]


def test_insert_first_in_batch_moves_from_an_unknown_value() -> None:
    result = plan([
        record("100", "INSERT", new=item("u1", "t1", 1)),
        record("101", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
    ])
    (write,) = result.writes
    assert write.sequence_numbers == ("100", "101")
    assert operation(write) == ReplaceOne(
        {"_id": "u1", **guard("101")}, doc("u1", "t2", 2, "101"), upsert=True)
    assert write.shard_key_move is not None
    assert (write.shard_key_move.old, write.shard_key_move.new) == (None, {"tenant": "t2"})


def test_delete_after_insert_in_one_batch_targets_the_id() -> None:
    result = plan([
        record("100", "INSERT", new=item("u1", "t1", 1)),
        record("101", "REMOVE", old=item("u1", "t1", 1)),
    ])
    assert result.writes == [
        from_operation(DeleteOne({"_id": "u1", **guard("101")}), ("100", "101"))]


def test_compound_shard_key_change_in_one_field() -> None:
    settings = Settings(key_schema=("id",), shard_key=("tenant", "region"))
    old = item("u1", "t1", 1, region={"S": "eu"})
    new = item("u1", "t1", 2, region={"S": "us"})
    (write,) = plan([record("200", "MODIFY", new=new, old=old)], settings).writes
    assert write.filter == {
        "_id": "u1", "tenant": "t1", "region": "eu", **guard("200")}
    assert write.shard_key_move is not None
    assert write.shard_key_move.write.filter == {
        "_id": "u1", "tenant": "t1", "region": "us", **guard("200")}


def test_nested_shard_key_field_and_missing_value() -> None:
    settings = Settings(key_schema=("id",), shard_key=("meta.tenant",))
    old = item("u1", None, 1, meta={"M": {"tenant": {"S": "t1"}}})
    new = item("u1", None, 2, meta={"M": {"tenant": {"S": "t1"}, "x": {"S": "y"}}})
    (write,) = plan([record("200", "MODIFY", new=new, old=old)], settings).writes
    assert write.shard_key_move is None
    assert write.filter == {"_id": "u1", "meta.tenant": "t1", **guard("200")}
    # a missing shard key field is null to MongoDB: the filter says so explicitly
    (write,) = plan([record("200", "MODIFY", new=item("u1", None, 2), old=item("u1", None, 1))],
                    settings).writes
    assert write.filter == {"_id": "u1", "meta.tenant": None, **guard("200")}


def test_move_of_a_document_with_dollar_names_uses_pipeline_updates() -> None:
    new = item("u1", "t2", 2, **{"$price": {"N": "3"}})
    (write,) = plan([record("200", "MODIFY", new=new, old=item("u1", "t1", 1))]).writes
    document = doc("u1", "t2", 2, "200", **{"$price": 3})
    pipeline = [{"$replaceWith": {"$literal": document}}]
    assert operation(write) == UpdateOne(
        {"_id": "u1", "tenant": "t1", **guard("200")}, pipeline, upsert=True)
    assert write.shard_key_move is not None
    assert operation(write.shard_key_move.write) == UpdateOne(
        {"_id": "u1", "tenant": "t2", **guard("200")}, pipeline, upsert=True)


def test_move_without_guard() -> None:
    settings = Settings(key_schema=("id",), shard_key=("tenant",), guard=False)
    (write,) = plan(
        [record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1))], settings
    ).writes
    assert write.filter == {"_id": "u1", "tenant": "t1"}
    assert write.shard_key_move is not None
    assert write.shard_key_move.sequence is None
    assert write.shard_key_move.write.filter == {"_id": "u1", "tenant": "t2"}


def test_shard_key_of_table_key_attributes_never_moves() -> None:
    settings = Settings(key_schema=("id",), shard_key=("id",))
    (write,) = plan(
        [record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1))], settings
    ).writes
    assert write.shard_key_move is None
    assert write.filter == {"_id": "u1", "id": "u1", **guard("200")}


def test_shard_values_compare_strictly() -> None:
    # 1 (int) and 1.0 (double) are equal to MongoDB; the planner takes them as a move, which is
    # correct either way (only slower), rather than risk a write at the wrong shard key value.
    assert same_shard_values({"s": 1}, {"s": 1})
    assert not same_shard_values({"s": 1}, {"s": 1.0})
    assert not same_shard_values({"s": True}, {"s": 1})
    assert not same_shard_values({"s": {"a": 1, "b": 2}}, {"s": {"b": 2, "a": 1}})
    assert same_shard_values({"s": None}, {"s": None})


def test_unconvertible_old_image_of_the_oldest_change_is_quarantined() -> None:
    bad_old = item("u1", "t1", 1, broken={"XX": "?"})
    result = plan([
        record("200", "MODIFY", new=item("u1", "t2", 2), old=bad_old),
        record("201", "MODIFY", new=item("u1", "t3", 3), old=item("u1", "t2", 2)),
    ])
    assert [b.sequence_number for b in result.bad_records] == ["200"]
    (write,) = result.writes
    assert write.sequence_numbers == ("201",)
    assert write.shard_key_move is not None
    assert write.shard_key_move.old == {"tenant": "t2"}


# -- stream view check ---------------------------------------------------------------------------
@pytest.mark.parametrize("view", [StreamViewType.NEW_IMAGE, StreamViewType.KEYS_ONLY])
def test_stream_without_old_image_is_refused(view: StreamViewType) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Planner(TENANT).check_stream_view(view, ["id"])
    message = str(raised.value)
    assert "['tenant']" in message and view.value in message
    assert "NEW_AND_OLD_IMAGES" in message


@pytest.mark.parametrize("view", [StreamViewType.NEW_AND_OLD_IMAGES, StreamViewType.OLD_IMAGE])
def test_streams_with_old_images_are_accepted(view: StreamViewType) -> None:
    Planner(TENANT).check_stream_view(view, ["id"])


@pytest.mark.parametrize("shard_key", [("id",), ("_id",), ()])
def test_any_view_works_when_the_shard_key_cannot_change(shard_key: tuple[str, ...]) -> None:
    planner = Planner(Settings(key_schema=("id",), shard_key=shard_key))
    planner.check_stream_view(StreamViewType.NEW_IMAGE, ["id"])
    planner.check_stream_view(StreamViewType.KEYS_ONLY, ["id"])


def test_key_names_come_from_the_record_without_key_schema() -> None:
    planner = Planner(Settings(shard_key=("tenant",)))
    with pytest.raises(ConfigurationError):
        planner.check_stream_view(StreamViewType.NEW_IMAGE, ["id"])
    Planner(Settings(shard_key=("id",))).check_stream_view(StreamViewType.NEW_IMAGE, ["id"])


def test_replicator_quarantines_a_new_image_record_before_writing() -> None:
    # Issue #10: judged per record (quarantined with the fix), not a batch-wide exception.
    collection = mongomock_client().db.users
    replicator = Replicator(collection, TENANT)
    event = {"Records": [record("100", "INSERT", new=item("u1"), view="NEW_IMAGE"),
                         record("101", "INSERT", "u2", new=item("u2"))]}
    plan = replicator.plan(event)
    (bad,) = plan.bad_records
    assert isinstance(bad.error, UnsupportedRecordError) and "NEW_IMAGE" in str(bad.error)
    assert bad.error.field_path == "dynamodb.StreamViewType"
    assert [w.sequence_numbers for w in plan.writes] == [("101",)]


# -- apply: the transaction path -----------------------------------------------------------------
class FakeSession:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.calls.append(("end_session",))

    def with_transaction(self, callback: Any, read_concern: Any = None,
                         write_concern: Any = None, **_: Any) -> Any:
        self.client.calls.append(("with_transaction", read_concern.level,
                                  write_concern.document))
        value = callback(self)  # pymongo aborts on an exception and re-raises it
        self.client.calls.append(("commit",))
        return value


class FakeClient:
    """Answers ``hello`` like the given topology, records sessions; no real transactions."""

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.calls: list[tuple[Any, ...]] = []
        self.admin = SimpleNamespace(command=self._command)

    def _command(self, name: str) -> dict[str, Any]:
        self.calls.append(("command", name))
        return self.hello

    def start_session(self) -> FakeSession:
        self.calls.append(("start_session",))
        return FakeSession(self)


class RecordingCollection:
    """A pymongo-like collection that records every call; documents live in mongomock."""

    name = "users"

    def __init__(self, client: FakeClient, fail_on: str | None = None) -> None:
        self.database = SimpleNamespace(client=client)
        self.calls = client.calls
        self.store = mongomock_client().db.users
        self.fail_on = fail_on

    def find(self, filter: dict[str, Any], projection: Any = None, session: Any = None) -> Any:
        projection = None if projection is None else dict(projection)
        self.calls.append(("find", dict(filter), projection, session is not None))
        # mongomock adds "_id" to the projection it is given: a copy
        return self.store.find(filter, None if projection is None else dict(projection))

    def delete_one(self, filter: dict[str, Any], session: Any = None) -> Any:
        self.calls.append(("delete_one", filter, session is not None))
        return self.store.delete_one(filter)

    def bulk_write(self, operations: list[Any], ordered: bool = True, session: Any = None) -> None:
        self.calls.append(("bulk_write", list(operations), ordered, session is not None))
        if self.fail_on == "bulk_write":
            raise AutoReconnect("connection reset")
        errors = []
        for index, request in enumerate(operations):
            try:
                self.store.apply_one(request)
            except DuplicateKeyError as error:
                errors.append({"index": index, "code": 11000, "keyPattern": {"_id": 1},
                               "errmsg": str(error)})
                if ordered:
                    break
        if errors:  # like MongoDB: ordered stops at the first error, unordered goes on
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})


REPLICA_SET = {"isWritablePrimary": True, "setName": "rs0"}
MONGOS = {"isWritablePrimary": True, "msg": "isdbgrid"}
STANDALONE = {"isWritablePrimary": True}


def move_plan() -> PlannedWrite:
    (write,) = plan(
        [record("200", "MODIFY", new=item("u1", "t2", 2), old=item("u1", "t1", 1))]).writes
    return write


def calls_after_hello(collection: RecordingCollection) -> list[tuple[Any, ...]]:
    return [c for c in collection.calls if c != ("command", "hello")]


@pytest.mark.parametrize("hello", [REPLICA_SET, MONGOS], ids=["replica-set", "mongos"])
def test_move_runs_in_a_transaction_where_supported(hello: dict[str, Any]) -> None:
    collection = RecordingCollection(FakeClient(hello))
    collection.store.insert_one(doc("u1", "t1", 1, "100"))
    planned = move_plan()
    assert planned.shard_key_move is not None
    result = apply.write(collection, [planned])
    assert result.applied == [planned] and not result.failed and not result.stale
    assert collection.calls == [
        ("command", "hello"),
        ("start_session",),
        ("with_transaction", "snapshot", {"w": "majority"}),
        ("find", {"_id": "u1"}, {"tenant": 1, "_ddb_seq": 1}, True),
        ("delete_one", {"_id": "u1", "tenant": "t1"}, True),
        ("bulk_write", [operation(planned.shard_key_move.write)], True, True),
        ("commit",),
        ("end_session",),
    ]
    assert list(collection.store.find({}, {"_id": 1, "tenant": 1, "v": 1})) == [
        {"_id": "u1", "tenant": "t2", "v": 2}]


def test_move_into_an_empty_collection_inserts() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    planned = move_plan()
    result = apply.write(collection, [planned])
    assert result.applied == [planned]
    assert not [c for c in collection.calls if c[0] == "delete_one"]
    assert collection.store.find_one({"_id": "u1"})["tenant"] == "t2"


def test_move_in_a_transaction_is_stale_when_a_newer_copy_is_stored() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    collection.store.insert_one(doc("u1", "t3", 9, "900"))  # newer, at yet another value
    planned = move_plan()
    result = apply.write(collection, [planned])
    assert result.stale == [planned] and not result.applied
    assert [c[0] for c in calls_after_hello(collection)] == [
        "start_session", "with_transaction", "find", "commit", "end_session"]
    assert collection.store.find_one({"_id": "u1"})["v"] == 9


def test_move_in_a_transaction_removes_a_copy_at_an_unexpected_value() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    collection.store.insert_one(doc("u1", "t7", 0, "050"))  # older, not where the image says
    result = apply.write(collection, [move_plan()])
    assert len(result.applied) == 1
    assert ("delete_one", {"_id": "u1", "tenant": "t7"}, True) in collection.calls
    assert [d["tenant"] for d in collection.store.find({})] == ["t2"]


def test_move_without_transactions_is_a_single_write_with_the_old_shard_key() -> None:
    collection = RecordingCollection(FakeClient(STANDALONE))
    collection.store.insert_one(doc("u1", "t1", 1, "100"))
    planned = move_plan()
    result = apply.write(collection, [planned])
    assert result.applied == [planned]
    assert collection.calls == [
        ("command", "hello"),
        ("bulk_write", [operation(planned)], False, False),
    ]
    assert planned.filter["tenant"] == "t1"
    assert collection.store.find_one({"_id": "u1"})["tenant"] == "t2"


def test_moves_go_apart_from_the_bulk() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    result_plan = plan([
        record("200", "MODIFY", "u1", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
        record("201", "MODIFY", "u2", new=item("u2", "t1", 2), old=item("u2", "t1", 1)),
    ])
    move, plain = sorted(result_plan.writes, key=lambda w: w.shard_key_move is None)
    result = apply.write(collection, result_plan.writes)
    assert sorted(result.applied, key=lambda w: w.sequence_numbers) == [move, plain]
    bulks = [c for c in collection.calls if c[0] == "bulk_write"]
    assert bulks == [
        ("bulk_write", [operation(plain)], False, False),
        ("bulk_write", [operation(move.shard_key_move.write)], True, True),
    ]


def test_transaction_support_is_asked_once_per_client() -> None:
    client = FakeClient(REPLICA_SET)
    for _ in range(3):
        apply.write(RecordingCollection(client), [move_plan()])
    assert client.calls.count(("command", "hello")) == 1


def test_no_hello_without_a_move_and_none_when_told() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    (plain,) = plan([record("200", "MODIFY", new=item("u1", "t1", 2),
                            old=item("u1", "t1", 1))]).writes
    assert plain.shard_key_move is None
    apply.write(collection, [plain])
    apply.write(collection, [move_plan()], transactions=False)
    assert ("command", "hello") not in collection.calls
    assert ("start_session",) not in collection.calls


def test_failed_transaction_is_reported_for_redelivery() -> None:
    collection = RecordingCollection(FakeClient(REPLICA_SET), fail_on="bulk_write")
    planned = move_plan()
    result = apply.write(collection, [planned])
    assert result.failed == [(planned, "shard key move: AutoReconnect: connection reset")]


def test_fallback_sends_known_moves_alone_and_unknown_ones_in_the_bulk() -> None:
    collection = RecordingCollection(FakeClient(STANDALONE))
    writes = plan([
        record("200", "MODIFY", "u1", new=item("u1", "t2", 2), old=item("u1", "t1", 1)),
        record("201", "INSERT", "u2", new=item("u2", "t1", 1)),
        record("202", "MODIFY", "u3", new=item("u3", "t1", 2), old=item("u3", "t1", 1)),
    ]).writes
    known, unknown, plain = (next(w for w in writes if w.sequence_numbers == (s,))
                             for s in ("200", "201", "202"))
    result = apply.write(collection, writes)
    assert len(result.applied) == 3
    bulks = [c[1] for c in collection.calls if c[0] == "bulk_write"]
    assert bulks == [[operation(unknown), operation(plain)], [operation(known)]]


@pytest.mark.parametrize("hello", [REPLICA_SET, STANDALONE], ids=["transaction", "single-write"])
def test_insert_replaces_a_copy_stored_at_another_value(hello: dict[str, Any]) -> None:
    # moto's key-only INSERT (no shard key: null), then the full one in a later batch
    collection = RecordingCollection(FakeClient(hello))
    collection.store.insert_one({"_id": "u1", "id": "u1", "_ddb_seq": pad("100")})
    (write,) = plan([record("101", "INSERT", new=item("u1", "t1", 1))]).writes
    result = apply.write(collection, [write])
    assert result.applied == [write]
    assert list(collection.store.find({}, {"_id": 1, "tenant": 1})) == [
        {"_id": "u1", "tenant": "t1"}]


def test_mongomock_never_opens_a_session() -> None:
    assert apply.supports_transactions(mongomock_client().db.users) is False


# -- end to end on mongomock (no transactions: the single-write path) ----------------------------
def test_replicator_moves_documents_and_keeps_the_guard_on_mongomock() -> None:
    collection = mongomock_client().db.users
    replicator = Replicator(collection, TENANT)
    first = {"Records": [record("100", "INSERT", new=item("u1", "t1", 1))]}
    move = {"Records": [record("200", "MODIFY", new=item("u1", "t2", 2),
                               old=item("u1", "t1", 1))]}
    assert replicator.process(first).applied == 1
    assert replicator.process(move).applied == 1
    assert list(collection.find({}, {"_id": 1, "tenant": 1, "v": 1})) == [
        {"_id": "u1", "tenant": "t2", "v": 2}]
    # redeliveries of either batch are stale, and leave exactly one document
    assert replicator.process(move).stale == 1
    assert replicator.process(first).stale == 1
    assert collection.count_documents({}) == 1
    assert collection.find_one({"_id": "u1"})["v"] == 2
    # and a delete finds it at its current shard key value
    gone = {"Records": [record("300", "REMOVE", old=item("u1", "t2", 2))]}
    assert replicator.process(gone).applied == 1
    assert collection.count_documents({}) == 0


# -- container targets without Docker ------------------------------------------------------------
class _NoEngine:
    def __init__(self, message: str) -> None:
        self.message = message

    def ping(self) -> None:
        import docker.errors

        raise docker.errors.DockerException(self.message)

    def close(self) -> None:
        pass


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    monkeypatch.setattr(docker, "from_env", lambda: _NoEngine(
        "Error while fetching server API version: connection refused"))


def test_the_three_container_targets_are_registered() -> None:
    target_backend("mongomock")  # loads harness.backends.targets
    assert {"testcontainers-standalone", "testcontainers-replset",
            "testcontainers-sharded"} <= set(TARGETS)


@pytest.mark.parametrize(
    "name", ["testcontainers-standalone", "testcontainers-replset", "testcontainers-sharded"])
def test_start_without_docker_raises_one_clear_message(no_docker: None, name: str) -> None:
    backend = target_backend(name, image="mongo:7.0", shard_key=["tenant"])
    with pytest.raises(BackendUnavailable) as raised:
        backend.start()
    assert str(raised.value) == (
        "no Docker engine answered: DockerException: Error while fetching server API version: "
        f"connection refused; install/start Docker to use target '{name}'"
    )
    backend.stop()  # nothing to tear down, no error
    assert backend.startup_seconds is None


def test_collection_without_docker_raises_too(no_docker: None) -> None:
    with pytest.raises(BackendUnavailable, match="no Docker engine answered"):
        target_backend("testcontainers-replset").collection("db", "c")


def test_docker_error_text_never_shows_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    monkeypatch.setattr(docker, "from_env", lambda: _NoEngine(
        "cannot connect to tcp://admin:hunter2@docker.example:2376"))
    with pytest.raises(BackendUnavailable) as raised:
        mongo_topology.require_docker("testcontainers-sharded")
    assert "hunter2" not in str(raised.value)
    assert "tcp://***@docker.example:2376" in str(raised.value)


def test_docker_skip_reason(no_docker: None) -> None:
    reason = mongo_topology.docker_skip_reason()
    assert reason is not None
    assert reason.startswith(
        "no Docker engine answered (docker.from_env().ping() failed): these tests need Docker")


def test_describe_never_shows_the_password() -> None:
    backend = testcontainers_target.StandaloneContainerTarget()
    backend._uri = "mongodb://harness:s3cr3t-pw@localhost:32768"
    assert "s3cr3t-pw" not in backend.describe()
    assert "mongodb://***@localhost:32768" in backend.describe()


# -- topology documents and commands -------------------------------------------------------------
def test_shard_key_specs() -> None:
    spec = mongo_topology.shard_key_spec
    assert spec(["tenant"], "hashed") == {"tenant": "hashed"}
    assert spec(["tenant", "id"], "hashed") == {"tenant": "hashed", "id": 1}
    assert spec(["tenant", "id"], "range") == {"tenant": 1, "id": 1}
    with pytest.raises(ValueError):
        spec([], "hashed")
    with pytest.raises(ValueError):
        spec(["a"], "zoned")  # type: ignore[arg-type]


def test_replica_set_documents_and_commands() -> None:
    assert mongo_topology.replica_set_config("cfg", ["cfg:27017"], configsvr=True) == {
        "_id": "cfg", "configsvr": True, "members": [{"_id": 0, "host": "cfg:27017"}]}
    assert mongo_topology.mongod_command("shard1", "shardsvr") == [
        "mongod", "--port", "27017", "--bind_ip_all", "--shardsvr", "--replSet", "shard1"]
    assert mongo_topology.mongod_command("rs0") == [
        "mongod", "--port", "27017", "--bind_ip_all", "--replSet", "rs0"]
    assert mongo_topology.mongos_command("cfg", ["cfg:27017"]) == [
        "mongos", "--port", "27017", "--bind_ip_all", "--configdb", "cfg/cfg:27017"]
    assert mongo_topology.chunk_moves([{"tenant": "m"}, {"tenant": "t"}], ["shard1", "shard2"]) \
        == [({"tenant": "m"}, "shard2"), ({"tenant": "t"}, "shard1")]


def test_wait_until_names_what_it_waited_for() -> None:
    now = [0.0]

    def failing() -> bool:
        raise ConnectionError("mongodb://u:pw@h:1 refused")

    with pytest.raises(TimeoutError) as raised:
        mongo_topology.wait_until(failing, timeout_s=1, what="mongos to answer",
                                  clock=lambda: now[0],
                                  sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert str(raised.value) == (
        "mongos to answer: not ready after 1 s; last: ConnectionError: mongodb://***@h:1 refused")


# -- the sharded cluster's orchestration, with stand-in containers -------------------------------
class StandIn:
    """Stands in for a testcontainers container: records start/stop only."""

    def __init__(self, log: list[Any], command: list[str], alias: str | None) -> None:
        self.log, self.command, self.alias = log, command, alias

    def stop(self) -> None:
        self.log.append(("stop", self.alias))


class RecordedDatabase(dict):  # type: ignore[type-arg]
    def __init__(self, log: list[Any], name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def command(self, name: str, /, *args: Any, **kwargs: Any) -> None:
        self.log.append(("db", self.name, name))

    def __missing__(self, collection: str) -> str:
        return f"{self.name}.{collection}"


class AdminRecorder:
    def __init__(self, log: list[Any], uri: str) -> None:
        self.log, self.uri = log, uri
        self.admin = SimpleNamespace(command=self.command)

    def command(self, name: str, /, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # positional-only like pymongo's ``command``: addShard passes ``name=`` as a field
        self.log.append(("command", self.uri, name, *args, kwargs) if args or kwargs
                        else ("command", self.uri, name))
        return {"ok": 1, "isWritablePrimary": True}

    def __getitem__(self, database: str) -> Any:
        return RecordedDatabase(self.log, database)

    def close(self) -> None:
        pass


class StandInCluster(testcontainers_target.ShardedContainerTarget):
    """The real orchestration code with its Docker and driver calls swapped for recorders."""

    def __init__(self, fail_at: str | None = None, **options: Any) -> None:
        super().__init__(startup_timeout_s=2, **options)
        self.log: list[Any] = []
        self.fail_at = fail_at

    def _new_network(self) -> Any:
        self.log.append(("network",))
        return SimpleNamespace(remove=lambda: self.log.append(("remove network",)))

    def _member(self, command: list[str], alias: str | None = None) -> Any:
        container = StandIn(self.log, command, alias)
        self._containers.append(container)
        self.log.append(("start", alias, command))
        if alias == self.fail_at:
            raise RuntimeError(f"{alias} did not start")
        return container

    def _address(self, container: Any) -> str:
        return f"{container.alias}-host:1"

    def _connect(self, uri: str) -> Any:
        return AdminRecorder(self.log, uri)


def test_sharded_cluster_start_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testcontainers_target, "require_docker", lambda name: None)
    cluster = StandInCluster(shard_key=["tenant"], shard_key_kind="range",
                             split_points=[{"tenant": "m"}])
    cluster.start()
    direct = "/?directConnection=true"
    assert cluster.log == [
        ("network",),
        ("start", "cfg", ["mongod", "--port", "27017", "--bind_ip_all", "--configsvr",
                          "--replSet", "cfg"]),
        ("start", "shard1", ["mongod", "--port", "27017", "--bind_ip_all", "--shardsvr",
                             "--replSet", "shard1"]),
        ("start", "shard2", ["mongod", "--port", "27017", "--bind_ip_all", "--shardsvr",
                             "--replSet", "shard2"]),
        ("command", f"mongodb://cfg-host:1{direct}", "replSetInitiate",
         {"_id": "cfg", "configsvr": True, "members": [{"_id": 0, "host": "cfg:27017"}]}, {}),
        ("command", f"mongodb://cfg-host:1{direct}", "hello"),
        ("command", f"mongodb://shard1-host:1{direct}", "replSetInitiate",
         {"_id": "shard1", "members": [{"_id": 0, "host": "shard1:27017"}]}, {}),
        ("command", f"mongodb://shard1-host:1{direct}", "hello"),
        ("command", f"mongodb://shard2-host:1{direct}", "replSetInitiate",
         {"_id": "shard2", "members": [{"_id": 0, "host": "shard2:27017"}]}, {}),
        ("command", f"mongodb://shard2-host:1{direct}", "hello"),
        ("start", "mongos", ["mongos", "--port", "27017", "--bind_ip_all", "--configdb",
                             "cfg/cfg:27017"]),
        ("command", "mongodb://mongos-host:1/", "ping"),
        ("command", "mongodb://mongos-host:1/", "addShard", "shard1/shard1:27017",
         {"name": "shard1"}),
        ("command", "mongodb://mongos-host:1/", "addShard", "shard2/shard2:27017",
         {"name": "shard2"}),
        ("db", "harness_probe", "insert"),
        ("db", "harness_probe", "delete"),
    ]
    assert cluster.startup_seconds is not None
    cluster.log.clear()
    assert cluster.collection("harness", "users") == "harness.users"
    cluster.collection("harness", "users")  # sharded once
    mongos = "mongodb://mongos-host:1/"
    assert cluster.log == [
        ("command", mongos, "enableSharding", "harness", {"primaryShard": "shard1"}),
        ("command", mongos, "shardCollection", "harness.users", {"key": {"tenant": 1}}),
        ("command", mongos, "split", "harness.users", {"middle": {"tenant": "m"}}),
        ("command", mongos, "moveChunk", "harness.users",
         {"find": {"tenant": "m"}, "to": "shard2", "_waitForDelete": True}),
    ]
    cluster.log.clear()
    cluster.stop()
    assert cluster.log == [("stop", "mongos"), ("stop", "shard2"), ("stop", "shard1"),
                           ("stop", "cfg"), ("remove network",)]


def test_failed_cluster_start_tears_everything_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testcontainers_target, "require_docker", lambda name: None)
    cluster = StandInCluster(fail_at="shard2", shard_key=["tenant"])
    with pytest.raises(RuntimeError, match="shard2 did not start"):
        cluster.start()
    assert cluster.log[-4:] == [("stop", "shard2"), ("stop", "shard1"), ("stop", "cfg"),
                                ("remove network",)]
    assert cluster.client is None and cluster.startup_seconds is None


# -- write_mode="merge": a move keeps the fields other MongoDB applications added ----------------
MERGE_TENANT = Settings(key_schema=("id",), shard_key=("tenant",), write_mode="merge")


def test_merge_move_in_a_transaction_carries_the_mongodb_only_fields() -> None:
    # given a document at tenant t1 that another application added fields to
    collection = RecordingCollection(FakeClient(REPLICA_SET))
    collection.store.insert_one(doc("u1", "t1", 1, "100", gone=True, app_score=7,
                                    _ddb_fields=["id", "v", "tenant", "gone"]))
    (planned,) = plan([record("200", "MODIFY", new=item("u1", "t2", 2),
                              old=item("u1", "t1", 1, gone={"BOOL": True}))], MERGE_TENANT).writes
    move = planned.shard_key_move
    assert move is not None and move.fields_field == "_ddb_fields"

    # when it moves to tenant t2 (delete the copy at t1, upsert at t2, in one transaction)
    result = apply.write(collection, [planned])

    # then the whole copy was read, and the new one has the table's fields and the application's
    assert result.applied == [planned]
    assert ("find", {"_id": "u1"}, None, True) in collection.calls
    assert ("delete_one", {"_id": "u1", "tenant": "t1"}, True) in collection.calls
    assert collection.store.find_one({"_id": "u1"}) == {
        "_id": "u1", "app_score": 7, "id": "u1", "v": 2, "tenant": "t2",
        "_ddb_fields": ["id", "tenant", "v"], "_ddb_seq": pad("200")}


def test_merge_move_without_transactions_updates_the_document_in_place() -> None:
    collection = RecordingCollection(FakeClient(STANDALONE))
    collection.store.insert_one(doc("u1", "t1", 1, "100", app_score=7,
                                    _ddb_fields=["id", "v", "tenant"]))
    (planned,) = plan([record("200", "MODIFY", new=item("u1", "t2", 2),
                              old=item("u1", "t1", 1))], MERGE_TENANT).writes
    result = apply.write(collection, [planned])
    assert result.applied == [planned] and planned.filter["tenant"] == "t1"
    stored = collection.store.find_one({"_id": "u1"})
    assert (stored["tenant"], stored["v"], stored["app_score"]) == ("t2", 2, 7)
