"""Issue #18, kind 6: what an operator reads -- the commands each message names, bounded and
visible waits, distinct exit codes, exact counts, one log line per batch.

On the wire target (real pymongo against mongoeco's server). The `replicator` commands run as
subprocesses against moto's server where the exit code and stderr are what is tested; counts and
log lines are tested in-process, where a retry can be forced at a chosen bulk.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.migration import make_poller, prefill
from replicator.cli.commands import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_RESYNC,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from replicator.events import pad_sequence_number
from replicator.migrate.gap import recover
from replicator.migrate.sync import sync_scan
from support.replicator_command import run_replicator, running_replicator


class LandedThenLost:
    """A pymongo collection whose first bulk write of a copy (a ``scan-segment`` thread) reaches
    the server and then loses its answer: the connection drops after MongoDB applied it, the
    case where the whole bulk is retried and finds its own writes already there."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def bulk_write(self, requests: Any, **options: Any) -> Any:
        from pymongo.errors import AutoReconnect

        answer = self._collection.bulk_write(requests, **options)
        if not self.lost and threading.current_thread().name.startswith("scan-segment"):
            self.lost += 1
            raise AutoReconnect("connection closed after the server applied the bulk")
        return answer


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- exact counts -----------------------------------------------------------------------------------
def test_sync_counts_each_stream_record_and_each_copied_item_once_through_a_lost_bulk(
    moto: Any, wire_target: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """30 items, 3 of them changed after the positions were taken (3 stream records), one item's
    document already newer (as if the stream wrote it), the copy's first bulk lost after it
    landed and retried whole: the report says 29 written, 1 newer, 3 stream records -- not the
    retried bulk as "newer from the stream", not the stream records once per poller run."""
    caplog.set_level(logging.INFO, logger="replicator")
    table = moto.create_table(TableSpec("counts", ("pk", "S")))
    client = moto.dynamodb()
    prefill(client, "counts", 30)
    collection = wire_target.collection("operator", "counts")
    collection.insert_one({"_id": "item-000005", "n": 5,
                           "_ddb_seq": pad_sequence_number("9" * 30)})
    lossy = LandedThenLost(collection)
    poller = make_poller(moto, table, lossy)
    changed: list[str] = []

    def writer(segment: int, page: int) -> None:
        if changed:
            return
        # three items the copy already wrote: their stream records are applied (by the thread
        # following the stream, or by the handover) and never meet the copy again
        copied = [d["_id"] for d in collection.find({"_id": {"$ne": "item-000005"}}, {"_id": 1})]
        changed.extend(sorted(copied)[:3])
        for key in changed:
            client.update_item(TableName="counts", Key={"pk": {"S": key}},
                               UpdateExpression="SET v = :v",
                               ExpressionAttributeValues={":v": {"N": "7"}})

    report = sync_scan(poller, segments=1, page_size=10, after_page=writer, follow=True)
    assert lossy.lost == 1  # the retry was forced
    assert report.copy is not None
    copy = report.copy
    assert (copy.items_read, copy.items_written, copy.items_skipped_newer) == (30, 29, 1)
    assert copy.retries == 1
    assert report.stream_records_applied == 3
    assert len(changed) == 3 and all(collection.find_one({"_id": k})["v"] == 7 for k in changed)
    # one line per failed bulk: the core's and the copy's, each naming count and the first one
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    core, copier = sorted(warnings)
    assert core.startswith("batch of 10 records, SequenceNumber 0..0")
    assert "; 10 record(s) will be redelivered, from SequenceNumber 0 (eventID copy-0-0)" in core
    assert "AutoReconnect" in core
    assert copier.startswith("segment 0: 10 of 10 items not written (first: AutoReconnect")


def test_recover_counts_the_stream_records_once(moto: Any, wire_target: Any) -> None:
    """The stream holds exactly 20 records; recover reads them from TRIM_HORIZON (step 1) and
    then finds none left (step 3): 20, not 20 per poller run."""
    table = moto.create_table(TableSpec("recount", ("pk", "S")))
    prefill(moto.dynamodb(), "recount", 20)
    collection = wire_target.collection("operator", "recount")
    assert make_poller(moto, table, collection).run(once=True).records_applied == 20
    report = recover(make_poller(moto, table, collection), segments=1, page_size=10)
    assert report.stream_records_applied == 20
    assert report.copy is not None and report.copy.items_written == 0  # nothing differed
    assert report.copy.items_unchanged == 20
    # its bookkeeping is kept beside the collection, never in it
    assert collection.count_documents({"_ddb_seq": {"$exists": False}}) == 0
    assert collection.database["recount_sync"].count_documents({"kind": "recovery"}) == 1


def test_one_line_for_a_failed_batch_however_many_records(wire_target: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from pymongo.errors import AutoReconnect

    from replicator.core import Replicator
    from replicator.settings import Settings

    class Cancelled(LandedThenLost):
        def bulk_write(self, requests: Any, **options: Any) -> Any:
            raise AutoReconnect("operation cancelled")

    caplog.set_level(logging.INFO, logger="replicator")
    collection = Cancelled(wire_target.collection("operator", "cancelled"))
    records = [{"eventID": f"e{n}", "eventName": "INSERT", "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"pk": {"S": f"k{n}"}}, "NewImage": {"pk": {"S": f"k{n}"}},
                             "SequenceNumber": f"{100 + n}", "StreamViewType": "NEW_IMAGE"}}
               for n in range(300)]
    result = Replicator(collection, Settings(key_schema=("pk",))).process(records)
    assert len(result.failures) == 300
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert lines[0].startswith("batch of 300 records, SequenceNumber 100..399")
    assert lines[0].endswith("; 300 record(s) will be redelivered, from SequenceNumber 100 "
                             "(eventID e0): AutoReconnect: operation cancelled")


# -- the command line, as a subprocess --------------------------------------------------------------
def _base(moto_server: Any, uri: str, table: str) -> list[str]:
    return ["--table", table, "--mongodb-uri", uri, "--endpoint-url", moto_server.endpoint_url()]


@pytest.mark.slow
def test_exit_codes_and_repairs_along_sync_verify_recover(
    moto_server: Any, mongoeco_server_uri: str, tmp_path: Path
) -> None:
    from pymongo import MongoClient

    moto_server.create_table(TableSpec("orders", ("pk", "S")))
    client = moto_server.dynamodb()
    prefill(client, "orders", 30)
    uri = f"{mongoeco_server_uri}exits?directConnection=true"
    base = _base(moto_server, uri, "orders")

    done = run_replicator("sync", *base, "--no-progress", "--report", str(tmp_path / "s.json"))
    assert done.returncode == EXIT_OK, done.stderr
    assert "  written: 30\n" in done.stderr and "  stream records applied: 0\n" in done.stderr
    done = run_replicator("verify", *base, "--report", str(tmp_path / "v.json"))
    assert done.returncode == EXIT_OK, done.stderr

    # A change the stream holds but nothing applies (the poller has just ended its run): verify
    # says so, and does not call the document diverged.
    done = run_replicator("run", *base, "--once")
    assert done.returncode == EXIT_OK, done.stderr
    client.update_item(TableName="orders", Key={"pk": {"S": "item-000001"}},
                       UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "5"}})
    done = run_replicator("verify", *base, "--recheck-delay", "0.1",
                          "--report", str(tmp_path / "u.json"))
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "the last poller of this stream ended its run" in done.stderr
    unchecked = json.loads((tmp_path / "u.json").read_text())
    assert unchecked["unchecked"] == ["item-000001"] and unchecked["divergent"] == []
    assert "start `replicator run`" in unchecked["repair"]["unchecked"]

    # `replicator run` after the sync: its shards had no checkpoint yet, so it replays them from
    # TRIM_HORIZON (docs/migration.md); the divergences are planted once it has caught up.
    following = ("run", *base, "--poll-interval", "0.1", "--log-interval", "0.2")
    with running_replicator(*following, ready="(caught up)"):
        # Planted divergences of every kind: found (exit 1), each with its repair command.
        with MongoClient(uri) as mongo:
            orders = mongo["exits"]["orders"]
            orders.update_one({"_id": "item-000003"}, {"$set": {"n": 99}})
            orders.delete_one({"_id": "item-000004"})
            orders.insert_one({"_id": "gone", "n": 1, "_ddb_seq": "0"})
            orders.insert_one({"_id": "mine", "note": "the application's own"})
        done = run_replicator("verify", *base, "--recheck-delay", "0.1",
                              "--report", str(tmp_path / "d.json"))
    assert done.returncode == EXIT_DIVERGED, done.stderr
    assert "re-check: waiting 0 s (--recheck-delay), then for `replicator run`" in done.stderr
    found = json.loads((tmp_path / "d.json").read_text())
    assert found["divergences"] == {"changed": 1, "missing": 1, "extra": 1}
    assert found["foreign"] == ["mine"]  # listed, not a divergence
    recover_command = (f"replicator recover --table orders --endpoint-url "
                       f"{moto_server.endpoint_url()} --mongodb-uri <the same URI> --yes")
    for kind in ("changed", "missing", "extra"):
        assert found["repair"][kind].startswith(recover_command), found["repair"]
        assert f"to repair {kind}: {recover_command}" in done.stderr
    assert "deleteOne" in found["repair"]["foreign"] and "recover never" in found["repair"]["foreign"]
    assert uri not in done.stderr + done.stdout  # the URI is never printed

    # The documented repair (the poller stopped): recover repairs what the replicator wrote --
    # the stream from TRIM_HORIZON rewrites the changed and the missing document, the re-copy
    # deletes the one whose item is gone -- and keeps the application's own document.
    done = run_replicator("recover", *base, "--yes", "--report", str(tmp_path / "r.json"))
    assert done.returncode == EXIT_OK, done.stderr
    recovered = json.loads((tmp_path / "r.json").read_text())
    assert recovered["stream_records_applied"] == 31  # 30 puts + 1 update, each once
    assert recovered["documents_deleted"] == 1
    assert "  stream records applied: 31\n" in done.stderr
    with MongoClient(uri) as mongo:
        orders = mongo["exits"]["orders"]
        # recover's bookkeeping lives beside the collection: only the foreign document lacks
        # the sequence field
        assert [d["_id"] for d in orders.find({"_ddb_seq": {"$exists": False}})] == ["mine"]
    with running_replicator(*following, ready="(caught up)"):
        done = run_replicator("verify", *base, "--recheck-delay", "0.1",
                              "--report", str(tmp_path / "f.json"))
        # the application's own document is listed with its by-hand repair; not a divergence
        assert done.returncode == EXIT_OK, done.stderr
        listed = json.loads((tmp_path / "f.json").read_text())
        assert listed["foreign"] == ["mine"] and "deleteOne" in listed["repair"]["foreign"]
        with MongoClient(uri) as mongo:
            assert mongo["exits"]["orders"].delete_one({"_id": "mine"}).deleted_count == 1
        done = run_replicator("verify", *base, "--recheck-delay", "0.1")
        assert done.returncode == EXIT_OK, done.stderr


