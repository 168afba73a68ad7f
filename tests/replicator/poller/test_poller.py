"""The standalone poller on in-process moto + mongomock, and on FakeStreams for trimmed streams."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from poller_helpers import CountingStreams, diff, make_table, scan

from harness.faults import BulkWriteShim, FaultLog, FaultPlan, FaultyCollection
from harness.workload import WorkloadSpec, run_workload
from replicator.errors import ResyncRequired
from replicator.events import pad_sequence_number
from replicator.poller import Poller
from replicator.poller.checkpoints import CheckpointStore
from replicator.poller.resync import resync
from replicator.settings import Settings

MIX = {"put_new": 4, "put_overwrite": 2, "update_set": 3, "update_remove": 2, "delete": 2,
       "batch_write": 1}


def poller_for(source: Any, table: Any, collection: Any, **options: Any) -> Poller:
    options.setdefault("poll_interval", 0.01)
    options.setdefault("backoff_base_s", 0.001)
    options.setdefault("backoff_max_s", 0.01)
    options.setdefault("reader_options", {"idle_reacquire_s": 0.0})
    streams = options.pop("streams", None) or source.streams()
    return Poller(streams, source.dynamodb(), table.spec.name, collection,
                  options.pop("settings", None), options.pop("checkpoints", None), **options)


# -- converging ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sort", [False, True], ids=["string-key", "composite-key"])
def test_a_run_converges_to_the_table_and_checkpoints_every_shard(moto: Any, mongo_db: Any,
                                                                  sort: bool) -> None:
    table = make_table(moto, "users", sort=sort)
    result = run_workload(moto.dynamodb(), table.spec,
                          WorkloadSpec(operations=250, keys=40, mix=MIX, seed=3))
    assert result.ok, result.errors
    poller = poller_for(moto, table, mongo_db["users"], batch_size=17)
    stats = poller.run(once=True)
    found = diff(moto, table, mongo_db["users"])
    assert found.converged, found.as_dict()
    assert stats.records_applied == stats.records_read > 0
    checkpoints = CheckpointStore(mongo_db["users_checkpoints"]).load(table.stream_arn)
    assert checkpoints and all(c.sequence_number for c in checkpoints.values())
    assert {s: c.sequence_number for s, c in checkpoints.items()} == {
        s: p.applied for s, p in stats.shards.items()}
    marker = CheckpointStore(mongo_db["users_checkpoints"]).marker(table.stream_arn)
    assert marker is not None and marker.starting_position == "TRIM_HORIZON"


def test_progress_lines_say_rate_positions_and_lag(moto: Any, mongo_db: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    table = make_table(moto, "events")
    run_workload(moto.dynamodb(), table.spec, WorkloadSpec(operations=30, keys=10, seed=1))
    poller = poller_for(moto, table, mongo_db["events"], log_interval=0.0)
    poller.run(once=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "replicator.poller"]
    progress = [line for line in lines if line.startswith(("progress:", "stopped:"))]
    assert progress, lines
    assert "records/s" in progress[-1] and "lag " in progress[-1] and "positions: shardId" in progress[-1]
    stats = poller.stats
    assert f"stopped: {stats.records_applied} records applied (+{stats.records_applied} in" in progress[-1]
    assert stats.records_applied >= 30


# -- checkpoints only after acknowledged writes ----------------------------------------------------
class CheckedCheckpoints(CheckpointStore):
    """Before each save: every record up to the checkpoint is in MongoDB (document or tombstone at
    least that new). ``flaky`` fails some saves like a dropped connection."""

    def __init__(self, collection: Any, records: list[dict[str, Any]], target: Any, flaky: float,
                 **options: Any) -> None:
        super().__init__(collection, **options)
        self.records = records
        self.target = target
        self.flaky = flaky
        self.saves = 0
        self.failed_saves = 0
        import random

        self.rng = random.Random(7)

    def save(self, stream_arn: str, shard_id: str, sequence_number: str, **kwargs: Any) -> bool:
        from pymongo.errors import AutoReconnect

        if self.rng.random() < self.flaky:
            self.failed_saves += 1
            raise AutoReconnect("checkpoint write lost (injected)")
        self.assert_applied_up_to(sequence_number)
        self.saves += 1
        return super().save(stream_arn, shard_id, sequence_number, **kwargs)

    def assert_applied_up_to(self, sequence_number: str) -> None:
        limit = pad_sequence_number(sequence_number)
        latest: dict[str, str] = {}
        for record in self.records:
            sequence = pad_sequence_number(record["dynamodb"]["SequenceNumber"])
            if sequence <= limit:
                latest[record["dynamodb"]["Keys"]["pk"]["S"]] = sequence
        documents = {d["_id"]: d["_ddb_seq"] for d in self.target.find({})}
        tombstones = {t["_id"]: t["seq"] for t in self.target.database["orders_tombstones"].find({})}
        for key, sequence in latest.items():
            held = max(documents.get(key, ""), tombstones.get(key, ""))
            assert held >= sequence, (
                f"checkpoint {sequence_number} passes record {sequence} of {key!r}, which MongoDB "
                f"does not hold (it has {held or 'nothing'})")


@pytest.mark.slow
def test_checkpoints_never_pass_a_failed_write_and_everything_converges(moto: Any, mongo_db: Any) -> None:
    table = make_table(moto, "orders")
    run_workload(moto.dynamodb(), table.spec, WorkloadSpec(operations=300, keys=30, mix=MIX, seed=11))
    records = [r for batch in _all_records(moto, table).values() for r in batch]
    log = FaultLog()
    faulty = FaultyCollection(
        BulkWriteShim(mongo_db["orders"]),
        FaultPlan(seed=5, transient_error_rate=0.25, crash_mid_batch_rate=0.25,
                  write_concern_error_rate=0.15),
        log,
    )
    store = CheckedCheckpoints(mongo_db["orders_checkpoints"], records, mongo_db["orders"], flaky=0.2,
                               table="orders")
    poller = poller_for(moto, table, faulty, checkpoints=store, batch_size=8)
    stats = poller.run(once=True)
    assert log.injected.get("transient_error") and log.injected.get("crash_mid_batch")
    assert log.injected.get("write_concern_error")
    assert stats.retries > 0 and store.failed_saves > 0 and store.saves > 0
    found = diff(moto, table, mongo_db["orders"])
    assert found.converged, found.as_dict()
    final = store.load(table.stream_arn)
    assert [c.sequence_number for c in final.values()] == [records[-1]["dynamodb"]["SequenceNumber"]]


def test_a_failing_record_is_retried_with_backoff_and_the_checkpoint_stays_before_it(
    moto: Any, mongo_db: Any
) -> None:
    """Replicator reports the batch item failure of one record: the checkpoint lands on the record
    before it, and after max_attempts the poller gives up rather than skip it."""
    from pymongo.errors import OperationFailure

    from replicator.errors import RetriesExhausted

    table = make_table(moto, "stuck")
    client = moto.dynamodb()
    for n in range(6):
        client.put_item(TableName="stuck", Item={"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})

    class FailsOnK3(BulkWriteShim):
        """k3's write fails alone (a write error at its index of the bulk), the others land."""

        def apply_one(self, operation: Any) -> None:
            if operation._filter.get("_id") == "k3":
                raise OperationFailure("k3: write conflict (injected, transient)", code=112)
            super().apply_one(operation)

    poller = poller_for(moto, table, FailsOnK3(mongo_db["stuck"]), batch_size=2,
                        max_attempts=4)
    with pytest.raises(RetriesExhausted, match="failed 4 times in a row"):
        poller.run(once=True)
    records = [r for batch in _all_records(moto, table).values() for r in batch]
    sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
    saved = CheckpointStore(mongo_db["stuck_checkpoints"]).load(table.stream_arn)
    assert [c.sequence_number for c in saved.values()] == [sequences[2]]  # k2, before k3
    # k2 shared k3's batch and landed; nothing after k3 was checkpointed
    stored = {d["_id"] for d in mongo_db["stuck"].find({})}
    assert {"k0", "k1", "k2"} <= stored and "k3" not in stored
    # The fault goes away: a new run resumes at k3 and finishes.
    poller = poller_for(moto, table, BulkWriteShim(mongo_db["stuck"]))
    poller.run(once=True)
    assert diff(moto, table, mongo_db["stuck"]).converged


