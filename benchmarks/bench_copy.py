"""Benchmark of the initial copy (issue #12), every figure measured in ONE run on one machine.

    python benchmarks/bench_copy.py [--items 10000] [--quick] [--json out.json]

(1) items/s of the copy into the embedded target (moto in-process -> mongomock with the ``_id``
    fast path of harness.migration; plain mongomock is quadratic: ~60 upserts/s at 10k documents) for:
    a single-threaded scan baseline (Scan pages -> boto3 TypeDeserializer -> insert_many, no
    guard, no resume), today's ``resync`` (one thread, ConsistentRead, 100-item pages), ``sync``
    by Parallel Scan with 1, 2 and 4 segments, and ``sync`` from an export in AWS's layout
    (data files written from the table beforehand, loaded in-process). Each into a fresh
    collection of the same table; the copy phase is timed (the stream handover is not).
(2) peak RSS of the copy as the table grows (10k, 25k, 50k items), each size in its own process,
    on a synthetic Scan source and an acknowledging target, so what is measured is the copy's own
    memory (pages, core, segment checkpoints), not the table held by an emulator.

A script, not a test: it asserts nothing, it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")


def _rss_mb(field: str = "VmRSS") -> float:
    """From /proc/self/status. ``VmHWM`` is the peak RSS of this process image: unlike
    ``ru_maxrss`` it does not carry the parent's peak across fork + exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- (1) throughput ---------------------------------------------------------------------------------
def throughput(items: int, export_files: int = 8) -> list[dict[str, Any]]:
    import logging

    from boto3.dynamodb.types import TypeDeserializer

    from harness.backends.base import TableSpec, started, target_backend
    from harness.backends.moto_source import MotoSource
    from harness.lane import scan_items
    from harness.migration import diff, make_poller, mongomock_id_fast_path, prefill
    from replicator.migrate.export import export_json, load_manifest, write_export
    from replicator.migrate.sync import sync_export, sync_scan
    from replicator.poller.resync import resync

    logging.disable(logging.WARNING)
    rows: list[dict[str, Any]] = []
    with started(MotoSource()) as source, started(target_backend("mongomock")) as target, \
            mongomock_id_fast_path(), tempfile.TemporaryDirectory() as tmp:
        table = source.create_table(TableSpec("bench", ("pk", "S")))
        client = source.dynamodb()
        prefill(client, "bench", items)
        everything = scan_items(client, "bench")
        lines = [{"Item": export_json(i)} for i in everything]
        manifest = load_manifest(str(write_export(
            tmp, [lines[n::export_files] for n in range(export_files)])))
        del everything, lines

        def row(name: str, seconds: float, collection: Any) -> None:
            converged = diff(source, table, collection).converged
            rows.append({"copy": name, "items": items, "seconds": round(seconds, 2),
                         "items_per_s": round(items / seconds, 1), "converged": converged})
            print(f"  {name:<34} {items / seconds:9.1f} items/s  ({seconds:.1f} s)"
                  f"{'' if converged else '  NOT CONVERGED'}", flush=True)

        # baseline: what a one-off script does
        collection = target.collection("bench", "baseline")
        deserializer = TypeDeserializer()
        started_at = time.perf_counter()
        request: dict[str, Any] = {"TableName": "bench", "Limit": 1000}
        while True:
            page = client.scan(**request)
            documents = []
            for item in page.get("Items", []):
                document = {k: deserializer.deserialize(v) for k, v in item.items()}
                document["_id"] = document["pk"]
                documents.append(_bsonable(document))
            if documents:
                collection.insert_many(documents)
            if not page.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        seconds = time.perf_counter() - started_at
        rows.append({"copy": "baseline: 1-thread scan + insert_many", "items": items,
                     "seconds": round(seconds, 2), "items_per_s": round(items / seconds, 1),
                     "converged": None})
        print(f"  {'baseline: 1-thread scan + insert_many':<34} {items / seconds:9.1f} items/s"
              f"  ({seconds:.1f} s; lossy numbers, no guard: not compared)", flush=True)

        collection = target.collection("bench", "resync")
        poller = make_poller(source, table, collection)
        poller.starting_position = "LATEST"
        started_at = time.perf_counter()
        resync(poller, page_size=100)
        row("resync (today)", time.perf_counter() - started_at, collection)

        for segments in (1, 2, 4):
            collection = target.collection("bench", f"sync{segments}")
            report = sync_scan(make_poller(source, table, collection), segments=segments,
                               page_size=1000)
            assert report.copy is not None
            row(f"sync, Parallel Scan, {segments} segment(s)", report.copy.elapsed_s, collection)

        collection = target.collection("bench", "export")
        report = sync_export(make_poller(source, table, collection), manifest)
        assert report.export is not None
        row(f"sync, export ({export_files} data files)", report.export.elapsed_s, collection)
    return rows


