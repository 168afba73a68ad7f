"""The invocation's deadline (replicator/deadline.py): every MongoDB command of a batch carries the
time left as ``maxTimeMS``, a batch that runs out is retried, never lost, and a batch started with
no time left writes nothing. No test depends on timing: the Lambda context answers a fixed
remaining time, and the assertions are upper bounds that hold however slow the machine is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import (
    BulkWriteError,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WTimeoutError,
)

from replicator import deadline
from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.settings import Settings
from support.mongo_commands import Commands


class LambdaContext:
    """The part of Lambda's context object the replicator reads, with a fixed remaining time."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def listened(mongoeco_db: Any) -> Iterator[tuple[Any, Commands]]:
    """The test's database on the mongoeco server, through a client that records its commands."""
    commands = Commands()
    host, port = mongoeco_db.client.address
    client: Any = MongoClient(host, port, event_listeners=[commands],
                              serverSelectionTimeoutMS=3000)
    try:
        yield client[mongoeco_db.name], commands
    finally:
        client.close()


def item(id_: str, v: int = 1) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}}


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


# -- the deadline itself -----------------------------------------------------------------------
@pytest.mark.parametrize(("remaining", "configured", "expected"), [
    (30.0, None, 29.0),  # 10 % would be 3 s: capped at 1 s
    (5.0, None, 4.5),  # 10 %
    (0.0, None, 0.0),
    (30.0, 5.0, 25.0),
    (30.0, 0.0, 30.0),
    (None, None, None),
])
def test_the_budget_is_the_remaining_time_minus_the_margin(
    remaining: float | None, configured: float | None, expected: float | None
) -> None:
    assert deadline.budget(remaining, configured) == expected


def test_the_remaining_time_comes_from_the_lambda_context() -> None:
    assert deadline.remaining_in_context(LambdaContext(2500)) == 2.5
    assert deadline.remaining_in_context(None) is None
    assert deadline.remaining_in_context(object()) is None


def test_remaining_is_known_inside_the_block_only() -> None:
    assert deadline.remaining() is None
    with deadline.bounded(100.0):
        left = deadline.remaining()
        assert left is not None and left <= 100.0
    assert deadline.remaining() is None
    with deadline.bounded(None):
        assert deadline.remaining() is None


def test_a_deadline_in_the_past_is_refused() -> None:
    # pymongo.timeout(0) means "no timeout": never pass it on
    with pytest.raises(ValueError), deadline.bounded(0):
        pass


def test_the_margin_setting_is_checked_and_read_from_the_environment() -> None:
    assert Settings.from_env({"REPLICATOR_DEADLINE_MARGIN_S": "2.5"}).deadline_margin_s == 2.5
    assert Settings.from_env({}).deadline_margin_s is None
    with pytest.raises(ConfigurationError, match="REPLICATOR_DEADLINE_MARGIN_S"):
        Settings.from_env({"REPLICATOR_DEADLINE_MARGIN_S": "soon"})
    with pytest.raises(ConfigurationError, match="deadline_margin_s"):
        Settings(deadline_margin_s=-1)


# -- what pymongo sends -------------------------------------------------------------------------
def test_every_command_of_an_invocation_carries_the_time_left_as_max_time_ms(
    listened: tuple[Any, Commands], stream_record: Any
) -> None:
    database, commands = listened
    replicator = Replicator(database["items"])
    # a delete (tombstone + delete), an insert (probe, upsert, re-check), a bad record (quarantine)
    event = {"Records": [
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        stream_record("101", "REMOVE", keys("b"), old=item("b")),
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "102"}},
    ]}
    response = replicator.handle(event, LambdaContext(30_000))
    during = list(commands.sent)
    assert response == {"batchItemFailures": []}
    assert database["items_quarantine"].count_documents({}) == 1
    # tombstone index, probe + tombstone, main bulk (upsert, delete), re-check, quarantine upsert
    assert {"listIndexes", "createIndexes", "update", "delete", "find"} <= {n for n, _ in during}
    for name, command in during:
        # 30 s remaining, 1 s margin: at most 29 s, however long the batch took
        assert 0 < command["maxTimeMS"] <= 29_000, (name, command)


def test_without_a_context_no_deadline_is_sent(
    listened: tuple[Any, Commands], stream_record: Any
) -> None:
    database, commands = listened
    Replicator(database["items"]).handle(
        {"Records": [stream_record("100", "INSERT", keys("a"), new=item("a"))]})
    assert commands.sent and all("maxTimeMS" not in command for _, command in commands.sent)


def test_the_library_api_takes_an_explicit_deadline_and_margin(
    listened: tuple[Any, Commands], stream_record: Any
) -> None:
    database, commands = listened
    replicator = Replicator(database["items"], Settings(tombstones=False, deadline_margin_s=5))
    result = replicator.process([stream_record("100", "INSERT", keys("a"), new=item("a"))],
                                deadline_s=60)
    assert result.applied == 1
    updates = [command for name, command in commands.sent if name == "update"]
    assert updates and all(0 < u["maxTimeMS"] <= 55_000 for u in updates)


