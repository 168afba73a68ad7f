"""docs/migration.md walked as a user walks it: the ``replicator`` commands as subprocesses.

The source is moto's server (``ThreadedMotoServer`` in this process, 127.0.0.1, a free port), the
target a mongoeco wire server (the real pymongo client in the commands); a seeded writer changes
the table between the steps. The steps:

1. ``replicator sync`` SIGKILLed during the copy -- at a deterministic point: moto's Scan is held
   (in the server, :class:`ScanGate`) once both segments asked for their second page, i.e. after
   each saved its first page in ``<collection>_sync`` --, the writer changes the table, the same
   command again resumes and hands over;
2. ``replicator run`` follows the stream (in the background), ``replicator verify`` exits 0;
3. a gap past the stream's retention (:class:`harness.backends.moto_source.StreamRetention` drops
   the records of the gap from moto's stream, as 24 hours would): ``replicator run --once`` exits
   3 and names ``replicator recover``; ``replicator recover --yes`` (re-copy); verify exits 0;
4. a second gap over two incremental-export windows (written in AWS's layout, the later window
   changing and deleting what the earlier one wrote): ``recover --incremental-export W1
   --incremental-export W2``; verify exits 0;
5. a planted divergence (a document changed and one deleted directly in MongoDB): verify exits 1
   naming the ``_id``s and the field path; the repair (``replicator recover --yes``, a re-copy
   writing only what differs) and verify exits 0 again.

After every recovery the collection is also compared with the table directly
(harness.convergence). Nothing waits on a clock: the background poller is waited for until its
checkpoint reaches the stream's newest record (a bounded wait on an observable state), and the
writer is quiet while verify runs.

Each step's failure is collected and the test fails at the end with all of them (the journey goes
on where the state allows it), so one run shows every broken step.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec, started
from harness.backends.moto_source import MotoServerSource, StreamRetention
from harness.convergence import check
from harness.runner import scan_items
from replicator.migrate.export import INCREMENTAL, export_json, write_export
from replicator.plan import Planner
from replicator.settings import Settings
from support.scan_gate import ScanGate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TABLE = "orders"
DATABASE = "shop"
ITEMS = 60
#: generous bounds for a loaded 2-core machine; only a broken product reaches them
COMMAND_TIMEOUT_S = 180.0
CATCH_UP_TIMEOUT_S = 120.0


# -- the application writing to the table ---------------------------------------------------------
def order(n: int, version: int) -> dict[str, Any]:
    """An order: epoch milliseconds (an int64 in MongoDB), a decimal, a set, nested map and list."""
    return {
        "pk": {"S": f"order-{n:04d}"},
        "status": {"S": ("new", "paid", "shipped")[(n + version) % 3]},
        "placed_ms": {"N": str(1_764_000_000_000 + n * 1_000 + version)},
        "total": {"N": f"{n % 40}.99"},
        "qty": {"N": str(n % 5 + 1)},
        "tags": {"SS": [f"t{n % 4}", "all"]},
        "body": {"M": {"note": {"S": f"note {n}/{version}"},
                       "lines": {"L": [{"M": {"sku": {"S": f"sku-{n % 9}"},
                                              "n": {"N": str(version % 7 + 1)}}},
                                       {"BOOL": n % 2 == 0}]}}},
    }


class Writer:
    """Seeded inserts, modifications and deletes; remembers which keys it touched and when."""

    def __init__(self, client: Any, seed: int = 18) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.live: list[int] = []
        self.next = 0
        self.version = 0
        self.touched: dict[str, float] = {}  # key -> time of its last write (epoch seconds)
        self.counts = {"insert": 0, "modify": 0, "delete": 0}
        #: keys a step changes itself: the random writes leave them alone
        self.protected: set[int] = set()

    def _touch(self, n: int) -> None:
        self.touched[f"order-{n:04d}"] = time.time()

    def insert(self) -> int:
        self.version += 1
        n = self.next
        self.next += 1
        self.client.put_item(TableName=TABLE, Item=order(n, self.version))
        self.live.append(n)
        self._touch(n)
        self.counts["insert"] += 1
        return n

    def modify(self, n: int, status: str | None = None) -> None:
        self.version += 1
        self.client.update_item(
            TableName=TABLE, Key={"pk": {"S": f"order-{n:04d}"}},
            UpdateExpression="SET #s = :s, placed_ms = :t, body.note = :n",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":s": {"S": status or f"v{self.version}"},
                ":t": {"N": str(1_765_000_000_000 + self.version)},
                ":n": {"S": f"changed {self.version}"}})
        self._touch(n)
        self.counts["modify"] += 1

    def delete(self, n: int) -> None:
        self.client.delete_item(TableName=TABLE, Key={"pk": {"S": f"order-{n:04d}"}})
        self.live.remove(n)
        self._touch(n)
        self.counts["delete"] += 1

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            roll = self.rng.random()
            free = [n for n in self.live if n not in self.protected]
            if roll < 0.35 or len(free) < 5:
                self.insert()
            elif roll < 0.75:
                self.modify(self.rng.choice(free))
            else:
                self.delete(free[self.rng.randrange(len(free))])


# -- the user's shell ------------------------------------------------------------------------------
@dataclass
class Ran:
    args: Sequence[str]
    returncode: int | None  # None: killed at the time bound
    stdout: str
    stderr: str

    def __str__(self) -> str:
        tail = self.stderr.strip().splitlines()[-15:]
        return (f"`replicator {' '.join(self.args)}` -> exit {self.returncode}\n    "
                + "\n    ".join(tail))


@dataclass
class Journey:
    moto_url: str
    mongodb_uri: str
    workdir: Path
    failures: list[str] = field(default_factory=list)
    background: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "MONGODB_", "REPLICATOR_"))}
        env.update({
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # docs: the URI from the environment, not the command line
            "MONGODB_URI": self.mongodb_uri,
        })
        env.update(overrides)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "replicator.cli", *args, "--table", TABLE,
                "--database", DATABASE, "--endpoint-url", self.moto_url]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT_S, **env: str) -> Ran:
        try:
            done = subprocess.run(self.command(*args), env=self.env(**env), cwd=self.workdir,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as expired:
            def text(value: Any) -> str:
                return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

            return Ran(args, None, text(expired.stdout), text(expired.stderr))
        return Ran(args, done.returncode, done.stdout, done.stderr)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
        process = subprocess.Popen(self.command(*args), env=self.env(), cwd=self.workdir,
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child holds its own descriptor
        self.background[name] = process
        return process

    def stop(self, name: str) -> int | None:
        """SIGTERM (docs: finish the batch, checkpoint, exit 0); the exit code."""
        process = self.background.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def log_of(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def expect(self, condition: bool, what: str) -> bool:
        if not condition:
            self.failures.append(what)
        return condition


@pytest.fixture
def moto_server() -> Iterator[Any]:
    with started(MotoServerSource()) as source:
        yield source


# -- helpers of the steps --------------------------------------------------------------------------
def _diff(client: Any, collection: Any) -> Any:
    return check(scan_items(client, TABLE), collection, Planner(Settings(key_schema=("pk",))))


def _caught_up(checkpoints: Any, retention: StreamRetention, process: subprocess.Popen[bytes],
               timeout: float = CATCH_UP_TIMEOUT_S) -> bool:
    """Until the running poller's checkpoint reaches the stream's newest record."""
    newest = retention.last_sequence_number(TABLE)
    if newest is None:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        saved = [int(d["sequence_number"]) for d in checkpoints.find({"kind": "shard"})
                 if d.get("sequence_number")]
        if saved and max(saved) >= int(newest):
            return True
        time.sleep(0.2)  # polling an observable state, bounded by the deadline
    return False


def _verify(journey: Journey, name: str) -> tuple[Ran, dict[str, Any] | None]:
    report = journey.workdir / f"{name}.json"
    ran = journey.run("verify", "--segments", "2", "--page-size", "25", "--recheck-delay", "1",
                      "--report", str(report))
    data = json.loads(report.read_text()) if report.exists() else None
    return ran, data


def _incremental_export(directory: Path, export_id: str, table_arn: str,
                        before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
                        touched: dict[str, float], start: datetime, end: datetime) -> Path:
    """What DynamoDB exports for [start, end): each item changed in the window once, its state at
    the end (no NewImage: deleted), its state at the start as OldImage (NEW_AND_OLD_IMAGES)."""
    lines = []
    for key in sorted(touched):
        line: dict[str, Any] = {
            "Metadata": {"WriteTimestampMicros": {"N": str(int(touched[key] * 1_000_000))}},
            "Keys": {"pk": {"S": key}}}
        if key in after:
            line["NewImage"] = export_json(after[key])
        if key in before:
            line["OldImage"] = export_json(before[key])
        lines.append(line)
    half = len(lines) // 2
    return write_export(directory, [lines[:half], lines[half:]], export_type=INCREMENTAL,
                        export_id=export_id, table_arn=table_arn, export_time=end,
                        export_from_time=start, export_to_time=end)


def _table(client: Any) -> dict[str, dict[str, Any]]:
    return {item["pk"]["S"]: item for item in scan_items(client, TABLE)}


# -- the journey -----------------------------------------------------------------------------------
def test_the_documented_migration_steps_as_a_user_runs_them(
    moto_server: Any, mongoeco_uri: str, tmp_path: Path
) -> None:
    from pymongo import MongoClient

    table = moto_server.create_table(TableSpec(TABLE, ("pk", "S")))
    client = moto_server.dynamodb()
    mongo: Any = MongoClient(mongoeco_uri, directConnection=True)
    collection = mongo[DATABASE][TABLE]
    checkpoints = mongo[DATABASE][f"{TABLE}_checkpoints"]
    progress = mongo[DATABASE][f"{TABLE}_sync"]
    journey = Journey(moto_server.endpoint_url(), mongoeco_uri, tmp_path)
    writer = Writer(client)
    try:
        with StreamRetention() as retention:
            for _ in range(ITEMS):
                writer.insert()
            _walk(journey, writer, retention, client, collection, checkpoints, progress,
                  table.stream_arn)
    finally:
        for name in list(journey.background):
            journey.stop(name)
        mongo.close()
    if journey.failures:
        pytest.fail("\n\n".join([f"{len(journey.failures)} step(s) of docs/migration.md failed "
                                  f"(writer: {writer.counts}):", *journey.failures]),
                    pytrace=False)


def _walk(journey: Journey, writer: Writer, retention: StreamRetention, client: Any,
          collection: Any, checkpoints: Any, progress: Any, stream_arn: str) -> None:
    expect = journey.expect
    table_arn = stream_arn.split("/stream/")[0]

    # 1. sync, SIGKILLed once both segments saved their first page; the writer changes the
    #    table meanwhile; the same command again resumes and hands over.
    sync = ["sync", "--segments", "2", "--page-size", "10", "--no-progress"]
    with ScanGate(TABLE) as gate:
        process = subprocess.Popen(
            journey.command(*sync, "--report", str(journey.workdir / "killed.json")),
            env=journey.env(), cwd=journey.workdir, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        held = gate.wait_for(2, process, COMMAND_TIMEOUT_S)
        if not held:
            _, err = process.communicate(timeout=COMMAND_TIMEOUT_S)
            pytest.fail(f"sync never reached the second page of both segments (exit "
                        f"{process.returncode}): {err.decode(errors='replace')[-3000:]}")
        saved = list(progress.find({"kind": "scan-segment", "done": False}))
        expect(len(saved) == 2 and all(d.get("last_evaluated_key") for d in saved),
               f"sync: each segment's first page saved in {TABLE}_sync before the kill: {saved}")
        writer.modify(writer.live[0], "changed-during-copy")  # copied already: the stream wins
        writer.modify(writer.live[-1], "changed-before-its-copy")
        writer.delete(writer.live[1])
        writer(8)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=COMMAND_TIMEOUT_S)
        if process.stderr is not None:
            process.stderr.close()
    expect(process.returncode == -signal.SIGKILL, f"sync killed: exit {process.returncode}")
    writer(6)
    # what the rerun can apply at most: the records after the killed run's checkpoint, or every
    # record when it saved none (docs: such shards restart at TRIM_HORIZON)
    saved_at = [int(d["sequence_number"]) for d in checkpoints.find({"kind": "shard"})
                if d.get("sequence_number")]
    resumed = journey.run(*sync, "--report", str(journey.workdir / "sync.json"))
    if not expect(resumed.returncode == 0, f"sync after the kill (docs: run it again): {resumed}"):
        pytest.fail("\n\n".join(journey.failures))
    report = json.loads((journey.workdir / "sync.json").read_text())
    copy = report.get("copy") or {}
    expect(copy.get("segments_resumed") == 2 and 0 < copy.get("items_read", 0) < ITEMS + 20,
           f"sync resumed both segments after their saved page: {copy}")
    expect(bool(report.get("consistent_at")), f"sync handed over (consistent_at): {report}")
    newest = int(retention.last_sequence_number(TABLE) or 0)
    readable = newest - (max(saved_at) if saved_at else retention.oldest_sequence_number(TABLE) - 1)
    expect(report.get("stream_records_applied", 0) <= readable,
           f"sync summary: {report.get('stream_records_applied')} stream records applied, but "
           f"the stream held only {readable} records after the saved checkpoint "
           f"{max(saved_at) if saved_at else None} (kind 6: exact counts)")
    found = _diff(client, collection)
    expect(found.converged, f"after sync: collection == table: {found.as_dict()}")

    # 2. follow the stream (`replicator run`), the writer goes on, verify exits 0.
    run = ["run", "--poll-interval", "0.2", "--log-interval", "1"]
    poller = journey.start("run-1", *run)
    writer(12)
    expect(_caught_up(checkpoints, retention, poller),
           f"`replicator run` caught up with the stream: {journey.log_of('run-1')[-2000:]}")
    ran, verified = _verify(journey, "verify-1")
    expect(ran.returncode == 0, f"verify after sync and run (kinds 4-5 when 'changed' on every "
                                f"item): {ran}\n    report: {_short(verified)}")

    # 3. a gap past the retention: stop the poller, the writer goes on, the stream loses it.
    expect(journey.stop("run-1") == 0, "`replicator run` stopped by SIGTERM exits 0: "
                                       f"{journey.log_of('run-1')[-1500:]}")
    _gap_recovered_by(journey, writer, retention, client, collection, checkpoints, "re-copy",
                      ["recover", "--yes", "--segments", "2", "--page-size", "10"])

    # 4. a second gap, recovered from two consecutive incremental-export windows (kind 1).
    before = _table(client)
    window_start = datetime.now(timezone.utc) - timedelta(minutes=15)
    writer.touched.clear()
    changed, created = writer.live[2], writer.insert()
    gone = writer.live[3]
    writer.protected = {changed, created, gone}
    writer.modify(changed, "first-window")
    writer.modify(gone, "first-window")
    writer(6)
    middle = _table(client)
    boundary = datetime.now(timezone.utc)
    first_window = dict(writer.touched)
    writer.touched.clear()
    writer.modify(changed, "second-window")  # the later window changes ...
    writer.delete(created)  # ... and deletes what the earlier one wrote
    writer.delete(gone)
    writer(6)
    retention.trim(TABLE)  # the gap's records expire
    writer(5)  # retained
    writer.protected = set()
    exit_code = _run_once_sees_the_gap(journey, "second gap")
    end = datetime.now(timezone.utc)
    latest = _table(client)
    exports = journey.workdir / "exports"
    w1 = _incremental_export(exports, "01764000000000-aaaaaaaa", table_arn, before, middle,
                             first_window, window_start, boundary)
    w2 = _incremental_export(exports, "01764000000001-bbbbbbbb", table_arn, middle, latest,
                             writer.touched, boundary, end)
    if exit_code == 3:
        _recover_and_check(journey, retention, client, collection, checkpoints, "export", [
            "recover", "--yes", "--incremental-export", str(w1), "--incremental-export", str(w2)])
        document = collection.find_one({"_id": f"order-{changed:04d}"}) or {}
        expect(document.get("status") == "second-window",
               f"recover --incremental-export: the later window wins (kind 1): {document}")
        expect(collection.find_one({"_id": f"order-{created:04d}"}) is None
               and collection.find_one({"_id": f"order-{gone:04d}"}) is None,
               "recover --incremental-export: the later window's deletes win (kind 1)")

    # 5. a planted divergence: found by verify (exit 1, _id and field path), repaired by the
    #    documented command, verify exits 0.
    poller = journey.start("run-4", *run)
    writer(4)
    expect(_caught_up(checkpoints, retention, poller), "`replicator run` caught up before the "
                                                       "planted divergence")
    tampered, lost = f"order-{writer.live[4]:04d}", f"order-{writer.live[5]:04d}"
    collection.update_one({"_id": tampered}, {"$set": {"body.note": "edited in MongoDB"}})
    collection.delete_one({"_id": lost})
    ran, verified = _verify(journey, "verify-planted")
    expect(ran.returncode == 1, f"verify finds the planted divergence with exit 1: {ran}")
    divergent = {d["_id"]: d for d in (verified or {}).get("divergent", [])}
    expect(tampered in divergent and [f["path"] for f in divergent[tampered]["fields"]]
           == ["body.note"] and divergent[tampered]["kind"] == "changed",
           f"verify names {tampered} and its field path body.note: {_short(verified)}")
    expect(lost in divergent and divergent[lost]["kind"] == "missing",
           f"verify names the missing {lost}: {_short(verified)}")
    expect(set(divergent) == {tampered, lost},
           f"verify reports only the planted divergences: {sorted(divergent)}")
    expect(tampered in ran.stderr and "body.note" in ran.stderr,
           f"verify prints the _id and the field path: {ran.stderr[-1500:]}")
    expect(journey.stop("run-4") == 0, "`replicator run` stopped by SIGTERM exits 0")
    # the repair docs/migration.md documents: a re-copy that rewrites what differs
    repaired = journey.run("recover", "--yes", "--segments", "2", "--page-size", "10")
    expect(repaired.returncode == 0, f"the repair (recover --yes) exits 0: {repaired}")
    poller = journey.start("run-5", *run)
    expect(_caught_up(checkpoints, retention, poller), "`replicator run` caught up after repair")
    ran, verified = _verify(journey, "verify-repaired")
    expect(ran.returncode == 0, f"verify after the repair exits 0: {ran}\n    report: "
                                f"{_short(verified)}")
    found = _diff(client, collection)
    expect(found.converged, f"after the repair: collection == table: {found.as_dict()}")
    expect(journey.stop("run-5") == 0, "`replicator run` stopped by SIGTERM exits 0")

    # verify that cannot reach MongoDB says so with its own exit code (not "diverged": 1)
    unreachable = journey.run("verify", "--segments", "1", timeout=COMMAND_TIMEOUT_S,
                              MONGODB_URI="mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300")
    expect(unreachable.returncode not in (0, 1, None),
           f"verify without MongoDB: an exit code of its own, not 1 (kind 6): {unreachable}")


def _run_once_sees_the_gap(journey: Journey, which: str) -> int | None:
    ran = journey.run("run", "--once")
    journey.expect(ran.returncode == 3, f"{which}: `replicator run --once` exits 3: {ran}")
    text = ran.stderr.lower()
    recover_at = text.find("replicator recover")
    resync_at = text.find("replicator resync")
    journey.expect("re-sync required" in text and recover_at >= 0
                   and (resync_at < 0 or recover_at < resync_at),
                   f"{which}: the exit-3 message names `replicator recover` (which never empties "
                   f"the collection) first, not `replicator resync --yes` (kind 6): "
                   f"{ran.stderr[-1200:]}")
    return ran.returncode


def _gap_recovered_by(journey: Journey, writer: Writer, retention: StreamRetention, client: Any,
                      collection: Any, checkpoints: Any, method: str,
                      recover: list[str]) -> None:
    writer(15)
    writer.modify(writer.live[0], "in-the-gap")
    retention.trim(TABLE)
    writer(6)  # retained
    if _run_once_sees_the_gap(journey, "first gap") == 3:
        _recover_and_check(journey, retention, client, collection, checkpoints, method, recover)


def _recover_and_check(journey: Journey, retention: StreamRetention, client: Any,
                       collection: Any, checkpoints: Any, method: str,
                       recover: list[str]) -> None:
    expect = journey.expect
    ran = journey.run(*recover, "--report", str(journey.workdir / f"recover-{method}.json"))
    expect(ran.returncode == 0, f"recover ({method}) exits 0: {ran}")
    found = _diff(client, collection)
    expect(found.converged, f"after recover ({method}): collection == table: {found.as_dict()}")
    name = f"run-{method}"
    poller = journey.start(name, "run", "--poll-interval", "0.2", "--log-interval", "1")
    expect(_caught_up(checkpoints, retention, poller),
           f"`replicator run` after recover ({method}) caught up: {journey.log_of(name)[-1500:]}")
    ran, verified = _verify(journey, f"verify-{method}")
    expect(ran.returncode == 0, f"verify after recover ({method}) exits 0: {ran}\n    report: "
                                f"{_short(verified)}")
    expect(journey.stop(name) == 0, f"`replicator run` after recover ({method}) stopped by "
                                    "SIGTERM exits 0")


def _short(report: dict[str, Any] | None) -> str:
    if report is None:
        return "no report"
    divergent = report.get("divergent", [])
    return json.dumps({**{k: v for k, v in report.items() if k != "divergent"},
                       "divergent (first 3)": divergent[:3]}, default=str)[:2000]
