"""Benchmark of the distributed export copy (issue 22, part 4), every figure in ONE run.

    python benchmarks/bench_distributed_export.py [--items 6000] [--files 24] [--quick] [--json out.json]

One full export in AWS's layout (``--files`` data files of synthetic items, bench_common's mixed
types) in moto's S3 (in-process), loaded into a fresh collection of a mongoeco wire server that
runs in ANOTHER process (its CPU is not this process's), through the real pymongo client, by:

* the single-machine path: ``replicator sync --export``'s loader (``load_export``, in-process, one
  file after another), timed around the copy (its positions and handover are not);
* the export copy's state machine (deploy/export-copy.yaml) run by the emulation
  (harness/distributed_map.py) with ``MaxConcurrency`` 1, 2, 4 and 8: every data file through the
  child Lambda handler the template names, children as threads of this process; the map state's
  wall time is the figure (``Prepare`` and ``Handover`` are not timed; the table's stream is empty).

Reported: items/s of each, the speed-up over the single-machine path, and the per-child cost per
item -- the CPU seconds of the children's threads (``time.thread_time``: reading the file from S3,
checking, parsing, converting, planning, the client side of the writes) over the items. On AWS each
child is its own Lambda with its own CPU, so per-child CPU per item (plus the wait on MongoDB) is
what sets a child's rate; here children are threads sharing one GIL and, with the server, the
machine's cores, so items/s by concurrency says where this machine stops, not where Lambda does.

Both series run in the same run: (1) into mongoeco (real writes; every contender's documents are
counted back), (2) into ``wire_responder.py`` (bench_wire's acknowledging responder, another
process that stores nothing): the copy's own ceiling here, without a server's cost.

A script, not a test: it asserts only that every contender loaded every item (into mongoeco).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, ROOT / "benchmarks"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")

from bench_common import machine_info, median, synthetic_item  # noqa: E402

BUCKET = "exports"
TABLE = "bench"
CONCURRENCY = (1, 2, 4, 8)


def serve_mongoeco() -> None:
    """``--serve-mongoeco``: a mongoeco wire server in this process; prints its URI, serves until
    stdin closes (it never outlives the benchmark)."""
    from harness.backends.mongoeco_target import MongoecoServer

    server = MongoecoServer()
    print(server.start(), flush=True)
    sys.stdin.read()
    server.stop()


def _lambda_environment(uri: str, collection: str) -> None:
    os.environ.update({
        "MONGODB_URI": uri, "MONGODB_DATABASE": "bench", "MONGODB_COLLECTION": collection,
        "REPLICATOR_KEY_SCHEMA": "id", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MONGODB_URI_SECRET_ARN"):
        os.environ.pop(name, None)


def run(items: int, files: int, uri: str, target: str, reps: int = 1) -> list[dict[str, Any]]:
    import logging

    from pymongo import MongoClient

    from harness.backends.base import TableSpec, started
    from harness.backends.moto_source import MotoSource
    from harness.distributed_map import StateMachine, upload_export
    from replicator import export_copy_handler
    from replicator.core import Replicator
    from replicator.migrate.export import load_export, load_manifest, write_export
    from replicator.settings import Settings

    logging.disable(logging.WARNING)
    rng = random.Random(22)
    lines = [{"Item": synthetic_item(rng, f"user-{n:07d}")} for n in range(items)]
    rows: list[dict[str, Any]] = []
    client: Any = MongoClient(uri)
    database = client["bench"]
    with started(MotoSource()) as source, tempfile.TemporaryDirectory() as tmp:
        source.create_table(TableSpec(TABLE, ("id", "S")))
        s3 = source.s3()
        s3.create_bucket(Bucket=BUCKET)
        location = upload_export(s3, BUCKET, write_export(
            tmp, [lines[n::files] for n in range(files)]))
        manifest = load_manifest(location, s3)
        del lines

        def single(collection: str) -> tuple[float, float, int | None]:
            """sync --export's loader, in-process, one file after another."""
            settings = Settings(key_schema=("id",))
            cpu, began = time.process_time(), time.perf_counter()
            load_export(manifest, key_schema=("id",), s3=s3,
                        make_replicator=lambda: Replicator(database[collection], settings),
                        progress=database[f"{collection}_sync"])
            return time.perf_counter() - began, time.process_time() - cpu, None

        def mapped(limit: int) -> Callable[[str], tuple[float, float, int | None]]:
            def run_map(collection: str) -> tuple[float, float, int | None]:
                _lambda_environment(uri, collection)
                export_copy_handler.reset()
                machine = StateMachine.from_template(
                    ROOT / "deploy" / "export-copy.yaml", s3, parameters={
                        "TableName": TABLE, "ExportBucket": BUCKET, "ExportPrefix": "exports",
                        "MongoDbUriSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:u",
                        "KeySchema": "id", "MaxConcurrency": str(limit)})
                execution = machine.start({"Export": location})
                if execution.status != "SUCCEEDED":
                    raise SystemExit(f"MaxConcurrency {limit}: {execution.error}: {execution.cause}")
                map_run = execution.map_runs["LoadDataFiles"]
                return (map_run.elapsed_s, sum(c.cpu_s for c in map_run.children),
                        map_run.peak_concurrency)
            return run_map

        contenders = [("single machine (sync --export's loader)", "single", single)]
        contenders += [(f"emulated map, MaxConcurrency {n}", f"map{n}", mapped(n))
                       for n in CONCURRENCY]
        measured: dict[str, list[tuple[float, float, int | None]]] = {n: [] for n, _, _ in contenders}
        for rep in range(reps):  # interleaved: a noisy neighbour spreads over every contender
            for name, key, contender in contenders:
                measured[name].append(contender(f"{key}_{rep}"))
        base = None
        for name, key, _ in contenders:
            seconds = median(m[0] for m in measured[name])
            cpu_s = median(m[1] for m in measured[name])
            peak = max((m[2] or 0 for m in measured[name]), default=0) or None
            # the responder stores nothing: what it acknowledged is not counted back
            loaded = (database[f"{key}_{reps - 1}"].count_documents({}) if target == "mongoeco"
                      else items)
            rate = items / seconds
            base = base or rate
            rows.append({"target": target, "copy": name, "items": items, "files": files,
                         "reps": reps, "seconds": round(seconds, 3), "items_per_s": round(rate, 1),
                         "speedup": round(rate / base, 2),
                         "cpu_us_per_item": round(cpu_s / items * 1e6, 1),
                         "peak_children": peak, "loaded": loaded})
            print(f"  {name:<38} {rate:9.1f} items/s  x{rate / base:4.2f}  "
                  f"{cpu_s / items * 1e6:7.1f} us CPU/item  ({seconds:.2f} s"
                  f"{'' if peak is None else f', {peak} children at most'})"
                  f"{'' if loaded == items else f'  LOADED {loaded} of {items}'}", flush=True)
            if loaded != items:
                raise SystemExit(f"{name}: {loaded} of {items} documents loaded")
        export_copy_handler.reset()
    client.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2_400)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="240 items in 8 files")
    parser.add_argument("--json", default=None)
    parser.add_argument("--serve-mongoeco", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_mongoeco:
        serve_mongoeco()
        return 0
    items, files = (240, 8) if args.quick else (args.items, args.files)
    info = machine_info()
    print(f"{info['python']}, {info['cpu']}, {info['cpus']} cpus, load average "
          f"{os.getloadavg()[0]:.1f}; pymongo {info['packages']['pymongo']}")
    print(f"(1) export of {items} items in {files} data files (moto S3) -> mongoeco (own "
          "process; real writes, every document counted back):")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    server = subprocess.Popen([sys.executable, __file__, "--serve-mongoeco"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        uri = server.stdout.readline().strip()
        if not uri.startswith("mongodb://"):
            raise SystemExit(f"the mongoeco server did not start (it printed {uri!r})")
        rows = run(items, files, uri, "mongoeco")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)
    print("(2) the same export -> wire_responder.py (own process; acknowledges every write, "
          "stores nothing: the copy's own ceiling on this machine; median of "
          f"{1 if args.quick else 5} interleaved runs):")
    from bench_wire import responder

    with responder() as port:
        rows += run(items, files, f"mongodb://127.0.0.1:{port}/?directConnection=true", "responder",
                    reps=1 if args.quick else 5)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
