"""The benchmark's wire-protocol responder (benchmarks/wire_responder.py) and bench_wire.py.

These tests check the benchmark TOOL: that the responder starts, answers pymongo and always stops,
and that the end-to-end measure runs. The responder stores nothing; nothing here (or anywhere)
uses it as a stand-in for MongoDB to test the replicator's behaviour.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo.operations import DeleteOne, InsertOne, UpdateOne

from benchmarks import bench_core, bench_wire


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every process bench_wire starts, so a test can check it is gone afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            processes.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)  # the module bench_wire uses
    return processes


@pytest.fixture
def client() -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    with bench_wire.responder() as port:
        mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000
        )
        try:
            yield mongo
        finally:
            mongo.close()


def refuses(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_responder_stops_with_the_context_manager(started: list[subprocess.Popen[bytes]]) -> None:
    with bench_wire.responder() as port:
        assert not refuses(port)
    assert len(started) == 1
    assert started[0].returncode is not None
    assert refuses(port)


def test_the_responder_stops_when_the_body_raises(started: list[subprocess.Popen[bytes]]) -> None:
    with pytest.raises(KeyError), bench_wire.responder():
        raise KeyError("boom")
    assert [p.returncode is not None for p in started] == [True]


def test_no_ready_line_is_a_clear_error(
    started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.stdin.read()\n")  # never prints READY, stops on EOF
    monkeypatch.setattr(bench_wire, "RESPONDER", silent)
    with pytest.raises(RuntimeError, match="did not print 'READY <port>'"), bench_wire.responder(0.5):
        pass
    assert [p.returncode is not None for p in started] == [True]


def test_pymongo_talks_to_it(client: pymongo.MongoClient[dict[str, Any]]) -> None:
    assert client.admin.command("ping")["ok"] == 1
    client.admin.command("benchReset")
    collection = client["bench"]["items"]
    assert collection.insert_one({"_id": 1, "a": 1}).acknowledged
    result = collection.bulk_write(
        [InsertOne({"_id": 2}), UpdateOne({"_id": 3}, {"$set": {"a": 1}}, upsert=True),
         UpdateOne({"_id": 4}, {"$set": {"a": 1}}), DeleteOne({"_id": 5})],
        ordered=False,
    )
    # Collections are always empty: an upsert inserts, anything else matches nothing.
    assert (result.inserted_count, result.upserted_ids, result.matched_count, result.deleted_count) == (
        1, {1: 3}, 0, 0)
    with client.start_session() as session:
        assert collection.update_one({"_id": 6}, {"$set": {"a": 1}}, upsert=True,
                                     session=session).upserted_id == 6
        assert collection.find_one({"_id": 6}, session=session) is None
    stats = client.admin.command("benchStats")
    assert stats["counts"] == {"insert": 2, "update": 2, "delete": 1, "find": 1}
    assert stats["ops"] == {"insert": 2, "update": 3, "delete": 1, "find": 1}


@pytest.mark.slow
def test_bench_end_to_end_on_a_tiny_event() -> None:
    event = bench_core.synthetic_event(20, 8, seed=1)
    results = bench_wire.bench_end_to_end(event, reps=1, batches_per_rep=1)
    assert results["records"] == 20
    for name in ("core", "core, tombstones off", "baseline"):
        assert results["cpu_us_per_event"][name]["median"] > 0
        assert results["cpu_us_per_event"][name]["min"] > 0
    assert results["ratio"] > 0
    baseline = results["requests_per_batch"]["baseline"]["counts"]
    assert baseline.get("update", 0) + baseline.get("delete", 0) == 20  # one round trip per record
    # tombstones + the main bulk write + the re-check of the tombstones of the _ids the batch
    # inserted (the responder answers every upsert as an insert: fresh events)
    assert results["core_batch"]["core"]["round_trips"] == 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