# -- resuming ------------------------------------------------------------------------------------
def test_a_restart_resumes_after_the_checkpoint_without_reading_from_the_start(
    moto: Any, mongo_db: Any
) -> None:
    table = make_table(moto, "resume")
    client = moto.dynamodb()
    for n in range(50):
        client.put_item(TableName="resume", Item={"pk": {"S": f"k{n % 20}"}, "n": {"N": str(n)}})
    first = CountingStreams(moto.streams())
    poller_for(moto, table, mongo_db["resume"], streams=first, batch_size=10).run(once=True)
    assert first.records == 50
    for n in range(50, 80):
        client.put_item(TableName="resume", Item={"pk": {"S": f"k{n % 20}"}, "n": {"N": str(n)}})
    client.delete_item(TableName="resume", Key={"pk": {"S": "k0"}})
    second = CountingStreams(moto.streams())
    stats = poller_for(moto, table, mongo_db["resume"], streams=second, batch_size=10).run(once=True)
    assert second.records == 31, "only the records after the checkpoint are read again"
    assert not set(first.sequences) & set(second.sequences)
    assert stats.records_applied == 31
    assert diff(moto, table, mongo_db["resume"]).converged


@pytest.mark.slow
def test_stop_finishes_the_batch_checkpoints_and_a_restart_loses_nothing(moto: Any, mongo_db: Any) -> None:
    table = make_table(moto, "stopping")
    client = moto.dynamodb()
    for n in range(40):
        client.put_item(TableName="stopping", Item={"pk": {"S": f"k{n}"}, "n": {"N": str(n)}})
    stop = threading.Event()

    class StopAfterFirstSave(CheckpointStore):
        def save(self, *args: Any, **kwargs: Any) -> bool:
            stop.set()  # SIGTERM arrives while the first batch is being checkpointed
            return super().save(*args, **kwargs)

    store = StopAfterFirstSave(mongo_db["stopping_checkpoints"], table="stopping")
    stats = poller_for(moto, table, mongo_db["stopping"], checkpoints=store, stop=stop,
                       batch_size=10).run()
    assert stats.stopped_by_signal and stats.records_applied == 10 and stats.checkpoints == 1
    assert mongo_db["stopping"].count_documents({}) == 10
    counting = CountingStreams(moto.streams())
    poller_for(moto, table, mongo_db["stopping"], streams=counting).run(once=True)
    assert counting.records == 30
    assert diff(moto, table, mongo_db["stopping"]).converged


