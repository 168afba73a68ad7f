"""Inputs of the Kinesis source's kinds that its own tests did not use: AWS-length sequence
numbers (56 digits, a longer one later), a DynamoDB stream's checkpoints beside a Kinesis
stream's, a merge whose second parent has expired, other AWS partitions, a shuffle that puts
everything twice."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest

from harness.kinesis import Shuffler
from replicator.errors import ResyncRequired
from replicator.poller.checkpoints import CheckpointStore, sequence_key
from replicator.poller.kinesis import is_kinesis_arn
from replicator.poller.resume import check_resume
from replicator.poller.streams import lineage_order

KDS = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders-changes"
DDB = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"


def test_aws_length_sequence_numbers_never_move_a_checkpoint_back(mongoeco_db: Any) -> None:
    store = CheckpointStore(mongoeco_db["c"], table="orders")
    low = "49590338271490256608559692538361571095921575989136588898"  # 56 digits (AWS docs)
    high = "49590338271490256608559692540925702759324208523137515618"
    longer = "1" + "0" * 56  # 57 digits: above both, although it sorts below them as text
    assert store.save(KDS, "shardId-000000000000", high)
    assert not store.save(KDS, "shardId-000000000000", low)
    assert store.save(KDS, "shardId-000000000000", longer)
    assert store.load(KDS)["shardId-000000000000"].sequence_number == longer
    assert len(sequence_key(KDS, longer)) == 130 and len(sequence_key(DDB, "12")) == 40


def test_a_dynamodb_streams_checkpoint_does_not_make_the_kinesis_stream_look_changed(
        mongoeco_db: Any) -> None:
    store = CheckpointStore(mongoeco_db["c"], table="orders")
    store.start_stream(DDB, "TRIM_HORIZON")
    store.save(DDB, "shardId-1", "100")
    now = datetime.now(timezone.utc)
    # a first Kinesis run of a table that was replicated from DynamoDB Streams: no refusal
    check_resume(store, "orders", KDS, {}, None, [{"ShardId": "shardId-000000000000"}], now)
    # ... while a second DynamoDB stream (the stream turned off and on) still is one
    with pytest.raises(ResyncRequired, match="stream changed"):
        check_resume(store, "orders", DDB.replace("2026", "2027"), {}, None, [], now)


def test_a_merge_whose_second_parent_expired_is_not_held_back() -> None:
    shards = [
        {"ShardId": "c", "ParentShardId": "a", "AdjacentParentShardId": "gone"},
        {"ShardId": "a"},
        {"ShardId": "d", "ParentShardId": "c", "AdjacentParentShardId": "a"},
    ]
    assert [s["ShardId"] for s in lineage_order(shards)] == ["a", "c", "d"]


def test_other_partitions_are_kinesis_arns() -> None:
    for arn in ("arn:aws-cn:kinesis:cn-north-1:1:stream/s",
                "arn:aws-us-gov:kinesis:us-gov-west-1:1:stream/s"):
        assert is_kinesis_arn(arn) and len(sequence_key(arn, "7")) == 130
    assert not is_kinesis_arn("arn:aws:kinesisvideo:us-east-1:1:stream/s/1")
    assert not is_kinesis_arn("orders-changes")


def test_every_change_twice_in_order_within_the_window() -> None:
    shuffler = Shuffler(1, 1.0, random.Random(2))
    out = [c["n"] for p in range(30) for c in shuffler.add({"n": p})] + \
        [c["n"] for c in shuffler.flush()]
    assert out == [n for n in range(30) for _ in (0, 1)]


def test_latest_skips_what_was_there_and_reads_what_comes(moto: Any) -> None:
    import json

    from replicator.poller.kinesis import KinesisReader

    client = moto.kinesis()
    client.create_stream(StreamName="latest", ShardCount=2)
    arn = client.describe_stream_summary(StreamName="latest")["StreamDescriptionSummary"]["StreamARN"]
    for n in range(6):
        client.put_record(StreamARN=arn, Data=json.dumps({"n": n}).encode(), PartitionKey=f"p{n}")
    reader = KinesisReader(client, arn, starting_position="LATEST", poll_interval=0)
    for n in range(6, 10):
        client.put_record(StreamARN=arn, Data=json.dumps({"n": n}).encode(), PartitionKey=f"p{n}")
    import base64

    read = sorted(json.loads(base64.b64decode(r["kinesis"]["data"]))["n"]
                  for _, records in reader.poll() for r in records)
    assert read == [6, 7, 8, 9]
