"""The copy by Parallel Scan, the export load and the poller's GetRecords against their floors
(issue 21), every figure measured in ONE run of ONE process, side by side.

    python benchmarks/bench_parse.py [--items 20000] [--reps 5] [--quick] [--json out.json]

Client CPU per item (``time.process_time()`` of this process; the MongoDB "server" is
``wire_responder.py`` in another process, so its CPU is not counted), realistic ~1 KB items
(strings, numbers up to 38 digits, sets, maps, lists, binary):

* **copy** -- ``ScanCopy`` (1 segment, the copy's own Replicator: guard and tombstones on) over a
  real botocore ``dynamodb`` client whose HTTP send is replaced by a ``before-send`` handler that
  returns the Scan page's JSON body (so signing, retries, CRC32 check and parsing are botocore's
  own, and no network or emulator CPU is in the figure). Against the floor ``json.loads`` of the
  same bodies + ``insert_many`` of ready documents (built beforehand). Also: the same copy with
  botocore's response parser (what it was before issue 21) and the cyclic GC left as it is.
* **parse** -- one Scan page through botocore's parser vs through ``replicator/aws_json.py`` vs
  ``json.loads`` of the body; and GetRecords the same.
* **export** -- ``export.load_file`` of a gzipped data file in AWS's layout vs its floor (gunzip
  + ``json.loads`` of every line + ``insert_many`` of ready documents). ``--export-only``: the
  export's contenders alone, with two diagnostics of the load's lines (parsed, made records and
  converted in C, no writes): the batch's parsed images kept until the batch ends, as the core
  keeps them, vs each freed once converted -- the cost of that lifetime, measured in the run.

Contenders are interleaved (``bench_common.interleaved``); medians of ``--reps`` runs are printed
with their ratio to the floor. A script, not a test: it asserts nothing. ``--quick`` (a few
seconds) is what CI runs so that the script cannot rot.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gc
import gzip
import io
import json
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")

import boto3  # noqa: E402
import pymongo  # noqa: E402
from bench_common import machine_info, synthetic_item  # noqa: E402
from bench_wire import responder  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402

from replicator import Replicator, Settings, accelerator, aws_json  # noqa: E402
from replicator.convert import Converter  # noqa: E402
from replicator.item_records import COPY_SEQUENCE  # noqa: E402
from replicator.migrate import collector, export  # noqa: E402
from replicator.migrate.copy import ScanCopy  # noqa: E402
from replicator.migrate.segments import SegmentStore  # noqa: E402

KEY = "id"


# -- the workload ----------------------------------------------------------------------------------
def realistic_item(rng: random.Random, n: int) -> dict[str, Any]:
    """About 1 KB of DynamoDB JSON: bench_common's users-table item plus text, a 38-digit
    number, a binary set and nested maps and lists."""
    item = synthetic_item(rng, f"user-{n:08d}")
    item["bio"] = {"S": " ".join(rng.choice(["lorem", "ipsum", "dolor", "sit", "amet", "ü"])
                                 for _ in range(60))}
    item["ledger"] = {"N": str(rng.randint(10**37, 10**38 - 1))}
    item["keys"] = {"BS": [base64.b64encode(rng.randbytes(8)).decode() for _ in range(2)]}
    item["prefs"] = {"M": {
        "theme": {"S": rng.choice(["dark", "light"])},
        "limits": {"L": [{"N": str(rng.randint(0, 10**6))} for _ in range(5)]},
        "flags": {"M": {f"f{i}": {"BOOL": rng.random() < 0.5} for i in range(6)}},
        "recent": {"L": [{"M": {"at": {"N": str(1_700_000_000 + rng.randint(0, 10**7))},
                                "what": {"S": rng.choice(["view", "buy", "like"])}}}
                         for _ in range(4)]},
    }}
    return item


def items_of(count: int, seed: int = 21) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [realistic_item(rng, n) for n in range(count)]


def scan_bodies(items: list[dict[str, Any]], page: int) -> list[bytes]:
    """Scan response bodies as DynamoDB sends them (``LastEvaluatedKey`` on all but the last)."""
    bodies = []
    for start in range(0, len(items), page):
        chunk = items[start:start + page]
        body: dict[str, Any] = {"Items": chunk, "Count": len(chunk), "ScannedCount": len(chunk),
                                "ConsumedCapacity": {"TableName": "bench",
                                                     "CapacityUnits": len(chunk) / 4}}
        if start + page < len(items):
            body["LastEvaluatedKey"] = {KEY: chunk[-1][KEY]}
        bodies.append(json.dumps(body).encode())
    return bodies


def records_body(items: list[dict[str, Any]]) -> bytes:
    """A GetRecords response body of INSERT records of ``items``."""
    records = [{"eventID": f"e{n}", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"ApproximateCreationDateTime": 1.7e9 + n, "Keys": {KEY: item[KEY]},
                             "NewImage": item, "SequenceNumber": f"{10**20 + n}",
                             "SizeBytes": 1000, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
               for n, item in enumerate(items)]
    return json.dumps({"Records": records, "NextShardIterator": "it-next"}).encode()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def served_client(service: str, operation: str, answer: Callable[[Any], bytes]) -> Any:
    """A real botocore client whose HTTP send returns ``answer(request)`` with status 200 (and
    the CRC32 header DynamoDB sends, which botocore checks)."""
    client = boto3.client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="bench", aws_secret_access_key="bench")

    def send(request: Any, **_: Any) -> AWSResponse:
        body = answer(request)
        headers = {"Content-Type": "application/x-amz-json-1.0",
                   "x-amz-crc32": str(binascii.crc32(body) & 0xFFFFFFFF),
                   "x-amzn-RequestId": "bench"}
        return AWSResponse(request.url, 200, headers, _Raw(body))

    client.meta.events.register(f"before-send.{service}.{operation}", send)
    return client


def scan_client(bodies: list[bytes]) -> Any:
    following = {json.loads(b).get("LastEvaluatedKey", {}).get(KEY, {}).get("S"): n + 1
                 for n, b in enumerate(bodies)}

    def answer(request: Any) -> bytes:
        start = json.loads(request.body).get("ExclusiveStartKey")
        return bodies[following[start[KEY]["S"]] if start else 0]

    return served_client("dynamodb", "Scan", answer)


class _BotocoreParsed:
    """The client as ScanCopy saw it before issue 21: no ``meta``, so aws_json leaves botocore's
    parser on."""

    def __init__(self, client: Any) -> None:
        self.scan = client.scan


@contextmanager
def gc_left_alone() -> Iterator[None]:
    """The copy without what it does to the cyclic GC (replicator/migrate/collector.py), for
    the 'before issue 21' contender."""
    from contextlib import nullcontext

    from replicator.migrate import collector

    saved = collector.fewer_collections
    collector.fewer_collections = nullcontext  # type: ignore[assignment]
    try:
        yield
    finally:
        collector.fewer_collections = saved


def ready_documents(bodies: list[bytes]) -> list[list[dict[str, Any]]]:
    converter = Converter("lossless")
    return [[{"_id": item[KEY]["S"], **converter.image(item)} for item in json.loads(b)["Items"]]
            for b in bodies]


# -- the measure -----------------------------------------------------------------------------------
def bench(items: int, reps: int, page: int, export_only: bool = False) -> dict[str, Any]:
    logging.disable(logging.WARNING)
    data = items_of(items)
    bodies = scan_bodies(data, page)
    documents = ready_documents(bodies)
    size = sum(len(b) for b in bodies) / items
    export_lines = [json.dumps({"Item": item}).encode() for item in data]
    gz = gzip.compress(b"\n".join(export_lines) + b"\n", compresslevel=6)
    data_file = export.DataFile(key="data/bench.json.gz", item_count=items,
                                location="s3://bench/data/bench.json.gz")
    one_page = records_body(data[:page])
    del data
    times: dict[str, list[float]] = {}

    with responder() as port:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000)
        collection = client["bench"]["items"]
        settings = Settings(key_schema=(KEY,))
        store = SegmentStore(client["bench"]["items_sync"], "bench")
        scans = scan_client(bodies)
        streams = served_client("dynamodbstreams", "GetRecords", lambda _r: one_page)
        dynamodb = served_client("dynamodb", "Scan", lambda _r: bodies[0])

        def copy(source: Any) -> Callable[[], None]:
            def run() -> None:
                store.clear()
                ScanCopy(source, "bench", lambda: Replicator(collection, settings), (KEY,),
                         store, segments=1, page_size=page).run()
            return run

        def copy_before() -> None:
            with gc_left_alone():
                copy(_BotocoreParsed(scans))()

        def copy_gc_as_is() -> None:
            with gc_left_alone():
                copy(scans)()

        def copy_floor() -> None:
            for body, ready in zip(bodies, documents, strict=True):
                json.loads(body)
                collection.insert_many(ready, ordered=False)

        def export_load() -> None:
            export.load_file(data_file, export.FULL, Replicator(collection, settings), (KEY,),
                             COPY_SEQUENCE, s3=_Bytes(gz))

        def export_load_python_records() -> None:
            replicator = Replicator(collection, settings)
            if replicator.native is not None:  # REPLICATOR_PURE_PYTHON=1: Python already
                replicator.native = _WithoutExportRecords(replicator.native)
            export.load_file(data_file, export.FULL, replicator, (KEY,), COPY_SEQUENCE,
                             s3=_Bytes(gz))

        def export_floor() -> None:
            lines = gzip.decompress(gz).splitlines()
            for start in range(0, len(lines), export.BATCH):
                for line in lines[start:start + export.BATCH]:
                    json.loads(line)
                collection.insert_many(flat[start:start + export.BATCH], ordered=False)

        numbered = list(enumerate((line + b"\n" for line in export_lines), start=1))

        def records_and_images(kept: bool) -> Callable[[], None]:
            """What the load's lines cost before any write: ``export_records`` (parse, record)
            and the C conversion of each image into its document (``native.image``, the
            planner's conversion), the batch's parsed images kept until the batch ends (what the
            core does: it holds the records until the batch is written) or each freed as soon as
            its document is made (what converting line by line would allow). Diagnostic: the
            same work both ways, only the objects' lifetime differs."""
            native = Replicator(collection, settings).native  # configures the accelerator
            args = (export._SCAN_ONCE, True, (KEY,), COPY_SEQUENCE, "export-bench-",
                    export.SOURCE, datetime.now(timezone.utc))

            def run() -> None:
                with collector.fewer_collections():  # as load_file runs
                    convert_all()

            def convert_all() -> None:
                for start in range(0, len(numbered), export.BATCH):
                    lines = numbered[start:start + export.BATCH]
                    if kept:
                        made = native.export_records(lines, *args)[0]
                        documents = [native.image(r["dynamodb"]["NewImage"]) for r in made]
                        del made
                    else:
                        documents = [native.image(native.export_records([line], *args)[0][0]
                                                  ["dynamodb"]["NewImage"]) for line in lines]
                    del documents
            return run

        flat = [d for page_documents in documents for d in page_documents]
        per_item: dict[str, tuple[Callable[[], Any], int]] = {
            "copy: floor (json.loads + insert_many)": (copy_floor, items),
            "copy: ScanCopy now": (copy(scans), items),
            "copy: ScanCopy now, GC as is": (copy_gc_as_is, items),
            "copy: ScanCopy, botocore parser, GC as is": (copy_before, items),
            "export: floor (gunzip + json.loads + insert_many)": (export_floor, items),
            "export: load_file now": (export_load, items),
            "export: load_file, records made in Python": (export_load_python_records, items),
            "parse Scan: json.loads": (lambda: json.loads(bodies[0]), page),
            "parse Scan: aws_json.scan": (lambda: aws_json.scan(dynamodb, TableName="bench"),
                                          page),
            "parse Scan: botocore": (lambda: dynamodb.scan(TableName="bench"), page),
            "parse GetRecords: json.loads": (lambda: json.loads(one_page), page),
            "parse GetRecords: aws_json.get_records": (
                lambda: aws_json.get_records(streams, ShardIterator="it"), page),
            "parse GetRecords: botocore": (lambda: streams.get_records(ShardIterator="it"), page),
        }
        if export_only:  # the export's contenders alone (issue 21: its CPU-time ratio)
            per_item = {name: entry for name, entry in per_item.items()
                        if name.startswith("export:")}
            if accelerator.native is not None:  # REPLICATOR_PURE_PYTHON=1: no C
                per_item["export: parse + convert, images kept per batch"] = (
                    records_and_images(kept=True), items)
                per_item["export: parse + convert, image freed per line"] = (
                    records_and_images(kept=False), items)
        try:
            for name, (run, _count) in per_item.items():
                run()  # warm-up: connections, indexes, caches
                times[name] = []
            for _ in range(reps):
                for name, (run, count) in per_item.items():
                    gc.collect()
                    started = time.process_time()
                    run()
                    times[name].append((time.process_time() - started) * 1e6 / count)
        finally:
            client.close()
    us = {name: statistics.median(values) for name, values in times.items()}
    export_floor_us = us["export: floor (gunzip + json.loads + insert_many)"]
    if export_only:
        return {"items": items, "page": page, "reps": reps, "bytes_per_item": round(size),
                "machine": machine_info(), "load_average": os.getloadavg(),
                "cpu_us_per_item": {k: round(v, 2) for k, v in us.items()},
                "cpu_us_per_item_each_run": {k: [round(v, 2) for v in values]
                                             for k, values in times.items()},
                "export_over_floor": us["export: load_file now"] / export_floor_us,
                "images_kept_over_freed": (
                    us["export: parse + convert, images kept per batch"]
                    / us["export: parse + convert, image freed per line"]
                    if "export: parse + convert, images kept per batch" in us else None)}
    floor = us["copy: floor (json.loads + insert_many)"]
    return {
        "items": items, "page": page, "reps": reps, "bytes_per_item": round(size),
        "machine": machine_info(), "cpu_us_per_item": {k: round(v, 2) for k, v in us.items()},
        "copy_over_floor": us["copy: ScanCopy now"] / floor,
        "copy_before_over_floor": us["copy: ScanCopy, botocore parser, GC as is"] / floor,
        "gc_share_of_copy": 1 - us["copy: ScanCopy now"] / us["copy: ScanCopy now, GC as is"],
        "export_over_floor": us["export: load_file now"] / export_floor_us,
        "scan_botocore_over_json": us["parse Scan: botocore"] / us["parse Scan: json.loads"],
        "scan_ours_over_json": us["parse Scan: aws_json.scan"] / us["parse Scan: json.loads"],
        "records_botocore_over_json": (us["parse GetRecords: botocore"]
                                       / us["parse GetRecords: json.loads"]),
        "records_ours_over_json": (us["parse GetRecords: aws_json.get_records"]
                                   / us["parse GetRecords: json.loads"]),
    }


# -- workers: segments in threads, processes --------------------------------------------------------
def worker_child(port: int, items: int, page: int, share: int, shares: int, segments: int) -> None:
    """One process of the scaling run: copies its share of the items (every ``shares``-th item
    from ``share``) with ``segments`` segments in threads, after a "go" line on stdin; prints the
    copy's wall and CPU seconds."""
    logging.disable(logging.WARNING)
    data = [item for n, item in enumerate(items_of(items)) if n % shares == share]
    per_segment = [scan_bodies(data[s::segments], page) for s in range(segments)]
    following: dict[tuple[int, str | None], int] = {}
    for segment, bodies in enumerate(per_segment):
        for n, body in enumerate(bodies):
            key = json.loads(body).get("LastEvaluatedKey", {}).get(KEY, {}).get("S")
            following[segment, key] = n + 1

    def answer(request: Any) -> bytes:
        asked = json.loads(request.body)
        segment = int(asked.get("Segment", 0))
        start = asked.get("ExclusiveStartKey")
        return per_segment[segment][following[segment, start[KEY]["S"]] if start else 0]

    source = served_client("dynamodb", "Scan", answer)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000)
    collection = client["bench"][f"items{share}"]
    settings = Settings(key_schema=(KEY,))
    store = SegmentStore(client["bench"][f"items{share}_sync"], "bench")
    client.admin.command("ping")
    print("ready", flush=True)
    sys.stdin.readline()
    wall, cpu = time.perf_counter(), time.process_time()
    ScanCopy(source, "bench", lambda: Replicator(collection, settings), (KEY,), store,
             segments=segments, page_size=page).run()
    print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                      "items": len(data)}), flush=True)
    client.close()


