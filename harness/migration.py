"""The migration scenarios of issue #12, ``initial-sync`` and ``gap-recovery``, on any source and
target: ``replicator sync`` / ``recover`` under a live writer, then convergence, ``verify``, and
(initial-sync) no document going back after the handover.

They are scenarios like the others (scenarios/initial-sync.toml, gap-recovery.toml,
gap-recovery-export.toml; a ``[migration]`` table instead of a workload):

    harness run initial-sync [--source dynamodb-local] [--set migration.items=20000]

:func:`run_migration` runs one and reports in the common shape (harness.runner.RunResult);
:func:`initial_sync` and :func:`gap_recovery` are the steps, called directly by the tests.

Both are deterministic: the live writer is a seeded sequence of inserts, modifications and
deletes made between scan pages (``after_page``), and the kill is an exception at a chosen page,
never a timer. The test suite runs them small (tests/replicator/migrate); the nox session
``migration`` runs them at 20,000 items.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from harness.backends.base import (
    DEFAULT_TARGET,
    Table,
    TableSpec,
    source_backend,
    started,
    target_backend,
)
from harness.convergence import Diff, check
from harness.lag import LagStats
from harness.lane import scan_items
from harness.runner import HandlerOutcome, RunResult
from harness.scenario import Scenario
from replicator.errors import ResyncRequired
from replicator.expected import planner_for
from replicator.migrate.export import INCREMENTAL, export_json, load_manifest, write_export
from replicator.migrate.gap import recover
from replicator.migrate.sync import sync_scan
from replicator.migrate.verify import Verifier
from replicator.poller import Poller
from replicator.settings import Settings


class SimulatedKill(BaseException):
    """The copy process dies here (a BaseException: nothing in the copy may catch it)."""


# -- table and writer ----------------------------------------------------------------------------
def item(n: int, version: int = 0) -> dict[str, Any]:
    return {"pk": {"S": f"item-{n:06d}"}, "n": {"N": str(n)}, "v": {"N": str(version)},
            "tags": {"SS": [f"t{n % 7}", "all"]}, "body": {"M": {"text": {"S": "x" * (n % 50)},
                                                                  "list": {"L": [{"N": "1"},
                                                                                 {"BOOL": True}]}}}}


def prefill(client: Any, table: str, count: int) -> None:
    for start in range(0, count, 25):
        requests = [{"PutRequest": {"Item": item(n)}} for n in range(start, min(count, start + 25))]
        pending: dict[str, Any] = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


class LiveWriter:
    """Seeded inserts, modifications and deletes of the table, ``per_call`` at a time."""

    def __init__(self, client: Any, table: str, existing: int, seed: int = 12,
                 per_call: int = 6) -> None:
        self.client = client
        self.table = table
        self.rng = random.Random(seed)
        self.live = list(range(existing))
        self.next = existing
        self.per_call = per_call
        self.counts = {"insert": 0, "modify": 0, "delete": 0}
        self.version = 0
        self.enabled = True
        self.touched: set[str] = set()

    def __call__(self, *_: Any) -> None:
        if not self.enabled:
            return
        for _step in range(self.per_call):
            self.step()

    def step(self) -> None:
        roll = self.rng.random()
        self.version += 1
        if roll < 0.35 or not self.live:
            n = self.next
            self.next += 1
            self.touched.add(f"item-{n:06d}")
            self.client.put_item(TableName=self.table, Item=item(n, self.version))
            self.live.append(n)
            self.counts["insert"] += 1
        elif roll < 0.75:
            n = self.rng.choice(self.live)
            self.touched.add(f"item-{n:06d}")
            self.client.update_item(
                TableName=self.table, Key={"pk": {"S": f"item-{n:06d}"}},
                UpdateExpression="SET v = :v, touched = :t REMOVE body",
                ExpressionAttributeValues={":v": {"N": str(self.version)}, ":t": {"BOOL": True}})
            self.counts["modify"] += 1
        else:
            n = self.live.pop(self.rng.randrange(len(self.live)))
            self.touched.add(f"item-{n:06d}")
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": f"item-{n:06d}"}})
            self.counts["delete"] += 1


class _Serialized:
    """A boto3 client whose calls hold ``lock``: moto in-process is not thread-safe (a Scan
    iterating a table's items while the writer inserts one raises "dictionary changed size during
    iteration"), and in these scenarios the writer runs in the segments' threads. Against AWS the
    writer is another process; here the calls take turns, the copy's MongoDB writes still overlap."""

    def __init__(self, inner: Any, lock: Any) -> None:
        self._inner = inner
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name.startswith("_") or name == "meta":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


class SerializedSource:
    """``source`` with every client call under one lock (see _Serialized)."""

    def __init__(self, source: Any) -> None:
        import threading

        self._source = source
        self._lock = threading.RLock()
        self.name = source.name

    def dynamodb(self) -> Any:
        return _Serialized(self._source.dynamodb(), self._lock)

    def streams(self) -> Any:
        return _Serialized(self._source.streams(), self._lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


# -- running ---------------------------------------------------------------------------------------
@dataclass
class ScenarioResult:
    name: str
    source: str
    target: str
    items: int
    converged: bool = False
    divergences: int = 0
    verify_ok: bool = False
    regressions: int = 0
    killed_at: tuple[int, int] | None = None
    resumed_segments: int = 0
    segments_already_done: int = 0
    writer: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    #: the comparison that decided ``converged`` (the first that diverged, else the last)
    diff: Diff = field(default_factory=Diff)

    @property
    def ok(self) -> bool:
        return self.converged and self.verify_ok and self.regressions == 0


def make_poller(source: Any, table: Table, collection: Any, *, settings: Settings | None = None,
                **options: Any) -> Poller:
    """``settings``: default the table's key schema and nothing else."""
    return Poller(source.streams(), source.dynamodb(), table.spec.name, collection,
                  settings or Settings(key_schema=table.spec.key_schema), batch_size=500,
                  poll_interval=0.01, stream_arn=table.stream_arn,
                  key_schema=table.spec.key_schema, log_interval=3600, **options)


def diff(source: Any, table: Table, collection: Any) -> Any:
    planner = planner_for(Settings(key_schema=table.spec.key_schema))
    return check(scan_items(source.dynamodb(), table.spec.name), collection, planner)


def sequences(collection: Any) -> dict[Any, str]:
    return {repr(d["_id"]): d.get("_ddb_seq", "") for d in collection.find({}, {"_ddb_seq": 1})}


def initial_sync(source: Any, target: Any, *, items: int = 300, segments: int = 4,
                 page_size: int = 50, kill_at: tuple[int, int] | None = None,
                 writes_per_page: int = 6, seed: int = 12, name: str = "initial-sync",
                 follow: bool = False) -> ScenarioResult:
    """Pre-fill, sync with a live writer (killed at ``(segment, page)`` and resumed, if given),
    converge, verify under the writer, and check that no document regresses after handover."""
    started_at = time.monotonic()
    source = SerializedSource(source)
    result = ScenarioResult(name, source.name, target.name, items, killed_at=kill_at)
    spec = TableSpec(f"{name}-{seed}-{items}", ("pk", "S"))
    table = source.create_table(spec)
    client = source.dynamodb()
    prefill(client, spec.name, items)
    collection = target.collection("migration", spec.name.replace("-", "_"))
    result.details.update(table=spec.name, collection=f"migration.{collection.name}")
    writer = LiveWriter(client, spec.name, items, seed=seed, per_call=writes_per_page)

    def after_page(segment: int, page: int) -> None:
        writer()
        if kill_at is not None and (segment, page) == kill_at and not result.details.get("killed"):
            result.details["killed"] = True
            raise SimulatedKill(f"segment {segment} page {page}")

    try:
        report = sync_scan(make_poller(source, table, collection), segments=segments,
                           page_size=page_size, after_page=after_page, follow=follow)
    except SimulatedKill:
        # A new process: everything in memory is gone; the segments' positions and the stream
        # marker in MongoDB are what it resumes from.
        report = sync_scan(make_poller(source, table, collection), segments=segments,
                           page_size=page_size, after_page=after_page, follow=follow)
    else:
        if kill_at is not None:
            raise ValueError(f"the copy never reached page {list(kill_at)} (segment, page): "
                             f"{items} items in {segments} segments of {page_size}-item pages")
    result.details["consistent_at"] = str(report.consistent_at)
    poller = make_poller(source, table, collection)
    found = diff(source, table, collection)
    result.converged = found.converged
    result.divergences = len(found.missing) + len(found.extra) + len(found.changed)
    result.details["diff"] = found.as_dict() if not found.converged else {}
    # After the handover: the writer goes on, the poller follows; no document goes back.
    before = sequences(collection)
    writer()
    verifier = Verifier(client, spec.name, collection, Settings(key_schema=spec.key_schema),
                        segments=2, page_size=page_size,
                        after_page=lambda *_: writer(),
                        wait_for_replication=lambda: _drain(poller))
    checked = verifier.run()
    result.verify_ok = checked.ok
    result.details["verify"] = {k: v for k, v in checked.as_dict().items() if k != "divergent"}
    after = sequences(collection)
    result.regressions = sum(1 for k, s in before.items() if k in after and after[k] < s)
    poller.run(once=True)
    final = diff(source, table, collection)
    result.diff = found if not found.converged else final
    result.converged = result.converged and final.converged
    result.writer = dict(writer.counts)
    if report.copy is not None:
        result.resumed_segments = report.copy.segments_resumed
        result.segments_already_done = report.copy.segments_already_done
        result.details["second_run_items_read"] = report.copy.items_read
    result.elapsed_s = time.monotonic() - started_at
    return result


# -- gap recovery ----------------------------------------------------------------------------------
class TrimmedStreams:
    """A streams client whose records up to ``trim_at`` (a sequence number) have expired:
    GetRecords drops them and an iterator after one of them raises TrimmedDataAccessException,
    as DynamoDB Streams does after 24 hours (GetShardIterator API reference)."""

    def __init__(self, inner: Any, trim_at: str) -> None:
        self.inner = inner
        self.trim_at = int(trim_at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_shard_iterator(self, **request: Any) -> Any:
        if (request.get("ShardIteratorType") == "AFTER_SEQUENCE_NUMBER"
                and int(request["SequenceNumber"]) < self.trim_at):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TrimmedDataAccessException",
                                         "Message": "trimmed"}}, "GetShardIterator")
        return self.inner.get_shard_iterator(**request)

    def get_records(self, **request: Any) -> Any:
        # Expired records are gone, not empty pages: read past them (an empty page would tell
        # the poller it is caught up while retained records follow).
        while True:
            page = self.inner.get_records(**request)
            records = page.get("Records", [])
            kept = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) > self.trim_at]
            if kept or not records or not page.get("NextShardIterator"):
                page["Records"] = kept
                return page
            request = {**request, "ShardIterator": page["NextShardIterator"]}


