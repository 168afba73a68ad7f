"""The scenario steps, in order: provision -> write + drive -> drain -> check -> report.

Each step is a plain function of the run's state, so each can be tested alone; ``run_scenario``
strings them together and always tears down what it started.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.backends.base import (
    DEFAULT_TARGET,
    MAX_BATCH_RECORDS,
    SourceBackend,
    Table,
    TargetBackend,
    source_backend,
    target_backend,
)
from harness.convergence import Diff
from harness.lag import DeliveryTimes, LagStats, key_fingerprint, measure
from harness.lane import Lane, item_reader_for, parent_of, scan_items
from harness.scenario import Scenario
from harness.timing import Stopwatch, Timed, shares, timed_collection
from replicator.settings import Settings

Progress = Callable[[str, int, int | None], None]


@dataclass
class HandlerOutcome:
    handler: str
    expectation: str
    diff: Diff
    lag: LagStats
    driver: dict[str, Any]
    collection: str

    @property
    def met(self) -> bool:
        return self.diff.converged == (self.expectation == "converge")


@dataclass
class RunResult:
    scenario: str
    source: str
    target: str
    seed: int | None
    table: str = ""
    stream_records: int = 0
    workload: dict[str, Any] = field(default_factory=dict)
    outcomes: list[HandlerOutcome] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    missing_paths: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: busy seconds per part (harness.timing.PARTS)
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    #: checks besides convergence, by name -> passed (a migration's verify, no regression, ...)
    checks: dict[str, bool] = field(default_factory=dict)
    #: what a migration scenario reports besides the common shape (copy, kill, verify reports)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.error is None and bool(self.outcomes) and all(o.met for o in self.outcomes) \
            and not any(self.missing_paths.values()) and all(self.checks.values())

    @property
    def events_per_s(self) -> float | None:
        drive = self.timings.get("write_and_drive_s", 0) + self.timings.get("drain_s", 0)
        return self.stream_records / drive if drive > 0 else None

    def parts(self) -> dict[str, dict[str, float]]:
        """Each part's busy seconds and share (the first handler's; see harness/timing.py)."""
        primary = next((o for o in self.outcomes if o.handler == "replicator"),
                       self.outcomes[0] if self.outcomes else None)
        handler_total = float(primary.driver.get("handler_total_s", 0.0)) if primary else 0.0
        return shares(self.stopwatch.seconds, handler_total_s=handler_total)

    def as_dict(self) -> dict[str, Any]:
        primary = next((o for o in self.outcomes if o.handler == "replicator"),
                       self.outcomes[0] if self.outcomes else None)
        return {
            "scenario": self.scenario,
            "source": self.source,
            "target": self.target,
            "seed": self.seed,
            "table": self.table,
            "expectation_met": self.met,
            "converged": primary.diff.converged if primary else False,
            "error": self.error,
            "notes": self.notes,
            "checks": self.checks,
            "counts": {
                "stream_records": self.stream_records,
                "documents": primary.diff.actual_count if primary else 0,
                "expected_documents": primary.diff.expected_count if primary else 0,
                "workload": self.workload,
            },
            "throughput": {"events_per_s": self.events_per_s},
            "lag": primary.lag.as_dict() if primary else None,
            "timings_s": self.timings,
            "parts": self.parts(),
            "rss_peak_mb": rss_peak_mb(),
            "diff": primary.diff.as_dict() if primary else None,
            "handlers": [
                {
                    "handler": o.handler,
                    "expectation": o.expectation,
                    "met": o.met,
                    "converged": o.diff.converged,
                    "collection": o.collection,
                    "lag": o.lag.as_dict(),
                    "driver": o.driver,
                    "diff": o.diff.as_dict(),
                    "missing_expected_paths": self.missing_paths.get(o.handler, []),
                }
                for o in self.outcomes
            ],
            "details": self.details,
        }


def rss_peak_mb() -> float | None:
    """This process's peak resident set size (getrusage: KiB on Linux, bytes on macOS)."""
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def run_scenario(
    scenario: Scenario,
    *,
    source: str | None = None,
    target: str | None = None,
    target_uri: str | None = None,
    handlers: list[str] | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    source_options: dict[str, Any] | None = None,
) -> RunResult:
    """Run a stream scenario (a migration scenario: harness.run.run_any)."""
    if scenario.migration:
        raise ValueError(f"{scenario.name} is a migration scenario ({scenario.kind}): "
                         "harness.migration.run_migration runs it (harness.run.run_any "
                         "runs either kind)")
    source_name = source or scenario.run.get("source", "moto")
    target_name = "uri" if target_uri else (
        target or scenario.run.get("target") or scenario.target.get("name") or DEFAULT_TARGET)
    workload_seed = seed if seed is not None else scenario.workload.get("seed")
    result = RunResult(scenario.name, source_name, target_name, workload_seed)
    src = source_backend(source_name, **(source_options or {}))
    tgt = target_backend("uri", uri=target_uri) if target_uri else target_backend(
        target_name, **_target_options(scenario, target_name))
    table: Table | None = None
    started: list[SourceBackend | TargetBackend] = []
    kds = kds_settings(scenario, workload_seed)
    patches = contextlib.ExitStack()
    try:
        _timed(result, "start_source_s", src.start)
        started.append(src)
        _timed(result, "start_target_s", tgt.start)
        started.append(tgt)
        table = _timed(result, "provision_s", lambda: provision(src, scenario))
        result.table = table.spec.name
        feed = None
        if kds.kinesis:
            feed = make_feed(src, table, kds, patches)
            result.notes.append(
                f"KDS source: {kds.precision} ApproximateCreationDateTime, {kds.shards} shard(s), "
                f"shuffled within {kds.shuffle_window}, {kds.duplicate_rate:g} of changes put "
                "twice" + (f", first shard split after {kds.split_after} records"
                           if kds.split_after else ""))
        lanes = make_lanes(scenario, handlers or scenario.handlers, src, tgt, table,
                           stopwatch=result.stopwatch,
                           stream_arn=feed.stream_arn if feed is not None else None)
        writes = write_and_drive(scenario, src, table, lanes, result, workload_seed, progress,
                                 feed=feed)
        converge(scenario, src, table, lanes, result, writes, progress)
    finally:
        patches.close()
        if table is not None and src in started:
            with contextlib.suppress(Exception):  # teardown goes on; the emulator stops next
                src.delete_table(table)
        for backend in reversed(started):
            backend.stop()
    return result


