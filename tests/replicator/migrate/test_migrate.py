"""Issue #12: initial copy with handover, export reader, verify under live writes, gap recovery.

On the mongoeco wire target (the ``target`` fixture: the real pymongo client). Every test is
deterministic: the live writer writes between scan pages, kills happen at a chosen
page, re-checks wait for a poller drain (not a clock).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.lane import scan_items
from harness.migration import (
    SimulatedKill,
    gap_recovery,
    initial_sync,
    make_poller,
    prefill,
    sequences,
)
from replicator.convert import Converter
from replicator.item_records import after
from replicator.migrate.copy import ScanCopy
from replicator.migrate.export import (
    FULL,
    INCREMENTAL,
    export_json,
    load_export,
    load_manifest,
    record_of,
    write_export,
)
from replicator.migrate.gap import MAX_WINDOW, MIN_WINDOW, export_windows
from replicator.migrate.segments import SegmentStore
from replicator.migrate.sync import copy_replicator_factory, sync_export, sync_scan
from replicator.migrate.throttle import ReadCapacityThrottle
from replicator.migrate.verify import Verifier
from replicator.settings import Settings


def _documents(collection: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for document in collection.find({}):
        document.pop("_ddb_seq", None)
        out[repr(document["_id"])] = document
    return out


# -- initial sync ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("segments", [1, 4])
def test_initial_sync_with_a_live_writer_converges_and_nothing_regresses_after_handover(
    moto: Any, target: Any, segments: int
) -> None:
    result = initial_sync(moto, target, items=300, segments=segments, page_size=40)
    assert result.converged, result.details.get("diff")
    assert result.verify_ok, result.details["verify"]
    assert result.regressions == 0
    # the writer really inserted, modified and deleted during the copy
    assert all(count > 0 for count in result.writer.values()), result.writer


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [None, (1, 1)])
def test_the_stream_followed_during_the_copy_converges_in_any_interleaving(
    moto: Any, target: Any, kill_at: Any
) -> None:
    """The poller applies the stream in a thread while the segments copy: whatever the order of
    their writes, the guard and tombstones leave the collection equal to the table."""
    result = initial_sync(moto, target, items=240, segments=2, page_size=40, follow=True,
                          kill_at=kill_at)
    assert result.converged and result.verify_ok and result.regressions == 0, result.details


@pytest.mark.slow
def test_a_copy_killed_mid_segment_resumes_and_still_converges_under_the_writer(
    moto: Any, target: Any
) -> None:
    # ~75 items a segment, 40 a page: killed after the first of two pages of segment 2
    result = initial_sync(moto, target, items=300, segments=4, page_size=40, kill_at=(2, 1))
    assert result.details.get("killed")
    assert result.converged and result.verify_ok and result.regressions == 0, result.details
    assert result.resumed_segments >= 1
    assert 0 < result.details["second_run_items_read"] < 300


@pytest.mark.slow
def test_a_resumed_copy_skips_finished_segments_and_restarts_after_the_saved_page(
    moto: Any, target: Any
) -> None:
    table = moto.create_table(TableSpec("resume", ("pk", "S")))
    prefill(moto.dynamodb(), "resume", 200)
    collection = target.collection("m", "resume")
    store = SegmentStore.beside(collection, "resume")
    poller = make_poller(moto, table, collection)
    make = copy_replicator_factory(poller)
    pages: list[tuple[int, int]] = []

    def kill(segment: int, page: int) -> None:
        pages.append((segment, page))
        if (segment, page) == (2, 2):
            raise SimulatedKill("here")

    first = ScanCopy(moto.dynamodb(), "resume", make, ("pk",), store, segments=4, concurrency=1,
                     page_size=10, after_page=kill)
    with pytest.raises(SimulatedKill):
        first.run()
    copied_before = first.stats.items_read
    assert [s for s, _ in pages][-1] == 2 and {s for s, _ in pages} == {0, 1, 2}
    second = ScanCopy(moto.dynamodb(), "resume", make, ("pk",), store, segments=4, concurrency=1,
                      page_size=10)
    stats = second.run()
    assert stats.segments_already_done == 2 and stats.segments_resumed == 1
    assert stats.items_read == 200 - copied_before  # nothing read twice
    assert collection.count_documents({}) == 200
    # a resume with another TotalSegments would mix two layouts: refused
    store.save(0, 8, {"pk": {"S": "x"}}, 1)
    with pytest.raises(Exception, match="TotalSegments=8"):
        ScanCopy(moto.dynamodb(), "resume", make, ("pk",), store, segments=4).run()


def test_the_copy_never_overwrites_a_stream_change_nor_revives_a_deleted_item(
    moto: Any, target: Any
) -> None:
    """Positions first: changes between the positions and the copy reach the collection through
    the stream, and the guard and tombstones keep the copy from undoing them."""
    client = moto.dynamodb()
    table = moto.create_table(TableSpec("overlap", ("pk", "S")))
    prefill(client, "overlap", 30)
    collection = target.collection("m", "overlap")
    pages = 0

    def writer(segment: int, page: int) -> None:
        nonlocal pages
        pages += 1
        if pages == 1:  # after the first page is copied: change a copied item, delete another
            client.put_item(TableName="overlap", Item={"pk": {"S": "item-000000"},
                                                       "n": {"N": "-1"}})
            client.delete_item(TableName="overlap", Key={"pk": {"S": "item-000001"}})

    report = sync_scan(make_poller(moto, table, collection), segments=1, page_size=10,
                       after_page=writer)
    assert report.consistent_at is not None and report.stream_records_applied >= 2
    # the segments' positions are forgotten once handed over: a later sync copies again
    assert SegmentStore.beside(collection, "overlap").load(1) == {}
    assert collection.find_one({"_id": "item-000000"})["n"] == -1
    assert collection.find_one({"_id": "item-000001"}) is None
    # a late copy of the deleted item (seq 0) is held back by its tombstone
    again = copy_replicator_factory(make_poller(moto, table, collection))()
    from harness.migration import item
    from replicator.item_records import item_record

    result = again.process([item_record(item(1), ("pk",), "0", "late")])
    assert result.applied == 0 and result.stale == 1
    assert collection.find_one({"_id": "item-000001"}) is None


def test_throttle_keeps_consumed_read_capacity_at_the_rate() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    throttle = ReadCapacityThrottle(100.0, clock=lambda: now[0], sleep=sleep)
    assert throttle.consumed(50) == pytest.approx(0.5)
    now[0] += 2.0  # a slow page: under the rate, no wait
    assert throttle.consumed(100) == 0.0
    assert throttle.consumed(300) == pytest.approx(2.0)  # 450 units need 4.5 s; 2.5 s passed
    assert throttle.consumed_units == 450 and sum(waits) == pytest.approx(throttle.waited_s)


# -- export to S3 ----------------------------------------------------------------------------------
def _varied_table(moto: Any, name: str, count: int = 60) -> Any:
    table = moto.create_table(TableSpec(name, ("pk", "S"), ("sk", "N")))
    client = moto.dynamodb()
    for n in range(count):
        client.put_item(TableName=name, Item={
            "pk": {"S": f"p{n % 7}"}, "sk": {"N": str(n)}, "blob": {"B": bytes([n, 0, 255])},
            "bs": {"BS": [b"a", bytes([n])]}, "ns": {"NS": ["1.5", str(n)]},
            "m": {"M": {"l": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}]}}},
            "price": {"N": "19.99"}})
    return table


@pytest.mark.slow
def test_a_full_export_in_aws_layout_loads_the_same_documents_as_the_scan(
    moto: Any, target: Any, tmp_path: Path
) -> None:
    table = _varied_table(moto, "exported")
    items = scan_items(moto.dynamodb(), "exported")
    lines = [{"Item": export_json(i)} for i in items]
    location = write_export(tmp_path, [lines[:25], lines[25:40], lines[40:], []])
    manifest = load_manifest(str(location))
    assert manifest.export_type == FULL and len(manifest.files) == 4 and manifest.item_count == 60
    by_scan = target.collection("m", "by_scan")
    by_export = target.collection("m", "by_export")
    sync_scan(make_poller(moto, table, by_scan), segments=2, page_size=16)
    report = sync_export(make_poller(moto, table, by_export), manifest)
    assert report.export is not None and report.export.lines == 60
    assert report.consistent_at is not None
    assert _documents(by_export) == _documents(by_scan) and len(_documents(by_scan)) == 60


@pytest.mark.slow
def test_export_files_split_across_workers_and_loaded_files_are_skipped_on_rerun(
    moto: Any, target: Any, tmp_path: Path
) -> None:
    table = _varied_table(moto, "split", 40)
    lines = [{"Item": export_json(i)} for i in scan_items(moto.dynamodb(), "split")]
    manifest = load_manifest(str(write_export(tmp_path, [lines[n::5] for n in range(5)])))
    shares = [manifest.share(i, 3) for i in range(3)]
    assert sorted(f.key for s in shares for f in s) == sorted(f.key for f in manifest.files)
    assert [len(s) for s in shares] == [2, 2, 1]
    collection = target.collection("m", "split")
    poller = make_poller(moto, table, collection)
    make = copy_replicator_factory(poller)
    progress = SegmentStore.beside(collection, "split").collection
    for worker in range(3):
        load_export(manifest, key_schema=("pk", "sk"), make_replicator=make,
                    worker=(worker, 3), progress=progress)
    assert collection.count_documents({}) == 40
    rerun = load_export(manifest, key_schema=("pk", "sk"), make_replicator=make,
                        progress=progress)
    assert rerun.files_already_loaded == 5 and rerun.lines == 0


def test_incremental_export_lines_become_upserts_and_deletes() -> None:
    stamp = {"WriteTimestampMicros": {"N": "1700000000000000"}}
    upsert = record_of({"Metadata": stamp, "Keys": {"pk": {"S": "a"}},
                        "NewImage": {"pk": {"S": "a"}, "b": {"B": "AAE="}},
                        "OldImage": {"pk": {"S": "a"}}}, INCREMENTAL, ("pk",), "7", "e1")
    assert upsert["eventName"] == "INSERT"
    # the line's DynamoDB JSON as a Lambda event carries it: the core decodes the base64
    assert upsert["dynamodb"]["NewImage"]["b"] == {"B": "AAE="}
    assert Converter("lossless").image(upsert["dynamodb"]["NewImage"])["b"] == b"\x00\x01"
    assert upsert["dynamodb"]["SequenceNumber"] == "7"
    delete = record_of({"Metadata": stamp, "Keys": {"pk": {"S": "a"}},
                        "OldImage": {"pk": {"S": "a"}}}, INCREMENTAL, ("pk",), "7", "e2")
    assert delete["eventName"] == "REMOVE" and delete["dynamodb"]["Keys"] == {"pk": {"S": "a"}}


def test_a_manifest_names_files_by_their_s3_key_and_is_read_from_a_copied_down_directory(
    tmp_path: Path
) -> None:
    root = write_export(tmp_path, [[{"Item": {"pk": {"S": "x"}}}]], prefix="deep/prefix")
    entry = json.loads((root / "manifest-files.json").read_text())
    assert entry["dataFileS3Key"].startswith("deep/prefix/AWSDynamoDB/")
    manifest = load_manifest(str(root))
    assert Path(manifest.files[0].location).exists()
    with pytest.raises(Exception, match=r"manifest-summary\.json"):
        load_manifest(str(tmp_path))


def test_an_export_older_than_the_stream_retention_is_refused(
    moto: Any, target: Any, tmp_path: Path
) -> None:
    table = moto.create_table(TableSpec("old", ("pk", "S")))
    old = datetime.now(timezone.utc) - timedelta(hours=30)
    manifest = load_manifest(str(write_export(tmp_path, [[]], export_time=old)))
    with pytest.raises(Exception, match="exportTime"):
        sync_export(make_poller(moto, table, target.collection("m", "old")), manifest)


# -- verify ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_verify_finds_a_planted_changed_field_a_missing_and_an_extra_document(
    moto: Any, target: Any
) -> None:
    table = moto.create_table(TableSpec("planted", ("pk", "S")))
    prefill(moto.dynamodb(), "planted", 50)
    collection = target.collection("m", "planted")
    poller = make_poller(moto, table, collection)
    sync_scan(poller, segments=2, page_size=20)
    collection.update_one({"_id": "item-000003"}, {"$set": {"body.text": "tampered"}})
    collection.delete_one({"_id": "item-000004"})
    collection.insert_one({"_id": "ghost", "n": 1, "_ddb_seq": "0"})  # as the copy writes
    collection.insert_one({"_id": "mine", "n": 2})  # not the replicator's: no _ddb_seq
    report = Verifier(moto.dynamodb(), "planted", collection, Settings(key_schema=("pk",)),
                      segments=2, page_size=20,
                      wait_for_replication=lambda: poller.run(once=True)).run()
    assert not report.ok
    assert report.counts() == {"missing": 1, "extra": 1, "changed": 1}
    assert report.foreign == ["mine"]  # not the replicator's: listed, not a divergence
    data = json.loads(report.to_json())
    changed = next(d for d in data["divergent"] if d["kind"] == "changed")
    assert changed["_id"] == "item-000003"
    assert changed["fields"] == [{"path": "body.text", "table": "xxx", "collection": "tampered"}]
    assert {d["_id"] for d in data["divergent"]} == {"item-000003", "item-000004", "ghost"}


@pytest.mark.slow
def test_verify_reports_nothing_under_a_steady_writer_and_its_recheck_did_the_work(
    moto: Any, target: Any
) -> None:
    from harness.migration import LiveWriter

    table = moto.create_table(TableSpec("steady", ("pk", "S")))
    client = moto.dynamodb()
    prefill(client, "steady", 120)
    collection = target.collection("m", "steady")
    poller = make_poller(moto, table, collection)
    sync_scan(poller, segments=1, page_size=30)
    writer = LiveWriter(client, "steady", 120, seed=3, per_call=5)
    report = Verifier(client, "steady", collection, Settings(key_schema=("pk",)), segments=1,
                      page_size=30, after_page=lambda *_: writer(),
                      wait_for_replication=lambda: (writer(), poller.run(once=True))[1]).run()
    assert report.ok, report.as_dict()
    assert report.first_pass_differences > 0  # the writer ran ahead of replication
    assert report.cleared_by_recheck == report.first_pass_differences - len(report.unsettled)


# -- gap past the retention --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", ["re-copy", "export"])
def test_gap_recovery_converges_without_ever_emptying_the_collection(
    moto: Any, target: Any, tmp_path: Path, method: str
) -> None:
    result = gap_recovery(moto, target, items=200, method=method, export_dir=tmp_path,
                          page_size=40)
    assert result.details.get("resync_required")  # the poller saw the gap first
    assert result.converged, result.details["diff"]
    assert result.verify_ok
    report = result.details["report"]
    assert report["stream_records_applied"] > 0  # the retained records were applied first
    if method == "re-copy":
        assert report["copy"]["items_unchanged"] > report["copy"]["items_written"] > 0
        assert report["documents_deleted"] > 0
        assert result.details["min_documents_during_recovery"] >= 150
    else:
        assert report["copy"] is None  # no scan at all
        assert report["export"][0]["skipped_newer"] > 0  # the stream's newer state was kept


@pytest.mark.slow
def test_a_killed_recopy_resumes_with_the_saved_position_and_converges(
    moto: Any, target: Any, tmp_path: Path
) -> None:
    result = gap_recovery(moto, target, items=200, page_size=40, kill_at=(1, 2))
    assert result.details.get("killed")
    assert result.details["report"]["resumed"] is True
    assert result.converged and result.verify_ok, result.details["diff"]


def test_export_windows_respect_the_api_limits() -> None:
    end = datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert export_windows(end - timedelta(minutes=3), end) == [(end - MIN_WINDOW, end)]
    windows = export_windows(end - timedelta(hours=50), end)
    assert windows[0][0] == end - timedelta(hours=50) and windows[-1][1] == end
    assert all(MIN_WINDOW <= b - a <= MAX_WINDOW for a, b in windows)
    assert all(windows[n][1] == windows[n + 1][0] for n in range(len(windows) - 1))
    assert after("0099") == "100"


def test_sequences_helper_reads_the_guard_field(target: Any) -> None:
    collection = target.collection("m", "s")
    collection.insert_one({"_id": "a", "_ddb_seq": "5"})
    assert sequences(collection) == {"'a'": "5"}


# -- DynamoDB Local ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.dynamodb_local
def test_initial_sync_killed_and_resumed_on_dynamodb_local(dynamodb_local: Any, target: Any) -> None:
    result = initial_sync(dynamodb_local, target, items=200, segments=2, page_size=40,
                          kill_at=(0, 2), writes_per_page=4)
    assert result.converged and result.verify_ok and result.regressions == 0, result.details


@pytest.mark.dynamodb_local
def test_gap_recovery_recopy_on_dynamodb_local(dynamodb_local: Any, target: Any,
                                                tmp_path: Path) -> None:
    result = gap_recovery(dynamodb_local, target, items=150, page_size=40)
    assert result.converged and result.verify_ok, result.details["diff"]


# -- the CLI ---------------------------------------------------------------------------------------------
class _Target:
    """Stands in for replicator.cli.endpoints.Target: the test's collection and checkpoint store."""

    def __init__(self, collection: Any) -> None:
        from replicator.poller.checkpoints import CheckpointStore

        self.collection = collection
        self.checkpoints = CheckpointStore.beside(collection, table="clitable")
        self.mock = False

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_cli_sync_then_verify_exit_codes_and_reports(
    moto: Any, target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replicator import cli
    from replicator.cli import commands, endpoints
    from replicator.cli import migrate as migrate_cli

    moto.create_table(TableSpec("clitable", ("pk", "S")))
    prefill(moto.dynamodb(), "clitable", 40)
    collection = target.collection("m", "clitable")
    monkeypatch.setattr(endpoints, "Target", lambda args, environ: _Target(collection))
    monkeypatch.setattr(endpoints, "aws_clients", lambda args, environ: (moto.streams(), moto.dynamodb()))
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)
    monkeypatch.setattr(migrate_cli, "ReplicationWaiter", lambda *a, **k: (lambda: None))
    base = ["--table", "clitable", "--mongodb-uri", "mongodb://unused"]
    assert cli.main(["sync", *base, "--segments", "2", "--page-size", "15", "--no-progress",
                     "--report", str(tmp_path / "sync.json")]) == 0
    sync_report = json.loads((tmp_path / "sync.json").read_text())
    assert sync_report["copy"]["items_written"] == 40 and sync_report["consistent_at"]
    assert cli.main(["verify", *base, "--report", str(tmp_path / "ok.json")]) == 0
    collection.update_one({"_id": "item-000007"}, {"$set": {"n": 70}})
    assert cli.main(["verify", *base, "--report", str(tmp_path / "bad.json")]) == 1
    bad = json.loads((tmp_path / "bad.json").read_text())
    assert bad["divergences"]["changed"] == 1
    assert bad["divergent"][0]["fields"][0]["path"] == "n"
    # a re-copy recovery repairs it (the planted change is older than the copy's S + 1)
    assert cli.main(["recover", *base]) == 2  # --yes is required
    assert cli.main(["recover", *base, "--yes", "--report", str(tmp_path / "rec.json")]) == 0
    assert cli.main(["verify", *base]) == 0


