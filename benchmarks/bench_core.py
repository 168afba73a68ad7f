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
import base64
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bson  # noqa: E402  (after the sys.path fix, so the script runs from a plain checkout)
from bson.decimal128 import Decimal128  # noqa: E402
from pymongo.operations import DeleteOne, UpdateOne  # noqa: E402

import replicator.accelerator  # noqa: E402
from harness.baselines.original import OriginalHandler, lossy_image  # noqa: E402
from replicator import Replicator, Settings  # noqa: E402
from replicator.convert import Converter  # noqa: E402
from replicator.events import parse_records  # noqa: E402
from replicator.plan import Planner  # noqa: E402

TYPE_ZOO_DIRS = (
    ROOT / "tests" / "fixtures" / "dynamodb-local" / "type_zoo",  # preferred when the repo has it
    ROOT.parent / "shared" / "fixtures" / "dynamodb-local" / "type_zoo",
    Path("/work/shared/fixtures/dynamodb-local/type_zoo"),
)
TARGETS = {"conversion": 3.0, "cpu": 3.0}

# -- small helpers -------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def interleaved(
    contenders: Mapping[str, Callable[[], Any]], reps: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Warm each contender up once, then time ``reps`` rounds A, B, C, A, B, C, ... with ``clock``.

    Interleaving spreads a noisy neighbour over every contender instead of one of them.
    """
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, run in contenders.items():
            gc.collect()
            start = clock()
            run()
            times[name].append(clock() - start)
    return times


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {
            name: package_version(name)
            for name in ("pymongo", "mongomock", "boto3", "botocore", "dynamodb-json", "simplejson", "rich")
        },
    }


# -- (a) conversion ------------------------------------------------------------------------------


def type_zoo_dir() -> Path:
    override = os.environ.get("BENCH_TYPE_ZOO")
    for folder in ((Path(override),) if override else ()) + TYPE_ZOO_DIRS:
        if (folder / "final_items.json").is_file() and (folder / "events.json").is_file():
            return folder
    raise SystemExit(f"type-zoo fixture not found in any of {[str(d) for d in TYPE_ZOO_DIRS]}")


def type_zoo_items(folder: Path) -> list[dict[str, Any]]:
    """The final items and every NewImage of the events: DynamoDB JSON as DynamoDB Local wrote it."""
    items = json.loads((folder / "final_items.json").read_text())
    events = json.loads((folder / "events.json").read_text())
    records = events["Records"] if isinstance(events, Mapping) else events
    items += [r["dynamodb"]["NewImage"] for r in records if "NewImage" in r.get("dynamodb", {})]
    return items


def boto3_image(deserializer: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    # The usual idiom: TypeDeserializer works on one typed value, so map it over the attributes.
    def image(item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: deserializer.deserialize(value) for name, value in item.items()}

    return image


def failing_attributes(image: Callable[[Any], Any], items: list[dict[str, Any]]) -> dict[str, str]:
    """``{attribute: "ExceptionType"}`` of every top-level attribute the converter raises on."""
    failing: dict[str, str] = {}
    for item in items:
        for name, value in item.items():
            try:
                image({name: value})
            except Exception as error:  # boto3 raises TypeError, decimal.Rounded, ...
                failing.setdefault(name, type(error).__name__)
    return failing


def handled(image: Callable[[Any], Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        try:
            image(item)
        except Exception:
            continue
        out.append(item)
    return out


def boto3_ready(value: Any) -> Any:
    """A typed value as boto3 wants it: B/BS as bytes (as get_records returns them), and DynamoDB
    Local's bare ``{}`` for an empty map in a list as ``{"M": {}}``."""
    if not value:
        return {"M": {}}
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(p) for p in payload]}
    if tag == "M":
        return {"M": {k: boto3_ready(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [boto3_ready(v) for v in payload]}
    return {tag: payload}


def number_pairs(typed: Any, converted: Any, sets_sorted: bool) -> Iterable[tuple[str, Any]]:
    """(original N text, converted value) for every number of an attribute, at any depth.

    ``sets_sorted``: the converter returns an NS as a list sorted by value (ours); otherwise an NS
    is paired only when it came back as a set of numbers (compared as multisets by value).
    """
    if not typed:
        return
    ((tag, payload),) = typed.items()
    if tag == "N":
        yield payload, converted
    elif tag == "NS":
        if sets_sorted:
            yield from zip(sorted(payload, key=Decimal), converted, strict=True)
        else:
            yield from zip(sorted(payload, key=Decimal), sorted(converted, key=_as_decimal), strict=True)
    elif tag == "M":
        for name, value in payload.items():
            yield from number_pairs(value, converted[name], sets_sorted)
    elif tag == "L":
        for value, out in zip(payload, converted, strict=True):
            yield from number_pairs(value, out, sets_sorted)


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return Decimal(value)


def exact(text: str, value: Any) -> bool:
    """Does ``value`` hold the number ``text`` exactly?  (Decimal(str(x)) == Decimal(text).)"""
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal128):
        return Decimal(str(value)) == Decimal(text) and value.to_decimal() == Decimal(text)
    if isinstance(value, (int, str, Decimal)):
        return Decimal(str(value)) == Decimal(text)
    if isinstance(value, float):
        return Decimal(value) == Decimal(text)  # the float's exact binary value
    return False


def loss_report(
    items: list[dict[str, Any]], image: Callable[[Any], Any], *, sets_sorted: bool
) -> dict[str, int]:
    """Numbers checked, numbers not exact, numbers left as text by an NS, items with a loss,
    items BSON can encode."""
    report = Counter(numbers=0, inexact=0, ns_left_as_text=0, lossy_items=0, bson_encodable=0)
    for item in items:
        converted = image(item)
        lost = False
        for name, typed in item.items():
            tag = next(iter(typed), None)
            out = converted[name]
            if tag == "NS" and not sets_sorted and all(isinstance(v, str) for v in out):
                report["ns_left_as_text"] += len(out)  # dynamodb-json: NS -> set of str
                lost = True
                continue
            for text, value in number_pairs(typed, out, sets_sorted):
                report["numbers"] += 1
                if not exact(text, value):
                    report["inexact"] += 1
                    lost = True
        report["lossy_items"] += lost
        try:
            bson.encode(converted)
            report["bson_encodable"] += 1
        except Exception:
            pass
    return dict(report)


def bench_conversion(reps: int, min_rep_s: float) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer
    from dynamodb_json import json_util

    folder = type_zoo_dir()
    items = type_zoo_items(folder)
    ours = Converter().image
    pure = Converter(accelerate=False).image  # context: the same converter without the C part
    accelerated = replicator.accelerator.native is not None
    boto3 = boto3_image(TypeDeserializer())

    def ddb_json(item: Mapping[str, Any]) -> Any:
        return json_util.loads(item)  # takes the dict; json.dumps()es it and loads it back

    boto3_failing = failing_attributes(boto3, items)
    boto3_ok = handled(boto3, items)
    stripped = [{k: v for k, v in item.items() if k not in boto3_failing} for item in items]
    ready_all = [{k: boto3_ready(v) for k, v in item.items()} for item in items]
    ready_failing = failing_attributes(boto3, ready_all)
    ready = [{k: v for k, v in item.items() if k not in ready_failing} for item in ready_all]

    inputs: dict[str, tuple[list[dict[str, Any]], dict[str, Callable[[Any], Any]], str]] = {
        "full": (
            items,
            {"ours": ours, "dynamodb-json": ddb_json} | ({"boto3": boto3} if boto3_ok == items else {}),
            f"all {len(items)} type-zoo items (7 final items + the NewImages of events.json)",
        ),
        "stripped": (
            stripped,
            {"ours": ours, "boto3": boto3, "dynamodb-json": ddb_json},
            f"same items without the attributes boto3 raises on: {sorted(boto3_failing)}",
        ),
        "boto3-ready": (
            ready,
            {"ours": ours, "boto3": boto3},
            "B/BS as bytes (as get_records gives them), bare {} as {\"M\": {}}, without "
            f"{sorted(ready_failing)} (dynamodb-json cannot json.dumps bytes)",
        ),
    }
    # Context, no target: the ~10-attribute items of the (b) workload (mostly strings and small
    # integers, one decimal), as a Lambda event carries them and as boto3 wants them.
    rng = random.Random(20240603)
    realistic = [synthetic_item(rng, f"user#{i:06d}") for i in range(200)]
    inputs["realistic"] = (
        realistic, {"ours": ours, "dynamodb-json": ddb_json},
        "200 items of the (b) workload generator (B as base64 text, as in a Lambda event)",
    )
    inputs["realistic boto3-ready"] = (
        [{k: boto3_ready(v) for k, v in item.items()} for item in realistic],
        {"ours": ours, "boto3": boto3},
        "the same 200 items with B as bytes (as get_records gives them)",
    )
    results: dict[str, Any] = {
        "fixture": str(folder),
        "accelerated": accelerated,
        "items": len(items),
        "boto3_failed_items": len(items) - len(boto3_ok),
        "boto3_failing_attributes": boto3_failing,
        "boto3_failing_attributes_when_ready": ready_failing,
        "inputs": {},
    }
    for label, (data, contenders, description) in inputs.items():
        if accelerated:
            contenders = {**contenders, "ours, pure Python": pure}
        passes = calibrate(lambda data=data: [ours(i) for i in data], min_rep_s)

        def runner(convert: Callable[[Any], Any], data: list[Any] = data, passes: int = passes) -> None:
            for _ in range(passes):
                for item in data:
                    convert(item)

        times = interleaved(
            {name: (lambda c=convert: runner(c)) for name, convert in contenders.items()},
            reps,
            time.perf_counter,
        )
        rates = {name: passes * len(data) / median(t) for name, t in times.items()}
        results["inputs"][label] = {
            "description": description,
            "items": len(data),
            "items_per_s": rates,
            "speedup_vs": {name: rates["ours"] / rate for name, rate in rates.items() if name != "ours"},
            "loss": {
                name: loss_report(data, convert, sets_sorted=name.startswith("ours"))
                for name, convert in contenders.items()
            },
        }
    return results


def calibrate(run: Callable[[], Any], min_s: float) -> int:
    """How many passes of ``run`` take at least ``min_s`` (so one repetition is long enough)."""
    run()
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(min_s / once) + 1)