# -- running out of time ------------------------------------------------------------------------
@pytest.mark.parametrize(("remaining_ms", "margin"), [(0, None), (500, 1.0), (1000, 1.0)])
def test_a_batch_started_with_no_time_left_writes_nothing_and_is_redelivered_whole(
    mongo_db: Any, stream_record: Any, remaining_ms: int, margin: float | None
) -> None:
    replicator = Replicator(mongo_db["items"], Settings(deadline_margin_s=margin))
    event = {"Records": [
        stream_record("105", "INSERT", keys("b"), new=item("b")),
        stream_record("100", "INSERT", keys("a"), new=item("a")),
    ]}
    response = replicator.handle(event, LambdaContext(remaining_ms))
    assert response == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert mongo_db["items"].count_documents({}) == 0
    assert "items_tombstones" not in mongo_db.list_collection_names()


def test_no_time_left_and_no_sequence_number_fails_the_whole_invocation(mongo_db: Any) -> None:
    with pytest.raises(TimeoutError):
        Replicator(mongo_db["items"]).handle(
            {"Records": [{"eventName": "INSERT"}]}, LambdaContext(0))


class TimesOut:
    """A collection whose every write and read raises ``error`` (what pymongo raises when the
    deadline passes: before sending, on the socket, or from the server)."""

    def __init__(self, database: Any, error: Exception, name: str = "items") -> None:
        self.database = database
        self.name = name
        self.error = error

    def bulk_write(self, operations: list[Any], ordered: bool = True, **_: Any) -> Any:
        raise self.error

    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def index_information(self) -> Any:
        raise self.error


TIMEOUTS = [
    ExecutionTimeout("operation exceeded time limit", 50,
                     {"ok": 0, "code": 50, "codeName": "MaxTimeMSExpired"}),
    NetworkTimeout("timed out"),
    WTimeoutError("waiting for replication timed out", 64, {"ok": 0, "code": 64}),
    ServerSelectionTimeoutError("no servers within the time left"),
    BulkWriteError({"writeErrors": [{"index": i, "code": 50, "errmsg": "operation exceeded time "
                                     "limit"} for i in (0, 1)],
                    "writeConcernErrors": [], "upserted": []}),
]


@pytest.mark.parametrize("error", TIMEOUTS, ids=lambda e: type(e).__name__)
def test_a_timeout_is_retried_never_quarantined(
    mongo_db: Any, stream_record: Any, error: Exception
) -> None:
    assert getattr(error, "timeout", True)  # pymongo's own flag for every one of them
    replicator = Replicator(TimesOut(mongo_db, error), tombstones=mongo_db["items_tombstones"],
                            quarantine=mongo_db["items_quarantine"])
    result = replicator.process([
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        stream_record("101", "REMOVE", keys("b"), old=item("b")),
    ], deadline_s=30)
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert result.quarantined == [] and mongo_db["items_quarantine"].count_documents({}) == 0


@pytest.mark.parametrize("error", TIMEOUTS[:4], ids=lambda e: type(e).__name__)
def test_a_timeout_of_a_side_collection_is_retried_never_quarantined(
    mongo_db: Any, stream_record: Any, error: Exception
) -> None:
    """Tombstones and quarantine out of time: the records are retried; a bad record whose
    quarantine write timed out too."""
    replicator = Replicator(mongo_db["items"], tombstones=TimesOut(mongo_db, error),
                            quarantine=TimesOut(mongo_db, error))
    result = replicator.process([
        stream_record("100", "INSERT", keys("a"), new=item("a")),
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "101"}},
    ], deadline_s=30)
    assert sorted(s for s, _ in result.failures) == ["100", "101"]
    assert result.quarantined == []


def test_a_deadline_already_past_sends_nothing_and_is_retried(
    listened: tuple[Any, Commands], stream_record: Any
) -> None:
    """The deadline counts from a clock reading taken before the remaining time was read (as
    ``handle`` does): when it has passed by the time the block starts, pymongo sends nothing."""
    database, commands = listened
    replicator = Replicator(database["items"])
    with deadline.bounded(1.0, since=-1e9):
        left = deadline.remaining()
        assert left is not None and left < 0
    result = replicator.process([stream_record("100", "INSERT", keys("a"), new=item("a"))])
    assert result.applied == 1  # the collection works: only the deadline stops the writes
    commands.sent.clear()
    with deadline.bounded(1.0, since=-1e9):
        result = replicator.process([stream_record("101", "INSERT", keys("b"), new=item("b"))])
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    assert result.quarantined == []
    assert not [name for name, _ in commands.sent if name in ("update", "delete", "insert")]
