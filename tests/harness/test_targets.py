"""The embedded targets: mongoeco's life cycle, the default, and the harness's batch bound."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from bson.int64 import Int64
from typer.testing import CliRunner

from harness.backends import mongoeco_target
from harness.backends.base import (
    DEFAULT_TARGET,
    MAX_BATCH_RECORDS,
    BackendUnavailable,
    started,
    target_backend,
)
from harness.cli import app
from harness.runner import driver_config
from harness.scenario import load_scenario

needs_mongoeco = pytest.mark.skipif(
    not mongoeco_target.available(), reason="the mongoeco target needs Python >= 3.13 and mongoeco")


def test_mongoeco_is_the_default_target_and_mongomock_stays_a_backend() -> None:
    assert DEFAULT_TARGET == "mongoeco"
    assert type(target_backend("mongomock")).__name__ == "MongomockTarget"
    assert load_scenario("smoke").run["target"] == DEFAULT_TARGET


@needs_mongoeco
def test_mongoeco_answers_through_the_real_pymongo_client_and_stops() -> None:
    import pymongo

    target = target_backend("mongoeco")
    with started(target):
        collection = target.collection("db", "items")
        assert isinstance(target.client, pymongo.MongoClient)
        assert "127.0.0.1:" in target.describe()
        collection.insert_one({"_id": 1, "big": 2**40})
        assert type(collection.find_one({"_id": 1})["big"]) is Int64  # BSON decoded by pymongo
        server = target._server
        assert server is not None and server.running
    # stopped: the client is closed and the server's thread has ended
    assert target.client is None and not server.running


@needs_mongoeco
def test_mongoeco_stops_when_the_body_fails() -> None:
    target = target_backend("mongoeco")
    with pytest.raises(RuntimeError, match="boom"), started(target):
        server = target._server
        raise RuntimeError("boom")
    assert target.client is None and not server.running


@needs_mongoeco
def test_a_failed_start_leaves_no_server_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymongo

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise pymongo.errors.ServerSelectionTimeoutError("no answer")

    servers: list[Any] = []
    original = mongoeco_target.MongoecoServer.start

    def recording_start(self: Any) -> str:
        servers.append(self)
        return original(self)

    monkeypatch.setattr(mongoeco_target.MongoecoServer, "start", recording_start)
    monkeypatch.setattr(pymongo, "MongoClient", refuse)
    target = target_backend("mongoeco")
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError), started(target):
        pass
    assert len(servers) == 1 and not servers[0].running


def test_below_python_3_13_the_message_says_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    target = target_backend("mongoeco")
    with pytest.raises(BackendUnavailable) as raised:
        target.start()
    assert str(raised.value) == "the mongoeco target needs Python >= 3.13; use --target mongomock"
    target.stop()  # nothing to stop, and no error


def test_a_scenario_batch_above_the_bound_is_refused() -> None:
    scenario = load_scenario("smoke")
    scenario.driver["batch_size"] = MAX_BATCH_RECORDS
    assert driver_config(scenario).batch_size == MAX_BATCH_RECORDS
    scenario.driver["batch_size"] = MAX_BATCH_RECORDS + 1
    with pytest.raises(ValueError, match="above the harness's 1000 records per batch"):
        driver_config(scenario)


def test_replay_refuses_batches_above_the_bound() -> None:
    result = CliRunner().invoke(app, ["replay", "--table", "t.json", "--events", "e.json",
                                      "--batch-size", str(MAX_BATCH_RECORDS + 1)])
    assert result.exit_code == 2
    assert "1000" in result.output


# ../shared/cases/mongomock-decimal-key: an N key with a fraction is a Decimal128 _id, which
# mongomock cannot hash; the default target stores it, as MongoDB does.
DECIMAL_KEY_EVENT = {"Records": [{
    "eventID": "e100", "eventName": "INSERT",
    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/x",
    "dynamodb": {"Keys": {"pk": {"N": "1.5"}}, "NewImage": {"pk": {"N": "1.5"}},
                 "SequenceNumber": "100", "StreamViewType": "NEW_AND_OLD_IMAGES"},
}]}


@needs_mongoeco
def test_shared_case_mongomock_decimal_key_replicates_on_the_default_target() -> None:
    from bson.decimal128 import Decimal128

    from replicator.core import Replicator
    from replicator.settings import Settings

    with started(target_backend(DEFAULT_TARGET)) as target:
        collection = target.collection("cases", "decimal_key")
        replicator = Replicator(collection, Settings(key_schema=("pk",)))
        for _ in range(2):  # delivered twice
            assert replicator.handle(DECIMAL_KEY_EVENT) == {"batchItemFailures": []}
        documents = list(collection.find())
    assert [d["_id"] for d in documents] == [Decimal128("1.5")]
    assert documents[0]["pk"] == Decimal128("1.5")
