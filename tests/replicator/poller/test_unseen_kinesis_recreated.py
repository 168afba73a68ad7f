"""Breaking the re-created Kinesis stream refusal (docs/poller.md, docs/kinesis.md) with inputs of
the kind of test_kinesis_recreated.py but new ones: the refusal must hold on every later start
(a marker never learns the new stream's creation time from a refused start), with a marker
written with and without the creation time, three shards with identical ids. On moto
in-process, into mongoeco through pymongo."""

from __future__ import annotations

import random
from typing import Any

import pytest
from poller_helpers import make_table
from test_kinesis_poller import bridge, write
from test_kinesis_recreated import feed_of, poller, snapshot

from replicator.errors import StreamRecreated
from replicator.poller.checkpoints import CheckpointStore
from replicator.poller.streams import StreamReader


@pytest.mark.parametrize("legacy_marker", [False, True], ids=["marker", "old-marker"])
def test_a_refused_start_refuses_again_and_changes_nothing(
        moto: Any, mongoeco_db: Any, legacy_marker: bool) -> None:
    table = make_table(moto, f"twice-{int(legacy_marker)}")
    collection = mongoeco_db["items"]
    upstream = StreamReader(moto.streams(), table.stream_arn)
    name = f"twice-{int(legacy_marker)}-stream"
    old = feed_of(moto.kinesis(), name, table.spec.name, 3, 21)
    rng = random.Random(21)
    write(moto.dynamodb(), table.spec.name, rng, 30)
    bridge(moto, upstream, old)
    poller(moto, table, collection, old.stream_arn).run(once=True)
    store = CheckpointStore.beside(collection)
    if legacy_marker:
        store.collection.update_many({"kind": "stream"}, {"$unset": {"stream_created_at": ""}})
    old_shards = sorted(s["ShardId"] for s in
                        moto.kinesis().list_shards(StreamARN=old.stream_arn)["Shards"])
    moto.kinesis().delete_stream(StreamARN=old.stream_arn)
    new = feed_of(moto.kinesis(), name, table.spec.name, 3, 22)
    new_shards = sorted(s["ShardId"] for s in
                        moto.kinesis().list_shards(StreamARN=new.stream_arn)["Shards"])
    assert new.stream_arn == old.stream_arn and new_shards == old_shards
    write(moto.dynamodb(), table.spec.name, rng, 10)
    bridge(moto, upstream, new)
    before = snapshot(collection)
    for _attempt in range(3):
        with pytest.raises(StreamRecreated):
            poller(moto, table, collection, new.stream_arn).run(once=True)
        assert snapshot(collection) == before  # the marker too: nothing learnt from a refusal
