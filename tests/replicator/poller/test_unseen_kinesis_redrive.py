"""Breaking ``replicator redrive --kinesis-stream`` on the harness's KinesisBatchInfo (docs/redrive.md)
with inputs of the kind of test_redrive.py's but new ones: a data stream resharded mid-stream (a
parent shard's discarded ranges and its children's), shuffled and duplicated records, deletes,
and a redrive of every message twice. moto in-process (KinesisResharding), mongoeco's wire
server through pymongo."""

from __future__ import annotations

import json

import pytest
from poller_helpers import diff
from test_redrive import Discarded, discarded, redrive  # noqa: F401 (the fixture)

from harness.backends.moto_kinesis import KinesisResharding
from harness.backends.moto_source import make_client
from harness.kinesis import KdsFeed, KdsSettings
from replicator.poller.streams import StreamReader


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_redrive_of_a_resharded_streams_ranges_converges(
    discarded: Discarded, mongoeco_server_uri: str, restore_logging: None,  # noqa: F811
    capsys: pytest.CaptureFixture[str], batch_size: int,
) -> None:
    from pymongo import MongoClient

    with KinesisResharding():
        feed = KdsFeed(make_client("kinesis"), "orders-kds", "orders",
                       KdsSettings(source="kinesis", shards=1, shuffle_window=3,
                                   duplicate_rate=0.3, seed=batch_size, split_after=9))
        discarded.write(range(12))
        for n in (2, 5, 9):
            discarded.client.delete_item(TableName="orders", Key={"pk": {"S": f"k{n}"}})
        discarded.client.put_item(TableName="orders", Item={"pk": {"S": "k5"}, "n": {"N": "50"}})
        changes = StreamReader(discarded.source.streams(), discarded.table.stream_arn,
                               sleep=lambda _: None).drain(idle_polls=1)
        feed.put([r for rs in changes.values() for r in rs])
        per_shard = feed.drain(idle_polls=1)
        assert feed.split_done and len(per_shard) >= 2  # the parent and a child (or both)
        esm = discarded.failing_mapping(feed.stream_arn, batch_size)
        for shard_id, records in per_shard.items():
            esm.feed(shard_id, records, parent_shard_id=feed.state[shard_id].parent_id)
        esm.drain()
        esm.close()
        expected = sum(-(-len(rs) // batch_size) for rs in per_shard.values())
        bodies = []
        while True:
            got = discarded.sqs.receive_message(QueueUrl=discarded.queue,
                                                MaxNumberOfMessages=10, VisibilityTimeout=30)
            if not got.get("Messages"):
                break
            bodies += [m["Body"] for m in got["Messages"]]
            for m in got["Messages"]:
                discarded.sqs.delete_message(QueueUrl=discarded.queue,
                                             ReceiptHandle=m["ReceiptHandle"])
        assert len(bodies) == expected
        assert {json.loads(b)["KinesisBatchInfo"]["shardId"] for b in bodies} == set(per_shard)
        # every message twice (a queue delivers at least once), newest shard's first
        for body in [*reversed(bodies), *bodies]:
            discarded.sqs.send_message(QueueUrl=discarded.queue, MessageBody=body)
        uri = f"{mongoeco_server_uri}?directConnection=true"
        database = f"redrive_reshard_{batch_size}"
        code = redrive(uri, database, discarded.queue, "--kinesis-stream", feed.stream_arn)
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"{2 * expected} messages: {2 * expected} applied" in out, out
        assert discarded.messages() == []
        with MongoClient(uri) as client:
            assert diff(discarded.source, discarded.table, client[database]["orders"]).converged
