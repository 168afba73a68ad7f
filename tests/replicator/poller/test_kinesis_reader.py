"""KinesisReader against moto's Kinesis (with AWS's resharding: harness.backends.moto_kinesis):
every record once, parents read to their end before their children (splits and merges), resuming
from positions, expired iterators, trimmed positions."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness.backends.moto_kinesis import KinesisResharding
from replicator.poller.kinesis import KinesisReader, is_kinesis_arn, kinesis_sequence
from replicator.poller.streams import lineage_order


@pytest.fixture
def kinesis(moto: Any) -> Iterator[Any]:
    with KinesisResharding():
        yield moto.kinesis()


def make_stream(client: Any, name: str, shards: int = 1) -> str:
    client.create_stream(StreamName=name, ShardCount=shards)
    return str(client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"])


def put(client: Any, arn: str, numbers: range) -> None:
    for number in numbers:
        client.put_record(StreamARN=arn, Data=json.dumps({"n": number}).encode(),
                          PartitionKey=f"key-{number}")


def number(record: dict[str, Any]) -> int:
    return int(json.loads(base64.b64decode(record["kinesis"]["data"]))["n"])


def read_all(reader: KinesisReader, polls: int = 6) -> list[tuple[str, list[int]]]:
    out: list[tuple[str, list[int]]] = []
    for _ in range(polls):
        out.extend((shard, [number(r) for r in records]) for shard, records in reader.poll())
    return out


def split(client: Any, arn: str, shard_id: str) -> None:
    shard = next(s for s in client.list_shards(StreamARN=arn)["Shards"] if s["ShardId"] == shard_id)
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    client.split_shard(StreamARN=arn, ShardToSplit=shard_id, NewStartingHashKey=str((low + high) // 2))


def test_records_in_the_lambda_shape(kinesis: Any) -> None:
    arn = make_stream(kinesis, "shape")
    put(kinesis, arn, range(3))
    batch = KinesisReader(kinesis, arn, poll_interval=0).poll()
    [(shard_id, records)] = batch
    assert [number(r) for r in records] == [0, 1, 2]
    first = records[0]
    assert first["eventSource"] == "aws:kinesis" and first["eventSourceARN"] == arn
    assert first["eventID"] == f"{shard_id}:{kinesis_sequence(first)}"
    assert first["kinesis"]["partitionKey"] == "key-0"
    assert isinstance(first["kinesis"]["approximateArrivalTimestamp"], float)
    assert is_kinesis_arn(arn) and not is_kinesis_arn("arn:aws:dynamodb:us-east-1:1:table/t/stream/x")


def test_split_mid_run_reads_the_parent_to_its_end_first(kinesis: Any) -> None:
    arn = make_stream(kinesis, "split")
    put(kinesis, arn, range(10))
    reader = KinesisReader(kinesis, arn, poll_interval=0, refresh_interval=0, limit=4, max_pages=1)
    seen = read_all(reader, polls=1)  # the first page of the parent only
    assert seen == [("shardId-000000000000", [0, 1, 2, 3])]
    split(kinesis, arn, "shardId-000000000000")
    put(kinesis, arn, range(10, 40))  # into the children now
    seen += read_all(reader, polls=30)
    order = [shard for shard, _ in seen]
    last_parent = max(i for i, shard in enumerate(order) if shard == "shardId-000000000000")
    first_child = min(i for i, shard in enumerate(order) if shard != "shardId-000000000000")
    assert last_parent < first_child
    numbers = [n for _, batch in seen for n in batch]
    assert sorted(numbers) == list(range(40))  # every record once
    assert set(reader.exhausted()) == {"shardId-000000000000"}
    children = {s for s in order if s != "shardId-000000000000"}
    assert children == {"shardId-000000000001", "shardId-000000000002"}


def test_a_merged_shard_waits_for_both_parents(kinesis: Any) -> None:
    arn = make_stream(kinesis, "merge", shards=2)
    put(kinesis, arn, range(20))
    kinesis.merge_shards(StreamARN=arn, ShardToMerge="shardId-000000000000",
                         AdjacentShardToMerge="shardId-000000000001")
    put(kinesis, arn, range(20, 30))
    listing = kinesis.list_shards(StreamARN=arn)["Shards"]
    child = next(s for s in listing if s.get("AdjacentParentShardId"))
    # listed child first: the order still puts both parents before it
    ordered = [s["ShardId"] for s in lineage_order([child, *[s for s in listing if s is not child]])]
    assert ordered.index(child["ShardId"]) == 2
    reader = KinesisReader(kinesis, arn, poll_interval=0, refresh_interval=0, limit=3, max_pages=1)
    seen = read_all(reader, polls=30)
    order = [shard for shard, _ in seen]
    assert max(i for i, s in enumerate(order) if s != child["ShardId"]) < order.index(child["ShardId"])
    assert sorted(n for _, batch in seen for n in batch) == list(range(30))


def test_resume_from_positions_reads_what_came_after(kinesis: Any) -> None:
    arn = make_stream(kinesis, "resume", shards=2)
    put(kinesis, arn, range(12))
    first = KinesisReader(kinesis, arn, poll_interval=0)
    before = sorted(n for _, batch in read_all(first, polls=2) for n in batch)
    positions = {k: v for k, v in first.positions().items() if v is not None}
    put(kinesis, arn, range(12, 20))
    second = KinesisReader(kinesis, arn, poll_interval=0, positions=positions)
    after = sorted(n for _, batch in read_all(second, polls=2) for n in batch)
    assert before == list(range(12)) and after == list(range(12, 20))
    assert not second.state["shardId-000000000000"].trimmed


class ExpiringKinesis:
    """A kinesis client whose GetRecords answers ExpiredIteratorException on chosen calls."""

    def __init__(self, client: Any, expire_on: set[int]) -> None:
        self.client, self.expire_on, self.calls = client, expire_on, 0

    def get_records(self, **request: Any) -> Any:
        self.calls += 1
        if self.calls in self.expire_on:
            raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}},
                              "GetRecords")
        return self.client.get_records(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_expired_iterator_is_reacquired_after_the_last_record(kinesis: Any) -> None:
    arn = make_stream(kinesis, "expire")
    put(kinesis, arn, range(9))
    client = ExpiringKinesis(kinesis, expire_on={2, 3})
    reader = KinesisReader(client, arn, poll_interval=0, limit=3, max_pages=10)
    numbers = [n for _, batch in read_all(reader, polls=3) for n in batch]
    assert numbers == list(range(9))
    assert reader.state["shardId-000000000000"].reacquired == 2


def test_a_position_the_retention_removed_is_reported(kinesis: Any) -> None:
    arn = make_stream(kinesis, "trim")
    put(kinesis, arn, range(10))
    reader = KinesisReader(kinesis, arn, poll_interval=0, limit=3, max_pages=1)
    reader.poll()
    position = reader.positions()["shardId-000000000000"]
    assert position == "3"
    with KinesisResharding() as retention:
        assert retention.trim("trim", "shardId-000000000000", through=6) == 6
    reported: list[str] = []
    resumed = KinesisReader(kinesis, arn, poll_interval=0, positions={"shardId-000000000000": position},
                            on_trimmed=lambda state, sequence: reported.append(sequence))
    numbers = [n for _, batch in read_all(resumed, polls=2) for n in batch]
    assert reported == ["3"] and numbers == [6, 7, 8, 9]
    # a position still held is not reported
    kept = KinesisReader(kinesis, arn, poll_interval=0, positions={"shardId-000000000000": "8"},
                         on_trimmed=lambda state, sequence: reported.append(sequence))
    assert [n for _, batch in read_all(kept, polls=2) for n in batch] == [8, 9]  # after seq 8 (n=7)
    assert reported == ["3"]
