"""docs/kinesis.md, "Copying" and "Recovery", walked as a user walks them: a migration file with one
table followed over DynamoDB Streams and one over Kinesis Data Streams (``kinesis_stream``), through
the ``replicator`` commands as subprocesses against moto's threaded server and a mongoeco wire
server (real pymongo). moto sends nothing to Kinesis: the harness's KDS source puts the Kinesis
table's changes there (shuffled, duplicated), as its streaming destination would.

1. ``sync --migration-file``: both tables copied and handed over, each to its own stream;
2. writes to both, ``run --migration-file --once``: both follow; ``verify`` exits 0;
3. a gap on the Kinesis table (documents lost) is repaired by ``recover --only T
   --from-timestamp``: a replay of the data stream, no re-copy; ``recover`` of a Kinesis-fed
   collection without it names the replay command.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import MongoClient

from harness.kinesis import KdsFeed, KdsSettings
from harness.migration import LiveWriter, diff, prefill
from replicator.poller.streams import StreamReader
from support.replicator_command import run_replicator

pytestmark = pytest.mark.slow




def test_a_dynamodb_streams_table_and_a_kinesis_table_sync_run_verify_and_replay(
        moto_server: Any, mongoeco_server_uri: str, tmp_path: Any) -> None:
    from harness.backends.base import TableSpec

    client = moto_server.dynamodb()
    tables = {name: moto_server.create_table(TableSpec(name, ("pk", "S")))
              for name in ("plain", "kds")}
    for name in tables:
        prefill(client, name, 60)
    upstream = StreamReader(moto_server.streams(), tables["kds"].stream_arn)
    feed = KdsFeed(moto_server.kinesis(), "kds-stream", "kds",
                   KdsSettings(source="kinesis", shards=2, shuffle_window=5,
                               duplicate_rate=0.3, seed=3))

    def bridge() -> None:
        feed.put([r for _, shard in upstream.drain(idle_polls=1).items() for r in shard])
        feed.flush()

    bridge()
    uri = f"{mongoeco_server_uri}?directConnection=true"
    database = f"kj{tmp_path.name[-8:]}".replace("-", "_")
    path = tmp_path / "app.toml"
    path.write_text(f'[defaults]\ndatabase = "{database}"\nregion = "us-east-1"\n'
                    f'endpoint_url = "{moto_server.endpoint_url()}"\n'
                    '[[tables]]\ntable = "plain"\nkey_schema = ["pk"]\n'
                    '[[tables]]\ntable = "kds"\nkey_schema = ["pk"]\n'
                    f'kinesis_stream = "{feed.stream_arn}"\n')
    common = ("--migration-file", str(path), "--mongodb-uri", uri)
    with MongoClient(uri) as mongo:
        mongo.drop_database(database)
        done = run_replicator("sync", *common, "--segments", "2", "--no-progress")
        assert done.returncode == 0, done.stderr
        assert "exit 0 (plain 0, kds 0)" in done.stderr
        assert "AT_TIMESTAMP" in done.stderr  # the Kinesis table's positions
        writers = {name: LiveWriter(client, name, 60, seed=7, per_call=30) for name in tables}
        for writer in writers.values():
            writer()
        bridge()
        done = run_replicator("run", *common, "--once", "--poll-interval", "0.05")
        assert done.returncode == 0, done.stderr
        for name, table in tables.items():
            result = diff(moto_server, table, mongo[database][name])
            assert result.converged, (name, result)
        quarantine = mongo[database]["kds_quarantine"].count_documents({})
        assert quarantine == 0
        done = run_replicator("verify", *common, "--rechecks", "1", "--recheck-delay", "0",
                              "--recheck-timeout", "0")
        assert done.returncode == 0, done.stderr

        # a gap: documents lost on the Kinesis side after changes made from `before` on
        before = datetime.now(timezone.utc) - timedelta(seconds=1)
        writers["kds"].touched.clear()  # a replay from `before` restores what changed since
        writers["kds"]()
        bridge()
        done = run_replicator("run", *common, "--only", "kds", "--once",
                              "--poll-interval", "0.05")
        assert done.returncode == 0, done.stderr
        collection = mongo[database]["kds"]
        touched = sorted(writers["kds"].touched)
        lost = collection.delete_many({"_id": {"$in": touched[:10]}}).deleted_count
        assert lost > 0
        assert not diff(moto_server, tables["kds"], collection).converged
        # recover without the replay's options names them
        refused = run_replicator("recover", "--table", "kds", "--mongodb-uri", uri,
                                 "--database", database, "--endpoint-url",
                                 moto_server.endpoint_url(), "--region", "us-east-1", "--yes")
        assert refused.returncode != 0
        assert "--kinesis-stream" in refused.stderr and "--from-timestamp" in refused.stderr
        done = run_replicator("recover", *common, "--only", "kds", "--from-timestamp",
                              before.isoformat(), "--yes")
        assert done.returncode == 0, done.stderr
        assert "Kinesis replay" in done.stderr
        result = diff(moto_server, tables["kds"], collection)
        assert result.converged, result
        # and the follower resumes after the replay's checkpoints: nothing new, nothing lost
        done = run_replicator("run", *common, "--once", "--poll-interval", "0.05")
        assert done.returncode == 0, done.stderr
        for name, table in tables.items():
            assert diff(moto_server, table, mongo[database][name]).converged
        mongo.drop_database(database)