def run_workers(port: int, items: int, page: int, processes: int, segments: int, *,
                before_go: Callable[[], None] = lambda: None,
                timeout: float = 120.0) -> tuple[list[dict[str, Any]], float]:
    """``processes`` ``--worker-child`` processes of ``segments`` segments each, copying their
    share of ``items`` into the wire responder at ``port``: started, each waited for until it is
    ready, ``before_go()`` called, then released together. Their results (``wall_s``, ``cpu_s``)
    and the parent's wall time from the release to the last result. Shared with bench_scaling."""
    import subprocess

    children = [subprocess.Popen(
        [sys.executable, __file__, "--worker-child", str(port), str(items), str(page), str(n),
         str(processes), str(segments)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(processes)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        before_go()
        started = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.readline()))
        return results, time.perf_counter() - started
    finally:
        for child in children:
            child.wait(timeout=timeout)


def scaling(items: int, page: int, quick: bool = False) -> list[dict[str, Any]]:
    """items/s of 1, 2 and 4 segments in threads of one process, and of 1, 2 and 4 processes,
    all against one wire_responder (the target) and in-process Scan pages (the source)."""

    rows = []
    with responder() as port:
        layouts = ((1, 1), (2, 1)) if quick else ((1, 1), (1, 2), (1, 4), (2, 1), (4, 1))
        for processes, segments in layouts:
            results, _ = run_workers(port, items, page, processes, segments, timeout=60.0)
            wall = max(r["wall_s"] for r in results)
            cpu = sum(r["cpu_s"] for r in results)
            row = {"processes": processes, "segments_per_process": segments, "items": items,
                   "items_per_s": round(items / wall), "client_cpu_us_per_item":
                   round(cpu * 1e6 / items, 1)}
            rows.append(row)
            print(f"  {processes} process(es) x {segments} segment(s): {row['items_per_s']:>7} "
                  f"items/s, client CPU {row['client_cpu_us_per_item']} µs/item", flush=True)
    return rows


# -- instruction counts (callgrind): load-proof -------------------------------------------------------
COUNTED = ("copy-floor", "copy", "export-floor", "export")


def count_child(contender: str, pages: int, page: int, all_pages: int) -> None:
    """Run ``contender`` once on the first ``pages`` pages (``all_pages`` or half of it; the
    set-up builds both, so it is the same whatever ``pages``): under callgrind, the instructions
    of ``pages`` = 2N minus those of N are the contender's own for N pages."""
    logging.disable(logging.WARNING)
    everything = items_of(all_pages * page)
    built = {}
    for size in {pages, all_pages // 2, all_pages}:  # the same set-up whatever ``pages``
        bodies = scan_bodies(everything[:size * page], page)
        items = everything[:size * page]
        built[size] = (bodies, ready_documents(bodies), gzip.compress(
            b"\n".join(json.dumps({"Item": i}).encode() for i in items) + b"\n"), len(items))
    bodies, documents, gz, count = built[pages]
    data_file = export.DataFile(key="data/bench.json.gz", item_count=count,
                                location="s3://bench/data/bench.json.gz")
    with responder() as port:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000)
        collection = client["bench"]["items"]
        settings = Settings(key_schema=(KEY,))
        store = SegmentStore(client["bench"]["items_sync"], "bench")
        scans = scan_client(bodies)
        collection.insert_many([{"_id": "warm"}])
        if contender == "copy-floor":
            for body, ready in zip(bodies, documents, strict=True):
                json.loads(body)
                collection.insert_many(ready, ordered=False)
        elif contender == "copy":
            ScanCopy(scans, "bench", lambda: Replicator(collection, settings), (KEY,), store,
                     segments=1, page_size=page).run()
        elif contender == "export-floor":
            lines = gzip.decompress(gz).splitlines()
            flat = [d for page_documents in documents for d in page_documents]
            for start in range(0, len(lines), page):
                for line in lines[start:start + page]:
                    json.loads(line)
                collection.insert_many(flat[start:start + page], ordered=False)
        else:
            export.load_file(data_file, export.FULL, Replicator(collection, settings), (KEY,),
                             COPY_SEQUENCE, s3=_Bytes(gz))
        client.close()


def count_file(contender: str, items: int) -> None:
    """``export`` (``export.load_file`` of one gzipped file of ``items`` lines, batches of
    ``export.BATCH``) or ``export-floor`` (``export-floor-memchr``: its lines split by
    ``BytesIO.readlines`` as load_file splits them, not ``bytes.splitlines``, a byte-by-byte loop
    of ~12,000 instructions per line; ``export-floor-scanner``: that, and each line parsed by
    json's scanner as the C ``export_records`` calls it, without json.loads' Python frames)
    once after a warm-up, with only that run instrumented
    under callgrind (callgrind_region.py): the figure of the timed run's configuration, which the
    2-pages-minus-1 count above is not (there one flush per file cancels out)."""
    from callgrind_region import region

    logging.disable(logging.WARNING)
    data = items_of(items)
    documents = [d for page in ready_documents(scan_bodies(data, 500)) for d in page]
    gz = gzip.compress(b"\n".join(json.dumps({"Item": i}).encode() for i in data) + b"\n",
                       compresslevel=6)
    del data
    data_file = export.DataFile(key="data/bench.json.gz", item_count=items,
                                location="s3://bench/data/bench.json.gz")
    with responder() as port:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000)
        collection = client["bench"]["items"]
        settings = Settings(key_schema=(KEY,))

        def load() -> None:
            export.load_file(data_file, export.FULL, Replicator(collection, settings), (KEY,),
                             COPY_SEQUENCE, s3=_Bytes(gz))

        def floor() -> None:
            if contender in ("export-floor-memchr", "export-floor-scanner"):  # as load_file does
                lines = io.BytesIO(gzip.decompress(gz)).readlines()
            else:
                lines = gzip.decompress(gz).splitlines()
            scan = export._SCAN_ONCE
            for start in range(0, len(lines), export.BATCH):
                if contender == "export-floor-scanner":  # json's scanner as export_records calls it
                    for line in lines[start:start + export.BATCH]:
                        scan(line.decode("utf-8", "surrogatepass"), 0)
                else:
                    for line in lines[start:start + export.BATCH]:
                        json.loads(line)
                collection.insert_many(documents[start:start + export.BATCH], ordered=False)

        run = load if contender == "export" else floor
        run()
        gc.collect()
        with region():
            run()
        client.close()