# -- (b) synthetic stream batches ----------------------------------------------------------------

TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/users/stream/2024-01-01T00:00:00.000"


def synthetic_item(rng: random.Random, key: str) -> dict[str, Any]:
    """About ten attributes of mixed types, as a users table might hold them."""
    return {
        "id": {"S": key},
        "name": {"S": f"user {rng.randint(0, 10**6)} {rng.choice(['Ada', 'Émile', '李'])}"},
        "age": {"N": str(rng.randint(18, 90))},
        "balance": {"N": f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}"},
        "active": {"BOOL": rng.random() < 0.5},
        "tags": {"SS": rng.sample(["admin", "beta", "eu", "mobile", "premium", "us"], 3)},
        "scores": {"NS": [str(n) for n in rng.sample(range(101), 3)]},  # a set: no duplicates
        "address": {"M": {"city": {"S": rng.choice(["Rome", "Lyon", "Oslo"])},
                          "zip": {"S": f"{rng.randint(0, 99999):05d}"}}},
        "history": {"L": [{"N": str(rng.randint(0, 9))}, {"S": "login"}]},
        "avatar": {"B": base64.b64encode(rng.randbytes(16)).decode()},
        "deleted_at": {"NULL": True},
    }


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
    pure_planner = Planner(Settings(), converter=Converter(accelerate=False))
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
                changes, bad = parse_records(event)
                planner.plan(changes, bad)

        def core_pure(event: dict[str, Any] = event) -> None:
            for _ in range(batches_per_rep):
                changes, bad = parse_records(event, accelerate=False)
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
        assert plan == pure_planner.plan(*parse_records(event, accelerate=False))
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
    changes, bad = parse_records(event)
    phases = {
        "core (Replicator.plan)": lambda: planning.plan(event),
        "parse_records": lambda: parse_records(event),
        "Planner.plan": lambda: planner.plan(changes, bad),
        "baseline_work": lambda: baseline_work(event),
    }
    times = interleaved(phases, batches, time.process_time)
    print("\nprofile: CPU ms per 1,000-record batch (median of "
          f"{batches}): " + ", ".join(f"{k} {median(v) * 1e3:.2f}" for k, v in times.items()))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(batches):
        planner.plan(*parse_records(event))  # the Python planner (the C pass is one call)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# -- report --------------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(measure, core, baseline, ratio, target, met)."""
    rows = []
    conv = results["conversion"]["inputs"]
    full = conv["full"]
    rows.append((
        "(a) items/s, full type zoo: ours vs dynamodb-json",
        fmt_rate(full["items_per_s"]["ours"]), fmt_rate(full["items_per_s"]["dynamodb-json"]),
        f"{full['speedup_vs']['dynamodb-json']:.2f}x", "-", "-",
    ))
    rows.append((
        "(a) items/s, full type zoo: ours vs boto3",
        fmt_rate(full["items_per_s"]["ours"]),
        f"raises on {results['conversion']['boto3_failed_items']}/{results['conversion']['items']} items",
        "n/a", ">= 3x", "n/a",
    ))
    for label in ("stripped", "boto3-ready"):
        data = conv[label]
        ratio = data["speedup_vs"]["boto3"]
        rows.append((
            f"(a) items/s, {label} items: ours vs boto3",
            fmt_rate(data["items_per_s"]["ours"]), fmt_rate(data["items_per_s"]["boto3"]),
            f"{ratio:.2f}x", ">= 3x", "yes" if ratio >= TARGETS["conversion"] else "NO",
        ))
        if "ours, pure Python" in data["items_per_s"]:
            pure = data["items_per_s"]["ours, pure Python"]
            rows.append((
                f"(a) items/s, {label} items (context): ours in pure Python vs boto3",
                fmt_rate(pure), fmt_rate(data["items_per_s"]["boto3"]),
                f"{pure / data['items_per_s']['boto3']:.2f}x", "-", "-",
            ))
    for label, other in (("realistic boto3-ready", "boto3"), ("realistic", "dynamodb-json")):
        data = conv[label]
        rows.append((
            f"(a) items/s, {label} items (context): ours vs {other}",
            fmt_rate(data["items_per_s"]["ours"]), fmt_rate(data["items_per_s"][other]),
            f"{data['speedup_vs'][other]:.2f}x", "-", "-",
        ))
    stripped = conv["stripped"]
    rows.append((
        "(a) items/s, stripped items: ours vs dynamodb-json",
        fmt_rate(stripped["items_per_s"]["ours"]), fmt_rate(stripped["items_per_s"]["dynamodb-json"]),
        f"{stripped['speedup_vs']['dynamodb-json']:.2f}x", "-", "-",
    ))
    ours_loss = full["loss"]["ours"]
    ddb_loss = full["loss"]["dynamodb-json"]
    rows.append((
        "(a) numbers not exact (full type zoo)",
        f"{ours_loss['inexact']}/{ours_loss['numbers']}",
        f"dynamodb-json {ddb_loss['inexact']}/{ddb_loss['numbers']} "
        f"(+{ddb_loss['ns_left_as_text']} NS members left as text)",
        "-", "0 (no loss)", "yes" if ours_loss["inexact"] == 0 else "NO",
    ))
    for label, data in results["cpu"].items():
        ratio = data["ratio"]
        rows.append((
            f"(b) CPU us/event, {label}",
            f"{data['cpu_us_per_event']['core']:.2f}", f"{data['cpu_us_per_event']['baseline']:.2f}",
            f"{ratio:.2f}x less", ">= 3x less" if label.startswith("mixed") else "-",
            ("yes" if ratio >= TARGETS["cpu"] else "NO") if label.startswith("mixed") else "-",
        ))
        if data.get("ratio_parse_then_plan"):
            rows.append((
                f"(b) CPU us/event, {label} (context): core as two steps, C parse then "
                "Python plan (the previous revision)",
                f"{data['cpu_us_per_event']['core, parse then plan']:.2f}",
                f"{data['cpu_us_per_event']['baseline']:.2f}",
                f"{data['ratio_parse_then_plan']:.2f}x less", "-", "-",
            ))
        if data.get("ratio_pure_python"):
            rows.append((
                f"(b) CPU us/event, {label} (context): core in pure Python",
                f"{data['cpu_us_per_event']['core, pure Python']:.2f}",
                f"{data['cpu_us_per_event']['baseline']:.2f}",
                f"{data['ratio_pure_python']:.2f}x less", "-", "-",
            ))
    trips = results["round_trips"]
    core_stub = trips["core, pymongo-like stub"]
    base_stub = trips["baseline, pymongo-like stub"]
    rows.append((
        "(c) writes to the collection per 1,000-record batch (stub)",
        str(core_stub["main_collection_writes"]), str(base_stub["main_collection_writes"]),
        f"{base_stub['main_collection_writes'] / max(core_stub['main_collection_writes'], 1):.0f}x fewer",
        "1 vs 1,000", "yes" if core_stub["main_collection_writes"] == 1
        and base_stub["main_collection_writes"] == trips["records"] else "NO",
    ))
    rows.append((
        "(c) all round trips per batch incl. tombstones (stub)",
        str(core_stub["batch_round_trips"]), str(base_stub["batch_round_trips"]),
        f"{base_stub['batch_round_trips'] / max(core_stub['batch_round_trips'], 1):.0f}x fewer", "-", "-",
    ))
    core_mm = trips["core, mongomock"]
    base_mm = trips["baseline, mongomock"]
    rows.append((
        "(c) write calls per batch on mongomock (through the harness adapter)",
        f"{core_mm['main_collection_writes']} (+{core_mm['all_writes'] - core_mm['main_collection_writes']}"
        " tombstones)",
        str(base_mm["all_writes"]), "-", "-", "-",
    ))
    wire = results.get("end_to_end")
    if wire:
        cpu = wire["cpu_us_per_event"]
        rows.append((
            "(b, end to end) client CPU us/event incl. pymongo, loopback wire responder (context)",
            f"{cpu['core']['median']:.2f}", f"{cpu['baseline']['median']:.2f}",
            f"{wire['ratio']:.2f}x less", "-", "-",
        ))
        core_requests = wire["requests_per_batch"]["core"]["counts"]
        base_requests = wire["requests_per_batch"]["baseline"]["counts"]
        rows.append((
            "(c) wire requests per batch (pymongo sends one command per operation type)",
            ", ".join(f"{k} {v}" for k, v in sorted(core_requests.items())),
            ", ".join(f"{k} {v}" for k, v in sorted(base_requests.items())),
            "-", "-", "-",
        ))
    mm = results["mongomock"]
    rows.append((
        "(d) events/s into mongomock, end to end",
        fmt_rate(mm["events_per_s"]["core"]), fmt_rate(mm["events_per_s"]["baseline"]),
        f"{mm['ratio']:.2f}x", "-", "-",
    ))
    return rows