def test_latest_applies_only_to_a_stream_never_seen(moto: Any, mongo_db: Any) -> None:
    table = make_table(moto, "latest")
    client = moto.dynamodb()
    client.put_item(TableName="latest", Item={"pk": {"S": "old"}})
    poller = poller_for(moto, table, mongo_db["latest"], starting_position="LATEST")
    poller.prepare()
    client.put_item(TableName="latest", Item={"pk": {"S": "new"}})
    poller.run(once=True)
    assert [d["_id"] for d in mongo_db["latest"].find({})] == ["new"]
    marker = CheckpointStore(mongo_db["latest_checkpoints"]).marker(table.stream_arn)
    assert marker is not None and marker.starting_position == "LATEST"


# -- re-sync required --------------------------------------------------------------------------------
def fake_poller(fake: Any, mongo_db: Any, **options: Any) -> Poller:
    options.setdefault("reader_options", {"sleep": lambda _: None})
    return Poller(fake, None, "fake", mongo_db["fake"], Settings(key_schema=("pk",)),
                  stream_arn=fake.stream_arn, key_schema=("pk",), poll_interval=0.0, **options)


def test_a_checkpoint_behind_the_trim_horizon_raises_resync_required(
    fake_streams: Any, wire_record: Any, mongo_db: Any
) -> None:
    fake = fake_streams()
    shard = "shardId-00000000000000000001-aaaaaaaa"
    fake.add_shard(shard)
    fake.append(shard, *(wire_record(f"{n:03d}") for n in range(1, 11)))
    fake.trimmed[shard] = 6  # records 001..006 are past the 24-hour retention
    store = CheckpointStore(mongo_db["fake_checkpoints"], table="fake")
    store.start_stream(fake.stream_arn, "TRIM_HORIZON")
    store.save(fake.stream_arn, shard, "003")  # 004..006 were never applied and are gone
    with pytest.raises(ResyncRequired) as caught:
        fake_poller(fake, mongo_db, checkpoints=store).run(once=True)
    error = caught.value
    assert error.shard_id == shard and error.sequence_number == "003"
    message = str(error)
    assert "TrimmedDataAccessException" in message and "replicator recover --table fake" in message
    assert "resync" not in message  # the command that empties the collection is never named
    assert "24 hours" in message
    assert mongo_db["fake"].count_documents({}) == 0, "nothing is written past a gap"
    assert store.load(fake.stream_arn)[shard].sequence_number == "003"


