"""``replicator run --kinesis-stream ARN`` as a user meets it: a real process reads a Kinesis data
stream on moto's server (fed by the harness's KDS source) into mongoeco through pymongo."""

from __future__ import annotations

import random
import subprocess
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.kinesis import KdsFeed, KdsSettings
from harness.lane import scan_items
from replicator import cli
from replicator.poller.streams import StreamReader
from support.replicator_command import ROOT, child_env, replicator_command


@pytest.mark.slow
def test_run_kinesis_stream_once_converges(moto_server: Any, mongoeco_server_uri: str) -> None:
    from pymongo import MongoClient

    table = moto_server.create_table(TableSpec("kds-users", ("id", "S")))
    client = moto_server.dynamodb()
    rng = random.Random(3)
    for _ in range(40):
        key = {"id": {"S": f"u{rng.randrange(10)}"}}
        if rng.random() < 0.2:
            client.delete_item(TableName="kds-users", Key=key)
        else:
            client.put_item(TableName="kds-users", Item={**key, "n": {"N": str(rng.randrange(99))}})
    feed = KdsFeed(moto_server.kinesis(), "kds-users-stream", "kds-users",
                   KdsSettings(source="kinesis", shards=2, shuffle_window=5, duplicate_rate=0.2,
                               seed=3))
    records = StreamReader(moto_server.streams(), table.stream_arn).drain(idle_polls=1)
    feed.put([r for shard in records.values() for r in shard])
    feed.flush()
    uri = f"{mongoeco_server_uri}kdscli?directConnection=true"
    done = subprocess.run(
        replicator_command("run", "--table", "kds-users", "--kinesis-stream", feed.stream_arn,
                           "--mongodb-uri", uri, "--endpoint-url", moto_server.endpoint_url(),
                           "--once", "--poll-interval", "0.05", "--batch-size", "10"),
        capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert f"stream {feed.stream_arn} of table kds-users: 2 shards listed" in done.stderr
    assert f"stream drained (--once): {feed.put_count} records applied" in done.stderr
    items = {item["id"]["S"]: int(item["n"]["N"]) for item in scan_items(client, "kds-users")}
    with MongoClient(uri) as mongo:
        documents = {d["_id"]: d["n"] for d in mongo["kdscli"]["kds-users"].find()}
        assert documents == items
        kinds = {d["stream_arn"] for d in mongo["kdscli"]["kds-users_checkpoints"].find()}
        assert kinds == {feed.stream_arn}




def test_a_kinesis_stream_option_that_is_not_a_kinesis_arn_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        restore_logging: None) -> None:
    from replicator.cli import commands

    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)
    monkeypatch.setattr(commands.endpoints, "Target", lambda args, environ: _NoTarget())
    code = cli.main(["run", "--table", "t", "--mongodb-uri", "mongodb://127.0.0.1:1/app",
                     "--kinesis-stream", "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
                     "--region", "us-east-1"])
    assert code == cli.EXIT_USAGE
    assert "is not a Kinesis data stream ARN" in capsys.readouterr().err


class _NoTarget:
    collection = checkpoints = None

    def close(self) -> None:
        pass