def test_replication_waiter_waits_for_a_running_poller_only() -> None:
    from replicator.cli.migrate import ReplicationWaiter
    from replicator.poller.checkpoints import StreamMarker

    moments = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    slept: list[float] = []

    class Store:
        alive: datetime | None = None
        stopped: datetime | None = None

        def marker(self, arn: str) -> StreamMarker | None:
            if self.alive is None:
                return None
            return StreamMarker(arn, "t", "LATEST", None, self.alive, self.stopped)

    store = Store()

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        moments[0] += timedelta(seconds=seconds)
        if store.alive is not None and len(slept) == 3:
            store.alive = moments[0]  # the poller refreshes its marker

    def waiter() -> ReplicationWaiter:
        return ReplicationWaiter(store, "arn", 2.0, timeout_s=60.0, now=lambda: moments[0],
                                 sleep=sleep)

    assert waiter()() is True  # no marker: the delay alone
    assert slept == [2.0]
    store.alive = moments[0] - timedelta(seconds=10)  # a running poller
    assert waiter()() is True
    assert slept[:2] == [2.0, 2.0] and len(slept) == 3
    store.alive = moments[0] - timedelta(hours=1)  # a poller long gone: the delay alone
    assert waiter()() is True
    assert len(slept) == 4 and slept[-1] == 2.0
    # a poller that just ended its run (the sync): the delay (a Lambda may follow the stream),
    # then "not running", and no more waiting for the later rounds
    store.alive = moments[0] - timedelta(seconds=5)
    store.stopped = moments[0] - timedelta(seconds=1)
    done = waiter()
    assert done() is False and len(slept) == 5 and slept[-1] == 2.0
    assert done.not_running is not None and "ended its run" in done.not_running
    assert done() is False and len(slept) == 5
    # one that ended long ago: the Lambda case again, the delay alone
    store.alive = moments[0] - timedelta(hours=2)
    store.stopped = moments[0] - timedelta(hours=1)
    assert waiter()() is True and len(slept) == 6
    # a running poller that does not move: bounded by delay + timeout, then "not running"
    store.alive = moments[0] - timedelta(seconds=10)
    store.stopped = None
    started = moments[0]

    def idle(seconds: float) -> None:  # time passes, the marker stays
        moments[0] += timedelta(seconds=seconds)

    stuck = ReplicationWaiter(store, "arn", 2.0, timeout_s=60.0, now=lambda: moments[0],
                              sleep=idle)
    assert stuck() is False
    assert moments[0] - started <= timedelta(seconds=2.0 + 60.0 + 5.0)
    assert stuck.not_running is not None and "did not move" in stuck.not_running
    assert stuck() is False and moments[0] - started <= timedelta(seconds=67.0)  # no more waits

