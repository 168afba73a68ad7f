"""A Kinesis data stream deleted and created again under the same name keeps its ARN (and, with
as many shards, its shard ids): the poller's checkpoints, keyed by the ARN, name positions of a
stream that is gone. The poller refuses to start (StreamRecreated, a ResyncRequired: exit 3),
naming the re-copy, and writes nothing; on moto (in-process, and `replicator` as processes on
moto's server), into mongoeco through pymongo."""

from __future__ import annotations

import random
from typing import Any

import pytest
from poller_helpers import diff, make_table
from test_kinesis_poller import bridge, write

from harness.kinesis import KdsFeed, KdsSettings
from replicator.errors import ResyncRequired, StreamRecreated
from replicator.poller import Poller
from replicator.poller.checkpoints import CheckpointStore
from replicator.poller.kinesis import KinesisReader
from replicator.poller.streams import StreamReader


def feed_of(kinesis: Any, name: str, table: str, shards: int, seed: int) -> KdsFeed:
    return KdsFeed(kinesis, name, table, KdsSettings(source="kinesis", shards=shards,
                                                      shuffle_window=3, duplicate_rate=0.2,
                                                      seed=seed))


def poller(source: Any, table: Any, collection: Any, arn: str) -> Poller:
    return Poller(source.kinesis(), source.dynamodb(), table.spec.name, collection,
                  stream_arn=arn, reader_type=KinesisReader, poll_interval=0.0, batch_size=5,
                  reader_options={"refresh_interval": 0.0})


def snapshot(collection: Any) -> tuple[list[Any], list[Any]]:
    checkpoints = CheckpointStore.beside(collection).collection
    return (sorted(collection.find(), key=lambda d: d["_id"]),
            sorted(checkpoints.find(), key=lambda d: d["_id"]))


@pytest.mark.parametrize(("old_shards", "new_shards", "seed"), [(1, 1, 1), (2, 2, 2), (2, 1, 3)],
                         ids=["one-shard", "same-shard-ids", "fewer-shards"])
def test_a_recreated_stream_is_refused_with_the_recopy_and_nothing_is_written(
        moto: Any, mongoeco_db: Any, old_shards: int, new_shards: int, seed: int) -> None:
    table = make_table(moto, f"recreated-{seed}")
    collection = mongoeco_db["items"]
    upstream = StreamReader(moto.streams(), table.stream_arn)
    name = f"recreated-{seed}-stream"
    old = feed_of(moto.kinesis(), name, table.spec.name, old_shards, seed)
    rng = random.Random(seed)
    write(moto.dynamodb(), table.spec.name, rng, 25)
    bridge(moto, upstream, old)
    poller(moto, table, collection, old.stream_arn).run(once=True)
    assert collection.count_documents({}) > 0
    moto.kinesis().delete_stream(StreamARN=old.stream_arn)
    new = feed_of(moto.kinesis(), name, table.spec.name, new_shards, seed + 10)
    assert new.stream_arn == old.stream_arn
    write(moto.dynamodb(), table.spec.name, rng, 25)
    bridge(moto, upstream, new)
    before = snapshot(collection)

    with pytest.raises(StreamRecreated) as raised:
        poller(moto, table, collection, new.stream_arn).run(once=True)
    error = raised.value
    assert isinstance(error, ResyncRequired)  # the CLI's exit 3, as the other refusals
    text = str(error)
    assert "deleted and created again under the same name" in text
    assert (f"replicator checkpoints --table {table.spec.name} --delete --yes; empty the "
            f"collection; then replicator sync --table {table.spec.name} --kinesis-stream "
            f"{new.stream_arn} --restart") in text
    assert snapshot(collection) == before  # nothing read, written or checkpointed