def _drain(poller: Poller) -> None:
    """The Verifier's wait: one pass of the poller over what the stream holds."""
    poller.run(once=True)


def _last_sequence(source: Any, table: Table) -> str:
    from replicator.poller.streams import StreamReader

    records = StreamReader(source.streams(), table.stream_arn, sleep=lambda _: None).drain(
        idle_polls=1)
    return str(max((r["dynamodb"]["SequenceNumber"] for rs in records.values() for r in rs), key=int))


def gap_recovery(source: Any, target: Any, *, items: int = 200, method: str = "re-copy",
                 export_dir: Path | None = None, gap_writes: int = 60, retained_writes: int = 30,
                 segments: int = 2, page_size: int = 50, seed: int = 5,
                 kill_at: tuple[int, int] | None = None, name: str = "gap") -> ScenarioResult:
    """Replicate, stop, write through a gap whose records expire, write more (retained), then
    ``recover`` (re-copy, or an incremental export written in AWS's layout) and converge."""
    started_at = time.monotonic()
    source = SerializedSource(source)
    result = ScenarioResult(f"gap-recovery ({method})", source.name, target.name, items,
                            killed_at=kill_at)
    spec = TableSpec(f"{name}-{method}-{seed}-{items}", ("pk", "S"))
    table = source.create_table(spec)
    client = source.dynamodb()
    prefill(client, spec.name, items)
    collection = target.collection("migration", spec.name.replace("-", "_"))
    result.details.update(table=spec.name, collection=f"migration.{collection.name}")
    make_poller(source, table, collection).run(once=True)  # replicated up to here
    gap_start = datetime.now(timezone.utc)
    writer = LiveWriter(client, spec.name, items, seed=seed, per_call=1)
    for _ in range(gap_writes):
        writer()
    trim_at = _last_sequence(source, table)  # everything up to here expires
    for _ in range(retained_writes):
        writer()
    trimmed = TrimmedStreams(source.streams(), trim_at)
    def gap_poller() -> Poller:
        return Poller(trimmed, client, spec.name, collection,
                      Settings(key_schema=spec.key_schema), stream_arn=table.stream_arn,
                      key_schema=spec.key_schema, poll_interval=0.01, log_interval=3600,
                      batch_size=500)

    try:
        gap_poller().run(once=True)
    except ResyncRequired:
        result.details["resync_required"] = True
    poller = gap_poller()
    counts: list[int] = []

    def after_page(segment: int, page: int) -> None:
        counts.append(collection.count_documents({}))
        if kill_at is not None and (segment, page) == kill_at and not result.details.get("killed"):
            result.details["killed"] = True
            raise SimulatedKill(f"segment {segment} page {page}")

    exports = []
    if method == "export":
        assert export_dir is not None
        # What DynamoDB would export for [gap start - margin, now): the final state of every item
        # changed in the window, no NewImage for a deleted one.
        current = {i["pk"]["S"]: i for i in scan_items(client, spec.name)}
        lines = []
        for key in sorted(writer.touched):
            stamp = {"WriteTimestampMicros": {"N": str(int(time.time() * 1e6))}}
            if key in current:
                lines.append({"Metadata": stamp, "Keys": {"pk": {"S": key}},
                              "NewImage": export_json(current[key])})
            else:
                lines.append({"Metadata": stamp, "Keys": {"pk": {"S": key}}})
        half = len(lines) // 2
        location = write_export(export_dir, [lines[:half], lines[half:]],
                                export_type=INCREMENTAL,
                                export_from_time=gap_start - timedelta(minutes=15),
                                export_to_time=datetime.now(timezone.utc))
        exports.append(load_manifest(str(location)))
    try:
        report = recover(poller, exports=exports, segments=segments, page_size=page_size,
                         after_page=after_page)
    except SimulatedKill:
        poller = gap_poller()
        report = recover(poller, exports=exports, segments=segments, page_size=page_size,
                         after_page=after_page)
    found = diff(source, table, collection)
    result.diff = found
    result.converged = found.converged
    result.divergences = len(found.missing) + len(found.extra) + len(found.changed)
    result.details["diff"] = found.as_dict() if not found.converged else {}
    result.details["report"] = report.as_dict()
    result.details["min_documents_during_recovery"] = min(counts) if counts else None
    checked = Verifier(client, spec.name, collection, Settings(key_schema=spec.key_schema),
                       segments=2, page_size=page_size,
                       wait_for_replication=lambda: _drain(poller)).run()
    result.verify_ok = checked.ok
    result.writer = dict(writer.counts)
    result.elapsed_s = time.monotonic() - started_at
    return result


