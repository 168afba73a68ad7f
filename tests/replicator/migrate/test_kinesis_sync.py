"""``replicator sync`` over Kinesis Data Streams for DynamoDB (docs/kinesis.md, "Copying"): the
shards positioned AT_TIMESTAMP before the copy, the copy written as Kinesis changes of its cutoff
time, the handover to the same Poller with KinesisReader -- on moto (DynamoDB + its Kinesis, fed
with the table's changes by the harness's KDS source: shuffled, duplicated) into mongoeco through
real pymongo."""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.kinesis import KdsFeed, KdsSettings
from harness.migration import LiveWriter, diff, item, prefill
from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.item_records import kinesis_item_record
from replicator.migrate.sync import sync_scan
from replicator.poller import Poller
from replicator.poller.checkpoints import CheckpointStore
from replicator.poller.kinesis import KinesisReader
from replicator.poller.streams import StreamReader
from replicator.settings import Settings
from support.fast_set import fast_first

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/items"


class Bridge:
    """The table's DynamoDB stream -> the Kinesis data stream, as a KDS destination would put it
    (moto sends nothing to Kinesis itself): every new change, shuffled and duplicated."""

    def __init__(self, moto: Any, table: Any, name: str, seed: int) -> None:
        self.upstream = StreamReader(moto.streams(), table.stream_arn)
        self.feed = KdsFeed(moto.kinesis(), f"{name}-kds", name,
                            KdsSettings(source="kinesis", shards=2, shuffle_window=6,
                                        duplicate_rate=0.3, seed=seed))

    def __call__(self, *_: Any) -> int:
        records = [r for _, shard in self.upstream.drain(idle_polls=1).items() for r in shard]
        self.feed.put(records)
        self.feed.flush()
        return len(records)


def kinesis_poller(moto: Any, name: str, collection: Any, stream_arn: str) -> Poller:
    return Poller(moto.kinesis(), moto.dynamodb(), name, collection,
                  Settings(key_schema=("pk",)), stream_arn=stream_arn, key_schema=("pk",),
                  reader_type=KinesisReader, poll_interval=0.0, batch_size=50, log_interval=3600,
                  reader_options={"refresh_interval": 0.0})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sync_under_writes_hands_over_to_kinesis_and_converges(
        moto: Any, target: Any, seed: int) -> None:
    name = f"kds-sync-{seed}"
    client = moto.dynamodb()
    table = moto.create_table(TableSpec(name, ("pk", "S")))
    prefill(client, name, 120)
    bridge = Bridge(moto, table, name, seed)
    assert bridge() == 120  # the history before the sync is in the data stream too
    writer = LiveWriter(client, name, 120, seed=seed, per_call=8)

    def during_copy(*_: Any) -> None:  # changes made while the copy runs reach Kinesis
        writer()
        bridge()

    collection = target.collection("m", name)
    poller = kinesis_poller(moto, name, collection, bridge.feed.stream_arn)
    report = sync_scan(poller, segments=3, concurrency=1, page_size=25, after_page=during_copy)
    assert all(count > 0 for count in writer.counts.values()), writer.counts
    assert report.positions.startswith("AT_TIMESTAMP") and report.consistent_at is not None
    assert report.copy is not None and report.copy.items_read > 0
    assert bridge.feed.shuffler.duplicated > 0
    result = diff(moto, table, collection)
    assert result.converged, result
    # the copy's documents carry Kinesis order keys: no "0" a late older record could beat
    assert all(d["_ddb_seq"].startswith("K") for d in collection.find({}, {"_ddb_seq": 1}))
    # the marker keeps the time, for a rerun's shards without a checkpoint
    marker = CheckpointStore.beside(collection, table=name).marker(bridge.feed.stream_arn)
    assert marker is not None and marker.starting_position.startswith("AT_TIMESTAMP ")

    # `replicator run` afterwards: a new poller resumes after the sync's checkpoints
    for _ in range(5):
        writer()
    bridge()
    stats = kinesis_poller(moto, name, collection, bridge.feed.stream_arn).run(once=True)
    assert stats.records_applied > 0 and stats.quarantined == 0
    result = diff(moto, table, collection)
    assert result.converged, result


