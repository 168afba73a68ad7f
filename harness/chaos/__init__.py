"""Randomized fault schedules on the embedded stack (moto + mongomock or mongoeco).

Each schedule is a seed: it picks a fault plan (:class:`harness.faults.FaultPlan`: per-write fault
rates), a shape (:class:`harness.chaos.shape.Shape`: the workload kind -- composite, N or B keys,
TTL expiries in every ``ttl_deletes`` mode, KEYS_ONLY / OLD_IMAGE read-back streams, transactions
--, ParallelizationFactor 1..10, overlapping deliveries, a shard split into parent and children)
and a small workload; writes the workload to a fresh moto table, reads the stream, and drives the
replicator through the Lambda event-source-mapping emulation (:mod:`harness.chaos.drive`). A
schedule *diverges* when MongoDB does not hold what the table holds at the end, *loses a
record* when a record is neither applied (or superseded) nor kept in quarantine, and *violates*
the per-delivery check (:mod:`harness.invariants`) when after some delivery a document went back
to an older sequence number (a regression) or a deleted one came back (a resurrection), other than
by an injected failover rollback. Each failing
schedule is written out as a replayable recording: the capture layout ``harness replay`` reads
(table.json, events.json, final_items.json) plus ``schedule.json`` (seed, fault plan, shape,
mapping settings, shard layout, target).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import SourceBackend, TableSpec, source_backend
from harness.chaos.drive import FaultyDrive, FaultyHandler, drive_with_faults, esm_config_for
from harness.chaos.shape import (
    PLANT_FOCUS,
    Shape,
    ShardLayout,
    expected_items,
    mark_ttl_expiries,
    split_shards,
    table_for,
    workload_for,
)
from harness.esm.lambda_events import wire_json  # bytes -> base64, as in the fixtures
from harness.faults import FaultPlan
from harness.invariants import DeliveryChecker, excuse, unkept_rejections
from harness.lane import scan_items
from harness.workload import run_workload

__all__ = [
    "FaultyDrive",
    "FaultyHandler",
    "ScheduleResult",
    "Shape",
    "Target",
    "drive_with_faults",
    "esm_config_for",
    "replay_recording",
    "run_chaos",
    "run_schedule",
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
    shape: dict[str, Any] = field(default_factory=dict)
    target: str = "mongomock"
    #: the per-delivery check (harness.invariants): counts and the first violations
    regressions: int = 0
    resurrections: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    #: seen only in the middle of a delivery, undone before it ended: the tombstone window
    #: (harness.invariants); reported, not a failure
    mid_delivery_sightings: int = 0

    @property
    def failed(self) -> bool:
        return (self.diverged or bool(self.lost_records) or bool(self.regressions)
                or bool(self.resurrections))


class Target:
    """Where schedules write: a fresh database per schedule on one started embedded target."""

    def __init__(self, name: str) -> None:
        if name not in TARGET_NAMES:
            raise ValueError(f"chaos target {name!r}; expected one of {', '.join(TARGET_NAMES)}")
        self.name = name
        self.backend: Any = None

    def start(self) -> None:
        if self.name == "mongoeco":
            from harness.backends.mongoeco_target import MongoecoTarget

            self.backend = MongoecoTarget()
            self.backend.start()

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.stop()
            self.backend = None

    def database(self, seed: int) -> Any:
        """None for mongomock: drive_with_faults builds a fresh one (and its bulk_write shim)."""
        if self.backend is None:
            return None
        return self.backend.client[f"chaos_{seed}_{uuid.uuid4().hex[:6]}"]

    def drop(self, database: Any) -> None:
        if database is not None:
            database.client.drop_database(database.name)


TARGET_NAMES = ("mongomock", "mongoeco")


def run_schedule(
    source: SourceBackend,
    seed: int,
    *,
    guard: bool = True,
    recordings: Path | None = None,
    target: Target | None = None,
    shape: Shape | None = None,
    plan_overrides: Mapping[str, Any] | None = None,
) -> ScheduleResult:
    """One seeded schedule on a started source and target (default: mongomock). ``shape`` and
    ``plan_overrides`` replace what the seed draws (a focused plan)."""
    from harness.esm.lambda_events import to_lambda_record
    from replicator.poller.streams import StreamReader

    started = time.perf_counter()
    rng = random.Random(seed)
    plan = FaultPlan.random(rng, seed)
    if plan_overrides:
        plan = FaultPlan.from_dict({**plan.as_dict(), **plan_overrides})
    drawn = Shape.random(rng)  # drawn even when given: the workload below comes after it
    shape = shape or drawn
    if shape.source == "kinesis":
        # KDS records carry both images (no KEYS_ONLY / OLD_IMAGE read-back), and the fault
        # corrupting a record edits a DynamoDB Streams record's fields, not a Kinesis record's.
        if shape.workload in ("keys_only", "old_image"):
            shape = dataclasses.replace(shape, workload="simple")
        plan = FaultPlan.from_dict({**plan.as_dict(), "malformed_rate": 0.0})
    workload = workload_for(shape, rng, seed)
    spec = table_for(shape, f"chaos-{seed}-{uuid.uuid4().hex[:6]}")
    target = target or Target("mongomock")
    result = ScheduleResult(seed, plan.as_dict(), workload.to_dict(), guard=guard,
                            shape=shape.as_dict(), target=target.name)
    table = source.create_table(spec)
    database = None
    try:
        run_workload(source.dynamodb(), spec, workload)
        per_shard = StreamReader(source.streams(), table.stream_arn).drain(idle_polls=1)
        layout: ShardLayout = []
        for shard_id, shard_records in per_shard.items():
            if shape.workload == "ttl":
                shard_records = mark_ttl_expiries(shard_records, random.Random(seed + 3))
            layout += split_shards(shard_id, shard_records, shape, spec.partition_key[0])
        records = [r for _, _, shard_records in layout for r in shard_records]
        items = scan_items(source.dynamodb(), spec.name)
        database = target.database(seed)
        stream_arn = table.stream_arn
        if shape.source == "kinesis":
            layout, stream_arn = _through_kinesis(source, spec, per_shard, shape, seed)
        drive = drive_with_faults(layout, spec, stream_arn, plan, guard=guard, shape=shape,
                                  database=database, items=items)
        result.records = len(records)
        result.injected = dict(drive.log.injected)
        _judge(result, drive, expected_items(items, records, shape, spec.key_schema))
        if result.failed and recordings is not None:
            lambda_records = [to_lambda_record(r, stream_arn=table.stream_arn, region="us-east-1")
                              for r in records]
            if shape.source == "kinesis":  # the Kinesis records, as delivered, per shard
                lambda_records = [r for _, _, part in layout for r in part]
            shards = [[shard_id, len(part), parent] for shard_id, parent, part in layout]
            result.recording = str(_record(recordings, result, spec, lambda_records, items,
                                           shards=shards, stream_arn=stream_arn))
    finally:
        source.delete_table(table)
        target.drop(database)
        result.seconds = round(time.perf_counter() - started, 3)
    return result


def _through_kinesis(source: SourceBackend, spec: TableSpec,
                     per_shard: Mapping[str, list[dict[str, Any]]], shape: Shape, seed: int
                     ) -> tuple[ShardLayout, str]:
    """The table's changes through the KDS source (harness/kinesis.py): shuffled, duplicated,
    the first Kinesis shard split at ``shape.split_at`` of the records; the Kinesis shards'
    layout and the data stream's ARN."""
    from harness.backends.moto_kinesis import KinesisResharding
    from harness.kinesis import KdsFeed, KdsSettings, layout

    changes = [r for records in per_shard.values() for r in records]
    if shape.workload == "ttl":
        changes = mark_ttl_expiries(changes, random.Random(seed + 3))
    split_after = max(1, int(len(changes) * shape.split_at)) if shape.split_at else None
    settings = KdsSettings(source="kinesis", precision=shape.kds_precision,  # type: ignore[arg-type]
                           shards=2, shuffle_window=shape.kds_shuffle_window,
                           duplicate_rate=shape.kds_duplicate_rate, split_after=split_after,
                           seed=seed)
    with KinesisResharding(region=getattr(source, "region", "us-east-1")):
        feed = KdsFeed(source.kinesis(), f"{spec.name}-kds",  # type: ignore[attr-defined]
                       spec.name, settings)
        feed.put(changes)
        drained = feed.drain()
        try:
            return layout(feed, drained), feed.stream_arn
        finally:
            source.kinesis().delete_stream(StreamARN=feed.stream_arn)  # type: ignore[attr-defined]