# -- as a scenario ----------------------------------------------------------------------------------
#: the live writer's seed when the scenario gives none (the old CLI's default)
DEFAULT_SEED = 12


def run_migration(
    scenario: Scenario,
    *,
    source: str | None = None,
    target: str | None = None,
    target_uri: str | None = None,
    seed: int | None = None,
) -> RunResult:
    """Run a migration scenario (its ``[migration]`` table) and report it as any scenario.

    The report's one outcome is the replicator's (the copy, then the poller): its diff is the
    convergence check; ``checks`` holds ``verify`` (``replicator verify`` under the live writer)
    and, for initial-sync, ``no_regression_after_handover``; ``details`` the copy's, the kill's and
    the verify's reports. On a mongomock target the ``_id`` fast path is on (see
    :func:`mongomock_id_fast_path`). Raises ValueError for a kill page the copy never reaches,
    BackendUnavailable when a backend cannot start.
    """
    options = scenario.migration
    source_name = source or scenario.run.get("source", "moto")
    target_name = "uri" if target_uri else (
        target or scenario.run.get("target") or scenario.target.get("name") or DEFAULT_TARGET)
    chosen_seed = seed if seed is not None else int(options.get("seed", DEFAULT_SEED))
    result = RunResult(scenario.name, source_name, target_name, chosen_seed)
    kill_point(options)  # a kill the copy cannot reach fails before anything starts
    src = source_backend(source_name)
    tgt = target_backend("uri", uri=target_uri) if target_uri else target_backend(target_name)
    fast = mongomock_id_fast_path() if target_name == "mongomock" else contextlib.nullcontext()
    clock = time.perf_counter()
    with started(src) as started_source:
        result.timings["start_source_s"] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        with started(tgt) as started_target, tempfile.TemporaryDirectory() as export_dir, fast:
            result.timings["start_target_s"] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            outcome = _run_kind(scenario, started_source, started_target, chosen_seed,
                                Path(export_dir))
            result.timings["migration_s"] = round(time.perf_counter() - clock, 3)
    result.table = outcome.details.get("table", "")
    result.workload = {"items": outcome.items, "live_writes": dict(outcome.writer)}
    result.outcomes.append(HandlerOutcome(
        handler="replicator", expectation=scenario.expectation("replicator"), diff=outcome.diff,
        lag=LagStats(), driver={}, collection=outcome.details.get("collection", "")))
    result.checks["verify"] = outcome.verify_ok
    if scenario.kind == "initial-sync":
        result.checks["no_regression_after_handover"] = outcome.regressions == 0
    result.details = {
        "kind": scenario.kind,
        **({"method": options.get("method", "re-copy")} if scenario.kind == "gap-recovery"
           else {}),
        "killed_at": list(outcome.killed_at) if outcome.killed_at else None,
        "resumed_segments": outcome.resumed_segments,
        "segments_already_done": outcome.segments_already_done,
        "regressions": outcome.regressions,
        **{k: v for k, v in outcome.details.items() if k not in ("diff", "table", "collection")},
    }
    return result


