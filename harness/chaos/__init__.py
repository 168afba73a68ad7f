"""Randomized fault schedules on the embedded stack (moto + mongomock).

Each schedule is a seed: it picks a small workload and a fault plan, writes the workload to a fresh
moto table, reads the stream, and drives the replicator through the Lambda event-source-mapping
emulation with every fault of :mod:`harness.faults` switched on at random rates. A schedule
*diverges* when MongoDB does not equal the table at the end, and *loses a record* when a record is
neither applied (or superseded) nor kept in quarantine. Each failing schedule is written out as a
replayable recording: the capture layout ``harness replay`` reads (table.json, events.json,
final_items.json) plus ``schedule.json`` (seed, workload, fault plan).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import SourceBackend, TableSpec, source_backend
from harness.convergence import check
from harness.faults import BulkWriteShim, FaultLog, FaultPlan, FaultyCollection, corrupt_record
from harness.lambda_events import _plain as wire_json  # bytes -> base64, as in the fixtures
from harness.runner import scan_items
from harness.workload import WorkloadSpec, run_workload
from replicator.core import Replicator
from replicator.plan import Planner
from replicator.settings import Settings

MIXES = [
    {"put_new": 3, "put_overwrite": 2, "update_set": 2, "update_remove": 2, "delete": 2},
    {"put_new": 1, "update_set": 3, "update_add_number": 2, "delete": 3},
    {"put_overwrite": 3, "delete": 3, "put_new": 2, "batch_write": 1},
    {"put_new": 2, "update_remove": 2, "update_add_set": 1, "update_delete_set": 1, "delete": 2},
]


@dataclass
class ScheduleResult:
    seed: int
    faults: dict[str, Any]
    workload: dict[str, Any]
    records: int = 0
    diverged: bool = False
    lost_records: list[str] = field(default_factory=list)
    diff: dict[str, Any] | None = None
    injected: dict[str, int] = field(default_factory=dict)
    recording: str | None = None
    seconds: float = 0.0
    guard: bool = True

    @property
    def failed(self) -> bool:
        return self.diverged or bool(self.lost_records)


class FaultyHandler:
    """Wraps ``Replicator.handle`` with the handler-side faults of a plan.

    Duplicate delivery (the same event twice), a late retry (an old event delivered again after
    later ones were applied), corrupted copies of records injected into the event, and a handler
    timeout (the writes happen, then the invocation dies, so Lambda retries the batch).
    """

    def __init__(self, replicator: Replicator, plan: FaultPlan, rng: random.Random,
                 log: FaultLog) -> None:
        self.replicator = replicator
        self.plan = plan
        self.rng = rng
        self.log = log
        self.history: list[dict[str, Any]] = []
        self.corrupted: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> Any:
        plan, rng = self.plan, self.rng
        if self.history and rng.random() < plan.late_retry_rate:
            self.log.count("late_retry")
            self.replicator.process(rng.choice(self.history))
        records = list(event["Records"])
        if records and rng.random() < plan.malformed_rate:
            kind, bad = corrupt_record(rng.choice(records), rng)
            self.log.count(f"malformed:{kind}")
            self.corrupted.append({"kind": kind, "record": bad})
            records.insert(rng.randrange(len(records) + 1), bad)
        delivered = {"Records": records}
        response = self.replicator.handle(delivered)
        self.history.append({"Records": list(event["Records"])})
        if rng.random() < plan.duplicate_delivery_rate:
            self.log.count("duplicate_delivery")
            response = self.replicator.handle(delivered)
        if rng.random() < plan.handler_timeout_rate:
            self.log.count("handler_timeout")
            raise TimeoutError("Task timed out (injected)")
        return response


def random_workload(rng: random.Random, seed: int) -> WorkloadSpec:
    return WorkloadSpec.from_dict({
        "operations": rng.randint(8, 30),
        "keys": rng.randint(2, 8),
        "mix": rng.choice(MIXES),
        "value_profile": rng.choice(["simple", "simple", "type_zoo"]),
        "seed": seed,
    })


def run_schedule(
    source: SourceBackend,
    seed: int,
    *,
    guard: bool = True,
    recordings: Path | None = None,
) -> ScheduleResult:
    """One seeded schedule on a started source; mongomock is the target."""
    from harness.lambda_events import to_lambda_record
    from harness.streams import StreamReader

    started = time.perf_counter()
    rng = random.Random(seed)
    plan = FaultPlan.random(rng, seed)
    workload = random_workload(rng, seed)
    spec = TableSpec(name=f"chaos-{seed}-{uuid.uuid4().hex[:6]}", partition_key=("id", "S"))
    result = ScheduleResult(seed, plan.as_dict(), workload.to_dict(), guard=guard)
    table = source.create_table(spec)
    try:
        run_workload(source.dynamodb(), spec, workload)
        per_shard = StreamReader(source.streams(), table.stream_arn).drain(idle_polls=1)
        records = [r for shard_records in per_shard.values() for r in shard_records]
        drive = drive_with_faults(
            [(shard_id, None, shard_records) for shard_id, shard_records in per_shard.items()],
            spec, table.stream_arn, plan, guard=guard,
        )
        collection, database, report, handler, log = (
            drive.collection, drive.database, drive.report, drive.handler, drive.log)
        result.records = len(records)
        result.injected = dict(log.injected)
        items = scan_items(source.dynamodb(), spec.name)
        diff = check(items, collection, Planner(Settings(key_schema=spec.key_schema, guard=guard)))
        result.diverged = not diff.converged
        if result.diverged:
            result.diff = diff.as_dict()
        result.lost_records = _lost(report, handler, database["items_quarantine"])
        if result.failed and recordings is not None:
            lambda_records = [to_lambda_record(r, stream_arn=table.stream_arn, region="us-east-1")
                              for r in records]
            shards = [[shard_id, len(shard_records)] for shard_id, shard_records in per_shard.items()]
            result.recording = str(_record(recordings, result, spec, lambda_records, items,
                                           shards=shards, stream_arn=table.stream_arn))
    finally:
        source.delete_table(table)
        result.seconds = round(time.perf_counter() - started, 3)
    return result


@dataclass
class FaultyDrive:
    """What one drive of a schedule's records through the faults left behind."""

    collection: Any
    database: Any
    report: Any
    handler: FaultyHandler
    log: FaultLog


