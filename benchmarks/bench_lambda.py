"""The core's CPU per event through real pymongo, against two references, on Lambda-sized batches.

    python benchmarks/bench_lambda.py [--reps N] [--batches N] [--batch-size N] [--json out.json]
    python benchmarks/bench_lambda.py --quick      # one short run: checks that it runs

This is the honest measure of the core (issue #10): batches as a stream's event source mapping
delivers them by default -- 100 records, NEW_AND_OLD_IMAGES, realistic items, one record per key
(nothing to coalesce, so no contender gains from dropping superseded changes) -- each handed over as
a FRESH event (``json.loads`` of the batch's JSON text outside the timed region, as the Lambda runtime
does before it calls the handler; no contender ever sees an object twice), with the shipped defaults
(stale-write guard and tombstones on), and pymongo encoding and sending every request to
``wire_responder.py`` on 127.0.0.1 in another process (it answers at once and stores nothing; see
its docstring). ``time.process_time()`` of this process counts the client side only.

Contenders, interleaved (core, reference, floor, core, ...), warm-up once each:

* core: ``Replicator(collection, Settings()).handle(event)`` -- parse, convert, plan, tombstone
  probe, the guarded bulk write.
* reference: what a careful hand-written handler does with boto3's ``TypeDeserializer``: B/BS decoded
  from the event's base64 text first (TypeDeserializer expects bytes), every NewImage deserialized,
  the last change per key kept (dedupe), one unordered ``bulk_write`` of ``ReplaceOne``/``DeleteOne``
  through a collection whose codec turns ``Decimal`` into ``Decimal128`` and sets into lists
  (pymongo's documented custom-type mechanism). No guard, no tombstones, no quarantine.
* context: the core with ``Settings(tombstones=False)``, to show the tombstone probe's share.
* floor: pymongo alone -- ``bulk_write`` of the same batch's operations built beforehand from ready
  documents (the core's own converted documents, ``_id`` first): encoding and sending, nothing else.

Ratios are taken within one run: core/floor (what the core adds on top of pymongo's own cost) and
reference/core.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import bench_core  # noqa: E402  (the synthetic users-table items and stream)
import pymongo  # noqa: E402
from bench_conversion import boto3_ready  # noqa: E402
from bench_wire import responder  # noqa: E402
from bson.codec_options import CodecOptions, TypeEncoder, TypeRegistry  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402
from pymongo.operations import DeleteOne, ReplaceOne  # noqa: E402

from replicator import Replicator, Settings  # noqa: E402
from replicator.convert import Converter  # noqa: E402

CONTENDERS = ("core", "reference (boto3)", "floor (pymongo only)", "core, tombstones off")


# -- the workload ----------------------------------------------------------------------------------


def lambda_batches(batches: int, batch_size: int, seed: int = 20261130) -> list[str]:
    """``batches`` Lambda events of ``batch_size`` records each, as JSON text.

    One stream over ``4 * batch_size`` keys, record i writing key ``i mod keys``: consecutive
    records (so every batch) touch distinct keys, and keys come back in later batches, so the mix of
    INSERT, MODIFY and REMOVE is the one a table produces (see ``bench_core.synthetic_event``).
    """
    stream = bench_core.synthetic_event(batches * batch_size, 4 * batch_size, seed, distinct=True)
    records = stream["Records"]
    return [
        json.dumps({"Records": records[start:start + batch_size]})
        for start in range(0, len(records), batch_size)
    ]


# -- the reference handler -------------------------------------------------------------------------


class _DecimalCodec(TypeEncoder):
    """``Decimal`` -> ``Decimal128`` (pymongo docs, "Custom Types": the documented way)."""

    python_type = Decimal  # type: ignore[assignment]

    def transform_python(self, value: Any) -> Any:
        return Decimal128(value)


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raw = getattr(value, "value", None)  # boto3.dynamodb.types.Binary
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    raise TypeError(f"cannot encode {type(value).__name__}")


REFERENCE_CODEC = CodecOptions(type_registry=TypeRegistry([_DecimalCodec()], fallback_encoder=_fallback))


class ReferenceHandler:
    """boto3 TypeDeserializer + dedupe by key + one unordered bulk_write (see the module doc)."""

    def __init__(self, collection: Any) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self.collection = collection.with_options(codec_options=REFERENCE_CODEC)
        self.deserialize = TypeDeserializer().deserialize

    def image(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.deserialize(boto3_ready(value)) for name, value in item.items()}

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        latest: dict[Any, Mapping[str, Any]] = {}
        for record in event["Records"]:
            keys = self.image(record["dynamodb"]["Keys"])
            latest[tuple(sorted(keys.items()))] = record
        operations: list[Any] = []
        for key, record in latest.items():
            document_id = key[0][1] if len(key) == 1 else dict(key)
            if record["eventName"] == "REMOVE":
                operations.append(DeleteOne({"_id": document_id}))
            else:
                document = {"_id": document_id, **self.image(record["dynamodb"]["NewImage"])}
                operations.append(ReplaceOne({"_id": document_id}, document, upsert=True))
        self.collection.bulk_write(operations, ordered=False)
        return {"batchItemFailures": []}


def floor_operations(event: Mapping[str, Any], converter: Converter) -> list[Any]:
    """The batch's writes built from ready documents (the core's lossless conversion)."""
    operations: list[Any] = []
    for record in event["Records"]:
        body = record["dynamodb"]
        document_id = converter.value(body["Keys"]["id"])
        if record["eventName"] == "REMOVE":
            operations.append(DeleteOne({"_id": document_id}))
        else:
            document = {"_id": document_id, **converter.image(body["NewImage"])}
            operations.append(ReplaceOne({"_id": document_id}, document, upsert=True))
    return operations


# -- the measure -----------------------------------------------------------------------------------


def bench(reps: int, batches: int, batch_size: int, clock: Callable[[], float] = time.process_time
          ) -> dict[str, Any]:
    texts = lambda_batches(batches, batch_size)
    converter = Converter("lossless")
    with responder() as port:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000
        )
        try:
            client.admin.command("ping")
            collection = client["bench"]["items"]
            core = Replicator(collection, Settings())
            untombstoned = Replicator(collection, Settings(tombstones=False))
            reference = ReferenceHandler(collection)
            floor_ops = [floor_operations(json.loads(text), converter) for text in texts]

            def run(name: str) -> float:
                if name == "floor (pymongo only)":
                    gc.collect()
                    start = clock()
                    for operations in floor_ops:
                        collection.bulk_write(operations, ordered=False)
                    return clock() - start
                handle = {"core": core.handle, "reference (boto3)": reference.handle,
                          "core, tombstones off": untombstoned.handle}[name]
                events = [json.loads(text) for text in texts]  # fresh, untimed
                gc.collect()
                start = clock()
                for event in events:
                    response = handle(event)
                    if response != {"batchItemFailures": []}:
                        raise AssertionError(f"{name}: {response!r}")
                return clock() - start

            for name in CONTENDERS:
                run(name)  # warm-up: connections, the tombstone index
            times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
            for _ in range(reps):
                for name in CONTENDERS:
                    times[name].append(run(name))
            client.admin.command("benchReset")
            core.handle(json.loads(texts[0]))
            requests = dict(client.admin.command("benchStats")["counts"])
        finally:
            client.close()

    events_per_run = batches * batch_size
    cpu = {name: {"median": statistics.median(t) * 1e6 / events_per_run,
                  "min": min(t) * 1e6 / events_per_run} for name, t in times.items()}
    return {
        "batches": batches,
        "batch_size": batch_size,
        "reps": reps,
        "pymongo": pymongo.version,
        "python": sys.version.split()[0],
        "cpu_us_per_event": cpu,
        "core_over_floor": cpu["core"]["median"] / cpu["floor (pymongo only)"]["median"],
        "reference_over_core": cpu["reference (boto3)"]["median"] / cpu["core"]["median"],
        "tombstone_share": 1 - cpu["core, tombstones off"]["median"] / cpu["core"]["median"],
        "core_requests_first_batch": requests,
    }


def print_report(results: Mapping[str, Any]) -> None:
    print(f"CPU per event through real pymongo {results['pymongo']} (Python {results['python']}) -> "
          f"wire_responder.py: {results['batches']} fresh batches of {results['batch_size']} "
          f"records per run, {results['reps']} interleaved runs after a warm-up")
    rows = [("Contender", "CPU µs/event median", "min")]
    for name in CONTENDERS:
        cpu = results["cpu_us_per_event"][name]
        rows.append((name, f"{cpu['median']:.2f}", f"{cpu['min']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"  core / floor: {results['core_over_floor']:.2f}x   "
          f"reference / core: {results['reference_over_core']:.2f}x")
    print(f"  tombstones' share of the core's CPU (context row): {results['tombstone_share']:.0%}")
    print(f"  core requests for one batch: {results['core_requests_first_batch']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="timed runs per contender (default 7)")
    parser.add_argument("--batches", type=int, default=30, help="batches per run (default 30)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="records per batch (default 100, the event source mapping's default)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="one run of 3 batches (a few seconds: checks the script runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.batches = 1, 3
    results = bench(args.reps, args.batches, args.batch_size)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