def _sizes(options: dict[str, Any]) -> tuple[int, int, int]:
    """items, segments, page size of a ``[migration]`` table (the steps' defaults)."""
    return (int(options.get("items", 300)), int(options.get("segments", 4)),
            int(options.get("page_size", 50)))


def kill_point(options: dict[str, Any]) -> tuple[int, int] | None:
    """The ``(segment, page)`` after which the copy is killed: ``kill_at``, or one drawn from
    ``kill_random`` (a seed) among the pages a segment has; None without either. Raises
    ValueError for a segment the copy does not have."""
    items, segments, page_size = _sizes(options)
    kill: tuple[int, int] | None = None
    if "kill_at" in options:
        kill = (int(options["kill_at"][0]), int(options["kill_at"][1]))
    elif "kill_random" in options:
        rng = random.Random(int(options["kill_random"]))
        pages = max(1, items // segments // page_size)
        kill = (rng.randrange(segments), rng.randint(1, pages))
    if kill is not None and kill[0] >= segments:
        raise ValueError(f"migration.kill_at segment {kill[0]} is not one of the {segments} "
                         f"segments (0-{segments - 1})")
    return kill


def _run_kind(scenario: Scenario, src: Any, tgt: Any, seed: int,
              export_dir: Path) -> ScenarioResult:
    options = scenario.migration
    # A fresh table and collection per run: a URI target keeps what an earlier run left.
    name = f"{scenario.name}-{uuid.uuid4().hex[:8]}"
    items, segments, page_size = _sizes(options)
    kill = kill_point(options)
    if scenario.kind == "initial-sync":
        return initial_sync(src, tgt, items=items, segments=segments, page_size=page_size,
                            kill_at=kill, seed=seed, name=name,
                            writes_per_page=int(options.get("writes_per_page", 6)),
                            follow=bool(options.get("follow", False)))
    return gap_recovery(src, tgt, items=items, method=str(options.get("method", "re-copy")),
                        export_dir=export_dir, segments=segments, page_size=page_size,
                        seed=seed, kill_at=kill, name=name,
                        gap_writes=int(options.get("gap_writes", max(60, items // 20))),
                        retained_writes=int(options.get("retained_writes",
                                                        max(30, items // 40))))


# -- a faster embedded target ------------------------------------------------------------------------
@contextmanager
def mongomock_id_fast_path() -> Iterator[None]:
    """mongomock looks up an ``_id`` equality filter by scanning every document (measured on
    mongomock 4.3.0: ~60 upserts/s at 10k documents), which makes a 20,000-item copy quadratic. Inside this
    context a filter with an ``_id`` equality reads that one document from mongomock's own
    ``_id``-keyed store and applies the rest of the filter to it: the same answers, O(1) per
    operation. Only for the migration scenarios and benchmarks (not a target of the harness)."""
    from mongomock import collection as module
    from mongomock import helpers
    from mongomock.filtering import filter_applies

    # mongomock is untyped: its names are Any here
    hashdict: Callable[[Any], Any] = helpers.hashdict
    applies: Callable[[Any, Any], bool] = filter_applies
    collection_class: Any = module.Collection
    original: Callable[[Any, Any], Any] = collection_class._iter_documents

    def _iter_documents(self: Any, filter: Any) -> Any:
        if isinstance(filter, dict) and "_id" in filter:
            wanted = filter["_id"]
            operators = isinstance(wanted, dict) and any(str(k).startswith("$") for k in wanted)
            if not operators:
                key = hashdict(wanted) if isinstance(wanted, dict) else wanted
                try:
                    found = self._store[key] if key in self._store else None  # noqa: SIM401 - a store, no .get
                except TypeError:  # unhashable _id: mongomock's own way
                    return original(self, filter)
                return iter([found] if found is not None and applies(filter, found)
                            else [])
        return original(self, filter)

    collection_class._iter_documents = _iter_documents
    try:
        yield
    finally:
        collection_class._iter_documents = original