def test_a_checkpoint_at_the_trim_horizon_is_fine(fake_streams: Any, wire_record: Any, mongo_db: Any) -> None:
    fake = fake_streams()
    shard = "shardId-00000000000000000001-aaaaaaaa"
    fake.add_shard(shard)
    fake.append(shard, *(wire_record(f"{n:03d}") for n in range(1, 11)))
    fake.trimmed[shard] = 6
    store = CheckpointStore(mongo_db["fake_checkpoints"], table="fake")
    store.start_stream(fake.stream_arn, "TRIM_HORIZON")
    store.save(fake.stream_arn, shard, "006")
    stats = fake_poller(fake, mongo_db, checkpoints=store).run(once=True)
    assert stats.records_applied == 4
    assert sorted(d["_id"] for d in mongo_db["fake"].find({})) == ["k007", "k008", "k009", "k010"]


def test_a_checkpointed_shard_gone_from_the_listing_while_its_children_are_listed(
    fake_streams: Any, wire_record: Any, mongo_db: Any
) -> None:
    fake = fake_streams()
    parent = "shardId-00000000000000000001-parent00"
    fake.add_shard("shardId-00000000000000000002-child000", parent)
    fake.add_shard("shardId-00000000000000000003-child001", parent)
    fake.append("shardId-00000000000000000002-child000", wire_record("100"))
    store = CheckpointStore(mongo_db["fake_checkpoints"], table="fake")
    store.start_stream(fake.stream_arn, "TRIM_HORIZON")
    store.save(fake.stream_arn, parent, "050")
    with pytest.raises(ResyncRequired, match="no longer lists the shard while it lists its descendants"):
        fake_poller(fake, mongo_db, checkpoints=store).run(once=True)
    assert mongo_db["fake"].count_documents({}) == 0
    # The same shard marked finished (read to its end) is history, not a gap.
    store.finish(fake.stream_arn, parent)
    stats = fake_poller(fake, mongo_db, checkpoints=store).run(once=True)
    assert stats.records_applied == 1


def test_checkpoints_of_another_stream_of_the_table_raise_resync_required(
    fake_streams: Any, wire_record: Any, mongo_db: Any
) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-00000000000000000001-aaaaaaaa")
    store = CheckpointStore(mongo_db["fake_checkpoints"], table="fake")
    store.save("arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2025-01-01T00:00:00.000",
               "shardId-old", "1")
    with pytest.raises(ResyncRequired, match="stream changed"):
        fake_poller(fake, mongo_db, checkpoints=store).run(once=True)


