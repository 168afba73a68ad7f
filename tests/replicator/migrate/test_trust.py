"""Issue #18, kinds 1-3: what recover writes is ordered, a handover the stream cannot cover is
refused, export files are trusted only when they match their manifest.

Each shared input (../shared/cases/, copied to tests/data/cases/<name>/) is a test here, next to
tests of the same kind with other inputs. All run on the wire target (moto in-process, the real
pymongo client on mongoeco's wire server). Time past the stream's retention is emulated with the
poller's ``now`` and stream clients that expire iterators and drop trimmed records; nothing
sleeps or reads the wall clock to decide.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import Table, TableSpec
from harness.migration import TrimmedStreams, diff
from replicator.errors import ResyncRequired
from replicator.migrate.export import (
    INCREMENTAL,
    ExportFileMismatch,
    ExportManifest,
    load_manifest,
    write_export,
)
from replicator.migrate.gap import last_applied_change, recover, window_sequences
from replicator.migrate.segments import SegmentStore
from replicator.migrate.sync import sync_export, sync_scan
from replicator.poller import Poller
from replicator.poller.resume import stream_created_at
from replicator.poller.streams import StreamReader
from replicator.settings import Settings
from support.exports import replace_data_file
from support.fast_set import fast_first

CASES = Path(__file__).parents[2] / "data" / "cases"
KEY = ("pk",)


def _case(name: str, data: str) -> Any:
    return json.loads((CASES / name / data).read_text(encoding="utf-8"))


def _poller(streams: Any, client: Any, table: Table, collection: Any, **options: Any) -> Poller:
    return Poller(streams, client, table.spec.name, collection, Settings(key_schema=KEY),
                  batch_size=500, poll_interval=0.01, stream_arn=table.stream_arn,
                  key_schema=KEY, log_interval=3600, **options)


def _last_sequence(streams: Any, table: Table) -> str:
    records = StreamReader(streams, table.stream_arn, sleep=lambda _: None).drain(idle_polls=1)
    return str(max((r["dynamodb"]["SequenceNumber"] for rs in records.values() for r in rs),
                   key=int))


def _values(collection: Any) -> dict[str, Any]:
    return {d["_id"]: d.get("v") for d in collection.find({})}


def _state(collection: Any, table: str, kind: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = SegmentStore.beside(collection, table).collection.find_one(
        {"_id": f"{table}#{kind}"})
    return found


def _item(key: str, value: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "v": {"N": str(value)}}


# -- kind 1: the order of what recover writes -----------------------------------------------------
def _windows_as_exports(root: Path, windows: list[dict[str, Any]], now: datetime
                        ) -> list[ExportManifest]:
    manifests = []
    for number, window in enumerate(windows):
        location = write_export(
            root / f"w{number}", [window["lines"]], export_type=INCREMENTAL,
            export_id=f"0170000000000{number}-abcdef1{number}",
            export_from_time=now - timedelta(hours=window["from_hours_ago"]),
            export_to_time=now - timedelta(hours=window["to_hours_ago"]))
        manifests.append(load_manifest(str(location)))
    return manifests


def _gap(moto: Any, wire_target: Any, name: str, before: dict[str, int],
         during: Callable[[Any], None]) -> tuple[Table, Any, Any, Poller]:
    """A table replicated with ``before``, then ``during(client)`` writes whose records all
    expire; returns the table, its client, the collection and a poller that sees the gap."""
    table = moto.create_table(TableSpec(name, ("pk", "S")))
    client = moto.dynamodb()
    for key, value in before.items():
        client.put_item(TableName=name, Item=_item(key, value))
    collection = wire_target.collection("trust", name.replace("-", "_"))
    _poller(moto.streams(), client, table, collection).run(once=True)
    during(client)
    trimmed = TrimmedStreams(moto.streams(), _last_sequence(moto.streams(), table))
    with pytest.raises(ResyncRequired):
        _poller(trimmed, client, table, collection).run(once=True)
    return table, client, collection, _poller(trimmed, client, table, collection)


def test_two_incremental_windows_the_later_one_wins(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    """Shared case recover-two-incremental-windows: W1 sets a=2 and creates d, W2 sets a=3 and
    deletes d; given in either order, the collection ends with a=3 and no d."""
    windows = _case("recover-two-incremental-windows", "exports.json")["windows"]

    def during(client: Any) -> None:  # what the windows' lines say happened, on the table
        client.put_item(TableName="two-windows", Item=_item("a", 2))
        client.put_item(TableName="two-windows", Item=_item("d", 2))
        client.put_item(TableName="two-windows", Item=_item("a", 3))
        client.delete_item(TableName="two-windows", Key={"pk": {"S": "d"}})

    table, _, collection, poller = _gap(moto, wire_target, "two-windows", {"a": 1}, during)
    stored_before = int(collection.find_one({"_id": "a"})["_ddb_seq"])
    manifests = _windows_as_exports(tmp_path, windows, datetime.now(timezone.utc))
    report = recover(poller, exports=list(reversed(manifests)))
    assert _values(collection) == {"a": 3}
    assert diff(moto, table, collection).converged
    assert int(report.last_applied_sequence or 0) == stored_before
    # each window its own number, the later window the higher one
    assert int(collection.find_one({"_id": "a"})["_ddb_seq"]) == stored_before + 2
    assert report.consistent_at is not None


def test_a_recovery_killed_between_windows_resumes_with_the_same_numbers(
    moto: Any, wire_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.migration import SimulatedKill
    from replicator.migrate import gap

    windows = _case("recover-two-incremental-windows", "exports.json")["windows"]

    def during(client: Any) -> None:
        client.put_item(TableName="killed-windows", Item=_item("a", 3))
        client.put_item(TableName="killed-windows", Item=_item("d", 2))
        client.delete_item(TableName="killed-windows", Key={"pk": {"S": "d"}})

    table, client, collection, poller = _gap(moto, wire_target, "killed-windows", {"a": 1},
                                             during)
    manifests = _windows_as_exports(tmp_path, windows, datetime.now(timezone.utc))
    loads = []
    original = gap.load_export

    def dying(*args: Any, **kwargs: Any) -> Any:
        if loads:
            raise SimulatedKill("after the first window")
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(gap, "load_export", dying)
    with pytest.raises(SimulatedKill):
        recover(poller, exports=manifests)
    assert _values(collection) == {"a": 2, "d": 2}  # W1 written, W2 not yet
    monkeypatch.setattr(gap, "load_export", original)
    report = recover(_poller(poller.streams, client, table, collection), exports=manifests)
    assert report.resumed and _values(collection) == {"a": 3}
    assert diff(moto, table, collection).converged


def test_window_numbers_that_would_reach_the_streams_records_are_refused(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    """moto numbers records one by one: one expired change, then a retained one numbered S + 2;
    two windows would need S + 1 and S + 2, and W2's state could replace a newer stream change."""
    table = moto.create_table(TableSpec("no-room", ("pk", "S")))
    client = moto.dynamodb()
    client.put_item(TableName="no-room", Item=_item("a", 1))
    collection = wire_target.collection("trust", "no_room")
    _poller(moto.streams(), client, table, collection).run(once=True)
    client.put_item(TableName="no-room", Item=_item("a", 2))
    trimmed = TrimmedStreams(moto.streams(), _last_sequence(moto.streams(), table))
    client.put_item(TableName="no-room", Item=_item("b", 1))  # retained
    windows = [{"from_hours_ago": 48, "to_hours_ago": 24, "lines": [
                   {"Keys": {"pk": {"S": "a"}}, "NewImage": _item("a", 2)}]},
               {"from_hours_ago": 24, "to_hours_ago": 0.1, "lines": [
                   {"Keys": {"pk": {"S": "b"}}, "NewImage": _item("b", 1)}]}]
    manifests = _windows_as_exports(tmp_path, windows, datetime.now(timezone.utc))
    with pytest.raises(ResyncRequired, match="need sequence numbers"):
        recover(_poller(trimmed, client, table, collection), exports=manifests)
    # the re-copy it names converges
    recover(_poller(trimmed, client, table, collection))
    assert diff(moto, table, collection).converged


