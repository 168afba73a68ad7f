"""End to end over the wire: client CPU per event of the whole handler, pymongo included.

    python benchmarks/bench_wire.py [--reps N] [--batches N] [--json out.json]

bench_core.py (b) times the handlers' own work with no I/O. This measure adds everything pymongo
does for them -- command building, BSON encoding, sessions, socket send/receive syscalls, reply
decoding -- by running each handler with a real ``pymongo.MongoClient`` against
``wire_responder.py``: a MongoDB wire-protocol responder on 127.0.0.1, in ANOTHER process, that
answers every command at once and stores nothing. ``time.process_time()`` of this process then
counts the client side only (plus pymongo's own background threads, a heartbeat every 10 s).

Contenders, interleaved (core, core with tombstones off, baseline, core, ...), warm-up once each:

* core: ``Replicator(collection, Settings()).handle(event)`` -- the shipped defaults, tombstones
  on (one extra bulk write per batch to ``<collection>_tombstones``);
* core, tombstones off: ``Settings(tombstones=False)``, as context;
* baseline: ``OriginalHandler(collection).handle(event)`` -- one ``update_one``/``delete_one``
  round trip per record inside one session.

The responder is a benchmark tool only: it is not a MongoDB, and no test uses it as one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402  (after the sys.path fix, so the script runs from a plain checkout)

from harness.baselines.original import OriginalHandler  # noqa: E402
from replicator import Replicator, Settings  # noqa: E402

RESPONDER = HERE / "wire_responder.py"
READY_TIMEOUT_S = 15.0
CONTENDERS = ("core", "core, tombstones off", "baseline")


# -- the responder process -------------------------------------------------------------------------


@contextlib.contextmanager
def responder(timeout: float = READY_TIMEOUT_S, *options: str) -> Iterator[int]:
    """Start ``wire_responder.py`` (with ``options``, e.g. ``--existing``) in a child process;
    yield its port on 127.0.0.1.

    The child's stdin is a pipe: closing it (or this process dying) stops the child. On exit --
    also when the body raises -- the child is terminated (killed if it lingers) and waited for.
    """
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, str(RESPONDER), "--port", "0", *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            yield _wait_ready(process, timeout, stderr)
        finally:
            _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], timeout: float, stderr: IO[bytes]) -> int:
    """The port of the child's ``READY <port>`` line; RuntimeError if it does not come in time."""
    assert process.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    # readline() has no timeout: read in a thread (it ends when the line comes or the child dies).
    threading.Thread(target=lambda: lines.put(process.stdout.readline()),  # type: ignore[union-attr]
                     daemon=True, name="responder-ready").start()
    try:
        line = lines.get(timeout=timeout).decode(errors="replace").strip()
    except queue.Empty:
        line = ""
    if line.startswith("READY "):
        return int(line.split()[1])
    _stop(process)
    stderr.seek(0)
    details = stderr.read().decode(errors="replace").strip()[-2000:]
    state = f"exited with {process.returncode}" if line or process.returncode else "timed out"
    raise RuntimeError(
        f"wire responder ({RESPONDER}) did not print 'READY <port>' within {timeout:.0f} s "
        f"({state}; first stdout line {line!r}){': ' + details if details else ''}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # EOF on its stdin: it stops by itself
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


# -- the measure -----------------------------------------------------------------------------------


def _check(name: str, response: Mapping[str, Any]) -> None:
    """Every write is acknowledged and nothing fails against the responder: anything else means
    the responder's replies are not read as intended, and the figures would be meaningless."""
    expected: dict[str, Any] = (
        {"statusCode": 200} if name == "baseline" else {"batchItemFailures": []}
    )
    if dict(response) != expected:
        raise AssertionError(f"{name}: handle() returned {response!r}, expected {expected!r}")


def bench_end_to_end(
    event: dict[str, Any],
    reps: int,
    batches_per_rep: int,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, Any]:
    """Client CPU µs per event of each handler against the responder (median and min of ``reps``).

    Also: wall-clock µs per event (context: it includes the responder's time and every round
    trip's latency), the ratios baseline/core, and the responder's request counts for one batch of
    each contender in steady state (after the warm-up, so without the one-off ``createIndexes`` of
    the tombstone collection).
    """
    records = len(event["Records"])
    with responder() as port:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000
        )
        try:
            client.admin.command("ping")
            collection = client["bench"]["items"]
            handlers: dict[str, Any] = {
                "core": Replicator(collection, Settings()),
                "core, tombstones off": Replicator(collection, Settings(tombstones=False)),
                "baseline": OriginalHandler(collection),
            }

            def run(name: str) -> Mapping[str, Any]:
                handle = handlers[name].handle
                response: Mapping[str, Any] = {}
                for _ in range(batches_per_rep):
                    response = handle(event)
                return response

            cpu: dict[str, list[float]] = {name: [] for name in handlers}
            wall: dict[str, list[float]] = {name: [] for name in handlers}
            for name in handlers:  # warm-up: connections, sessions, the tombstone index
                _check(name, run(name))
            for _ in range(reps):
                for name in handlers:
                    gc.collect()
                    start, start_wall = clock(), time.perf_counter()
                    response = run(name)
                    cpu[name].append(clock() - start)
                    wall[name].append(time.perf_counter() - start_wall)
                    _check(name, response)

            requests: dict[str, Any] = {}
            for name, handler in handlers.items():
                client.admin.command("benchReset")
                _check(name, handler.handle(event))
                stats = client.admin.command("benchStats")
                requests[name] = {"counts": dict(stats["counts"]), "ops": dict(stats["ops"])}
            batches = {
                name: _batch_summary(handlers[name].process(event))
                for name in ("core", "core, tombstones off")
            }
        finally:
            client.close()

    def per_event_us(seconds: list[float]) -> dict[str, float]:
        scale = 1e6 / (batches_per_rep * records)
        return {"median": statistics.median(seconds) * scale, "min": min(seconds) * scale}

    cpu_us = {name: per_event_us(times) for name, times in cpu.items()}
    return {
        "records": records,
        "reps": reps,
        "batches_per_rep": batches_per_rep,
        "clock": getattr(clock, "__name__", repr(clock)),
        "pymongo": pymongo.version,
        "cpu_us_per_event": cpu_us,
        "wall_us_per_event": {name: per_event_us(times) for name, times in wall.items()},
        "ratio": cpu_us["baseline"]["median"] / cpu_us["core"]["median"],
        "ratio_min": cpu_us["baseline"]["min"] / cpu_us["core"]["min"],
        "ratio_tombstones_off": (
            cpu_us["baseline"]["median"] / cpu_us["core, tombstones off"]["median"]
        ),
        "requests_per_batch": requests,
        "core_batch": batches,
    }


