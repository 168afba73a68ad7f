"""Instructions per event of the Lambda path, counted by callgrind (immune to machine load).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
        --callgrind-out-file=/tmp/cg.%p python benchmarks/bench_tombstones.py MODE [--batches 10] \
        --callgrind
    python benchmarks/bench_tombstones.py --quick          # runs it once, without valgrind

MODE: ``on`` (``Replicator(collection, Settings()).handle``: the shipped defaults, tombstones on),
``off`` (``Settings(tombstones=False)``), ``floor`` (pymongo alone: ``bulk_write`` of the same
batches' operations built beforehand from ready documents, as in bench_lambda.py; each batch's
operations are freed after its ``bulk_write``, inside the count, as the core's are).

Each run starts ``wire_responder.py`` (another process, not traced), builds the same fresh
100-record batches as ``bench_lambda.py``, hands one warm-up batch over, then ``--batches`` more.
With ``--callgrind`` only that loop is instrumented (callgrind_region.py), so the total of the main
thread's callgrind output file (``/tmp/cg.<pid>-01``) divided by the events is the instructions per
event (pymongo's monitor threads beat on the wall clock, so their share grows with the machine's
load: left out); the batches are parsed
(``json.loads``, as the Lambda runtime does) outside the loop. ``--kind`` picks batches of one
eventName (insert, modify: upserts of existing documents, remove) instead of the stream's mix,
``--batch-size`` their size. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import pymongo  # noqa: E402
from bench_lambda import floor_operations, lambda_batches  # noqa: E402
from bench_wire import responder  # noqa: E402
from callgrind_region import region  # noqa: E402

from replicator import Replicator, Settings  # noqa: E402
from replicator.convert import Converter  # noqa: E402

KINDS = ("mixed", "insert", "modify", "remove")


def batches_of(kind: str, first: int, count: int, size: int) -> list[dict[str, Any]]:
    """``count`` events of ``size`` records: the stream's batches from the ``first`` on (mixed),
    or its records of one eventName from there on, regrouped so that no batch holds a key twice
    (a record whose key is already in the batch waits for the next one)."""
    if kind == "mixed":
        return [json.loads(text) for text in lambda_batches(first + count, size)[first:]]
    name = kind.upper()
    stream = [record for text in lambda_batches(first + count * 12, size)[first:]
              for record in json.loads(text)["Records"] if record["eventName"] == name]
    events: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    while len(events) < count and (stream or waiting):
        batch: list[dict[str, Any]] = []
        keys: set[str] = set()
        rest = []
        for record in waiting + stream:
            key = record["dynamodb"]["Keys"]["id"]["S"]
            if len(batch) < size and key not in keys:
                batch.append(record)
                keys.add(key)
            else:
                rest.append(record)
            if len(batch) == size and len(rest) > size:
                break
        consumed = len(batch) + len(rest)
        pool = waiting + stream
        waiting, stream = rest, pool[consumed:]
        if len(batch) < size:
            break
        events.append({"Records": batch})
    if len(events) < count:
        raise SystemExit(f"not enough {name} records for {count} batches of {size}")
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("on", "off", "floor"), default="on")
    parser.add_argument("--batches", type=int, default=10, help="measured batches (default 10)")
    parser.add_argument("--first", type=int, default=8,
                        help="skip this many batches of the stream first (default 8: past the "
                             "first inserts of every key, so the mix of INSERT, MODIFY, REMOVE "
                             "is the steady one)")
    parser.add_argument("--callgrind", action="store_true",
                        help="instrument only the measured loop (run under valgrind "
                             "--tool=callgrind --instr-atstart=no)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="records per batch (default 100, the event source mapping's default "
                             "BatchSize; up to 10,000 for DynamoDB Streams): each MongoDB command "
                             "has a fixed client cost, shared by the batch's records")
    parser.add_argument("--kind", choices=KINDS, default="mixed",
                        help="which records the batches hold: the stream as it comes (mixed, "
                             "the default), or only its INSERTs, MODIFYs or REMOVEs (each batch "
                             "one record per key); with 'modify' the responder answers every "
                             "upsert as matching an existing document (--existing)")
    parser.add_argument("--quick", action="store_true", help="2 batches, no callgrind")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches = 2
    events = batches_of(args.kind, args.first, args.batches + 1, args.batch_size)
    converter = Converter("lossless")
    floor_ops = [floor_operations(event, converter) for event in events]
    with responder(120, *(("--existing",) if args.kind == "modify" else ())) as port:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=60000)
        try:
            collection = client["bench"]["items"]
            if args.mode == "floor":
                pending = collections.deque(floor_ops)
                floor_ops.clear()
                collection.bulk_write(pending.popleft(), ordered=False)  # warm-up
                with region(args.callgrind):
                    while pending:  # each batch's operations freed after it, as the core's are
                        collection.bulk_write(pending.popleft(), ordered=False)
            else:
                replicator = Replicator(collection, Settings(tombstones=(args.mode == "on")))
                replicator.handle(events[0])  # warm-up: connection, the tombstone index
                responses = []
                with region(args.callgrind):
                    for event in events[1:]:
                        responses.append(replicator.handle(event))
                if any(r != {"batchItemFailures": []} for r in responses):
                    raise SystemExit("a batch failed")
        finally:
            client.close()
    print(f"{args.mode}: {args.batches * args.batch_size} events after the warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