# -- re-sync ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resync_rebuilds_the_collection_and_the_scan_never_overwrites_stream_changes(
    moto: Any, mongo_db: Any
) -> None:
    client = moto.dynamodb()
    # Items written before the stream existed: only the scan can bring them.
    client.create_table(TableName="gap", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for n in range(20):
        client.put_item(TableName="gap", Item={"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})
    client.update_table(TableName="gap", StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    from harness.backends.base import Table, TableSpec

    description = client.describe_table(TableName="gap")["Table"]
    table = Table(TableSpec("gap", ("pk", "S")), description["LatestStreamArn"], description)
    for n in range(5):  # changed through the stream: the stream's version must win
        client.put_item(TableName="gap", Item={"pk": {"S": f"k{n}"}, "v": {"N": str(100 + n)}})
    client.delete_item(TableName="gap", Key={"pk": {"S": "k5"}})
    # What a poller left behind before the gap: a stale copy, a document deleted since, a tombstone
    # that would hide k6 from the scan, and checkpoints past the trim horizon.
    target = mongo_db["gap"]
    target.insert_one({"_id": "k7", "v": "stale", "_ddb_seq": "9" * 40})
    target.insert_one({"_id": "gone", "v": 1, "_ddb_seq": "1".zfill(40)})
    mongo_db["gap_tombstones"].insert_one({"_id": "k6", "seq": "9" * 40})
    store = CheckpointStore(mongo_db["gap_checkpoints"], table="gap")
    store.save("arn:old-stream", "shardId-old", "5")

    poller = poller_for(moto, table, target, checkpoints=store)
    stats = resync(poller, page_size=7)
    assert stats.checkpoints_deleted == 1 and stats.documents_deleted == 2
    assert stats.tombstones_deleted == 1
    assert stats.stream_records_applied == 6
    assert stats.items_scanned == 19
    assert stats.items_skipped_newer == 5 and stats.items_written == 14
    found = diff(moto, table, target)
    assert found.converged, found.as_dict()
    assert target.find_one({"_id": "k0"})["v"] == 100
    # A later run continues from the checkpoints the resync wrote: nothing is read again.
    client.put_item(TableName="gap", Item={"pk": {"S": "k9"}, "v": {"N": "999"}})
    counting = CountingStreams(moto.streams())
    poller_for(moto, table, target, streams=counting, checkpoints=store).run(once=True)
    assert counting.records == 1
    assert diff(moto, table, target).converged


def _all_records(source: Any, table: Any) -> dict[str, list[dict[str, Any]]]:
    from replicator.poller.streams import StreamReader

    return StreamReader(source.streams(), table.stream_arn, sleep=lambda _: None).drain(idle_polls=1)


def test_scan_helper_sees_the_table(moto: Any) -> None:
    table = make_table(moto, "tiny")
    moto.dynamodb().put_item(TableName="tiny", Item={"pk": {"S": "a"}})
    assert scan(moto.dynamodb(), table.spec.name) == [{"pk": {"S": "a"}}]


def test_a_poller_down_longer_than_the_retention_with_an_unseen_parent_needs_a_resync(
    fake_streams: Any, wire_record: Any, mongo_db: Any
) -> None:
    from datetime import datetime, timedelta, timezone

    fake = fake_streams()
    fake.add_shard("shardId-00000000000000000009-child000", "shardId-00000000000000000008-unseen00")
    fake.append("shardId-00000000000000000009-child000", wire_record("900"))
    store = CheckpointStore(mongo_db["fake_checkpoints"], table="fake")
    store.start_stream(fake.stream_arn, "TRIM_HORIZON")
    store.save(fake.stream_arn, "shardId-00000000000000000007-old00000", "700")
    store.finish(fake.stream_arn, "shardId-00000000000000000007-old00000")
    # Alive an hour ago: the unlisted parent cannot have come and gone unseen.
    store.collection.update_one({"_id": fake.stream_arn}, {"$set": {
        "alive_at": datetime.now(timezone.utc) - timedelta(hours=1)}})
    fake_poller(fake, mongo_db, checkpoints=store).check_resume(
        store.load(fake.stream_arn), store.marker(fake.stream_arn), fake.shards)
    store.collection.update_one({"_id": fake.stream_arn}, {"$set": {
        "alive_at": datetime.now(timezone.utc) - timedelta(hours=25)}})
    with pytest.raises(ResyncRequired, match="more than 24 hours ago"):
        fake_poller(fake, mongo_db, checkpoints=store).run(once=True)


def test_stream_read_errors_are_retried_from_the_checkpoints(moto: Any, mongo_db: Any) -> None:
    from botocore.exceptions import ClientError

    table = make_table(moto, "flaky")
    client = moto.dynamodb()
    for n in range(60):
        client.put_item(TableName="flaky", Item={"pk": {"S": f"k{n % 25}"}, "n": {"N": str(n)}})
    streams = CountingStreams(moto.streams())
    calls = {"n": 0}

    def sometimes() -> None:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}},
                              "GetRecords")

    streams.before_get_records = sometimes
    stats = poller_for(moto, table, mongo_db["flaky"], streams=streams, batch_size=7).run(once=True)
    assert stats.records_applied == 60
    assert streams.records == 60, "a failed read resumes after the checkpoints, not from the start"
    assert diff(moto, table, mongo_db["flaky"]).converged


@pytest.mark.parametrize("tombstones", [True, False], ids=["tombstones", "no-tombstones"])
def test_the_regression_watch_sees_a_resurrection_that_only_tombstones_prevent(
    moto: Any, tombstones: bool
) -> None:
    """A crash after a batch [put k, delete k] was written (coalesced: the delete alone) but before
    its checkpoint; the restart reads the put alone (smaller batch). Without tombstones the put
    brings k back with an older sequence number than its delete: the watch must see it (this is
    the negative control of the kill-and-restart test)."""
    from poller_helpers import Crasher, CrashingCollection, RegressionWatch, SimulatedCrash

    from harness.backends.mongomock_target import mongomock_client

    table = make_table(moto, "zombie")
    client = moto.dynamodb()
    client.put_item(TableName="zombie", Item={"pk": {"S": "k"}, "v": {"N": "1"}})
    client.delete_item(TableName="zombie", Key={"pk": {"S": "k"}})
    database = mongomock_client()["replica"]
    watch = RegressionWatch(database["zombie"], database["zombie_tombstones"])
    settings = Settings(key_schema=("pk",), tombstones=tombstones)
    crasher = Crasher(0, rate=0.0)  # crashes only where CrashAfterFirstWrite says

    class CrashAfterFirstWrite(CrashingCollection):
        def bulk_write(self, requests: Any, ordered: bool = True, **kwargs: Any) -> Any:
            self.inner.bulk_write(list(requests), ordered=ordered, **kwargs)
            self.observe(list(requests))
            raise SimulatedCrash("after the write, before the checkpoint")

    store = CheckpointStore(database["zombie_checkpoints"], table="zombie")
    first = poller_for(moto, table, CrashAfterFirstWrite(BulkWriteShim(database["zombie"]), crasher,
                                                         watch.observe),
                       settings=settings, checkpoints=store, batch_size=10)
    with pytest.raises(SimulatedCrash):
        first.run(once=True)
    second = poller_for(moto, table, CrashingCollection(BulkWriteShim(database["zombie"]), crasher,
                                                        watch.observe),
                        settings=settings, checkpoints=store, batch_size=1)
    second.run(once=True)
    assert database["zombie"].count_documents({}) == 0  # converged in the end either way
    assert bool(watch.regressions) is (not tombstones), watch.regressions


def test_stop_during_retries_keeps_the_checkpoint_before_the_failing_record(moto: Any, mongo_db: Any) -> None:
    from pymongo.errors import OperationFailure

    table = make_table(moto, "stuck2")
    client = moto.dynamodb()
    for n in range(5):
        client.put_item(TableName="stuck2", Item={"pk": {"S": f"k{n}"}})

    stop = threading.Event()

    class FailsOnK2(BulkWriteShim):
        refusals = 0

        def apply_one(self, operation: Any) -> None:
            if operation._filter.get("_id") == "k2":
                FailsOnK2.refusals += 1
                if FailsOnK2.refusals == 3:
                    # SIGTERM while the poller retries k2 (forever otherwise): set at a point of
                    # the run, not after a wall-clock delay, which a loaded machine may not reach.
                    stop.set()
                # A transient write error of k2 alone (WriteConflict, a retried kind): a permanent
                # one would be quarantined, a lost connection would fail the whole bulk.
                raise OperationFailure("k2: write conflict (injected, transient)", code=112)
            super().apply_one(operation)

    # max_attempts is a safety net only: if the stop were never set, the run ends (and the
    # assertion fails) instead of retrying forever.
    stats = poller_for(moto, table, FailsOnK2(mongo_db["stuck2"]), stop=stop, batch_size=10,
                       backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=50).run()
    assert stats.stopped_by_signal and stats.retries == 3 and FailsOnK2.refusals == 3
    records = [r for batch in _all_records(moto, table).values() for r in batch]
    saved = CheckpointStore(mongo_db["stuck2_checkpoints"]).load(table.stream_arn)
    assert [c.sequence_number for c in saved.values()] == [records[1]["dynamodb"]["SequenceNumber"]]