class _WithoutExportRecords:
    """The C accelerator without ``export_records``: ``load_file`` then makes the records in
    Python, as before issue 21's C record builder (the rest of the core still uses C)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def __getattr__(self, name: str) -> Any:
        if name == "export_records":
            raise AttributeError(name)
        return getattr(self._native, name)


class _Bytes:
    """An S3 client double for ``export.read_bytes``: the data file's bytes, no network."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.data)}


def print_report(result: dict[str, Any]) -> None:
    print(f"{result['items']} items of ~{result['bytes_per_item']} bytes, pages of "
          f"{result['page']}, median of {result['reps']} interleaved runs; client CPU "
          f"(process_time) per item:")
    for name, value in result["cpu_us_per_item"].items():
        print(f"  {name:<52} {value:9.2f} µs")
    print(f"copy now / floor:                 {result['copy_over_floor']:.2f}x")
    print(f"copy before issue 21 / floor:     {result['copy_before_over_floor']:.2f}x")
    print(f"cyclic GC's share of the copy, saved by collector.py: "
          f"{result['gc_share_of_copy']:.0%}")
    print(f"export load / floor:              {result['export_over_floor']:.2f}x")
    print(f"Scan page: botocore / json.loads  {result['scan_botocore_over_json']:.2f}x, "
          f"aws_json / json.loads {result['scan_ours_over_json']:.2f}x")
    print(f"GetRecords: botocore / json.loads {result['records_botocore_over_json']:.2f}x, "
          f"aws_json / json.loads {result['records_ours_over_json']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=500, help="items per Scan page")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="1,000 items, 1 run, 2 worker layouts (CI: it runs, figures unread)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-scaling", action="store_true", help="skip the workers' items/s")
    parser.add_argument("--export-only", action="store_true",
                        help="only the export load and its floor, interleaved (no scaling)")
    parser.add_argument("--worker-child", nargs=6, type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count-child", nargs=4, default=None,
                        help="CONTENDER PAGES PAGE ALL_PAGES: one run, for callgrind "
                             f"(contenders: {', '.join(COUNTED)})")
    parser.add_argument("--count-file", nargs=2, default=None,
                        help="CONTENDER ITEMS: export, export-floor, export-floor-memchr or "
                             "export-floor-scanner on one "
                             "file, only that run "
                             "instrumented (valgrind --tool=callgrind --instr-atstart=no)")
    args = parser.parse_args(argv)
    if args.count_file is not None:
        count_file(args.count_file[0], int(args.count_file[1]))
        return 0
    if args.count_child is not None:
        name, *numbers = args.count_child
        count_child(name, *(int(n) for n in numbers))
        return 0
    if args.worker_child is not None:
        worker_child(*args.worker_child)
        return 0
    items, reps = (1_000, 1) if args.quick else (args.items, args.reps)
    result = bench(items, reps, min(args.page, items), args.export_only)
    if args.export_only:
        print(f"{items} items, median of {reps} interleaved runs, load average "
              f"{result['load_average'][0]:.1f}; client CPU (process_time) per item:")
        for name, value in result["cpu_us_per_item"].items():
            print(f"  {name:<52} {value:9.2f} µs  {result['cpu_us_per_item_each_run'][name]}")
        print(f"export load / floor:              {result['export_over_floor']:.2f}x")
        if result["images_kept_over_freed"] is not None:
            print(f"parse + convert, images kept per batch / freed per line: "
                  f"{result['images_kept_over_freed']:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    print_report(result)
    if not args.no_scaling:
        print("items/s of the copy by workers (wall clock; one wire_responder as the target):")
        result["scaling"] = scaling(items, min(args.page, items), args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
