"""Benchmark of the replicator core against its baselines, all measured in ONE run on one machine.

    python benchmarks/bench_core.py [--quick] [--json out.json] [--reps N]

Every figure is reported as a ratio against a baseline measured in the same run (interleaved
repetitions, median of N), so the machine's speed cancels out. Four measures (see BENCHMARKS.md):

(a) conversion items/s of ``replicator.convert.Converter().image`` on the type-zoo fixture items
    against boto3's ``TypeDeserializer`` and dynamodb-json's ``json_util.loads``, with a no-loss
    check of every number (target: ours >= 3x boto3 on equal input);
(b) CPU time (``time.process_time``) per event of parse + convert + plan against the original
    design's per-event work (lossy conversion + ``{"$set": doc}``), no I/O (target: >= 3x less);
(c) MongoDB round trips per 1,000-record batch, counted on the collection (target: 1 vs 1,000);
(d) events/s into mongomock, end to end (no target: mongomock hides the round-trip gain).

This is a script, not a test: it asserts nothing, it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _path in (str(ROOT), str(HERE)):  # the project, and this folder's sibling scripts
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_common import (  # noqa: E402
    interleaved,
    machine_info,
    median,
    synthetic_item,
)
from bench_conversion import TYPE_ZOO_DIRS, bench_conversion  # noqa: E402,F401 (re-exported)
from bench_core_report import (  # noqa: E402
    TARGETS,
    print_report,
    summary_rows,
)
from pymongo.operations import DeleteOne, UpdateOne  # noqa: E402

import replicator.accelerator  # noqa: E402
from harness.baselines.original import OriginalHandler, lossy_image  # noqa: E402
from replicator import Replicator, Settings  # noqa: E402
from replicator.events import parse_records  # noqa: E402
from replicator.plan import Planner  # noqa: E402

# -- (b) synthetic stream batches ----------------------------------------------------------------

TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/2024-01-01T00:00:00.000"


def synthetic_event(records: int, keys: int, seed: int, *, distinct: bool = False) -> dict[str, Any]:
    """A Lambda event of ``records`` records (NEW_AND_OLD_IMAGES) over ``keys`` keys.

    A key's first change is an INSERT, then MODIFY (80%) or REMOVE (20%), and a removed key
    starts again with an INSERT, so the stream is one a table could have produced. Sequence
    numbers grow; ApproximateCreationDateTime is whole seconds (as DynamoDB Streams gives it) at
    about 200 records per second. ``distinct``: record i writes key i (nothing to coalesce).
    """
    rng = random.Random(seed)
    names = [f"user#{i:06d}" for i in range(keys)]
    live: dict[str, dict[str, Any]] = {}
    out = []
    sequence = 4_000_000_000_000_000_000
    for i in range(records):
        key = names[i % keys] if distinct else rng.choice(names)
        sequence += rng.randint(1, 5_000)
        if key not in live:
            event_name, new, old = "INSERT", synthetic_item(rng, key), None
        elif rng.random() < 0.2:
            event_name, new, old = "REMOVE", None, live[key]
        else:
            event_name, new, old = "MODIFY", synthetic_item(rng, key), live[key]
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": 1_700_000_000 + i // 200,
            "Keys": {"id": {"S": key}},
            "SequenceNumber": str(sequence),
            "SizeBytes": 310,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new is not None:
            body["NewImage"] = new
            live[key] = new
        if old is not None:
            body["OldImage"] = old
        if event_name == "REMOVE":
            del live[key]
        out.append({
            "eventID": f"{i:08x}{rng.getrandbits(64):016x}",
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": body,
            "eventSourceARN": TABLE_ARN,
        })
    return {"Records": out}


def baseline_work(event: Mapping[str, Any]) -> list[Any]:
    """OriginalHandler._apply without the I/O: per record, the lossy conversion of its Keys (for
    ``_id``) and NewImage, then the write it sends, validated as pymongo's ``update_one`` and
    ``delete_one`` validate it before any I/O (the same checks as ``UpdateOne``/``DeleteOne``, which
    the core's plan builds too): ``UpdateOne({_id}, {"$set": doc}, upsert=True)`` or
    ``DeleteOne({_id})``."""
    out: list[Any] = []
    for record in event["Records"]:
        body = record["dynamodb"]
        keys = lossy_image(body["Keys"])
        document_id = keys.get("id", next(iter(keys.values())))
        if record["eventName"] in ("INSERT", "MODIFY"):
            document = lossy_image(body["NewImage"])
            document["_id"] = document_id
            out.append(UpdateOne({"_id": document_id}, {"$set": document}, upsert=True))
        elif record["eventName"] == "REMOVE":
            out.append(DeleteOne({"_id": document_id}))
    return out


def planning_replicator() -> Replicator:
    """A Replicator on a stub collection, for its ``plan(event)``: the core's work per batch as
    the product does it (the C accelerator's one pass, or parse + plan in Python), no I/O."""
    return Replicator(StubDatabase(Counter())["items"])


def bench_cpu(reps: int, batches_per_rep: int) -> dict[str, Any]:
    planning = planning_replicator()
    planner = planning.planner
    pure_planner = Planner(Settings())  # no C accelerator handed in: pure Python
    accelerated = replicator.accelerator.native is not None
    workloads = {
        "mixed (1,000 records over 300 keys)": synthetic_event(1000, 300, seed=20240601),
        "no coalescing (1,000 records over 1,000 keys)": synthetic_event(
            1000, 1000, seed=20240602, distinct=True
        ),
    }
    results: dict[str, Any] = {}
    for label, event in workloads.items():
        def core(event: dict[str, Any] = event) -> None:
            for _ in range(batches_per_rep):
                planning.plan(event)

        def core_two_steps(event: dict[str, Any] = event) -> None:
            for _ in range(batches_per_rep):
                changes, bad = parse_records(event, native=planning.native)
                planner.plan(changes, bad)

        def core_pure(event: dict[str, Any] = event) -> None:
            for _ in range(batches_per_rep):
                changes, bad = parse_records(event)
                pure_planner.plan(changes, bad)

        def baseline(event: dict[str, Any] = event) -> None:
            for _ in range(batches_per_rep):
                baseline_work(event)

        contenders = {"core": core, "baseline": baseline}
        if accelerated:
            contenders["core, parse then plan"] = core_two_steps
            contenders["core, pure Python"] = core_pure
        times = interleaved(contenders, reps, time.process_time)
        per_event = {
            name: median(t) / (batches_per_rep * len(event["Records"])) for name, t in times.items()
        }
        plan = planning.plan(event)
        assert plan == pure_planner.plan(*parse_records(event))
        kinds = Counter(r["eventName"] for r in event["Records"])
        results[label] = {
            "records": len(event["Records"]),
            "events": dict(kinds),
            "distinct_keys": len({r["dynamodb"]["Keys"]["id"]["S"] for r in event["Records"]}),
            "planned_writes": len(plan.writes),
            "bad_records": len(plan.bad_records),
            "cpu_us_per_event": {name: v * 1e6 for name, v in per_event.items()},
            "ratio": per_event["baseline"] / per_event["core"],
            "one_pass_c_plan": planner.plan_records(event["Records"]) is not None,
            "ratio_parse_then_plan": (
                per_event["baseline"] / per_event["core, parse then plan"] if accelerated else None
            ),
            "ratio_pure_python": (
                per_event["baseline"] / per_event["core, pure Python"] if accelerated else None
            ),
        }
    return results


# -- (c) round trips -----------------------------------------------------------------------------

WRITE_METHODS = (
    "bulk_write", "insert_one", "insert_many", "update_one", "update_many", "replace_one",
    "delete_one", "delete_many", "find_one_and_update", "find_one_and_replace", "find_one_and_delete",
)
READ_METHODS = ("find", "find_one", "count_documents", "aggregate")
OTHER_METHODS = ("create_index", "index_information")


def count_calls(collection: Any, counter: Counter[tuple[str, str]]) -> Any:
    """The counting proxy: wraps the collection's methods on the instance, so every call made to
    the server (or its stand-in) is counted, while ``type(collection)`` stays what it is. A call
    made from inside another counted call (the mongomock adapter's own reads) is not a round trip:
    not counted.
    Returns the collection."""
    depth = [0]

    def wrap(method: str, bound: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if depth[0] == 0:
                counter[(collection.name, method)] += 1
            depth[0] += 1
            try:
                return bound(*args, **kwargs)
            finally:
                depth[0] -= 1

        return counted

    for method in WRITE_METHODS + READ_METHODS + OTHER_METHODS:
        if getattr(type(collection), method, None) is not None:
            setattr(collection, method, wrap(method, getattr(collection, method)))
    return collection


class StubBulkResult:
    """Enough of pymongo's BulkWriteResult for apply.py and tombstones.py: nothing matched an
    existing document, every upsert inserted (the state of a first batch on an empty target)."""

    def __init__(self, operations: list[Any]) -> None:
        self.upserted_count = sum(1 for op in operations if getattr(op, "_upsert", False))
        self.matched_count = 0
        self.modified_count = 0
        self.deleted_count = 0
        self.inserted_count = 0
        self.acknowledged = True


class StubCollection:
    """A pymongo-like collection that records requests and does no I/O: apply.write sends one
    ``bulk_write`` per collection."""

    def __init__(self, name: str, database: StubDatabase) -> None:
        self.name = name
        self.database = database
        self.requests: list[Any] = []

    def bulk_write(self, requests: list[Any], ordered: bool = True, **_: Any) -> StubBulkResult:
        self.requests.extend(requests)
        return StubBulkResult(list(requests))

    def update_one(self, filter: Any, update: Any, upsert: bool = False, **_: Any) -> None:
        self.requests.append(("update_one", filter))

    def replace_one(self, filter: Any, replacement: Any, upsert: bool = False, **_: Any) -> None:
        self.requests.append(("replace_one", filter))

    def delete_one(self, filter: Any, **_: Any) -> None:
        self.requests.append(("delete_one", filter))

    def insert_one(self, document: Any, **_: Any) -> None:
        self.requests.append(("insert_one", document))

    def find(self, *_: Any, **__: Any) -> Iterable[Any]:
        return iter(())

    def create_index(self, *_: Any, **__: Any) -> str:
        return "index"

    def index_information(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {}  # an empty target: the tombstone store creates its TTL index


class StubDatabase:
    """No ``client``: OriginalHandler's ``start_session()`` fails and it goes on without a session,
    as it does on any target without sessions."""

    def __init__(self, counter: Counter[tuple[str, str]]) -> None:
        self.counter = counter
        self.collections: dict[str, StubCollection] = {}

    def __getitem__(self, name: str) -> StubCollection:
        if name not in self.collections:
            self.collections[name] = count_calls(StubCollection(name, self), self.counter)
        return self.collections[name]


def summarize_calls(counter: Counter[tuple[str, str]], main: str) -> dict[str, Any]:
    writes = {f"{c}.{m}": n for (c, m), n in sorted(counter.items()) if m in WRITE_METHODS}
    other = {f"{c}.{m}": n for (c, m), n in sorted(counter.items()) if m not in WRITE_METHODS}
    return {
        "main_collection_writes": sum(n for (c, m), n in counter.items() if c == main and m in WRITE_METHODS),
        "all_writes": sum(n for (_, m), n in counter.items() if m in WRITE_METHODS),
        "reads": sum(n for (_, m), n in counter.items() if m in READ_METHODS),
        "setup": sum(n for (_, m), n in counter.items() if m in OTHER_METHODS),
        "calls": writes | other,
    }


def bench_round_trips() -> dict[str, Any]:
    from harness.backends.mongomock_target import mongomock_client

    event = synthetic_event(1000, 300, seed=20240601)
    results: dict[str, Any] = {"records": len(event["Records"])}

    def core_on(target: str, settings: Settings) -> dict[str, Any]:
        counter: Counter[tuple[str, str]] = Counter()
        if target == "stub":
            database: Any = StubDatabase(counter)
            side = {name: database[f"items_{name}"] for name in ("tombstones", "quarantine", "ttl_archive")}
            main = database["items"]
        else:
            database = mongomock_client().bench
            main = count_calls(database["items"], counter)
            side = {name: count_calls(database[f"items_{name}"], counter)
                    for name in ("tombstones", "quarantine", "ttl_archive")}
        replicator = Replicator(main, settings, tombstones=side["tombstones"],
                                quarantine=side["quarantine"], archive=side["ttl_archive"])
        batch = replicator.process(event)
        summary = summarize_calls(counter, "items")
        summary["batch_round_trips"] = batch.round_trips
        summary["applied"] = batch.applied
        return summary

    def baseline_on(target: str) -> dict[str, Any]:
        counter: Counter[tuple[str, str]] = Counter()
        if target == "stub":
            main: Any = StubDatabase(counter)["items"]
        else:
            main = count_calls(mongomock_client().bench["items"], counter)
        handler = OriginalHandler(main)
        handler.handle(event)
        summary = summarize_calls(counter, "items")
        summary["batch_round_trips"] = handler.round_trips
        return summary

    results["core, pymongo-like stub"] = core_on("stub", Settings())
    results["core, pymongo-like stub, tombstones off"] = core_on("stub", Settings(tombstones=False))
    results["core, mongomock"] = core_on("mongomock", Settings())
    results["baseline, pymongo-like stub"] = baseline_on("stub")
    results["baseline, mongomock"] = baseline_on("mongomock")
    return results


# -- (d) end to end into mongomock ---------------------------------------------------------------


def bench_mongomock(reps: int) -> dict[str, Any]:
    from harness.backends.mongomock_target import mongomock_client

    event = synthetic_event(1000, 300, seed=20240601)
    final_ids: dict[str, set[Any]] = {}

    def run(kind: str) -> None:
        collection = mongomock_client().bench["items"]  # fresh each repetition
        handler: Any = Replicator(collection) if kind == "core" else OriginalHandler(collection)
        handler.handle(event)
        final_ids[kind] = {d["_id"] for d in collection.find({}, {"_id": 1})}

    times = interleaved(
        {"core": lambda: run("core"), "baseline": lambda: run("baseline")}, reps, time.perf_counter
    )
    rates = {name: len(event["Records"]) / median(t) for name, t in times.items()}
    return {
        "records": len(event["Records"]),
        "events_per_s": rates,
        "ratio": rates["core"] / rates["baseline"],
        "same_final_ids": final_ids["core"] == final_ids["baseline"],
        "final_documents": len(final_ids["core"]),
    }


# -- profile (--profile) -------------------------------------------------------------------------


def profile_core(batches: int = 20, top: int = 15) -> None:
    """Where the core's CPU goes on the mixed workload: phases by process_time, then cProfile."""
    import cProfile
    import pstats

    planning = planning_replicator()
    planner = planning.planner
    event = synthetic_event(1000, 300, seed=20240601)
    changes, bad = parse_records(event, native=planning.native)
    phases = {
        "core (Replicator.plan)": lambda: planning.plan(event),
        "parse_records": lambda: parse_records(event, native=planning.native),
        "Planner.plan": lambda: planner.plan(changes, bad),
        "baseline_work": lambda: baseline_work(event),
    }
    times = interleaved(phases, batches, time.process_time)
    print("\nprofile: CPU ms per 1,000-record batch (median of "
          f"{batches}): " + ", ".join(f"{k} {median(v) * 1e3:.2f}" for k, v in times.items()))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(batches):
        # the Python planner (the C pass is one call)
        planner.plan(*parse_records(event, native=planning.native))
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one short repetition of each measure, one pass over each input "
                             "(a few seconds: checks the script runs; the figures are rough)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--reps", type=int, help="repetitions per measure (default 7, quick 1)")
    parser.add_argument("--no-wire", action="store_true",
                        help="skip the end-to-end CPU measure against the loopback wire responder")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the core on the (b) workload (phases + cProfile)")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 7)
    started = time.perf_counter()
    results: dict[str, Any] = {
        # quick: one pass over each input. A calibrated repetition lasts min_rep_s for the core,
        # and dynamodb-json is ~100x slower on the realistic items (it tries strptime on every
        # string): even 0.05 s made the quick run take many minutes.
        "conversion": bench_conversion(reps, min_rep_s=0.0 if args.quick else 0.2),
        "cpu": bench_cpu(reps, batches_per_rep=1 if args.quick else 5),
        "round_trips": bench_round_trips(),
        "mongomock": bench_mongomock(reps),
    }
    if not args.no_wire:
        import bench_wire  # same folder; a subprocess responder on 127.0.0.1

        results["end_to_end"] = bench_wire.bench_end_to_end(
            synthetic_event(1000, 300, seed=20240601), reps, batches_per_rep=1 if args.quick else 3
        )
    results["meta"] = {
        "machine": machine_info(),
        "reps": reps,
        "quick": args.quick,
        "elapsed_s": time.perf_counter() - started,
        "targets": TARGETS,
    }
    results["summary"] = [
        dict(zip(("measure", "core", "baseline", "ratio", "target", "met"), row, strict=True))
        for row in summary_rows(results)
    ]
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    if args.profile:
        profile_core()
    return 0


if __name__ == "__main__":
    sys.exit(main())