def _kds(change: dict[str, Any], sequence: str) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(change).encode()).decode()
    return {"eventSource": "aws:kinesis", "eventSourceARN": ARN,
            "kinesis": {"sequenceNumber": sequence, "data": data}}


def _change(value: int, micros: int, event: str = "MODIFY") -> dict[str, Any]:
    new = item(7, value)
    return {"eventName": event, "tableName": "items", "recordFormat": "application/json",
            "eventSource": "aws:dynamodb",
            "dynamodb": {"ApproximateCreationDateTime": micros,
                         "ApproximateCreationDateTimePrecision": "MICROSECOND",
                         "Keys": {"pk": new["pk"]}, "NewImage": new}}


def test_a_late_record_older_than_the_cutoff_never_beats_the_copy(target: Any) -> None:
    """The failure a copy at sequence "0" has: the item went A then B before the copy; B's
    record was in the stream before the positions, A's arrives after the copy. With "0", A's
    order key beats the copy and the document stays A for good; the copy's own order key (its
    cutoff time) makes A stale, while a change after the cutoff still replaces the copy."""
    collection = target.collection("m", "late")
    replicator = Replicator(collection, Settings(key_schema=("pk",), source="kinesis"))
    cutoff = 1_700_000_000_000_500
    copied = kinesis_item_record(item(7, 2), ("pk",), cutoff, "copy-0-0", table="items",
                                 stream_arn=ARN)
    assert replicator.process({"Records": [copied]}).applied == 1
    late = replicator.process({"Records": [_kds(_change(1, cutoff - 3_000_000), "11")]})
    assert late.applied == 0 and late.stale == 1 and late.quarantined == []
    assert collection.find_one({"_id": "item-000007"})["v"] == 2
    newer = replicator.process({"Records": [_kds(_change(3, cutoff + 1), "12")]})
    assert newer.applied == 1
    assert collection.find_one({"_id": "item-000007"})["v"] == 3
    # the copy again (a rerun of the same segment) is stale against the newer change
    again = replicator.process({"Records": [copied]})
    assert again.applied == 0 and collection.find_one({"_id": "item-000007"})["v"] == 3


def test_a_millisecond_change_never_ties_with_the_copy(target: Any) -> None:
    """The cutoff sits half-way into its millisecond: a MILLISECOND-precision change is always
    strictly before or after it (no tie, so no read-back and no quarantine)."""
    collection = target.collection("m", "ms")
    replicator = Replicator(collection, Settings(key_schema=("pk",), source="kinesis"))
    poller_cutoff = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    from replicator.migrate.sync import kinesis_copy_record

    class _Poller:
        kinesis_arn = ARN
        table_name = "items"

        class info:  # what kinesis_copy_record reads of a Poller
            key_schema = ("pk",)

    make = kinesis_copy_record(_Poller(), poller_cutoff)  # type: ignore[arg-type]
    copied = make(item(7, 2), "copy-0-0", poller_cutoff)
    assert replicator.process({"Records": [copied]}).applied == 1
    stored = collection.find_one({"_id": "item-000007"})["_ddb_seq"]
    assert stored.startswith("K0" + str(int(poller_cutoff.timestamp() * 1000) * 1000 + 500))
    millis = int(poller_cutoff.timestamp() * 1000)
    change = _change(5, millis)
    change["dynamodb"]["ApproximateCreationDateTimePrecision"] = "MILLISECOND"
    same_ms = replicator.process({"Records": [_kds(change, "21")]})
    assert same_ms.stale == 1 and same_ms.quarantined == []
    change["dynamodb"]["ApproximateCreationDateTime"] = millis + 1
    assert replicator.process({"Records": [_kds(change, "22")]}).applied == 1


