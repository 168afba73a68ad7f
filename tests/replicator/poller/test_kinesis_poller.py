"""The Poller over a Kinesis data stream (KinesisReader) on moto, into mongoeco through real
pymongo: the table's changes go through the harness's KDS source (shuffled within a window,
duplicated), a shard is split mid-run, the poller restarts from its checkpoints."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from poller_helpers import diff, make_table

from harness.backends.moto_kinesis import KinesisResharding
from harness.kinesis import KdsFeed, KdsSettings
from replicator.errors import ConfigurationError, ResyncRequired
from replicator.poller import Poller
from replicator.poller.checkpoints import CheckpointStore
from replicator.poller.kinesis import KinesisReader
from replicator.poller.streams import StreamReader
from replicator.settings import Settings


@pytest.fixture
def resharding(moto: Any) -> Iterator[Any]:
    with KinesisResharding():
        yield moto


def write(client: Any, table: str, rng: random.Random, operations: int) -> None:
    for _ in range(operations):
        pk = f"k{rng.randrange(12)}"
        roll = rng.random()
        if roll < 0.2:
            client.delete_item(TableName=table, Key={"pk": {"S": pk}})
        elif roll < 0.6:
            client.put_item(TableName=table, Item={"pk": {"S": pk}, "v": {"N": str(rng.randrange(99))},
                                                    "tag": {"S": rng.choice("abc")}})
        else:
            client.update_item(TableName=table, Key={"pk": {"S": pk}},
                               UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}})


def bridge(source: Any, reader: StreamReader, feed: KdsFeed) -> int:
    """Every new change of the table's stream into the Kinesis stream (shuffled, duplicated)."""
    records = [r for _, shard in reader.drain(idle_polls=1).items() for r in shard]
    feed.put(records)
    feed.flush()
    return len(records)


def poller(source: Any, table: Any, collection: Any, feed: KdsFeed) -> Poller:
    return Poller(source.kinesis(), source.dynamodb(), table.spec.name, collection,
                  stream_arn=feed.stream_arn, reader_type=KinesisReader, poll_interval=0.0,
                  batch_size=7, reader_options={"refresh_interval": 0.0})


@pytest.mark.slow
def test_split_mid_run_restart_and_duplicates_converge(resharding: Any, mongoeco_db: Any) -> None:
    source = resharding
    table = make_table(source, "kds-poller")
    collection = mongoeco_db["items"]
    stream = StreamReader(source.streams(), table.stream_arn)
    feed = KdsFeed(source.kinesis(), "kds-poller-stream", table.spec.name,
                   KdsSettings(source="kinesis", shards=2, shuffle_window=6, duplicate_rate=0.3,
                               seed=4))
    rng = random.Random(4)
    write(source.dynamodb(), table.spec.name, rng, 60)
    bridge(source, stream, feed)
    first = poller(source, table, collection, feed)
    stats = first.run(once=True)
    assert stats.records_read == feed.put_count and feed.shuffler.duplicated > 0
    assert diff(source, table, collection).converged

    # Reshard, write on, restart: the new poller resumes after its checkpoints.
    kinesis = source.kinesis()
    shard = kinesis.list_shards(StreamARN=feed.stream_arn)["Shards"][0]
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(StreamARN=feed.stream_arn, ShardToSplit=shard["ShardId"],
                        NewStartingHashKey=str((low + high) // 2))
    put_before = feed.put_count
    write(source.dynamodb(), table.spec.name, rng, 60)
    bridge(source, stream, feed)
    second = poller(source, table, collection, feed)
    stats = second.run(once=True)
    assert stats.records_read == feed.put_count - put_before  # nothing read twice
    assert diff(source, table, collection).converged
    store = CheckpointStore.beside(collection)
    saved = store.load(feed.stream_arn)
    assert saved[shard["ShardId"]].finished  # the parent read to its end
    children = {s for s, c in saved.items() if c.parent_shard_id == shard["ShardId"]}
    assert len(children) == 2
    # when the last applied change reached the stream (lag, gap recovery): never in the future
    created = [c.created_at for c in saved.values() if c.sequence_number is not None]
    assert created and all(c is not None and c <= datetime.now(timezone.utc) for c in created)
    assert second.replicator is not None and second.replicator.settings.source == "kinesis"


@pytest.mark.slow
def test_a_checkpoint_the_retention_removed_requires_a_resync(resharding: Any, mongoeco_db: Any) -> None:
    source = resharding
    table = make_table(source, "kds-trim")
    collection = mongoeco_db["items"]
    stream = StreamReader(source.streams(), table.stream_arn)
    feed = KdsFeed(source.kinesis(), "kds-trim-stream", table.spec.name,
                   KdsSettings(source="kinesis", shards=1, shuffle_window=1, duplicate_rate=0.0))
    rng = random.Random(9)
    write(source.dynamodb(), table.spec.name, rng, 20)
    bridge(source, stream, feed)
    poller(source, table, collection, feed).run(once=True)
    write(source.dynamodb(), table.spec.name, rng, 20)
    bridge(source, stream, feed)
    with KinesisResharding() as retention:  # the unread records and the checkpoint age out
        retention.trim("kds-trim-stream", "shardId-000000000000", through=feed.put_count - 3)
    with pytest.raises(ResyncRequired, match="retention period removed"):
        poller(source, table, collection, feed).run(once=True)


def test_a_kinesis_poller_needs_a_kinesis_arn_and_source(moto: Any, mongo_db: Any) -> None:
    with pytest.raises(ConfigurationError, match="Kinesis data stream needs its ARN"):
        Poller(moto.kinesis(), moto.dynamodb(), "t", mongo_db["c"], reader_type=KinesisReader,
               stream_arn="arn:aws:dynamodb:us-east-1:1:table/t/stream/x")
    table = make_table(moto, "kds-config")
    moto.kinesis().create_stream(StreamName="kds-config", ShardCount=1)
    arn = moto.kinesis().describe_stream_summary(StreamName="kds-config")[
        "StreamDescriptionSummary"]["StreamARN"]
    wrong = Poller(moto.kinesis(), moto.dynamodb(), table.spec.name, mongo_db["c"],
                   Settings(source="dynamodb"), stream_arn=arn, reader_type=KinesisReader)
    with pytest.raises(ConfigurationError, match="REPLICATOR_SOURCE is dynamodb"):
        wrong.make_replicator()