@pytest.mark.parametrize("seed", fast_first([1, 2, 3]))
def test_any_number_of_windows_in_any_order_end_at_the_tables_state(
    moto: Any, wire_target: Any, tmp_path: Path, seed: int
) -> None:
    """The kind: three windows of updates, deletes and re-creations, handed over shuffled."""
    rng = random.Random(seed)
    keys = [f"k{n}" for n in range(6)]
    name = f"windows-{seed}"
    plan: list[list[tuple[str, int | None]]] = [
        [(key, None if rng.random() < 0.35 else rng.randrange(100)) for key in rng.sample(keys, 4)]
        for _ in range(3)]
    lines: list[list[dict[str, Any]]] = []

    def during(client: Any) -> None:
        current = {key: 0 for key in keys}
        for changes in plan:
            touched: dict[str, int | None] = {}
            for key, value in changes:
                if value is None:
                    client.delete_item(TableName=name, Key={"pk": {"S": key}})
                else:
                    client.put_item(TableName=name, Item=_item(key, value))
                touched[key] = value
            window = []
            for key, value in touched.items():  # the final state of each item changed
                if value is None:
                    window.append({"Keys": {"pk": {"S": key}}})
                else:
                    window.append({"Keys": {"pk": {"S": key}}, "NewImage": _item(key, value)})
                current[key] = value if value is not None else current[key]
            lines.append(window)

    table, _, collection, poller = _gap(moto, wire_target, name, dict.fromkeys(keys, 0), during)
    now = datetime.now(timezone.utc)
    manifests = _windows_as_exports(tmp_path, [
        {"from_hours_ago": 72 - 24 * n, "to_hours_ago": 48 - 24 * n, "lines": window}
        for n, window in enumerate(lines)], now)
    rng.shuffle(manifests)
    recover(poller, exports=manifests)
    found = diff(moto, table, collection)
    assert found.converged, found.as_dict()


