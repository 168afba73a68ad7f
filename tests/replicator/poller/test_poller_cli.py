"""``replicator`` (replicator/cli/__init__.py) as a user meets it: exit codes, messages, signals.

The real processes write to mongoeco's wire server through the real pymongo client (the CLI has
no in-memory target: mongomock is a test double, not a production target); they are skipped
where mongoeco is not installed (Python < 3.13). No assertion depends on timing: a process is
signalled once it has logged what the test waits for, and timeouts are only safety nets.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client
from replicator import cli
from replicator.cli import commands, endpoints
from replicator.poller.checkpoints import CheckpointStore
from support.replicator_command import ROOT, LineWatcher, child_env, replicator_command


def fill(source: Any, table: str, count: int) -> Any:
    from harness.backends.base import TableSpec

    created = source.create_table(TableSpec(table, ("id", "S")))
    client = source.dynamodb()
    for n in range(count):
        client.put_item(TableName=table, Item={"id": {"S": f"u{n}"}, "n": {"N": str(n)}})
    return created


# -- usage -----------------------------------------------------------------------------------------
def test_no_uri_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, restore_logging: None,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)
    assert cli.main(["run", "--table", "t"]) == cli.EXIT_USAGE
    assert "give --mongodb-uri or set MONGODB_URI" in capsys.readouterr().err


def test_resync_without_yes_explains_what_it_deletes(restore_logging: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["resync", "--table", "t", "--mongodb-uri", "mongodb://127.0.0.1:1/app"]) == (
        cli.EXIT_USAGE)
    err = capsys.readouterr().err
    assert "--yes" in err and "deletes the collection's documents" in err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--table", "t", "--batch-size", "5000"])
    assert caught.value.code == 2
    assert "must be 1..1000" in capsys.readouterr().err


def test_help_names_the_options_and_no_test_double() -> None:
    done = subprocess.run(replicator_command("run", "--help"), capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--mongodb-uri" in text and "never printed" in text
    assert "--once" in text and "--starting-position" in text
    assert "--metrics-port" in text and "/healthz" in text
    assert "mongomock" not in text.lower()


def test_the_mongomock_scheme_is_not_a_production_target(
    restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    """`replicator run` used to offer an in-memory mongomock target; pymongo now refuses it."""
    code = cli.main(["run", "--table", "t", "--mongodb-uri", "mongomock://", "--once"])
    assert code == cli.EXIT_USAGE
    assert "--mongodb-uri does not hold a mongodb:// or mongodb+srv:// URI" in capsys.readouterr().err


def test_the_core_package_imports_neither_harness_nor_typer_nor_rich() -> None:
    code = ("import sys, replicator.cli, replicator.poller, replicator.poller.checkpoints,"
            " replicator.handler;"
            "bad = sorted(m for m in sys.modules"
            "             if m.split('.')[0] in ('harness', 'typer', 'rich', 'mongomock'));"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- exit 3 and the re-sync command -------------------------------------------------------------------
class FakeDynamoDB:
    def __init__(self, stream_arn: str) -> None:
        self.stream_arn = stream_arn

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"TableName": TableName, "LatestStreamArn": self.stream_arn,
                          "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                          "StreamSpecification": {"StreamEnabled": True,
                                                  "StreamViewType": "NEW_AND_OLD_IMAGES"}}}


def test_a_trimmed_checkpoint_exits_3_with_the_resync_command(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None, capsys: pytest.CaptureFixture[str],
    fake_streams: Any, wire_record: Any,
) -> None:
    fake = fake_streams()
    shard = "shardId-00000000000000000001-aaaaaaaa"
    fake.add_shard(shard)
    fake.append(shard, *(wire_record(f"{n:03d}") for n in range(1, 11)))
    fake.trimmed[shard] = 5
    client = mongomock_client()
    store = CheckpointStore(client["app"]["fake_checkpoints"], table="fake")
    store.start_stream(fake.stream_arn, "TRIM_HORIZON")
    store.save(fake.stream_arn, shard, "002")
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)
    monkeypatch.setattr(endpoints, "aws_clients", lambda args, env: (fake, FakeDynamoDB(fake.stream_arn)))
    monkeypatch.setattr(endpoints.Target, "_connect", lambda self, uri, args, env: client)
    code = cli.main(["run", "--table", "fake", "--mongodb-uri", "mongodb://u:pw@db.example/app",
                     "--database", "app", "--endpoint-url", "http://127.0.0.1:8000", "--once"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_RESYNC, err
    assert "re-sync required" in err and "TrimmedDataAccessException" in err
    # the safe command, which never empties the collection (resync does), with the exact flags
    assert ("replicator recover --table fake --database app --endpoint-url http://127.0.0.1:8000 "
            "--mongodb-uri <the same URI> --yes") in err
    assert "replicator resync" not in err
    assert "pw" not in err.replace("pwd", "")


def test_checkpoints_command_shows_and_deletes(monkeypatch: pytest.MonkeyPatch, restore_logging: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    client = mongomock_client()
    store = CheckpointStore(client["app"]["orders_checkpoints"], table="orders")
    store.start_stream("arn:s1", "TRIM_HORIZON")
    store.save("arn:s1", "shardId-1", "42")
    monkeypatch.setattr(endpoints.Target, "_connect", lambda self, uri, args, env: client)
    base = ["checkpoints", "--table", "orders", "--mongodb-uri", "mongodb://h/app", "--database", "app"]
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert "stream arn:s1: started at TRIM_HORIZON" in out and "shard shardId-1: 42 (open" in out
    assert cli.main([*base, "--delete"]) == cli.EXIT_USAGE
    assert cli.main([*base, "--delete", "--yes"]) == 0
    assert "deleted 2 checkpoint documents" in capsys.readouterr().out
    assert store.load("arn:s1") == {}


def test_checkpoints_command_against_mongoeco_through_pymongo(
    mongoeco_server_uri: str, restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    """``cli.main`` in this process, its Target built from a mongoeco URI (no monkeypatching):
    the real pymongo client reads and deletes the checkpoints."""
    from pymongo import MongoClient

    uri = f"{mongoeco_server_uri}inprocess?directConnection=true"
    with MongoClient(uri) as client:
        store = CheckpointStore(client["inprocess"]["orders_checkpoints"], table="orders")
        store.start_stream("arn:s1", "TRIM_HORIZON")
        store.save("arn:s1", "shardId-1", "42")
    base = ["checkpoints", "--table", "orders", "--mongodb-uri", uri]  # database from the URI
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert "stream arn:s1: started at TRIM_HORIZON" in out and "shard shardId-1: 42 (open" in out
    assert cli.main([*base, "--delete", "--yes"]) == 0
    assert "deleted 2 checkpoint documents" in capsys.readouterr().out
    with MongoClient(uri) as client:
        assert client["inprocess"]["orders_checkpoints"].count_documents({}) == 0


# -- real processes ---------------------------------------------------------------------------------
def target_uri(server_uri: str, database: str) -> str:
    return f"{server_uri}{database}?directConnection=true"


@pytest.mark.slow
def test_once_drains_the_stream_and_exits_0(moto_server: Any, mongoeco_server_uri: str) -> None:
    from pymongo import MongoClient

    fill(moto_server, "users", 25)
    uri = target_uri(mongoeco_server_uri, "once")
    done = subprocess.run(
        replicator_command("run", "--table", "users", "--mongodb-uri", uri,
                           "--endpoint-url", moto_server.endpoint_url(), "--once",
                           "--poll-interval", "0.05", "--batch-size", "10", "--metrics-port", "0"),
        capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "metrics at http://127.0.0.1:" in done.stderr  # a free port, served while it ran
    assert "first run, starting at TRIM_HORIZON" in done.stderr
    assert "stream drained (--once): 25 records applied, 3 checkpoints saved" in done.stderr
    with MongoClient(uri) as client:  # what the process wrote, read back through pymongo
        users = client["once"]["users"]
        assert sorted(d["_id"] for d in users.find({}, {"_id": 1})) == sorted(
            f"u{n}" for n in range(25))
        assert users.find_one({"_id": "u7"})["n"] == 7
        assert client["once"]["users_checkpoints"].count_documents({"kind": "shard"}) == 1


@pytest.mark.slow
def test_sigterm_finishes_the_batch_checkpoints_and_exits_0(moto_server: Any,
                                                             mongoeco_server_uri: str) -> None:
    """SIGTERM is sent only once the process has logged that all 30 records are applied (a
    progress line), so what it then reports does not depend on how fast the machine is."""
    fill(moto_server, "orders", 30)
    process = subprocess.Popen(
        replicator_command("run", "--table", "orders",
                           "--mongodb-uri", target_uri(mongoeco_server_uri, "sigterm"),
                           "--endpoint-url", moto_server.endpoint_url(), "--poll-interval", "0.05",
                           "--log-interval", "0.2", "--batch-size", "7"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
    try:
        assert process.stderr is not None
        watcher = LineWatcher(process.stderr)
        if not watcher.wait_for("progress: 30 records applied"):
            pytest.fail("no progress line with the 30 records:\n" + "".join(watcher.lines))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)  # a safety net: the process exits at once
        output = watcher.rest()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "SIGTERM: finishing the current batch, then stopping" in output
    assert "stopped by signal: 30 records applied, 5 checkpoints saved; exiting" in output
    assert "lag " in output and "records/s" in output


@pytest.mark.slow
def test_an_unknown_table_means_it_could_not_run(moto_server: Any,
                                                 mongoeco_server_uri: str) -> None:
    done = subprocess.run(
        replicator_command("run", "--table", "nope",
                           "--mongodb-uri", target_uri(mongoeco_server_uri, "unknown"),
                           "--endpoint-url", moto_server.endpoint_url(), "--once"),
        capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120, check=False)
    assert done.returncode == cli.EXIT_UNAVAILABLE, done.stderr
    assert "could not run: table 'nope' not found" in done.stderr
