"""Drive a schedule's records through the Lambda event-source-mapping emulation with faults.

Concurrency is real: with ParallelizationFactor N the driver runs up to N batches of a shard at
once, in threads. It stays reproducible because no random choice depends on thread timing: every
invocation draws from its own generator, seeded by the plan's seed, the batch's first sequence
number and how often that batch was delivered; the fault wrapper of the collection draws from the
generator of the invocation whose thread calls it (:class:`PerInvocationRandom`); the side
collections' wrappers (tombstones, quarantine, archive) draw from generators of their own derived
from the same invocation, so they shift none of the main draws. Lanes hold disjoint partition keys,
so the end state does not depend on how their threads interleave. The per-delivery check
(:class:`harness.invariants.DeliveryChecker`) reads the collection after every delivery of every
lane.

Overlapping deliveries, made deterministic with gates (:class:`threading.Event`):

- *overlap* (a Lambda timeout whose writes are still in flight): the invocation starts
  ``Replicator.process`` in a background thread and raises ``TimeoutError`` at once; that thread's
  main-collection bulk waits at a gate, and the process "dies" right after it (no re-check, as a
  killed sandbox runs nothing more). The gate opens at the plan's point (``Shape.overlap_release``),
  always after the invocation's timeout; the emulated server then aborts the bulk (MaxTimeMSExpired)
  when it carries the invocation's deadline (replicator.deadline), and applies it when it has none
  (the planted bug ``no_deadline``, which is also what a command the server reads only late does).
- *concurrent retry*: an earlier batch of the lane is processed beside the current one, held
  between its tombstone probe and its upsert until the current batch finished -- the
  ``tombstone-probe-race`` case -- and then completes normally (its re-check runs).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import ExecutionTimeout, PyMongoError

from harness.backends.base import TableSpec
from harness.chaos.shape import Shape, ShardLayout
from harness.esm.config import EsmConfig
from harness.esm.lambda_context import MAX_TIMEOUT_S, LambdaContext
from harness.esm.mapping import EventSourceMapping
from harness.esm.response import lane_for
from harness.faults import (
    BulkWriteShim,
    FaultLog,
    FaultPlan,
    FaultyCollection,
    corrupt_record,
    faulty_sides,
)
from harness.invariants import DeliveryChecker
from harness.lane import ItemsReader, Lane
from replicator import deadline
from replicator.core import Replicator
from replicator.errors import ReplicationError
from replicator.settings import Settings

_current = threading.local()
#: a held write waits at most this long for its gate (a bug in the gates, not a timing assumption)
GATE_TIMEOUT_S = 120.0
#: retries of an extra delivery (late or concurrent) before the harness counts it as given up
MAX_EXTRA_ATTEMPTS = 100


def _begin_invocation(rng: random.Random, label: str) -> None:
    """Make ``rng`` the generator of the invocation running in this thread; ``label`` seeds the
    generators of its named streams (see PerInvocationRandom)."""
    _current.rng = rng
    _current.label = label
    _current.streams = {}


def _end_invocation() -> None:
    _current.rng = None
    _current.streams = {}


class PerInvocationRandom(random.Random):
    """Draws from the generator of the invocation running in this thread (else a fallback).

    With a ``stream`` name it draws from that invocation's generator of that name instead (made
    on first use, seeded by the invocation and the name): a wrapper that draws on every call
    whatever its rates (the side collections') must not shift the invocation's main draws."""

    def __init__(self, fallback_seed: int | str, stream: str | None = None) -> None:
        self._fallback = random.Random(fallback_seed)
        self._stream = stream
        super().__init__(fallback_seed)

    def _rng(self) -> random.Random:
        rng = getattr(_current, "rng", None)
        if not isinstance(rng, random.Random):
            return self._fallback
        if self._stream is None:
            return rng
        streams: dict[str, random.Random] = _current.streams
        found = streams.get(self._stream)
        if found is None:
            found = streams[self._stream] = random.Random(f"{_current.label}:{self._stream}")
        return found

    def random(self) -> float:
        return self._rng().random()

    def getrandbits(self, k: int) -> int:
        return self._rng().getrandbits(k)


class Killed(BaseException):
    """The sandbox of a timed-out invocation is gone: nothing after its in-flight write runs.
    A BaseException so that no ``except Exception`` in the core turns it into a retry."""


@dataclass
class _Held:
    gate: threading.Event
    thread: threading.Thread
    release: str
    #: lane invocations to wait for before "after_later_batches" opens the gate
    remaining: int = 1


class GatedCollection:
    """The main collection, whose bulk writes wait at the gate of the thread they run in."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: Any, *args: Any, **kwargs: Any) -> Any:
        before = getattr(_current, "before_write", None)
        if before is not None:
            _current.before_write = None
            before()
        gate = getattr(_current, "gate", None)
        if gate is None:
            return self.inner.bulk_write(requests, *args, **kwargs)
        _current.gate = None
        # What the command carries as maxTimeMS, read when the bulk is called, in the
        # invocation's thread (replicator.deadline); as a moment on the monotonic clock.
        left = deadline.remaining()
        sent_deadline = None if left is None else time.monotonic() + left
        arrived = getattr(_current, "arrived", None)
        if arrived is not None:
            arrived.set()
        gate.wait(GATE_TIMEOUT_S)
        killed = getattr(_current, "killed_after_write", False)
        try:
            context = getattr(_current, "context", None)
            if killed and sent_deadline is not None and isinstance(context, LambdaContext) \
                    and sent_deadline <= context.ends_at:
                # The emulated server: a killed invocation's bulk released now runs after the
                # invocation's timeout (that is what "killed" means), so after a maxTimeMS that
                # ended by then: the server interrupts it, nothing of it is applied
                # (MaxTimeMSExpired; docs/write-errors.md, "A killed invocation's late bulk").
                raise ExecutionTimeout("operation exceeded time limit (emulated: the invocation "
                                       "timed out before the server ran its bulk)", 50,
                                       {"ok": 0, "code": 50, "codeName": "MaxTimeMSExpired"})
            return self.inner.bulk_write(requests, *args, **kwargs)
        finally:
            if killed:
                raise Killed()


class FaultyHandler:
    """Wraps ``Replicator.handle`` with the handler-side faults of a plan and a shape.

    Duplicate delivery (the same event twice), a late retry (an old event of the lane delivered
    again after later ones were applied), corrupted copies of records injected into the event, a
    handler timeout (the writes happen, then the invocation dies, so Lambda retries the batch),
    and the overlapping deliveries described in the module docstring.

    A corrupted copy stays in the stream: a redelivery of its original (say its quarantine write
    failed, so the batch is retried) carries it again, and the copies made of it with it.
    """

    def __init__(self, replicator: Replicator, plan: FaultPlan, rng: random.Random,
                 log: FaultLog, *, shape: Shape | None = None,
                 partition_key: str | None = None,
                 shard_of: Mapping[str, str] | None = None) -> None:
        self.replicator = replicator
        self.plan = plan
        self.rng = rng  # unused with lanes: kept for callers that pass one
        self.log = log
        self.shape = shape or Shape()
        self.partition_key = partition_key
        self.shard_of = dict(shard_of or {})
        self.history: dict[Any, list[dict[str, Any]]] = {}
        self.corrupted: list[dict[str, Any]] = []
        #: original eventID -> the corrupted copies made of it
        self.sticky: dict[str, list[Any]] = {}
        self._deliveries: dict[str, int] = {}
        self._held: dict[Any, list[_Held]] = {}
        self._lock = threading.Lock()

    def shard_lane(self, records: list[Any]) -> Any:
        """The (shard id, ParallelizationFactor slot) a batch of ``records`` was delivered in."""
        if not records:
            return None
        kinesis = records[0].get("kinesis") if isinstance(records[0], Mapping) else None
        if isinstance(kinesis, Mapping):  # eventID: "<shard id>:<sequence number>"
            return (str(records[0].get("eventID", "")).split(":")[0],
                    lane_for({"PartitionKey": kinesis.get("partitionKey")},
                             self.shape.parallelization_factor))
        first = records[0].get("dynamodb", {})
        return (self.shard_of.get(str(first.get("SequenceNumber"))),
                lane_for(first.get("Keys") or {}, self.shape.parallelization_factor,
                         self.partition_key))

    def __call__(self, event: dict[str, Any]) -> Any:
        plan = self.plan
        records = list(event["Records"])
        first = _identity(records[0]) if records else ""
        lane = self.shard_lane(records)
        with self._lock:
            delivery = self._deliveries[first] = self._deliveries.get(first, 0) + 1
            history = self.history.setdefault(lane, [])
            held = self._held.setdefault(lane, [])
        label = f"{plan.seed}:{first}:{delivery}"
        rng = random.Random(label)
        _begin_invocation(rng, label)
        try:
            return self._invoke(event, records, rng, history, held)
        finally:
            _end_invocation()
            _current.before_write = None

    def _invoke(self, event: dict[str, Any], records: list[Any], rng: random.Random,
                history: list[dict[str, Any]], held: list[_Held]) -> Any:
        plan, shape = self.plan, self.shape
        if history and rng.random() < plan.late_retry_rate:
            self.log.count("late_retry")
            self._until_settled(rng.choice(history))
        with self._lock:
            records = [r for original in records for r in self._with_copies(original)]
        if records and rng.random() < plan.malformed_rate:
            original = rng.choice([r for r in records if isinstance(r, dict)] or records)
            kind, bad = corrupt_record(original, rng)
            self.log.count(f"malformed:{kind}")
            with self._lock:
                self.corrupted.append({"kind": kind, "record": bad})
                if isinstance(original, dict):
                    self.sticky.setdefault(_event_id(original), []).append(bad)
            records.insert(rng.randrange(len(records) + 1), bad)
        delivered = {"Records": records}
        if records and rng.random() < shape.overlap_rate:
            self.log.count(f"overlap:{shape.overlap_release}")
            held.append(self._start_held(delivered, rng, kill=True, release=shape.overlap_release))
            raise TimeoutError("Task timed out (injected; its writes are still in flight)")
        concurrent = None
        if history and rng.random() < shape.concurrent_retry_rate:
            self.log.count("concurrent_retry")
            concurrent = self._start_held(rng.choice(_sharing_keys(history, records)), rng,
                                          kill=False, release="now")
        during = [h for h in held if h.release == "during_retry"]
        if during:
            # The doomed bulk reaches the server between this retry's probe and its write.
            _current.before_write = lambda: _open(during)
        response = self.replicator.handle(delivered)
        _open(during)
        if concurrent is not None:
            _open([concurrent])
        history.append({"Records": list(event["Records"])})
        if rng.random() < plan.duplicate_delivery_rate:
            self.log.count("duplicate_delivery")
            response = self.replicator.handle(delivered)
        ready = [h for h in held if h.release == "after_retry"]
        for late in (h for h in held if h.release == "after_later_batches"):
            late.remaining -= 1
            if late.remaining < 0:
                ready.append(late)
        _open(ready)
        held[:] = [h for h in held if h.thread.is_alive() or not h.gate.is_set()]
        if rng.random() < plan.handler_timeout_rate:
            self.log.count("handler_timeout")
            raise TimeoutError("Task timed out (injected)")
        return response

    def _with_copies(self, record: Any) -> list[Any]:
        """``record`` and, after it, the corrupted copies made of it (recursively). The caller
        holds self._lock."""
        copies = self.sticky.get(_event_id(record), []) if isinstance(record, dict) else []
        return [record, *(r for bad in copies for r in self._with_copies(bad))]

    def _start_held(self, event: dict[str, Any], rng: random.Random, *, kill: bool,
                    release: str) -> _Held:
        gate = threading.Event()
        arrived = threading.Event()
        seed = rng.getrandbits(32)

        # A timed-out invocation had Lambda's context: its MongoDB commands carry its deadline,
        # unless the planted bug "no_deadline" drops the context. A fixed 900 s (AWS's maximum)
        # timeout: the real time a gate holds never comes near it, so only the emulated server
        # decides what becomes of the held bulk.
        context = LambdaContext(MAX_TIMEOUT_S) if "no_deadline" not in self.shape.plants else None

        def run() -> None:
            _begin_invocation(random.Random(seed), f"held:{seed}")
            _current.gate = gate
            _current.arrived = arrived
            _current.killed_after_write = kill
            _current.context = context if kill else None
            try:
                if kill:
                    self.replicator.handle(event, context)
                else:
                    self._until_settled(event)
            except Killed:
                pass
            except (ReplicationError, PyMongoError):
                # Only a killed invocation gets here (_until_settled retries errors): its
                # sandbox is gone and Lambda already counted it timed out, so its error (say a
                # corrupted record it could not quarantine fails the batch) reaches no one.
                pass
            finally:
                arrived.set()  # also when it never reached its main write

        thread = threading.Thread(target=run, name="held-delivery", daemon=True)
        thread.start()
        # Its tombstone probe has run (or it has ended) before this invocation goes on: the
        # interleaving is fixed, not left to the thread scheduler.
        arrived.wait(GATE_TIMEOUT_S)
        # "after_later_batches": the next delivery is the retry, then one later batch
        return _Held(gate, thread, release, remaining=1)

    def _until_settled(self, event: dict[str, Any]) -> None:
        """Process an extra delivery the way Lambda would retry it: from its lowest failed record,
        until none fails (an extra delivery is an invocation too; ignoring its failures would
        leave what its own retry cleans up, e.g. an insert its lost acknowledgement hid from the
        post-insert re-check)."""
        records = list(event["Records"])
        for _ in range(MAX_EXTRA_ATTEMPTS):
            try:
                failed = self.replicator.process({"Records": records}).failed_sequence_numbers
            except (ReplicationError, PyMongoError):
                continue  # a function error (the batch failed whole): Lambda retries all of it
            if not failed:
                return
            lowest = int(failed[0])
            records = [r for r in records if (_sequence(r) or lowest) >= lowest]
        self.log.count("extra_delivery_gave_up")

    def release_all(self) -> None:
        """Open every gate still closed (the end of the run: everything in flight lands)."""
        with self._lock:
            pending = [h for held in self._held.values() for h in held]
        _open(pending)


def _event_id(record: Any) -> str:
    """A record's eventID ("" for one that is not an object)."""
    return str(record.get("eventID", "")) if isinstance(record, dict) else ""


def _identity(record: Any) -> str:
    """A delivered record's identity: a Kinesis record's eventID (its sequence number is only
    unique within its shard), else its DynamoDB sequence number."""
    if isinstance(record, Mapping) and isinstance(record.get("kinesis"), Mapping):
        return str(record.get("eventID"))
    return str(record.get("dynamodb", {}).get("SequenceNumber")) if isinstance(record, Mapping) \
        else ""


def arrival_order(handler: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """The planted bug ``arrival_order``: each Kinesis record's change carries its arrival in the
    data stream (``approximateArrivalTimestamp``, in microseconds) as its
    ApproximateCreationDateTime -- a replicator that orders by arrival, not by when the change
    was made."""
    import base64
    import json

    def restamped(event: dict[str, Any]) -> Any:
        records = []
        for record in event["Records"]:
            kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
            if isinstance(kinesis, Mapping):
                change = json.loads(base64.b64decode(kinesis["data"]))
                change["dynamodb"]["ApproximateCreationDateTime"] = int(
                    float(kinesis["approximateArrivalTimestamp"]) * 1_000_000)
                change["dynamodb"]["ApproximateCreationDateTimePrecision"] = "MICROSECOND"
                data = base64.b64encode(json.dumps(change).encode()).decode()
                record = {**record, "kinesis": {**kinesis, "data": data}}
            records.append(record)
        return handler({**event, "Records": records})

    return restamped


def _sequence(record: Any) -> int | None:
    try:
        return int(record["dynamodb"]["SequenceNumber"])
    except (KeyError, TypeError, ValueError):
        return None


def _sharing_keys(history: list[dict[str, Any]], records: list[Any]) -> list[dict[str, Any]]:
    """The earlier batches that touch a key of this one (the ones whose overlap can matter),
    else all of them."""
    keys = {_key_text(r) for r in records}
    sharing = [e for e in history if any(_key_text(r) in keys for r in e["Records"])]
    return sharing or history


def _key_text(record: Any) -> str:
    from harness.kinesis import keys_of

    keys = keys_of(record) if isinstance(record, Mapping) else None
    return repr(sorted(keys.items())) if keys is not None else ""


def _open(held: list[_Held]) -> None:
    for h in held:
        h.gate.set()
        h.thread.join(GATE_TIMEOUT_S)


@dataclass
class FaultyDrive:
    """What one drive of a schedule's records through the faults left behind."""

    collection: Any
    database: Any
    report: Any
    handler: FaultyHandler
    log: FaultLog
    #: the per-delivery check (regressions, resurrections)
    checker: DeliveryChecker | None = None
    #: the lane the records were driven through (its planner judges the end state)
    lane: Lane | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def esm_config_for(plan: FaultPlan, shape: Shape | None = None) -> EsmConfig:
    """The event source mapping a schedule runs with (kept in its recording)."""
    return EsmConfig(batch_size=plan.max_batch, report_batch_item_failures=True,
                     maximum_retry_attempts=500, bisect_batch_on_function_error=False,
                     parallelization_factor=(shape or Shape()).parallelization_factor)


class ChildrenFirst(EventSourceMapping):
    """A broken ESM (planted bug ``children_first``): a parent shard waits for its children."""

    def _blocked(self, shard: Any) -> bool:
        children = [s for s in self._shards.values() if s.parent == shard.shard_id]
        return any(lane.busy for child in children for lane in child.lanes)


def drive_with_faults(
    shards: ShardLayout,
    spec: TableSpec,
    stream_arn: str,
    plan: FaultPlan,
    *,
    guard: bool = True,
    esm: Any = None,
    shape: Shape | None = None,
    database: Any = None,
    items: list[dict[str, Any]] | None = None,
) -> FaultyDrive:
    """Deliver ``(shard_id, parent, records)`` through the ESM emulation into ``database`` (a
    fresh mongomock one by default), with the plan's faults and the shape's concurrency. Every
    random choice comes from generators seeded by ``plan.seed`` -- which is why a recording
    replays into the same divergence. ``items`` (the source's items) serve read-back streams."""
    shape = shape or Shape()
    if database is None:
        from harness.backends.mongomock_target import mongomock_client

        database = mongomock_client()["chaos"]
        main: Any = BulkWriteShim(database["items"])
    else:
        main = database["items"]
    collection = database["items"]
    log = FaultLog()
    faulty = FaultyCollection(main, plan, log, PerInvocationRandom(plan.seed + 1))
    settings = Settings(key_schema=spec.key_schema, guard=guard,
                        ttl_deletes=shape.ttl_deletes,  # type: ignore[arg-type]
                        tombstones="no_tombstones" not in shape.plants,
                        write_mode=shape.write_mode)  # type: ignore[arg-type]
    reader = ItemsReader(items or [], spec.key_schema) if items is not None else None
    # The side collections fail too; each draws from its own stream of the invocation.
    sides = faulty_sides(database, plan, log, rng_for=lambda role: PerInvocationRandom(
        f"{role}:{plan.seed}", stream=role))
    replicator = Replicator(GatedCollection(faulty), settings, item_reader=reader, **sides)
    if "no_recheck" in shape.plants:
        replicator._undo_resurrections = lambda *args: set()  # type: ignore[method-assign]
    shard_of = {_identity(r): shard_id for shard_id, _, records in shards for r in records}
    handler = FaultyHandler(replicator, plan, random.Random(plan.seed + 2), log, shape=shape,
                            partition_key=spec.partition_key[0], shard_of=shard_of)
    # The lane: the faulty handler under test, the settings' planner, the mapping (a broken one
    # for the planted bug children_first).
    lane = Lane(
        lambda event, _context: handler(event), collection, settings, name="replicator",
        esm=esm or esm_config_for(plan, shape), item_reader=reader, stream_arn=stream_arn,
        partition_key=spec.partition_key[0],
        mapping_type=ChildrenFirst if "children_first" in shape.plants else EventSourceMapping,
    )
    # After every delivery of every shard lane, and before a rollback takes acknowledged writes
    # back.
    checker = DeliveryChecker(collection, lane.planner, log,
                              lane_of=lambda event: handler.shard_lane(list(event["Records"])))
    log.observer = checker.observe
    lane.wrap(checker.wrap)
    if "arrival_order" in shape.plants:
        lane.wrap(arrival_order)
    try:
        for shard_id, parent, records in shards:
            lane.feed(shard_id, records, parent_shard_id=parent)
        report = lane.drain()
    finally:
        handler.release_all()
        lane.close()
    return FaultyDrive(collection, database, report, handler, log, checker, lane)