def _bsonable(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, dict):
        return {k: _bsonable(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_bsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)  # what a one-off script does: lossy
    return value


# -- (2) memory -----------------------------------------------------------------------------------------
class _SyntheticScan:
    """Scan pages of ``items`` generated items, split by Segment like DynamoDB's hash ranges."""

    def __init__(self, items: int) -> None:
        self.items = items

    def scan(self, **request: Any) -> dict[str, Any]:
        segment, total = request.get("Segment", 0), request.get("TotalSegments", 1)
        start = int(request.get("ExclusiveStartKey", {"pk": {"S": str(segment - total)}})
                    ["pk"]["S"]) + total
        stop = min(self.items, start + request["Limit"] * total)
        numbers = range(start, stop, total)
        items = [{"pk": {"S": str(n)}, "n": {"N": str(n)}, "text": {"S": "x" * 200},
                  "tags": {"SS": ["a", "b", str(n % 9)]},
                  "m": {"M": {"l": {"L": [{"N": "1.5"}, {"BOOL": True}]}}}} for n in numbers]
        page: dict[str, Any] = {"Items": items, "ConsumedCapacity": {"CapacityUnits": 0.5}}
        if stop < self.items:
            page["LastEvaluatedKey"] = {"pk": {"S": str(numbers[-1])}}
        return page


class _Acknowledging:
    """A collection that acknowledges every write and keeps nothing."""

    name = "ack"
    write_concern = None

    def __init__(self) -> None:
        self.database = self

    def __getitem__(self, name: str) -> _Acknowledging:
        return self

    def bulk_write(self, operations: Any, ordered: bool = True) -> None:
        return None

    def update_one(self, *args: Any, **kwargs: Any) -> None:
        return None

    def find(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def memory_child(items: int) -> dict[str, Any]:
    from replicator.core import Replicator
    from replicator.migrate.copy import ScanCopy
    from replicator.migrate.segments import SegmentStore
    from replicator.settings import Settings

    collection = _Acknowledging()
    settings = Settings(key_schema=("pk",), tombstones=False)
    before = _rss_mb()
    copier = ScanCopy(_SyntheticScan(items), "t", lambda: Replicator(collection, settings),
                      ("pk",), SegmentStore(collection, "t"), segments=4, page_size=1000)
    stats = copier.run()
    peak = _rss_mb("VmHWM")
    return {"items": items, "copied": stats.items_read, "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(peak, 1), "items_per_s": round(stats.items_per_s, 1)}


def memory(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        output = subprocess.run([sys.executable, __file__, "--memory-child", str(size)],
                                check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {size:>7} items: peak RSS {row['peak_rss_mb']:.1f} MB (before the copy "
              f"{row['rss_before_mb']:.1f} MB), {row['items_per_s']:.0f} items/s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="500 items; RSS at 2k/5k/10k")
    parser.add_argument("--json", default=None)
    parser.add_argument("--memory-only", action="store_true", help="only (2)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    # quick (tests/benchmarks): every copy path runs; 2,000 items took ~45 s of CPU (six copies
    # and their diffs on moto), 500 take ~14 s
    items = 500 if args.quick else args.items
    sizes = [2_000, 5_000, 10_000] if args.quick else [10_000, 25_000, 50_000]
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
    rows: list[dict[str, Any]] = []
    if not args.memory_only:
        print(f"(1) copy of {items} items, moto in-process -> mongomock (_id fast path):")
        rows = throughput(items)
    print("(2) peak RSS of the copy (synthetic source, acknowledging target, 4 segments):")
    rss = memory(sizes)
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": rows, "memory": rss}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