def _judge(result: ScheduleResult, drive: FaultyDrive, expected: list[dict[str, Any]]) -> None:
    assert drive.lane is not None  # drive_with_faults always drives through a lane
    diff = drive.lane.diff(expected)
    # A document whose newest write was rejected for good cannot equal the table: the
    # quarantine holds that record (checked by _lost), which is not a divergence.
    diff = excuse(diff, drive.log.excused())
    result.diverged = not diff.converged
    if result.diverged:
        result.diff = diff.as_dict()
    result.lost_records = _lost(drive.report, drive.handler, drive.database["items_quarantine"])
    _note_violations(result, drive.checker)


def _note_violations(result: ScheduleResult, checker: DeliveryChecker | None) -> None:
    """The per-delivery check's counts (and its first violations) into the result."""
    if checker is not None:
        result.regressions = checker.regressions
        result.resurrections = checker.resurrections
        result.violations = checker.report()
        result.mid_delivery_sightings = len(checker.sightings)


def replay_recording(directory: Path, *, target: str = "mongomock") -> ScheduleResult:
    """Replay a chaos recording with its fault plan and settings (``schedule.json``: faults,
    mapping, shard layout, shape): the same records through the same faults, so the recorded
    divergence comes back."""
    from harness.captures.format import load_capture_dir
    from harness.esm.config import EsmConfig

    directory = Path(directory)
    schedule = json.loads((directory / "schedule.json").read_text())
    capture = load_capture_dir(directory)
    plan = FaultPlan.from_dict(schedule["faults"])
    shape = Shape.from_dict(schedule.get("shape") or {})
    guard = bool(schedule.get("guard", True))
    records = capture.records
    shard_counts = schedule.get("shards") or [["shardId-00000000000000000000-00000000", len(records)]]
    shards: ShardLayout = []
    position = 0
    for entry in shard_counts:
        shard_id, count = entry[0], entry[1]
        parent = entry[2] if len(entry) > 2 else None
        shards.append((shard_id, parent, records[position:position + count]))
        position += count
    stream_arn = schedule.get("stream_arn") or (
        records[0].get("eventSourceARN") if records else None) or "arn:aws:dynamodb:::table/x/stream/x"
    chosen = Target(schedule.get("target") or target)
    result = ScheduleResult(int(schedule["seed"]), plan.as_dict(), schedule.get("workload", {}),
                            guard=guard, records=len(records), shape=shape.as_dict(),
                            target=chosen.name)
    # The recorded mapping settings, not today's defaults: a recording outlives code changes.
    esm = EsmConfig(**schedule["esm"]) if schedule.get("esm") else None
    items = list(capture.final_items or [])
    chosen.start()
    database = chosen.database(result.seed)
    try:
        drive = drive_with_faults(shards, capture.table, stream_arn, plan, guard=guard, esm=esm,
                                  shape=shape, database=database, items=items)
        result.injected = dict(drive.log.injected)
        if capture.final_items is not None:
            _judge(result, drive, expected_items(items, records, shape, capture.table.key_schema))
        else:
            result.lost_records = _lost(drive.report, drive.handler,
                                        drive.database["items_quarantine"])
            _note_violations(result, drive.checker)
    finally:
        chosen.drop(database)
        chosen.stop()
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
    lost.extend(unkept_rejections(handler.log, quarantine))  # permanent write errors
    return lost