def esm_config_for(plan: FaultPlan) -> Any:
    """The event source mapping a schedule runs with (kept in its recording)."""
    from harness.driver import EsmConfig

    return EsmConfig(batch_size=plan.max_batch, report_batch_item_failures=True,
                     maximum_retry_attempts=500, bisect_batch_on_function_error=False)


def drive_with_faults(
    shards: list[tuple[str, str | None, list[dict[str, Any]]]],
    spec: TableSpec,
    stream_arn: str,
    plan: FaultPlan,
    *,
    guard: bool = True,
    esm: Any = None,
) -> FaultyDrive:
    """Deliver ``(shard_id, parent, records)`` through the ESM emulation into a fresh mongomock
    database, with the plan's faults. Deterministic for a given plan and records: every random
    choice comes from generators seeded by ``plan.seed``, and one lane per shard invokes in stream
    order -- which is why a recording replays into the same divergence."""
    from harness.backends.mongomock_target import mongomock_client
    from harness.driver import EventSourceMapping

    seed = plan.seed
    database = mongomock_client()["chaos"]
    collection = database["items"]
    log = FaultLog()
    faulty = FaultyCollection(BulkWriteShim(collection), plan, log, random.Random(seed + 1))
    settings = Settings(key_schema=spec.key_schema, guard=guard)
    replicator = Replicator(faulty, settings, quarantine=database["items_quarantine"],
                            tombstones=database["items_tombstones"],
                            archive=database["items_ttl_archive"])
    handler = FaultyHandler(replicator, plan, random.Random(seed + 2), log)
    driver = EventSourceMapping(handler, esm or esm_config_for(plan), stream_arn=stream_arn)
    try:
        for shard_id, parent, records in shards:
            driver.feed(shard_id, records, parent_shard_id=parent)
        report = driver.drain()
    finally:
        driver.close()
    return FaultyDrive(collection, database, report, handler, log)