def print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    header = [
        f"CPU: {meta['machine']['cpu']} ({meta['machine']['cpus']} logical CPUs), "
        f"{meta['machine']['platform']}",
        f"Python: {meta['machine']['python']}",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in meta["machine"]["packages"].items()),
        "C accelerator (replicator._speedups): "
        + ("built, used by 'ours'/'core'" if results["conversion"]["accelerated"]
           else "NOT built: 'ours'/'core' are pure Python"),
        f"Method: {meta['reps']} interleaved repetitions after a warm-up, median; "
        f"mode {'quick' if meta['quick'] else 'full'}; took {meta['elapsed_s']:.1f} s",
    ]
    columns = ("Measure", "Core (ours)", "Baseline", "Ratio", "Target", "Met")
    rows = summary_rows(results)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\n".join(header))
        widths = [max(len(str(r[i])) for r in (columns, *rows)) for i in range(len(columns))]
        for row in (columns, *rows):
            print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    else:
        console = Console(width=max(Console().width, 160))
        for line in header:
            console.print(line, highlight=False)
        table = Table(title="Replicator core vs baselines (same run, same machine)")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    print_details(results)


def print_details(results: dict[str, Any]) -> None:
    conv = results["conversion"]
    print(f"\n(a) fixture {conv['fixture']}: {conv['items']} items")
    print(f"    boto3 raises on {conv['boto3_failed_items']}/{conv['items']} items; attributes it raises "
          f"on: {conv['boto3_failing_attributes']}")
    for label, data in conv["inputs"].items():
        rates = ", ".join(f"{k} {fmt_rate(v)}" for k, v in data["items_per_s"].items())
        print(f"    {label} ({data['items']} items: {data['description']}): items/s {rates}")
        for name, loss in data["loss"].items():
            print(f"        {name:14s} numbers {loss['numbers']:3d}, not exact {loss['inexact']}, "
                  f"NS left as text {loss['ns_left_as_text']}, items with a loss {loss['lossy_items']}, "
                  f"BSON-encodable {loss['bson_encodable']}/{data['items']}")
    print("\n(b) workloads")
    for label, data in results["cpu"].items():
        print(f"    {label}: {data['events']}, {data['distinct_keys']} keys -> {data['planned_writes']} "
              f"planned writes, {data['bad_records']} bad records; planned by the one C pass: "
              f"{'yes' if data['one_pass_c_plan'] else 'no (Python)'}")
    print("\n(c) calls counted per collection (one 1,000-record batch; fresh replicator)")
    for label, data in results["round_trips"].items():
        if isinstance(data, dict):
            print(f"    {label}: {data['calls']} (BatchResult/handler round trips "
                  f"{data['batch_round_trips']})")
    mm = results["mongomock"]
    print(f"\n(d) same final _id set: {mm['same_final_ids']} ({mm['final_documents']} documents)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--reps", type=int, help="repetitions per measure (default 7, quick 3)")
    parser.add_argument("--no-wire", action="store_true",
                        help="skip the end-to-end CPU measure against the loopback wire responder")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the core on the (b) workload (phases + cProfile)")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "conversion": bench_conversion(reps, min_rep_s=0.05 if args.quick else 0.2),
        "cpu": bench_cpu(reps, batches_per_rep=2 if args.quick else 5),
        "round_trips": bench_round_trips(),
        "mongomock": bench_mongomock(reps),
    }
    if not args.no_wire:
        import bench_wire  # same folder; a subprocess responder on 127.0.0.1

        results["end_to_end"] = bench_wire.bench_end_to_end(
            synthetic_event(1000, 300, seed=20240601), reps, batches_per_rep=2 if args.quick else 3
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