def _record(directory: Path, result: ScheduleResult, spec: TableSpec,
            lambda_records: list[dict[str, Any]], items: list[dict[str, Any]], *,
            shards: list[list[Any]], stream_arn: str) -> Path:
    target = directory / f"schedule-{result.seed}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "table.json").write_text(json.dumps(spec.create_table_request(), indent=1))
    (target / "events.json").write_text(json.dumps({"Records": lambda_records}, indent=1))
    (target / "final_items.json").write_text(json.dumps(wire_json(items), indent=1))
    shape = Shape.from_dict(result.shape)
    reproduce = (f"harness chaos --seed {result.seed} --schedules 1 --target {result.target}"
                 + ("" if result.guard else " --no-guard")
                 + "".join(f" --plant {p}" for p in shape.plants))
    if not _drawn_by_seed(result):
        reproduce = "a focused plan (the seed alone does not rebuild it): use the replay command"
    (target / "schedule.json").write_text(json.dumps({
        "reproduce": reproduce,
        # schedule.json beside events.json makes `harness replay` apply the same faults.
        "replay": f"harness replay --table {target}/table.json --events "
                  f"{target}/events.json --expect-items {target}/final_items.json",
        "replay_without_faults": f"harness replay --no-faults --table {target}/table.json "
                                 f"--events {target}/events.json --expect-items "
                                 f"{target}/final_items.json",
        "seed": result.seed, "guard": result.guard, "target": result.target,
        "faults": result.faults, "shape": result.shape,
        "esm": dataclasses.asdict(esm_config_for(FaultPlan.from_dict(result.faults), shape)),
        # [shard id, record count, parent shard id]: events.json holds the shards in this order
        "shards": shards, "stream_arn": stream_arn, "workload": result.workload,
        "injected": result.injected, "lost_records": result.lost_records, "diff": result.diff,
        "violations": result.violations,
    }, indent=1, default=str))
    return target


