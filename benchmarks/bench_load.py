"""The ``load`` scenario's figures (issue 14, part 4): replay of its recorded stream, and live.

    python benchmarks/bench_load.py [--part replay|live|all] [--operations N] [--out DIR]
                                    [--json out.json] [--quick]

* **replay**: the scenario's stream, generated once into ``DIR/recording`` by
  ``harness generate`` (reused while its operation count matches), replayed through the
  event source mapping emulation into the default target (mongoeco) -- no source emulator in the
  loop;
* **live**: ``harness run load`` with the source (moto's server) in a child process; the lag plot
  goes to ``DIR/lag.png``.

Each part runs in a child process of its own, so each RSS peak (``getrusage`` ``ru_maxrss``: the
child's own, the in-process mongoeco server included, the moto child not) is that part's. One run
each; the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.timing import PARTS  # noqa: E402

DEFAULT_OUT = ROOT / "reports" / "load"


def _child(part: str, operations: int | None, out: Path) -> dict[str, Any]:
    from harness.load import live_load, replay_load, with_operations
    from harness.scenario import load_scenario

    scenario = with_operations(load_scenario("load"), operations)
    if part == "replay":
        return replay_load(out / "recording", scenario)
    return live_load(scenario, plot=out / "lag.png")


def _recording(out: Path, operations: int | None) -> None:
    """Generate the recording unless one of that many operations is there."""
    meta = out / "recording" / "recording.json"
    if meta.exists():
        workload = json.loads(meta.read_text()).get("workload", {})
        from harness.scenario import load_scenario

        wanted = operations or load_scenario("load").workload["operations"]
        if workload.get("operations") == wanted:
            return
    command = [sys.executable, "-m", "harness.cli", "generate", "load", str(out / "recording")]
    if operations is not None:
        command += ["--set", f"workload.operations={operations}"]
    subprocess.run(command, check=True, cwd=ROOT)


def _run_part(part: str, operations: int | None, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", part, "--out", str(out)]
    if operations is not None:
        command += ["--operations", str(operations)]
    done = subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'run':<7} {'events':>7} {'wall s':>7} {'ev/s':>6} {'RSS MB':>7} "
        f"{'batch p50/p99 ms':>17} {'lag p50/p99 ms':>15} converged",
    ]
    for r in results:
        batch = r.get("handler_batch_s") or {}
        lag = r.get("lag_s") or {}
        lag_text = f"{_ms(lag.get('p50_s'))}/{_ms(lag.get('p99_s'))}" if lag else "-"
        lines.append(
            f"{r['run']:<7} {r['events']:>7,} {r['wall_s']:>7.1f} {r['events_per_s'] or 0:>6,.0f} "
            f"{r['rss_peak_mb'] or 0:>7.0f} "
            f"{_ms(batch.get('p50')) + '/' + _ms(batch.get('p99')):>17} {lag_text:>15} "
            f"{r['converged']}"
        )
    lines.append("")
    lines.append(f"{'busy s (share)':<15}" + "".join(f"{p:>22}" for p in PARTS))
    for r in results:
        parts = r.get("parts") or {}
        lines.append(f"{r['run']:<15}" + "".join(
            f"{parts.get(p, {}).get('seconds', 0):>13.1f} ({parts.get(p, {}).get('share', 0):>5.1%})"
            for p in PARTS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["replay", "live", "all"], default="all")
    parser.add_argument("--operations", type=int, help="override the scenario's 50,000")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=["replay", "live"], help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="the replay of 1,000 operations only, into a temporary folder "
                             "(checks the script runs)")
    args = parser.parse_args(argv)
    if args.quick and not args.child:
        args.part, args.operations = "replay", args.operations or 1000
        if args.out == DEFAULT_OUT:
            args.out = Path(tempfile.mkdtemp(prefix="bench_load_"))
    out: Path = args.out.resolve()
    if args.child:
        print(json.dumps(_child(args.child, args.operations, out), default=str))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    parts = ["replay", "live"] if args.part == "all" else [args.part]
    results = []
    for part in parts:
        if part == "replay":
            _recording(out, args.operations)
        results.append(_run_part(part, args.operations, out))
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    failed = [r["run"] for r in results if not r["converged"] or r.get("error")]
    if failed:
        print(f"did not converge: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