def replay_recording(directory: Path) -> ScheduleResult:
    """Replay a chaos recording with its fault plan and settings (``schedule.json``): the same
    records through the same faults, so the recorded divergence comes back."""
    from harness.fixtures import load_capture_dir

    directory = Path(directory)
    schedule = json.loads((directory / "schedule.json").read_text())
    capture = load_capture_dir(directory)
    plan = FaultPlan.from_dict(schedule["faults"])
    guard = bool(schedule.get("guard", True))
    records = capture.records
    shard_counts = schedule.get("shards") or [["shardId-00000000000000000000-00000000", len(records)]]
    shards: list[tuple[str, str | None, list[dict[str, Any]]]] = []
    position = 0
    for shard_id, count in shard_counts:
        shards.append((shard_id, None, records[position:position + count]))
        position += count
    stream_arn = schedule.get("stream_arn") or (
        records[0].get("eventSourceARN") if records else None) or "arn:aws:dynamodb:::table/x/stream/x"
    result = ScheduleResult(int(schedule["seed"]), plan.as_dict(), schedule.get("workload", {}),
                            guard=guard, records=len(records))
    from harness.driver import EsmConfig

    # The recorded mapping settings, not today's defaults: a recording outlives code changes.
    esm = EsmConfig(**schedule["esm"]) if schedule.get("esm") else None
    drive = drive_with_faults(shards, capture.table, stream_arn, plan, guard=guard, esm=esm)
    result.injected = dict(drive.log.injected)
    if capture.final_items is not None:
        diff = check(capture.final_items, drive.collection, Planner(Settings(
            key_schema=capture.table.key_schema, guard=guard)))
        result.diverged = not diff.converged
        if result.diverged:
            result.diff = diff.as_dict()
    result.lost_records = _lost(drive.report, drive.handler, drive.database["items_quarantine"])
    return result


def _lost(report: Any, handler: FaultyHandler, quarantine: Any) -> list[str]:
    """Records neither applied nor kept: discarded by the driver, or corrupted but not quarantined."""
    lost = []
    for failure in getattr(report, "on_failure", []) or []:
        lost.append(f"discarded batch: {failure}")
    kept = {doc.get("raw_record") for doc in quarantine.find({}, {"raw_record": 1})}
    for corrupted in handler.corrupted:
        raw = json.dumps(corrupted["record"], sort_keys=True, ensure_ascii=False)
        if raw not in kept:
            lost.append(f"corrupted record not quarantined ({corrupted['kind']})")
    return lost


def _record(directory: Path, result: ScheduleResult, spec: TableSpec,
            lambda_records: list[dict[str, Any]], items: list[dict[str, Any]], *,
            shards: list[list[Any]], stream_arn: str) -> Path:
    target = directory / f"schedule-{result.seed}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "table.json").write_text(json.dumps(spec.create_table_request(), indent=1))
    (target / "events.json").write_text(json.dumps({"Records": lambda_records}, indent=1))
    (target / "final_items.json").write_text(json.dumps(wire_json(items), indent=1))
    (target / "schedule.json").write_text(json.dumps({
        "reproduce": f"harness chaos --seed {result.seed} --schedules 1"
                      + ("" if result.guard else " --no-guard"),
        # schedule.json beside events.json makes `harness replay` apply the same faults.
        "replay": f"harness replay --table {target}/table.json --events "
                  f"{target}/events.json --expect-items {target}/final_items.json",
        "replay_without_faults": f"harness replay --no-faults --table {target}/table.json "
                                 f"--events {target}/events.json --expect-items "
                                 f"{target}/final_items.json",
        "seed": result.seed, "guard": result.guard, "faults": result.faults,
        "esm": dataclasses.asdict(esm_config_for(FaultPlan.from_dict(result.faults))),
        "shards": shards, "stream_arn": stream_arn, "workload": result.workload,
        "injected": result.injected, "lost_records": result.lost_records, "diff": result.diff,
    }, indent=1, default=str))
    return target


def run_chaos(
    schedules: int,
    seed: int = 0,
    *,
    guard: bool = True,
    recordings: Path | None = None,
    source_name: str = "moto",
    progress: Callable[[int, int, ScheduleResult], None] | None = None,
) -> dict[str, Any]:
    """Run ``schedules`` seeded schedules; the report lists each divergence with its recording."""
    source = source_backend(source_name)
    source.start()
    results: list[ScheduleResult] = []
    started = time.perf_counter()
    try:
        for number in range(schedules):
            result = run_schedule(source, seed + number, guard=guard, recordings=recordings)
            results.append(result)
            if progress:
                progress(number + 1, schedules, result)
    finally:
        source.stop()
    failing = [r for r in results if r.failed]
    injected: dict[str, int] = {}
    for r in results:
        for name, count in r.injected.items():
            injected[name] = injected.get(name, 0) + count
    return {
        "schedules": len(results),
        "first_seed": seed,
        "guard": guard,
        "records": sum(r.records for r in results),
        "divergences": [
            {"seed": r.seed, "faults": r.faults, "workload": r.workload, "diff": r.diff,
             "lost_records": r.lost_records, "recording": r.recording}
            for r in failing
        ],
        "diverged": sum(1 for r in results if r.diverged),
        "lost_records": sum(len(r.lost_records) for r in results),
        "faults_injected": injected,
        "seconds": round(time.perf_counter() - started, 2),
    }

