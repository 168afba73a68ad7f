"""Events/s of the embedded targets side by side: mongoeco (wire protocol, real pymongo) and mongomock.

    python benchmarks/bench_targets.py [--targets mongoeco,mongomock] [--scenarios a,b] [--json out.json]

Two measures, each on every target in one run (targets interleaved per item, so a noisy neighbour
is spread over both):

* the replay of the fixture corpus (tests/fixtures/dynamodb-local: real DynamoDB Local captures) in
  Lambda-sized batches of 100 through the replicator with its defaults -- stream records / wall
  seconds of ``harness.captures.replay.replay`` (convergence is checked, and a divergence fails the script);
* ``harness run`` scenarios (source: in-process moto) -- the runner's own figure, stream records /
  (write + drain) seconds; the source sets much of that pace (docs/sources.md), so it is context.

Wall clock, not CPU: the wire target spends its time in another thread of this process and on the
loopback. The figures are for comparing targets with each other on one machine in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.backends.base import started, target_backend  # noqa: E402
from harness.captures.format import load_capture_dir  # noqa: E402
from harness.captures.replay import replay  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "dynamodb-local"
# keys_only needs a read-back of the table, which a replay of a capture does not have.
SKIP_FIXTURES = {"keys_only"}
DEFAULT_SCENARIOS = ("smoke", "hot-keys", "type-zoo")


def bench_replay(targets: list[str], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name not in SKIP_FIXTURES):
        capture = load_capture_dir(folder)
        rates: dict[str, list[float]] = {t: [] for t in targets}
        for rep in range(reps):
            for target in targets:
                with started(target_backend(target)) as backend:
                    collection = backend.collection("bench", f"{folder.name}_{rep}")
                    start = time.perf_counter()
                    result = replay(capture, collection, batch_size=100)
                    elapsed = time.perf_counter() - start
                if not result.ok:
                    raise SystemExit(f"{folder.name} on {target} did not converge: {result.error}")
                rates[target].append(len(capture.records) / elapsed)
        out[folder.name] = {"records": len(capture.records),
                            "events_per_s": {t: statistics.median(r) for t, r in rates.items()}}
    return out


def bench_scenarios(targets: list[str], scenarios: list[str]) -> dict[str, Any]:
    from harness.runner import run_scenario
    from harness.scenario import load_scenario

    out: dict[str, Any] = {}
    for name in scenarios:
        scenario = load_scenario(name)
        row: dict[str, Any] = {}
        for target in targets:
            result = run_scenario(scenario, source="moto", target=target)
            row[target] = {"met": result.met, "stream_records": result.stream_records,
                           "events_per_s": result.events_per_s}
        out[name] = row
    return out


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    print(title)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="mongoeco,mongomock")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    parser.add_argument("--reps", type=int, default=3, help="replay repetitions (median)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--quick", action="store_true",
                        help="one replay repetition, no scenario (checks the script runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.scenarios = 1, ""
    targets = [t for t in args.targets.split(",") if t]
    results = {"replay": bench_replay(targets, args.reps),
               "scenarios": bench_scenarios(targets, [s for s in args.scenarios.split(",") if s])}
    rows = [("fixture", "records", *(f"{t} events/s" for t in targets),
             *(f"{targets[0]}/{t}" for t in targets[1:]))]
    for name, row in results["replay"].items():
        rates = row["events_per_s"]
        rows.append((name, str(row["records"]), *(f"{rates[t]:,.0f}" for t in targets),
                     *(f"{rates[targets[0]] / rates[t]:.2f}x" for t in targets[1:])))
    print_table("Replay of the fixture corpus (batches of 100, defaults):", rows)
    rows = [("scenario", "records", *(f"{t} events/s" for t in targets), "met")]
    for name, row in results["scenarios"].items():
        rows.append((name, str(row[targets[0]]["stream_records"]),
                     *(f"{row[t]['events_per_s'] or 0:,.0f}" for t in targets),
                     ", ".join(f"{t}: {row[t]['met']}" for t in targets)))
    print_table("harness run scenarios (source moto, in-process):", rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
