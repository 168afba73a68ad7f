"""The report of bench_core.py: the summary table (core, baseline, ratio, target) and details."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _path in (str(ROOT), str(HERE)):  # the project, and this folder's sibling scripts
    if _path not in sys.path:
        sys.path.insert(0, _path)

TARGETS = {"conversion": 3.0, "cpu": 3.0}  # bench_core.py's targets (ratios against the baselines)

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