def test_window_sequences_follow_the_windows_end_and_skip_empty_ones(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    line = [{"Keys": {"pk": {"S": "a"}}}]
    manifests = _windows_as_exports(tmp_path, [
        {"from_hours_ago": 24, "to_hours_ago": 1, "lines": line},
        {"from_hours_ago": 48, "to_hours_ago": 24, "lines": []},
        {"from_hours_ago": 72, "to_hours_ago": 48, "lines": line}], now)
    numbered = window_sequences(manifests, "1000", now)
    assert [(m.export_to_time, s) for m, s in numbered] == [
        (now - timedelta(hours=48), "1001"), (now - timedelta(hours=24), "1002"),
        (now - timedelta(hours=1), "1002")]


def test_recover_starts_from_the_newest_sequence_mongodb_holds_not_the_lagging_checkpoint(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    """The checkpoint lags what MongoDB holds (writes acknowledged, the checkpoint not saved yet):
    the recovery's lines must still replace the stored documents."""

    def during(client: Any) -> None:
        client.put_item(TableName="lagging", Item=_item("a", 5))
        client.put_item(TableName="lagging", Item=_item("b", 5))

    table, _, collection, poller = _gap(moto, wire_target, "lagging", {"a": 1, "b": 1}, during)
    checkpoints = poller.checkpoints.collection
    newest = max(int(d["_ddb_seq"]) for d in collection.find({}))
    # the checkpoint as it can be after a kill between the write and the checkpoint
    checkpoints.update_many({"kind": "shard"}, {"$set": {"sequence_number": str(newest - 1)}})
    now = datetime.now(timezone.utc)
    manifests = _windows_as_exports(tmp_path, [{"from_hours_ago": 30, "to_hours_ago": 6, "lines": [
        {"Keys": {"pk": {"S": "a"}}, "NewImage": _item("a", 5)},
        {"Keys": {"pk": {"S": "b"}}, "NewImage": _item("b", 5)}]}], now)
    report = recover(poller, exports=manifests)
    assert report.last_applied_sequence == str(newest)
    assert _values(collection) == {"a": 5, "b": 5}
    assert diff(moto, table, collection).converged


def test_exports_that_leave_part_of_the_gap_uncovered_are_refused(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    """The last applied change was 50 h ago; windows 50..26 h and 20..0 h leave 26..20 h out
    (the stream holds only the last 24 h): refused before anything is written."""

    def during(client: Any) -> None:
        client.put_item(TableName="holes", Item=_item("a", 2))

    table, _, collection, poller = _gap(moto, wire_target, "holes", {"a": 1}, during)
    now = datetime.now(timezone.utc)
    poller.checkpoints.collection.update_many(
        {"kind": "shard"}, {"$set": {"created_at": now - timedelta(hours=50)}})
    line = [{"Keys": {"pk": {"S": "a"}}, "NewImage": _item("a", 2)}]
    windows = [{"from_hours_ago": 50, "to_hours_ago": 26, "lines": []},
               {"from_hours_ago": 20, "to_hours_ago": 0.1, "lines": line}]
    with pytest.raises(ResyncRequired, match="not the whole gap"):
        recover(poller, exports=_windows_as_exports(tmp_path / "holes", windows, now))
    assert _values(collection) == {"a": 1}
    windows.append({"from_hours_ago": 26, "to_hours_ago": 20, "lines": []})
    report = recover(_poller(poller.streams, moto.dynamodb(), table, collection),
                     exports=_windows_as_exports(tmp_path / "whole", windows, now))
    assert report.resumed and _values(collection) == {"a": 2}


class ShiftedStreams:
    """A streams client whose records were made ``shift`` earlier (a poller that fell behind)."""

    def __init__(self, inner: Any, shift: timedelta) -> None:
        self.inner = inner
        self.shift = shift

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_records(self, **request: Any) -> Any:
        page = self.inner.get_records(**request)
        for record in page.get("Records", []):
            body = record["dynamodb"]
            # epoch seconds when read raw by replicator/aws_json.py, a datetime from botocore
            created = body["ApproximateCreationDateTime"]
            body["ApproximateCreationDateTime"] = (
                created - self.shift.total_seconds() if isinstance(created, (int, float))
                else created - self.shift)
        return page


def _incremental_export_of(changes: list[tuple[datetime, str, dict[str, Any] | None]],
                           root: Path) -> Callable[[datetime, datetime], ExportManifest]:
    """Answers ExportTableToPointInTime (INCREMENTAL_EXPORT) as DynamoDB does: the state at the
    window's end of every item changed in [from, to)."""
    count = [0]

    def export(start: datetime, end: datetime) -> ExportManifest:
        count[0] += 1
        changed = {key for moment, key, _ in changes if start <= moment < end}
        final: dict[str, dict[str, Any] | None] = {}
        for moment, key, image in sorted(changes, key=lambda c: c[0]):
            if key in changed and moment < end:
                final[key] = image
        lines = [{"Keys": {"pk": {"S": key}}, **({"NewImage": image} if image else {})}
                 for key, image in final.items()]
        location = write_export(root / f"e{count[0]}", [lines], export_type=INCREMENTAL,
                                export_id=f"0170000000000{count[0]}-feedbee{count[0]}",
                                export_from_time=start, export_to_time=end)
        return load_manifest(str(location))

    return export


def test_the_export_window_starts_at_the_last_applied_changes_creation_time(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    """Shared case recover-export-window-start: the poller was 2 h behind; a change made 1.5 h ago
    expired unapplied. The window starts at the applied record's creation time minus the margin."""
    table = moto.create_table(TableSpec("behind", ("pk", "S")))
    client = moto.dynamodb()
    now = datetime.now(timezone.utc)
    client.put_item(TableName="behind", Item=_item("a", 1))
    collection = wire_target.collection("trust", "behind")
    shifted = ShiftedStreams(moto.streams(), timedelta(hours=2))
    _poller(shifted, client, table, collection).run(once=True)
    saved = [d for d in _poller(shifted, client, table, collection).checkpoints.all("behind")
             if d.get("kind") == "shard"]
    created = last_applied_change(saved)
    assert created is not None and abs(created - (now - timedelta(hours=2))) < timedelta(minutes=5)
    client.put_item(TableName="behind", Item=_item("a", 2))  # made 1.5 h ago, never applied
    trimmed = TrimmedStreams(shifted, _last_sequence(moto.streams(), table))
    changes = [(now - timedelta(hours=2), "a", _item("a", 1)),
               (now - timedelta(hours=1, minutes=30), "a", _item("a", 2))]
    report = recover(_poller(trimmed, client, table, collection),
                     request_export=_incremental_export_of(changes, tmp_path))
    assert report.export_windows[0][0] <= now - timedelta(hours=2)
    assert _values(collection) == {"a": 2}
    assert diff(moto, table, collection).converged


def test_a_checkpoint_saved_before_created_at_was_kept_counts_24_hours_back() -> None:
    saved = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    old = [{"shard_id": "s1", "parent_shard_id": None, "updated_at": saved}]
    assert last_applied_change(old) == saved - timedelta(hours=24)
    lineage = [  # s1 finished long ago, its child s2 is the lineage's last: s2's time counts
        {"shard_id": "s1", "parent_shard_id": None, "created_at": saved - timedelta(days=3)},
        {"shard_id": "s2", "parent_shard_id": "s1", "created_at": saved},
        {"shard_id": "t1", "parent_shard_id": None, "created_at": saved - timedelta(hours=1)}]
    assert last_applied_change(lineage) == saved - timedelta(hours=1)


# -- kind 2: a handover the stream cannot cover ---------------------------------------------------
class _Target:
    """Stands in for replicator.cli.endpoints.Target: the test's collection and checkpoints."""

    def __init__(self, collection: Any, table: str) -> None:
        from replicator.poller.checkpoints import CheckpointStore

        self.collection = collection
        self.checkpoints = CheckpointStore.beside(collection, table=table)
        self.mock = False
        self.uri = "mongodb://unused"

    def close(self) -> None:
        pass


def _cli(monkeypatch: pytest.MonkeyPatch, moto: Any, collection: Any, table: str,
         streams: Any = None) -> Callable[..., int]:
    from replicator import cli
    from replicator.cli import commands, endpoints

    monkeypatch.setattr(endpoints, "Target", lambda args, environ: _Target(collection, table))
    monkeypatch.setattr(endpoints, "aws_clients",
                        lambda args, environ: (streams or moto.streams(), moto.dynamodb()))
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)

    def run(*argv: str) -> int:
        return cli.main([argv[0], "--table", table, "--mongodb-uri", "mongodb://unused",
                         *argv[1:]])

    return run


def test_an_export_older_than_the_tables_stream_is_refused(
    moto: Any, wire_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared case sync-export-older-than-stream: exportTime 2 h ago, the stream enabled now."""
    table = moto.create_table(TableSpec("young-stream", ("pk", "S")))
    client = moto.dynamodb()
    client.put_item(TableName="young-stream", Item=_item("a", 2))  # changed after the export
    lines = _case("sync-export-older-than-stream", "export_lines.json")
    location = write_export(tmp_path, [lines],
                            export_time=datetime.now(timezone.utc) - timedelta(hours=2))
    collection = wire_target.collection("trust", "young_stream")
    with pytest.raises(ResyncRequired, match="before the table's stream was enabled"):
        sync_export(_poller(moto.streams(), client, table, collection),
                    load_manifest(str(location)))
    assert collection.count_documents({}) == 0
    assert _state(collection, "young-stream", "sync") is None  # never reported consistent
    run = _cli(monkeypatch, moto, collection, "young-stream")
    assert run("sync", "--export", str(location), "--no-progress") == 3
    assert _state(collection, "young-stream", "sync") is None


def test_an_export_taken_while_the_stream_existed_is_accepted_and_the_label_says_when(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    table = moto.create_table(TableSpec("old-stream", ("pk", "S")))
    created = stream_created_at(moto.streams(), table.stream_arn)
    assert created is not None
    location = write_export(tmp_path, [[{"Item": _item("a", 1)}]],
                            export_time=created + timedelta(seconds=1))
    collection = wire_target.collection("trust", "old_stream")
    report = sync_export(_poller(moto.streams(), moto.dynamodb(), table, collection),
                         load_manifest(str(location)))
    assert report.consistent_at is not None and _values(collection) == {"a": 1}

    class NoDescribe:  # DescribeStream unavailable: the label in the ARN still says when
        def describe_stream(self, **_: Any) -> Any:
            raise RuntimeError("AccessDenied")

    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-12-07T10:00:00.000"
    assert stream_created_at(NoDescribe(), arn) == datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    assert stream_created_at(NoDescribe(), "arn:aws:dynamodb:x:1:table/t/stream/nolabel") is None


class AgingStreams:
    """A streams client on which time can pass: ``age()`` expires every iterator handed out so
    far (ExpiredIteratorException, GetShardIterator API reference: 15 minutes) and, with
    ``trim``, drops every record written so far (DynamoDB Streams: removed after 24 hours)."""

    def __init__(self, inner: Any, table: Table) -> None:
        self.inner = inner
        self.table = table
        self.issued: set[str] = set()
        self.expired: set[str] = set()
        self.trim_at: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def age(self, *, trim: bool) -> None:
        self.expired |= self.issued
        if trim:
            self.trim_at = int(_last_sequence(self.inner, self.table))

    def get_shard_iterator(self, **request: Any) -> Any:
        if (self.trim_at is not None and request.get("ShardIteratorType") ==
                "AFTER_SEQUENCE_NUMBER" and int(request["SequenceNumber"]) < self.trim_at):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TrimmedDataAccessException",
                                         "Message": "trimmed"}}, "GetShardIterator")
        answer = self.inner.get_shard_iterator(**request)
        self.issued.add(answer["ShardIterator"])
        return answer

    def get_records(self, **request: Any) -> Any:
        if request["ShardIterator"] in self.expired:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ExpiredIteratorException",
                                         "Message": "expired"}}, "GetRecords")
        while True:
            page = self.inner.get_records(**request)
            if page.get("NextShardIterator"):
                self.issued.add(page["NextShardIterator"])
            records = page.get("Records", [])
            kept = [r for r in records if self.trim_at is None
                    or int(r["dynamodb"]["SequenceNumber"]) > self.trim_at]
            if kept or not records or not page.get("NextShardIterator"):
                page["Records"] = kept
                return page
            request = {**request, "ShardIterator": page["NextShardIterator"]}


@pytest.mark.parametrize("hours", [25, 1])
def test_a_no_follow_copy_longer_than_the_retention_is_refused_at_the_handover(
    moto: Any, wire_target: Any, hours: int
) -> None:
    """Shared case sync-no-follow-past-retention: LATEST positions, k0 changes after the first
    page, the copy outlives the stream's 24 h (the records are trimmed, the iterators expired):
    ResyncRequired at the handover. Within the retention (1 h, iterators expired, nothing
    trimmed) the same copy converges: re-reading from TRIM_HORIZON loses nothing then."""
    name = f"no-follow-{hours}"
    table = moto.create_table(TableSpec(name, ("pk", "S")))
    client = moto.dynamodb()
    for n in range(6):
        client.put_item(TableName=name, Item=_item(f"k{n}", 1))
    collection = wire_target.collection("trust", name.replace("-", "_"))
    moments = [datetime.now(timezone.utc)]
    streams = AgingStreams(moto.streams(), table)
    poller = _poller(streams, client, table, collection, now=lambda: moments[0])

    def after_page(segment: int, page: int) -> None:
        if page == 1:
            client.put_item(TableName=name, Item=_item("k0", 2))
            moments[0] += timedelta(hours=hours)
            streams.age(trim=hours > 24)

    if hours > 24:
        with pytest.raises(ResyncRequired, match="expired before any record was read"):
            sync_scan(poller, segments=1, page_size=2, follow=False, after_page=after_page)
        assert _state(collection, name, "sync") is None
    else:
        report = sync_scan(poller, segments=1, page_size=2, follow=False, after_page=after_page)
        assert report.consistent_at is not None
        assert diff(moto, table, collection).converged


def test_a_sync_resumed_more_than_a_day_after_its_positions_is_refused(
    moto: Any, wire_target: Any
) -> None:
    """The same kind after a restart: shards without a checkpoint would start at TRIM_HORIZON,
    which no longer holds what was written soon after the positions were taken."""
    table = moto.create_table(TableSpec("restarted", ("pk", "S")))
    client = moto.dynamodb()
    client.put_item(TableName="restarted", Item=_item("k0", 1))
    collection = wire_target.collection("trust", "restarted")
    moments = [datetime.now(timezone.utc)]
    first = _poller(moto.streams(), client, table, collection, now=lambda: moments[0])
    first.starting_position = "LATEST"
    first.prepare()  # the stream marker, positions at LATEST; then the process dies
    moments[0] += timedelta(hours=25)
    again = _poller(moto.streams(), client, table, collection, now=lambda: moments[0])
    with pytest.raises(ResyncRequired, match="no checkpoint"):
        again.prepare()


# -- kind 3: trust in input files -------------------------------------------------------------------
def _rewrite(root: Path, number: int, text_lines: list[str], *, manifest: bool) -> str:
    """Replace data file ``number`` of the export at ``root`` with ``text_lines``; with
    ``manifest``, its manifest entry follows (itemCount, md5Checksum, etag) as AWS writes it."""
    data = gzip.compress("".join(t + "\n" for t in text_lines).encode())
    return replace_data_file(root, number, data, len(text_lines), manifest=manifest)


def test_a_data_file_shorter_than_its_manifest_entry_is_not_loaded_nor_reported_consistent(
    moto: Any, wire_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared case export-file-shorter-than-manifest: file 0 lacks k2 on disk."""
    items = _case("export-file-shorter-than-manifest", "items.json")
    table = moto.create_table(TableSpec("short-file", ("pk", "S")))
    client = moto.dynamodb()
    for line in items:
        client.put_item(TableName="short-file", Item=line["Item"])
    # the items were written long ago: the stream holds none of them (only the export has them)
    streams = TrimmedStreams(moto.streams(), _last_sequence(moto.streams(), table))
    root = write_export(tmp_path, [items[:3], items[3:]])
    whole = load_manifest(str(root)).files[0].location
    original = Path(whole).read_bytes()
    key = _rewrite(root, 0, [json.dumps(items[0]), json.dumps(items[1])], manifest=False)
    collection = wire_target.collection("trust", "short_file")
    with pytest.raises(ExportFileMismatch, match=key.rsplit("/", 1)[-1]) as raised:
        sync_export(_poller(streams, client, table, collection), load_manifest(str(root)))
    assert "MD5" in str(raised.value)
    assert sorted(collection.distinct("_id")) == ["k3", "k4", "k5"]  # the good file loaded
    assert _state(collection, "short-file", "sync") is None
    loaded = SegmentStore.beside(collection, "short-file").collection.distinct(
        "key", {"kind": "export-file", "done": True})
    assert loaded == [json.loads((root / "manifest-files.json").read_text().splitlines()[1])[
        "dataFileS3Key"]]
    run = _cli(monkeypatch, moto, collection, "short-file", streams)
    assert run("sync", "--export", str(root), "--no-progress") not in (0, 3)
    # the whole file copied again: the rerun loads it (only it) and hands over
    Path(whole).write_bytes(original)
    assert run("sync", "--export", str(root), "--no-progress") == 0
    assert diff(moto, table, collection).converged
    assert _state(collection, "short-file", "sync") is not None


def test_a_count_or_checksum_mismatch_alone_refuses_the_file(tmp_path: Path) -> None:
    from replicator.migrate.export import mismatch

    root = write_export(tmp_path, [[{"Item": _item("a", 1)}, {"Item": _item("b", 1)}]])
    manifest = load_manifest(str(root))
    data = Path(manifest.files[0].location).read_bytes()
    assert mismatch(manifest.files[0], data) is None
    # the same count, other bytes: the MD5 says so
    _rewrite(root, 0, [json.dumps({"Item": _item("a", 9)}), json.dumps({"Item": _item("b", 1)})],
             manifest=False)
    changed = Path(manifest.files[0].location).read_bytes()
    assert "md5Checksum" in (mismatch(manifest.files[0], changed) or "")
    # a manifest without checksums: the count still
    from dataclasses import replace

    bare = replace(manifest.files[0], md5=None, etag=None, item_count=3)
    assert "itemCount is 3" in (mismatch(bare, data) or "")
    assert "gzip" in (mismatch(bare, data[: len(data) // 2]) or "")


def test_a_bad_line_is_quarantined_with_file_and_line_and_the_rest_loads(
    moto: Any, wire_target: Any, tmp_path: Path
) -> None:
    table = moto.create_table(TableSpec("bad-line", ("pk", "S")))
    client = moto.dynamodb()
    good = [{"Item": _item(f"k{n}", n)} for n in range(4)]
    for line in good:
        client.put_item(TableName="bad-line", Item=line["Item"])
    root = write_export(tmp_path, [good])
    texts = [json.dumps(good[0]), '{"Item": {"pk": {"S": "broken"', json.dumps(good[1]),
             json.dumps({"Item": {"other": {"S": "x"}}}), json.dumps(good[2]),
             json.dumps(good[3])]
    key = _rewrite(root, 0, texts, manifest=True)
    collection = wire_target.collection("trust", "bad_line")
    report = sync_export(_poller(moto.streams(), client, table, collection),
                         load_manifest(str(root)))
    assert report.export is not None
    assert report.export.quarantined == 2 and report.export.lines == 6
    assert report.consistent_at is not None
    assert diff(moto, table, collection).converged
    kept = list(collection.database["bad_line_quarantine"].find({}))
    assert len(kept) == 2
    by_line = {json.loads(k["raw_record"])["line"]: k for k in kept}
    assert sorted(by_line) == [2, 4]
    assert json.loads(by_line[2]["raw_record"])["text"] == texts[1]
    assert json.loads(by_line[2]["raw_record"])["export_file"] == key
    assert f"line 2 of export data file {key}" in by_line[2]["error"]["message"]
    assert "JSONDecodeError" in by_line[2]["error"]["message"]
    assert "key attribute" in by_line[4]["error"]["message"]
    assert by_line[4]["error"]["field_path"] == "Item"
    # a rerun of the same export: the file is done, nothing is quarantined twice
    again = sync_export(_poller(moto.streams(), client, table, collection),
                        load_manifest(str(root)))
    assert again.export is not None and again.export.files_already_loaded == 1
    assert collection.database["bad_line_quarantine"].count_documents({}) == 2