@pytest.mark.slow
def test_could_not_run_is_exit_4_and_usage_is_exit_2(moto_server: Any,
                                                   mongoeco_server_uri: str) -> None:
    moto_server.create_table(TableSpec("reachable", ("pk", "S")))
    closed = f"mongodb://127.0.0.1:{_closed_port()}/nowhere"
    done = run_replicator("verify", *_base(moto_server, closed, "reachable"),
                          "--mongodb-timeout-ms", "300")
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "could not run: MongoDB cannot be reached (ServerSelectionTimeoutError" in done.stderr
    done = run_replicator("sync", *_base(moto_server, closed, "reachable"),
                          "--mongodb-timeout-ms", "300", "--no-progress")
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr

    uri = f"{mongoeco_server_uri}missing?directConnection=true"
    for command in ("verify", "sync", "run"):
        done = run_replicator(command, *_base(moto_server, uri, "no-such-table"),
                              *(["--once"] if command == "run" else []))
        assert done.returncode == EXIT_UNAVAILABLE, (command, done.stderr)
        assert "could not run: table 'no-such-table' not found" in done.stderr

    done = run_replicator("verify", "--mongodb-uri", uri)  # no --table
    assert done.returncode == EXIT_USAGE
    done = run_replicator("verify", "--help")
    assert done.returncode == EXIT_OK
    assert "Exit codes:" in done.stdout and "4  could not run" in done.stdout
    assert f"{EXIT_RESYNC}  re-sync required (the stream lost changes): replicator recover" in done.stdout