def test_at_timestamp_skips_records_that_reached_the_stream_before_it(
        moto: Any, target: Any) -> None:
    """KinesisReader ``at_timestamp`` on moto: a first run reads from that time; the stream
    marker keeps it, so a later run reads a shard without a checkpoint from there again."""
    name = "kds-at"
    moto.create_table(TableSpec(name, ("pk", "S")))
    feed = KdsFeed(moto.kinesis(), f"{name}-kds", name,
                   KdsSettings(source="kinesis", shards=1, shuffle_window=1, duplicate_rate=0.0))
    old = {"eventName": "INSERT", "awsRegion": "us-east-1", "eventID": "e1",
           "dynamodb": {"ApproximateCreationDateTime": 1_700_000_000.0,
                        "Keys": {"pk": {"S": "old"}},
                        "NewImage": {"pk": {"S": "old"}}, "SequenceNumber": "1",
                        "StreamViewType": "NEW_AND_OLD_IMAGES"}}
    feed.put([old])
    feed.flush()
    moment = datetime.now(timezone.utc) + timedelta(milliseconds=50)
    while datetime.now(timezone.utc) <= moment:  # moto stamps records with its wall clock
        pass
    new = json.loads(json.dumps(old))
    new["dynamodb"]["Keys"] = new["dynamodb"]["NewImage"] = {"pk": {"S": "new"}}
    feed.put([new])
    feed.flush()
    collection = target.collection("m", name)
    poller = kinesis_poller(moto, name, collection, feed.stream_arn)
    poller.starting_timestamp = moment
    stats = poller.run(once=True)
    assert stats.records_applied == 1
    assert [d["_id"] for d in collection.find()] == ["new"]
    # no checkpoint was lost: a rerun with a fresh poller reads nothing twice nor the old record
    again = kinesis_poller(moto, name, collection, feed.stream_arn).run(once=True)
    assert again.records_read == 0


# -- refusals naming the fix ---------------------------------------------------------------------
def test_source_kinesis_without_a_data_stream_is_refused_before_the_copy(
        moto: Any, target: Any) -> None:
    """The reviewer's case: `replicator sync` with REPLICATOR_SOURCE=kinesis and no
    --kinesis-stream used to copy the table, then follow DynamoDB Streams and quarantine every
    record as the other source."""
    import argparse
    import threading

    from replicator.cli import endpoints

    moto.create_table(TableSpec("refused", ("pk", "S")))
    args = argparse.Namespace(table="refused", key_schema=None, kinesis_stream=None,
                              batch_size=100, max_attempts=0, region="us-east-1",
                              endpoint_url=moto.endpoint_url())
    with pytest.raises(ConfigurationError, match="--kinesis-stream arn:aws:kinesis"):
        endpoints.make_poller(args, {"REPLICATOR_SOURCE": "kinesis"}, target=None,  # type: ignore[arg-type]
                              stop=threading.Event())