def _batch_summary(batch: Any) -> dict[str, Any]:
    _check("core", batch.lambda_response())
    return {"applied": batch.applied, "stale": batch.stale, "round_trips": batch.round_trips}


# -- CLI -------------------------------------------------------------------------------------------


def format_counts(counts: Mapping[str, int], ops: Mapping[str, int]) -> str:
    parts = []
    for command, n in sorted(counts.items()):
        statements = ops.get(command, n)
        parts.append(f"{command} {n}" + (f" ({statements} statements)" if statements != n else ""))
    return ", ".join(parts) or "none"


def print_report(results: Mapping[str, Any]) -> None:
    print(f"End to end over the wire (pymongo {results['pymongo']} -> wire_responder.py on 127.0.0.1, "
          f"another process): {results['records']} records per batch, {results['batches_per_rep']} "
          f"batches per repetition, {results['reps']} interleaved repetitions after a warm-up; "
          f"clock {results['clock']} (client only)")
    rows = [("Contender", "CPU µs/event median", "min", "wall µs/event median",
             "requests per batch (responder)")]
    for name in CONTENDERS:
        cpu = results["cpu_us_per_event"][name]
        wall = results["wall_us_per_event"][name]
        req = results["requests_per_batch"][name]
        rows.append((name, f"{cpu['median']:.2f}", f"{cpu['min']:.2f}", f"{wall['median']:.2f}",
                     format_counts(req["counts"], req["ops"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"  ratio baseline/core (CPU, median): {results['ratio']:.2f}x; min: "
          f"{results['ratio_min']:.2f}x; baseline/core with tombstones off: "
          f"{results['ratio_tombstones_off']:.2f}x")
    for name, batch in results["core_batch"].items():
        print(f"  {name}: one batch -> {batch['applied']} writes applied, {batch['stale']} stale, "
              f"{batch['round_trips']} round trips (BatchResult)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument("--batches", type=int, default=3, help="batches per repetition (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="one repetition of one batch (a few seconds: checks the script runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.batches = 1, 1
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import bench_core  # the (b) workload: 1,000 records over 300 keys

    event = bench_core.synthetic_event(1000, 300, seed=20240601)
    results = bench_end_to_end(event, args.reps, args.batches)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