def _target_options(scenario: Scenario, target_name: str) -> dict[str, Any]:
    if target_name.startswith("testcontainers"):
        options = {k: v for k, v in scenario.target.items() if k in ("image", "shard_key",
                                                                       "shard_key_kind")}
        return options
    return {}


def _timed(result: RunResult, name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return step()
    finally:
        result.timings[name] = round(time.perf_counter() - started, 3)


def kds_settings(scenario: Scenario, seed: int | None) -> Any:
    """The scenario's ``[stream]`` as :class:`harness.kinesis.KdsSettings` (seeded by the
    workload's seed unless it names its own)."""
    from harness.kinesis import KdsSettings

    try:
        return KdsSettings.from_dict(scenario.stream, seed=seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"scenario {scenario.name!r}: [stream]: {error}") from None


def make_feed(src: SourceBackend, table: Table, kds: Any, patches: contextlib.ExitStack) -> Any:
    """The KDS source of ``table``: a Kinesis data stream on the source's moto (AWS's resharding
    patched in for the run; harness/backends/moto_kinesis.py)."""
    from harness.backends.moto_kinesis import KinesisResharding
    from harness.kinesis import KdsFeed

    kinesis = getattr(src, "kinesis", None)
    if kinesis is None:
        raise ValueError(f"source {src.name!r} has no Kinesis: [stream] source = \"kinesis\" "
                         "runs on moto")
    if table.spec.stream_view_type != "NEW_AND_OLD_IMAGES":
        raise ValueError("[stream] source = \"kinesis\": Kinesis Data Streams for DynamoDB "
                         "records carry both images; give the table NEW_AND_OLD_IMAGES")
    from harness.backends.moto_source import MotoProcessSource

    if kds.split_after is not None and isinstance(src, MotoProcessSource):
        raise ValueError("[stream] split_after needs moto's state in this process (moto, "
                         "moto-server): AWS's resharding is patched into it "
                         "(harness/backends/moto_kinesis.py)")
    patches.enter_context(KinesisResharding(region=getattr(src, "region", "us-east-1")))
    return KdsFeed(kinesis(), f"{table.spec.name}-kds", table.spec.name, kds)


# -- steps -------------------------------------------------------------------------------------
def provision(src: SourceBackend, scenario: Scenario) -> Table:
    """Create the scenario's table under a unique name (emulators share one database)."""
    unique = f"{scenario.table.name}-{uuid.uuid4().hex[:8]}"
    return src.create_table(replace(scenario.table, name=unique))


def make_lanes(
    scenario: Scenario,
    handlers: list[str],
    src: SourceBackend,
    tgt: TargetBackend,
    table: Table,
    *,
    stopwatch: Stopwatch | None = None,
    stream_arn: str | None = None,
) -> list[Lane]:
    """One :class:`~harness.lane.Lane` per handler, each into a collection of its own, all with
    the scenario's settings and event source mapping (and the item reader a KEYS_ONLY or
    OLD_IMAGE table needs, shared)."""
    fields = _settings_fields(scenario)
    if stream_arn is not None:  # the KDS source
        fields.setdefault("source", "kinesis")
    settings = Settings(key_schema=table.spec.key_schema, **fields)
    item_reader = item_reader_for(src, table.spec)
    if stream_arn is not None and item_reader is None:
        # Equal-timestamp ties are decided by reading the item (docs/kinesis.md), as the
        # deployed function does with REPLICATOR_READ_BACK_TABLE.
        from replicator.readback import DynamoDBItemReader

        item_reader = DynamoDBItemReader(src.dynamodb(), table.spec.name)
    esm = driver_config(scenario)
    database = scenario.target.get("database", "harness")
    lanes: list[Lane] = []
    for handler in handlers:
        name = f"{table.spec.name}.{handler.replace(':', '_').replace('.', '_')}"
        collection = tgt.collection(database, name)
        collection.delete_many({})
        # Only the first handler's target writes are timed: the parts table is about one handler.
        handled = timed_collection(collection, stopwatch) if stopwatch and not lanes \
            else collection
        # Per record only its key's completion time is kept (lag); the mapping keeps counts.
        # run.mongodb_only_writer: another MongoDB application writes after each batch
        # (write_mode="merge"; harness/mongodb_only.py), its turn taken by the lane itself.
        turns: list[Lane] = []
        lane = Lane(
            handler, collection, settings, writes_to=handled, item_reader=item_reader, esm=esm,
            stream_arn=stream_arn or table.stream_arn, region=getattr(src, "region", "us-east-1"),
            partition_key=table.spec.partition_key[0], clock=time.time,
            deliveries=DeliveryTimes(),
            on_complete=_turns_of(turns),
        )
        if scenario.run.get("mongodb_only_writer"):
            lane.add_mongodb_only_writer()
            turns.append(lane)
        lanes.append(lane)
    return lanes


def _turns_of(lanes: list[Lane]) -> Callable[[float, Sequence[Mapping[str, Any]]], None]:
    """An ``on_complete`` giving each of ``lanes`` (filled in later) its turn after a batch."""
    def turns(at: float, records: Sequence[Mapping[str, Any]]) -> None:
        for lane in lanes:
            lane.after_batch(at, records)

    return turns


def driver_config(scenario: Scenario) -> Any:
    """The scenario's event source mapping; ReportBatchItemFailures on unless it says otherwise
    (the replicator answers with batchItemFailures, and the README tells users to enable it)."""
    from harness.esm.config import EsmConfig

    fields = {"report_batch_item_failures": True, **scenario.driver}
    if int(fields.get("batch_size", 0)) > MAX_BATCH_RECORDS:
        # AWS allows 10,000 for DynamoDB Streams, but one batch is one bulk write here, and the
        # embedded target drops a request that keeps it busy for ~10 s (mongoeco_target.py).
        raise ValueError(
            f"scenario {scenario.name!r}: driver batch_size {fields['batch_size']} is above the "
            f"harness's {MAX_BATCH_RECORDS} records per batch"
        )
    return EsmConfig(**fields)


def _settings_fields(scenario: Scenario) -> dict[str, Any]:
    fields = dict(scenario.replicator)
    for name in ("transforms", "shard_key"):
        if name in fields:
            fields[name] = tuple(fields[name])
    if "shard_key" not in fields and scenario.target.get("shard_key"):
        fields["shard_key"] = tuple(scenario.target["shard_key"])
    return fields


def write_and_drive(
    scenario: Scenario,
    src: SourceBackend,
    table: Table,
    lanes: list[Lane],
    result: RunResult,
    seed: int | None,
    progress: Progress | None,
    *,
    feed: Any = None,
) -> list[tuple[float, str]]:
    """Run the workload in a thread while the stream is read and fed to every lane's driver
    (through ``feed``, a :class:`harness.kinesis.KdsFeed`, for the KDS source)."""
    from harness.workload import WorkloadSpec, run_workload
    from replicator.poller.streams import StreamReader

    spec_fields = dict(scenario.workload)
    if seed is not None:
        spec_fields["seed"] = seed
    workload = WorkloadSpec.from_dict(spec_fields)
    stopwatch = result.stopwatch
    reader: Any = StreamReader(
        Timed(src.streams(), stopwatch, "stream_read_s"), table.stream_arn,
        starting_position=scenario.driver.get("starting_position", "TRIM_HORIZON"),
    )
    if feed is not None:
        feed.upstream, reader = reader, feed
    outcome: dict[str, Any] = {}

    def writer() -> None:
        try:
            outcome["result"] = run_workload(
                Timed(src.dynamodb(), stopwatch, "source_write_s"), table.spec, workload,
                progress=(lambda done, total: progress("writing", done, total)) if progress else None,
            )
        except BaseException as error:  # surfaced below, after the drive loop stops
            outcome["error"] = error

    # moto applies a cancelled transaction's other writes (stream records included) and rolls
    # them back afterwards, reusing their sequence numbers: a reader that looks in between reads
    # records that never happened and skips the ones that replace them. On such a source a
    # workload with cancelled transactions is read once it is written (no live lag then).
    live = getattr(src, "atomic_transactions", True) or "conditional_fail" not in workload.mix
    if not live:
        result.notes.append(
            f"{src.name} rolls back cancelled transactions non-atomically: the stream was read "
            "after the workload finished, so lag is not measured live"
        )
    started = time.perf_counter()
    thread = threading.Thread(target=writer, name="workload", daemon=True)
    thread.start()
    records = 0
    while thread.is_alive():
        if live:
            records += _pump(reader, lanes)
        time.sleep(0.05)
    thread.join()
    result.timings["write_and_drive_s"] = round(time.perf_counter() - started, 3)
    if "error" in outcome:
        raise outcome["error"]
    started = time.perf_counter()
    idle = 0
    while idle < 3:
        fresh = _pump(reader, lanes)
        records += fresh
        idle = 0 if fresh else idle + 1
        if progress:
            progress("draining", records, None)
        if not fresh:
            time.sleep(0.1)
    for lane in lanes:
        lane.drain()
    result.timings["drain_s"] = round(time.perf_counter() - started, 3)
    result.stream_records = records
    workload_result = outcome["result"]
    result.workload = _workload_summary(workload_result)
    return _write_times(workload_result, table)


def _pump(reader: Any, lanes: list[Lane]) -> int:
    fresh = 0
    for shard_id, records in reader.poll():
        if not records:
            continue
        fresh += len(records)
        parent = parent_of(reader, shard_id)
        for lane in lanes:
            lane.feed(shard_id, records, parent_shard_id=parent)
    for lane in lanes:
        lane.pump()
    return fresh


def converge(
    scenario: Scenario,
    src: SourceBackend,
    table: Table,
    lanes: list[Lane],
    result: RunResult,
    writes: list[tuple[float, str]],
    progress: Progress | None,
) -> None:
    """Scan the table and compare each lane's collection, waiting up to the scenario's timeout."""
    timeout = float(scenario.run.get("timeout_s", 60))
    started = time.perf_counter()
    items = scan(src, table)
    for lane in lanes:
        expectation = scenario.expectation(lane.handler_name)
        # The lane's planner: the settings' transforms and id mapping loaded, as the handler has them.
        diff = lane.diff(items)
        # Waiting only makes sense for a lane expected to converge (the stream may still deliver).
        while not diff.converged and expectation == "converge" \
                and time.perf_counter() - started < timeout:
            time.sleep(0.25)
            lane.drain()
            diff = lane.diff(items)
        report = lane.drain()
        result.outcomes.append(HandlerOutcome(
            handler=lane.handler_name, expectation=expectation, diff=diff,
            lag=measure(writes, lane.deliveries or DeliveryTimes()), driver=_driver_summary(report),
            collection=lane.collection.name,
        ))
        wanted = scenario.expect.get("diverging_paths", [])
        if expectation == "diverge" and wanted:
            seen = {f.path.split("[")[0] for d in diff.changed for f in d.fields}
            result.missing_paths[lane.handler_name] = [p for p in wanted if p not in seen]
    result.timings["check_s"] = round(time.perf_counter() - started, 3)


def scan(src: SourceBackend, table: Table) -> list[dict[str, Any]]:
    return scan_items(src.dynamodb(), table.spec.name)


# -- adapters to the driver's and workload's reports --------------------------------------------
def _driver_summary(report: Any) -> dict[str, Any]:
    summary = getattr(report, "summary", None)
    return summary() if callable(summary) else {}


def _workload_summary(workload_result: Any) -> dict[str, Any]:
    summary = getattr(workload_result, "summary", None)
    return summary() if callable(summary) else {}


def _write_times(workload_result: Any, table: Table) -> list[tuple[float, str]]:
    return [(at, key_fingerprint(keys)) for at, keys in getattr(workload_result, "writes", [])]