def _file(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "migration.toml"
    path.write_text('[defaults]\ndatabase = "shop"\n\n[[tables]]\ntable = "orders"\n' + entry)
    return path


@pytest.mark.parametrize(("entry", "message"), [
    ('kinesis_stream = "arn:aws:sqs:us-east-1:1:q"\n', "not a Kinesis data stream ARN"),
    ('kinesis_stream = 3\n', "kinesis_stream"),
    (f'source = "dynamodb"\nkinesis_stream = "{ARN}"\n', "source is \"dynamodb\""),
    (f'kinesis_stream = "{ARN}"\n\n[[tables]]\ntable = "users"\nkinesis_stream = "{ARN}"\n',
     "each table needs its own data stream"),
])
def test_migration_file_kinesis_stream_is_checked(tmp_path: Path, entry: str,
                                                  message: str) -> None:
    from replicator.migration_file import MigrationFileError, load

    with pytest.raises(MigrationFileError, match=message) as raised:
        load(_file(tmp_path, entry))
    assert "tables[" in str(raised.value) or "orders" in str(raised.value)


def test_migration_file_names_a_kinesis_table_and_a_dynamodb_streams_table(
        tmp_path: Path) -> None:
    from replicator.migration_file import load

    path = _file(tmp_path, f'kinesis_stream = "{ARN}"\n\n[[tables]]\ntable = "users"\n')
    tables = {t.table: t for t in load(path).tables}
    assert tables["orders"].kinesis_stream == ARN and tables["users"].kinesis_stream is None


@pytest.mark.slow
def test_random_order_keys_of_copy_and_changes_follow_time(target: Any) -> None:
    """Any mix of copies (at a cutoff) and Kinesis changes, in any order: the document ends at
    the state of the latest of them by time (the copy counting as made at its cutoff)."""
    rng = random.Random(5)
    for round_ in range(20):
        collection = target.collection("m", f"mix{round_}")
        replicator = Replicator(collection, Settings(key_schema=("pk",), source="kinesis"))
        base = 1_700_000_000_000_000
        events = [("copy", base + 500 + rng.randrange(10) * 1000)]
        events += [("change", base + rng.randrange(10) * 1000) for _ in range(4)]
        records = []
        for n, (kind, micros) in enumerate(events):
            value = micros // 1000 - base // 1000
            if kind == "copy":
                records.append(kinesis_item_record(item(7, value), ("pk",), micros, "c",
                                                   table="items", stream_arn=ARN))
            else:
                records.append(_kds(_change(value, micros), str(100 + n)))
        rng.shuffle(records)
        for record in records:
            result = replicator.process({"Records": [record]})
            assert result.quarantined == [] and not result.failures
        latest = max(micros for _, micros in events)
        assert collection.find_one({"_id": "item-000007"})["v"] == latest // 1000 - base // 1000



# -- breaking it with inputs of the same kind (a fresh pass) ---------------------------------------
def _odd_item(n: int, version: int) -> dict[str, Any]:
    """Every attribute kind the copy's JSON must carry: binary and binary sets (bytes from
    boto3), number sets, nested lists and maps, an empty string, names with ``.`` and ``$``."""
    return {"pk": {"S": f"o{n % 9}"}, "sk": {"N": str(n % 3)}, "v": {"N": str(version)},
            "blob": {"B": bytes([n % 256, 0, 255])}, "blobs": {"BS": [b"\x00", bytes([n % 200 + 1])]},
            "ns": {"NS": ["1", str(n + 2)]}, "e": {"S": ""},
            "a.b": {"M": {"$x": {"L": [{"NULL": True}, {"B": b"\x01\x02"}]}}}}


@pytest.mark.slow
def test_sync_killed_mid_copy_resumes_with_odd_items_a_composite_key_and_a_reshard(
        moto: Any, target: Any) -> None:
    """A composite key, binary attributes, a shard split while the copy runs, the sync killed
    after a page and run again (the marker's AT_TIMESTAMP reused for shards with no checkpoint,
    the finished segment not copied again): the collection converges, nothing quarantined."""
    from harness.backends.moto_kinesis import KinesisResharding
    from harness.convergence import check
    from harness.lane import scan_items
    from harness.migration import SimulatedKill
    from replicator.expected import planner_for

    with KinesisResharding():
        name = "kds-odd"
        client = moto.dynamodb()
        table = moto.create_table(TableSpec(name, ("pk", "S"), ("sk", "N")))
        for n in range(27):
            client.put_item(TableName=name, Item=_odd_item(n, 0))
        bridge = Bridge(moto, table, name, seed=9)
        bridge()
        rng = random.Random(9)
        version = 0
        pages = 0

        def during_copy(*_: Any) -> None:
            nonlocal version, pages
            pages += 1
            for _ in range(4):
                version += 1
                n = rng.randrange(40)
                if rng.random() < 0.25:
                    client.delete_item(TableName=name, Key={"pk": {"S": f"o{n % 9}"},
                                                            "sk": {"N": str(n % 3)}})
                else:
                    client.put_item(TableName=name, Item=_odd_item(n, version))
            bridge()
            if pages == 2:
                kinesis = moto.kinesis()
                shard = kinesis.list_shards(StreamARN=bridge.feed.stream_arn)["Shards"][0]
                low, high = (int(shard["HashKeyRange"][k])
                             for k in ("StartingHashKey", "EndingHashKey"))
                kinesis.split_shard(StreamARN=bridge.feed.stream_arn,
                                    ShardToSplit=shard["ShardId"],
                                    NewStartingHashKey=str((low + high) // 2))
                bridge.feed.reader._rediscover = True
            if pages == 3:
                raise SimulatedKill("mid-copy")

        collection = target.collection("m", name)

        def poller() -> Poller:
            return Poller(moto.kinesis(), client, name, collection,
                          Settings(key_schema=("pk", "sk")), stream_arn=bridge.feed.stream_arn,
                          key_schema=("pk", "sk"), reader_type=KinesisReader, poll_interval=0.0,
                          batch_size=10, log_interval=3600,
                          reader_options={"refresh_interval": 0.0})

        with pytest.raises(SimulatedKill):
            sync_scan(poller(), segments=3, concurrency=1, page_size=4, after_page=during_copy)
        report = sync_scan(poller(), segments=3, concurrency=1, page_size=4,
                           after_page=during_copy)
        assert report.copy is not None and report.copy.segments_already_done >= 1
        planner = planner_for(Settings(key_schema=("pk", "sk")))
        result = check(scan_items(client, name), collection, planner)
        assert result.converged, result
        assert collection.database[f"{name}_quarantine"].count_documents({}) == 0
        stored = collection.find_one({"_id": {"pk": "o1", "sk": 1}})
        if stored is not None:
            assert isinstance(stored["blob"], bytes)


@pytest.mark.slow
def test_sync_following_kinesis_during_the_copy_converges(moto: Any, target: Any) -> None:
    """``follow=True``: the poller applies the data stream in a thread while the segments copy
    (the order keys make any interleaving of copy and stream writes safe). moto in-process is
    not thread-safe, so the test's calls to it take turns under one lock; the MongoDB writes of
    the copy and the follower still interleave."""
    import threading

    from harness.migration import _Serialized

    lock = threading.RLock()
    name = "kds-follow"
    plain = moto.dynamodb()
    table = moto.create_table(TableSpec(name, ("pk", "S")))
    prefill(plain, name, 90)
    bridge = Bridge(moto, table, name, seed=11)
    with lock:
        bridge()
    client = _Serialized(plain, lock)
    writer = LiveWriter(client, name, 90, seed=11, per_call=6)

    def during_copy(*_: Any) -> None:
        with lock:
            writer()
            bridge()

    collection = target.collection("m", name)
    poller = Poller(_Serialized(moto.kinesis(), lock), client, name, collection,
                    Settings(key_schema=("pk",)), stream_arn=bridge.feed.stream_arn,
                    key_schema=("pk",), reader_type=KinesisReader, poll_interval=0.0,
                    batch_size=20, log_interval=3600, reader_options={"refresh_interval": 0.0})
    report = sync_scan(poller, segments=2, concurrency=1, page_size=20, follow=True,
                       after_page=during_copy)
    assert report.consistent_at is not None
    result = diff(moto, table, collection)
    assert result.converged, result


@pytest.mark.parametrize("planted", fast_first([False, True]))
def test_a_record_arriving_after_the_positions_for_a_change_older_than_the_copy(
        moto: Any, target: Any, monkeypatch: pytest.MonkeyPatch, planted: bool) -> None:
    """The whole sync, on moto, with the failure a copy at sequence "0" has: item x went A then B;
    B's Kinesis record reached the stream before the positions, A's arrives during the copy.
    (The sync's clock is set 10 minutes ahead -- a host clock skewed so -- so that its
    AT_TIMESTAMP is now; nothing changes during the copy, so the copy's cutoff in the future
    hides nothing.) The copy's order key keeps x at B; the planted "0" copy ends at A."""
    from replicator.item_records import item_record
    from replicator.migrate import sync

    name = f"kds-late-{planted}"
    client = moto.dynamodb()
    table = moto.create_table(TableSpec(name, ("pk", "S")))
    client.put_item(TableName=name, Item=item(7, 2))  # B, the table's state
    for n in range(8):
        client.put_item(TableName=name, Item=item(100 + n))
    bridge = Bridge(moto, table, name, seed=1)
    bridge.upstream.drain(idle_polls=1)  # the table's own stream is not what reaches Kinesis here
    kinesis = moto.kinesis()
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)

    def put(value: int, millis: int) -> None:
        change = _change(value, millis * 1000)
        change["tableName"] = name
        kinesis.put_record(StreamARN=bridge.feed.stream_arn, Data=json.dumps(change).encode(),
                           PartitionKey="x")

    put(2, now_ms - 1000)  # B's record: in the stream before the positions
    if planted:
        monkeypatch.setattr(sync, "kinesis_copy_record", lambda poller, cutoff: (
            lambda it, event_id, at: item_record(it, ("pk",), "0", event_id, created=at)))
    late = []

    def during_copy(*_: Any) -> None:
        if not late:
            put(1, now_ms - 2000)  # A's record, older than B, arrives after the positions
            late.append(1)

    collection = target.collection("m", name)
    ahead = timedelta(minutes=10)
    report = sync_scan(kinesis_poller(moto, name, collection, bridge.feed.stream_arn),
                       segments=1, page_size=3, after_page=during_copy,
                       now=lambda: datetime.now(timezone.utc) + ahead)
    assert late and report.consistent_at is not None
    value = collection.find_one({"_id": "item-000007"})["v"]
    assert value == (1 if planted else 2)
    assert diff(moto, table, collection).converged is not planted


class _Destinations:
    """A DynamoDB client answering DescribeKinesisStreamingDestination as AWS does (moto has no
    such call); every other call goes to moto."""

    def __init__(self, inner: Any, destinations: list[dict[str, str]]) -> None:
        self.inner = inner
        self.destinations = destinations

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def describe_kinesis_streaming_destination(self, **request: Any) -> dict[str, Any]:
        return {"TableName": request["TableName"],
                "KinesisDataStreamDestinations": self.destinations}


@pytest.mark.parametrize("status", [None, "ENABLING", "DISABLED"])
def test_a_table_not_sending_to_the_data_stream_is_refused_before_the_copy(
        moto: Any, target: Any, status: str | None) -> None:
    name = f"kds-dest-{status}"
    moto.create_table(TableSpec(name, ("pk", "S")))
    prefill(moto.dynamodb(), name, 3)
    feed = KdsFeed(moto.kinesis(), f"{name}-kds", name, KdsSettings(source="kinesis"))
    listed = [] if status is None else [{"StreamArn": feed.stream_arn,
                                         "DestinationStatus": status}]
    collection = target.collection("m", name)
    poller = kinesis_poller(moto, name, collection, feed.stream_arn)
    poller.dynamodb = _Destinations(moto.dynamodb(), listed)
    with pytest.raises(ConfigurationError, match="enable-kinesis-streaming-destination"):
        sync_scan(poller, segments=1)
    assert collection.count_documents({}) == 0  # refused before the copy


def test_an_active_destination_passes_the_check(moto: Any, target: Any) -> None:
    name = "kds-dest-active"
    moto.create_table(TableSpec(name, ("pk", "S")))
    prefill(moto.dynamodb(), name, 3)
    feed = KdsFeed(moto.kinesis(), f"{name}-kds", name, KdsSettings(source="kinesis"))
    collection = target.collection("m", name)
    poller = kinesis_poller(moto, name, collection, feed.stream_arn)
    poller.dynamodb = _Destinations(moto.dynamodb(), [
        {"StreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/other",
         "DestinationStatus": "ACTIVE"},
        {"StreamArn": feed.stream_arn, "DestinationStatus": "ACTIVE"}])
    report = sync_scan(poller, segments=1)
    assert report.copy is not None and report.copy.items_written == 3


def test_sync_with_an_export_over_kinesis_is_refused_naming_the_scan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    from replicator import cli

    code = cli.main(["sync", "--table", "t", "--mongodb-uri", "mongodb://127.0.0.1:1/",
                     "--kinesis-stream", ARN, "--export", str(tmp_path / "nothing")])
    assert code == 2
    assert "leave out --export" in capsys.readouterr().err


def test_a_starting_time_older_than_the_retention_is_refused(moto: Any, target: Any) -> None:
    """AT_TIMESTAMP before the data stream's retention would start at its trim horizon and skip
    what was trimmed: the poller refuses (re-sync required) instead -- a first run, or a copy
    that outlasted the retention before the handover."""
    from replicator.errors import ResyncRequired

    name = "kds-old"
    moto.create_table(TableSpec(name, ("pk", "S")))
    feed = KdsFeed(moto.kinesis(), f"{name}-kds", name, KdsSettings(source="kinesis"))
    poller = kinesis_poller(moto, name, target.collection("m", name), feed.stream_arn)
    poller.starting_timestamp = datetime.now(timezone.utc) - timedelta(hours=30)  # 24 h stream
    with pytest.raises(ResyncRequired, match="reading from that time would skip"):
        poller.run(once=True)
    young = kinesis_poller(moto, name, target.collection("m", f"{name}2"), feed.stream_arn)
    young.starting_timestamp = datetime.now(timezone.utc) - timedelta(hours=22)
    assert young.run(once=True).records_read == 0