def _drawn_by_seed(result: ScheduleResult) -> bool:
    """Whether the seed alone rebuilds this schedule's plan and shape (no overrides were given)."""
    rng = random.Random(result.seed)
    plan = FaultPlan.random(rng, result.seed)
    drawn = Shape.random(rng).as_dict()
    drawn["plants"] = result.shape.get("plants", [])
    return plan.as_dict() == result.faults and drawn == result.shape


def run_chaos(
    schedules: int,
    seed: int = 0,
    *,
    guard: bool = True,
    recordings: Path | None = None,
    source_name: str = "moto",
    target: str = "mongomock",
    plants: Sequence[str] = (),
    shape_overrides: Mapping[str, Any] | None = None,
    plan_overrides: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, ScheduleResult], None] | None = None,
) -> dict[str, Any]:
    """Run ``schedules`` seeded schedules; the report lists each divergence with its recording.

    ``plants`` switches planted bugs on (see shape.PLANTS); ``shape_overrides`` and
    ``plan_overrides`` pin parts of every schedule's shape and fault plan (a focused plan: e.g.
    ``{"overlap_rate": 0.5}``)."""
    source = source_backend(source_name)
    chosen = Target(target)
    source.start()
    chosen.start()
    results: list[ScheduleResult] = []
    started = time.perf_counter()
    try:
        for number in range(schedules):
            rng = random.Random(seed + number)
            FaultPlan.random(rng, seed + number)  # the shape comes after the plan in the seed
            drawn = Shape.random(rng).as_dict()
            for plant in plants:  # what the planted bug needs to show; explicit overrides win
                drawn.update(PLANT_FOCUS.get(plant, {}))
            drawn.update(shape_overrides or {})
            drawn["plants"] = list(plants)
            result = run_schedule(source, seed + number, guard=guard, recordings=recordings,
                                  target=chosen, shape=Shape.from_dict(drawn),
                                  plan_overrides=plan_overrides)
            results.append(result)
            if progress:
                progress(number + 1, schedules, result)
    finally:
        chosen.stop()
        source.stop()
    failing = [r for r in results if r.failed]
    injected: dict[str, int] = {}
    for r in results:
        for name, count in r.injected.items():
            injected[name] = injected.get(name, 0) + count
    shapes: dict[str, int] = {}
    for r in results:
        for name in (f"workload:{r.shape.get('workload')}",
                     f"parallelization_factor:{r.shape.get('parallelization_factor')}",
                     "shard_split" if r.shape.get("split_at") is not None else "one_shard"):
            shapes[name] = shapes.get(name, 0) + 1
    return {
        "schedules": len(results),
        "first_seed": seed,
        "guard": guard,
        "target": target,
        "plants": list(plants),
        "records": sum(r.records for r in results),
        "divergences": [
            {"seed": r.seed, "faults": r.faults, "shape": r.shape, "workload": r.workload,
             "diff": r.diff, "lost_records": r.lost_records, "recording": r.recording,
             "violations": r.violations}
            for r in failing
        ],
        "diverged": sum(1 for r in results if r.diverged),
        "lost_records": sum(len(r.lost_records) for r in results),
        "regressions": sum(r.regressions for r in results),
        "resurrections": sum(r.resurrections for r in results),
        "mid_delivery_sightings": sum(r.mid_delivery_sightings for r in results),
        "faults_injected": injected,
        "shapes": shapes,
        "seconds": round(time.perf_counter() - started, 2),
    }