def test_the_same_stream_resumes_and_an_old_marker_learns_its_creation_time(
        moto: Any, mongoeco_db: Any) -> None:
    # no false alarm: the same stream, restarted; a marker written without the creation time
    # (an earlier version) takes it on, and then catches a re-creation
    table = make_table(moto, "resumed")
    collection = mongoeco_db["items"]
    upstream = StreamReader(moto.streams(), table.stream_arn)
    feed = feed_of(moto.kinesis(), "resumed-stream", table.spec.name, 2, 5)
    rng = random.Random(5)
    write(moto.dynamodb(), table.spec.name, rng, 20)
    bridge(moto, upstream, feed)
    poller(moto, table, collection, feed.stream_arn).run(once=True)
    store = CheckpointStore.beside(collection)
    marker = store.marker(feed.stream_arn)
    assert marker is not None and marker.stream_created_at is not None
    store.collection.update_many({"kind": "stream"}, {"$unset": {"stream_created_at": ""}})
    write(moto.dynamodb(), table.spec.name, rng, 20)
    bridge(moto, upstream, feed)
    poller(moto, table, collection, feed.stream_arn).run(once=True)
    assert diff(moto, table, collection).converged
    again = store.marker(feed.stream_arn)
    assert again is not None and again.stream_created_at == marker.stream_created_at


def test_an_old_marker_without_the_creation_time_still_catches_a_recreation(
        moto: Any, mongoeco_db: Any) -> None:
    # the checkpoints' changes were made before the new stream existed
    table = make_table(moto, "legacy")
    collection = mongoeco_db["items"]
    upstream = StreamReader(moto.streams(), table.stream_arn)
    old = feed_of(moto.kinesis(), "legacy-stream", table.spec.name, 1, 6)
    write(moto.dynamodb(), table.spec.name, random.Random(6), 15)
    bridge(moto, upstream, old)
    poller(moto, table, collection, old.stream_arn).run(once=True)
    store = CheckpointStore.beside(collection)
    store.collection.update_many({"kind": "stream"}, {"$unset": {"stream_created_at": ""}})
    moto.kinesis().delete_stream(StreamARN=old.stream_arn)
    new = feed_of(moto.kinesis(), "legacy-stream", table.spec.name, 1, 7)
    with pytest.raises(StreamRecreated, match=r"before .* was created"):
        poller(moto, table, collection, new.stream_arn).run(once=True)


@pytest.mark.slow
def test_run_refuses_with_exit_3_and_the_named_commands_start_over(
        moto_server: Any, mongoeco_server_uri: str, tmp_path: Any) -> None:
    """As an operator meets it: `replicator run --kinesis-stream` exits 3 naming the commands;
    running them (checkpoints --delete, the collection emptied, sync --restart) converges."""
    from pymongo import MongoClient

    from harness.backends.base import TableSpec
    from support.replicator_command import run_replicator

    table = moto_server.create_table(TableSpec("kds-again", ("pk", "S")))
    client = moto_server.dynamodb()
    upstream = StreamReader(moto_server.streams(), table.stream_arn)
    old = feed_of(moto_server.kinesis(), "kds-again-stream", "kds-again", 2, 8)
    rng = random.Random(8)
    write(client, "kds-again", rng, 20)
    bridge(moto_server, upstream, old)
    uri = f"{mongoeco_server_uri}?directConnection=true"
    database = f"again{tmp_path.name[-8:]}".replace("-", "_")
    common = ("--table", "kds-again", "--kinesis-stream", old.stream_arn, "--mongodb-uri", uri,
              "--database", database, "--endpoint-url", moto_server.endpoint_url(),
              "--region", "us-east-1")
    with MongoClient(uri) as mongo:
        mongo.drop_database(database)
        done = run_replicator("run", *common, "--once", "--poll-interval", "0.05")
        assert done.returncode == 0, done.stderr
        moto_server.kinesis().delete_stream(StreamARN=old.stream_arn)
        new = feed_of(moto_server.kinesis(), "kds-again-stream", "kds-again", 2, 9)
        write(client, "kds-again", rng, 20)
        bridge(moto_server, upstream, new)
        done = run_replicator("run", *common, "--once", "--poll-interval", "0.05")
        assert done.returncode == 3, done.stderr
        assert "deleted and created again under the same name" in done.stderr
        assert "replicator checkpoints --table kds-again --delete --yes" in done.stderr
        # the named commands, in order
        options = common[4:]
        done = run_replicator("checkpoints", "--table", "kds-again", *options,
                              "--delete", "--yes")
        assert done.returncode == 0, done.stderr
        mongo[database]["kds-again"].drop()
        done = run_replicator("sync", *common, "--restart", "--segments", "1", "--no-progress")
        assert done.returncode == 0, done.stderr
        done = run_replicator("run", *common, "--once", "--poll-interval", "0.05")
        assert done.returncode == 0, done.stderr
        assert diff(moto_server, table, mongo[database]["kds-again"]).converged
