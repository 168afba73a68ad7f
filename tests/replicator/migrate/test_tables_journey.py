"""docs/migration.md, "A whole application", walked as a user walks it (issue 22, part 2): the
shipped example file (examples/whole-application/migration.toml) with its two tables -- ``orders``
with a GSI, ``order_lines`` with a composite key -- through the ``replicator`` commands as
subprocesses against moto's threaded server and a mongoeco wire server:

1. ``replicator sync --migration-file``: both tables copied one after the other; the copy of
   ``order_lines`` is held mid-way (moto's Scan, :class:`support.scan_gate.ScanGate`) while the
   application writes to both tables, then it goes on and hands over;
2. ``replicator run --migration-file`` follows both streams in one process while the application
   writes again; one ``/healthz`` (200, both tables) and one ``/metrics`` (a ``table`` label
   each);
3. ``replicator verify --migration-file`` exits 0, one summary line and one report per table;
4. SIGTERM: the poller exits 0 with one line per table; each collection equals its table.

Nothing waits on a clock: the poller is waited for until each table's checkpoint reaches its
stream's newest record (a bounded wait on an observable state).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.backends.moto_source import MotoServerSource, StreamRetention
from harness.convergence import check
from harness.lane import scan_items
from replicator.expected import planner_for
from replicator.migration_file import load
from support.replicator_command import LineWatcher, child_env, replicator_command
from support.scan_gate import ScanGate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "whole-application" / "migration.toml"
#: generous bounds for a loaded 2-core machine; only a broken product reaches them
COMMAND_TIMEOUT_S = 240.0
CATCH_UP_TIMEOUT_S = 120.0


def create_tables(client: Any) -> None:
    """``orders``: pk, a GSI on customer + placed_at; ``order_lines``: order_id + line."""
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    client.create_table(
        TableName="orders", BillingMode="PAY_PER_REQUEST", StreamSpecification=stream,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "customer", "AttributeType": "S"},
                              {"AttributeName": "placed_at", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by_customer",
            "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"},
                          {"AttributeName": "placed_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}])
    client.create_table(
        TableName="order_lines", BillingMode="PAY_PER_REQUEST", StreamSpecification=stream,
        AttributeDefinitions=[{"AttributeName": "order_id", "AttributeType": "S"},
                              {"AttributeName": "line", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"},
                   {"AttributeName": "line", "KeyType": "RANGE"}])


class Application:
    """Writes orders and their lines: inserts, changes and deletes on both tables, in order."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.orders = 0
        self.version = 0

    def order(self, count: int) -> None:
        for _ in range(count):
            n = self.orders
            self.orders += 1
            self.client.put_item(TableName="orders", Item={
                "pk": {"S": f"order-{n:04d}"}, "customer": {"S": f"c{n % 7}"},
                "placed_at": {"N": str(1_764_000_000 + n)}, "total": {"N": f"{n % 40}.99"},
                "tags": {"SS": ["all", f"t{n % 3}"]}})
            for line in range(1, n % 3 + 2):
                self.client.put_item(TableName="order_lines", Item={
                    "order_id": {"S": f"order-{n:04d}"}, "line": {"N": str(line)},
                    "sku": {"S": f"sku-{(n + line) % 9}"}, "qty": {"N": str(line)}})

    def change(self, n: int) -> None:
        self.version += 1
        self.client.update_item(
            TableName="orders", Key={"pk": {"S": f"order-{n:04d}"}},
            UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": f"v{self.version}"}})
        self.client.update_item(
            TableName="order_lines", Key={"order_id": {"S": f"order-{n:04d}"}, "line": {"N": "1"}},
            UpdateExpression="SET qty = qty + :one", ExpressionAttributeValues={":one": {"N": "1"}})

    def cancel(self, n: int) -> None:
        self.client.delete_item(TableName="orders", Key={"pk": {"S": f"order-{n:04d}"}})
        self.client.delete_item(TableName="order_lines",
                                Key={"order_id": {"S": f"order-{n:04d}"}, "line": {"N": "1"}})


def _run(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(replicator_command(*args), capture_output=True, text=True, env=env,
                          cwd=workdir, timeout=COMMAND_TIMEOUT_S, check=False)


def _caught_up(mongo: Any, retention: StreamRetention, process: subprocess.Popen[str]) -> bool:
    """Until each table's checkpoint reaches its stream's newest record (bounded)."""
    import time

    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    for table in ("orders", "order_lines"):
        newest = retention.last_sequence_number(table)
        checkpoints = mongo["shop"][f"{table}_checkpoints"]
        while newest is not None:
            saved = [int(d["sequence_number"]) for d in checkpoints.find({"kind": "shard"})
                     if d.get("sequence_number")]
            if saved and max(saved) >= int(newest):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                return False
            time.sleep(0.2)  # polling an observable state, bounded by the deadline
    return True


def test_a_migration_file_with_two_tables_syncs_follows_both_streams_in_one_poller_and_verifies(
    mongoeco_uri: str, tmp_path: Path
) -> None:
    from pymongo import MongoClient

    from harness.backends.base import started

    migration = load(EXAMPLE)
    migration_file = tmp_path / "migration.toml"
    shutil.copy(EXAMPLE, migration_file)
    with started(MotoServerSource()) as moto, StreamRetention() as retention:
        client = moto.dynamodb()
        create_tables(client)
        app = Application(client)
        app.order(30)
        env = child_env(MONGODB_URI=mongoeco_uri)
        # the file says eu-west-1: the command line's region and endpoint win over it
        where = ["--migration-file", str(migration_file), "--region", "us-east-1",
                 "--endpoint-url", str(moto.endpoint_url())]
        mongo: Any = MongoClient(mongoeco_uri, directConnection=True)
        try:
            _journey(tmp_path, env, where, app, client, mongo, retention, migration)
        finally:
            mongo.close()


def _journey(workdir: Path, env: dict[str, str], where: list[str], app: Application, client: Any,
             mongo: Any, retention: StreamRetention, migration: Any) -> None:
    # 1. sync both tables; the application writes while order_lines' copy is held mid-way
    sync = ["sync", *where, "--segments", "2", "--page-size", "10", "--no-progress",
            "--report", str(workdir / "sync.json")]
    with ScanGate("order_lines") as gate:
        process = subprocess.Popen(replicator_command(*sync), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, env=env, cwd=workdir)
        assert process.stderr is not None
        watcher = LineWatcher(process.stderr)
        held = gate.wait_for(1, process, COMMAND_TIMEOUT_S)
        assert held, f"sync never reached order_lines' second page: {''.join(watcher.lines)}"
        app.order(5)
        app.change(2)
        app.change(25)
        app.cancel(3)
        gate.release()
        process.wait(timeout=COMMAND_TIMEOUT_S)
        output = watcher.rest()
    assert process.returncode == 0, output
    assert "table orders -> shop.orders: exit 0 (done)" in output
    assert "table order_lines -> shop.order_lines: exit 0 (done)" in output
    assert re.search(r"sync of 2 table\(s\) from .*migration\.toml: exit 0 \(orders 0, "
                     r"order_lines 0\)", output), output
    reports = {t: json.loads((workdir / f"sync.{t}.json").read_text())
               for t in ("orders", "order_lines")}
    assert reports["orders"]["copy"]["items_read"] == 30, reports["orders"]
    assert all(r.get("consistent_at") for r in reports.values()), reports
    # order_lines was copied during the writes and handed over after them: it holds them all
    # (orders was done before them: `replicator run` applies them from its checkpoints)
    lines = migration.tables[1]
    found = check(scan_items(client, "order_lines"), mongo["shop"]["order_lines"],
                  planner_for(lines.settings()))
    assert found.converged, found.as_dict()

    # 2. one poller follows both streams; the application writes again
    run = subprocess.Popen(
        replicator_command("run", *where, "--poll-interval", "0.2", "--log-interval", "1",
                           "--metrics-port", "0"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=workdir)
    assert run.stderr is not None
    log = LineWatcher(run.stderr)
    try:
        assert log.wait_for("/healthz (2 tables)", COMMAND_TIMEOUT_S), "".join(log.lines)
        url = re.search(r"health at (http://\S+)/healthz", "".join(log.lines))
        assert url is not None, "".join(log.lines)
        app.order(6)
        app.change(0)
        app.change(31)
        app.cancel(10)
        assert _caught_up(mongo, retention, run), "".join(log.lines)[-3000:]
        with urllib.request.urlopen(f"{url.group(1)}/healthz", timeout=30) as answer:
            health = json.loads(answer.read())
            assert answer.status == 200, health
        assert sorted(health["tables"]) == ["order_lines", "orders"], health
        assert health["stopped_tables"] == {} and health["stalled_tables"] == [], health
        with urllib.request.urlopen(f"{url.group(1)}/metrics", timeout=30) as answer:
            metrics = answer.read().decode()
        for table in ("orders", "order_lines"):
            assert re.search(rf'replicator_\w+\{{collection="{table}",table="{table}"\}} '
                             r'[1-9]', metrics), (table, metrics[:3000])

        # 3. verify every table while the poller runs
        verify = _run(workdir, env, "verify", *where, "--segments", "2", "--page-size", "25",
                      "--recheck-delay", "1", "--report", str(workdir / "verify.json"))
        assert verify.returncode == 0, verify.stderr[-4000:]
        for table in ("orders", "order_lines"):
            assert re.search(rf"table {table} -> shop\.{table}: exit 0 \(done\); items: \d+",
                             verify.stderr), verify.stderr[-3000:]
            report = json.loads((workdir / f"verify.{table}.json").read_text())
            assert report["items"] == report["documents"] > 0, report
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=COMMAND_TIMEOUT_S)
    output = log.rest()
    assert run.returncode == 0, output[-3000:]
    assert re.search(r"table orders -> shop\.orders: exit 0 \(done\); records applied: \d+",
                     output), output[-3000:]
    assert "table order_lines -> shop.order_lines: exit 0 (done)" in output
    assert re.search(r"run of 2 table\(s\) .*: exit 0", output), output[-3000:]

    # 4. each collection equals its table (composite _ids, the GSI table's attributes)
    for table in migration.tables:
        found = check(scan_items(client, table.table), mongo[table.database][table.collection],
                      planner_for(table.settings()))
        assert found.converged, (table.table, found.as_dict())
    assert mongo["shop"]["order_lines"].find_one(
        {"_id": {"order_id": "order-0002", "line": 1}}) is not None
    indexes = client.describe_table(TableName="orders")["Table"]["GlobalSecondaryIndexes"]
    assert [i["IndexName"] for i in indexes] == ["by_customer"]
    # sync prepared each target from its table (create_indexes = true in the file's [defaults]):
    # the GSI as a partial, non-unique index on the same attributes; the composite-key table
    # has only _id (its shard key is for a sharded cluster: mongoeco is not one)
    orders_indexes = mongo["shop"]["orders"].index_information()
    assert orders_indexes["by_customer"]["key"] == [("customer", 1), ("placed_at", 1)], orders_indexes
    assert orders_indexes["by_customer"]["partialFilterExpression"] == {
        "customer": {"$exists": True}, "placed_at": {"$exists": True}}, orders_indexes
    assert not orders_indexes["by_customer"].get("unique"), orders_indexes
    assert sorted(mongo["shop"]["order_lines"].index_information()) == ["_id_"]


def test_a_signal_during_one_tables_sync_leaves_the_next_unstarted(
    mongoeco_uri: str, tmp_path: Path
) -> None:
    """SIGTERM while ``orders`` is copied (its Scan held): that table ends as its command does
    (interrupted: exit 1), ``order_lines`` is not started, the run exits 1 saying so; the same
    command again finishes both."""
    from pymongo import MongoClient

    from harness.backends.base import started

    migration_file = tmp_path / "migration.toml"
    shutil.copy(EXAMPLE, migration_file)
    with started(MotoServerSource()) as moto:
        client = moto.dynamodb()
        create_tables(client)
        Application(client).order(30)
        env = child_env(MONGODB_URI=mongoeco_uri)
        sync = ["sync", "--migration-file", str(migration_file), "--region", "us-east-1",
                "--endpoint-url", str(moto.endpoint_url()), "--segments", "2", "--page-size", "10",
                "--no-progress"]
        with ScanGate("orders") as gate:
            process = subprocess.Popen(replicator_command(*sync), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
            assert process.stderr is not None
            watcher = LineWatcher(process.stderr)
            assert gate.wait_for(2, process, COMMAND_TIMEOUT_S), "".join(watcher.lines)
            process.send_signal(signal.SIGTERM)
            assert watcher.wait_for("SIGTERM: finishing the current batch"), "".join(watcher.lines)
            gate.release()
            process.wait(timeout=COMMAND_TIMEOUT_S)
            output = watcher.rest()
        assert process.returncode == 1, output
        assert "table orders -> shop.orders: exit 1 (failed)" in output
        assert ("table order_lines -> shop.order_lines: exit 1 (failed); not started: stopped "
                "by signal") in output
        mongo: Any = MongoClient(mongoeco_uri, directConnection=True)
        try:
            assert mongo["shop"]["order_lines"].count_documents({}) == 0
            again = _run(tmp_path, env, *sync)
            assert again.returncode == 0, again.stderr[-3000:]
            assert "sync of 2 table(s)" in again.stderr and "exit 0 (orders 0, order_lines 0)" \
                in again.stderr
            for table in load(EXAMPLE).tables:
                found = check(scan_items(client, table.table),
                              mongo[table.database][table.collection],
                              planner_for(table.settings()))
                assert found.converged, (table.table, found.as_dict())
        finally:
            mongo.close()
