"""The copy by Parallel Scan with 1, 2 and 4 workers against the same source and target, and
where each limit lies (issue 21).

    python benchmarks/bench_scaling.py [--items 20000] [--page 500] [--json out.json] [--quick]

Each layout (processes x segments in threads) copies the same items with ``ScanCopy`` (guard and
tombstones on), in ``bench_parse.py``'s worker processes: the source is a real botocore
``dynamodb`` client answering Scan pages from memory (no emulator CPU), the target ONE
``wire_responder.py`` (a process that answers every command at once: it is not a MongoDB). Per
layout: items/s (wall clock, from "go" to the last worker's end), the workers' CPU per item
(``process_time`` summed), the responder's CPU per item (``/proc/<pid>/stat``, utime + stime) and
the load average before and after, so each figure says how loaded the machine was.

What this machine can and cannot show: it has ``os.cpu_count()`` cores (2 here), shared with the
responder and with other sessions, so the items/s stop growing where the cores are busy, not
where DynamoDB or MongoDB would stop. The script therefore also prints a MODEL: the client CPU
per item measured here against DynamoDB's documented read throughput per partition and the
default table quota, and the workers needed before the source is the limit. ``--quick``: 1,000
items, layouts 1x1 and 2x1 (what CI runs; figures not read). A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_common import machine_info  # noqa: E402
from bench_parse import items_of, run_workers, scan_bodies  # noqa: E402
from bench_wire import responder  # noqa: E402

#: AWS, "Read/write capacity mode" and "Service, account, and table quotas in Amazon DynamoDB":
#: a partition serves at most 3,000 read capacity units per second; one RCU is one strongly
#: consistent read per second, or two eventually consistent ones (Scan's default), of up to 4 KB
#: (a Scan is charged for the total size of the items it reads, rounded up to 4 KB); an
#: on-demand table's default read throughput quota is 40,000 RCU per second.
PARTITION_RCU = 3_000
TABLE_RCU_QUOTA = 40_000
READ_UNIT_BYTES = 4_096
EVENTUALLY_CONSISTENT_READS_PER_RCU = 2

LAYOUTS = ((1, 1), (1, 2), (1, 4), (2, 1), (4, 1))
QUICK_LAYOUTS = ((1, 1), (2, 1))


def _child_cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _responder_pid() -> int | None:
    """The wire_responder child of this process (None where /proc cannot tell)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"wire_responder" in cmdline:
            return int(entry.name)
    return None


def run_layout(port: int, responder_pid: int | None, items: int, page: int, processes: int,
               segments: int) -> dict[str, Any]:
    """One layout: ``processes`` workers of ``segments`` segments each copy their share."""
    before: dict[str, Any] = {}

    def at_go() -> None:  # the load and the target's CPU as the workers are released
        before["load"] = os.getloadavg()[0]
        before["target"] = _child_cpu_s(responder_pid) if responder_pid else None

    results, wall = run_workers(port, items, page, processes, segments, before_go=at_go)
    load_before, target_before = before["load"], before["target"]
    target_cpu = (_child_cpu_s(responder_pid) - target_before
                  if responder_pid and target_before is not None else None)
    cpu = sum(r["cpu_s"] for r in results)
    workers = processes * segments
    return {
        "processes": processes, "segments_per_process": segments, "workers": workers,
        "items": items, "wall_s": round(wall, 3), "items_per_s": round(items / wall),
        "client_cpu_us_per_item": round(cpu * 1e6 / items, 1),
        # how busy the workers kept the cores: 1.0 = one core all the time
        "client_cores_busy": round(cpu / wall, 2),
        "target_cpu_us_per_item": None if target_cpu is None else round(target_cpu * 1e6 / items, 1),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def model(rows: list[dict[str, Any]], item_bytes: float, cores: int) -> dict[str, Any]:
    """Where the limits lie, from the measured CPU per item and AWS's documented throughput."""
    single = next(r for r in rows if r["workers"] == 1)
    client_us = single["client_cpu_us_per_item"]
    per_core = 1e6 / client_us
    per_partition = (PARTITION_RCU * EVENTUALLY_CONSISTENT_READS_PER_RCU * READ_UNIT_BYTES
                     / item_bytes)
    per_table = (TABLE_RCU_QUOTA * EVENTUALLY_CONSISTENT_READS_PER_RCU * READ_UNIT_BYTES
                 / item_bytes)
    return {
        "item_bytes": round(item_bytes),
        "client_cpu_us_per_item_one_worker": client_us,
        "items_per_s_per_busy_core": round(per_core),
        "this_machine_cpu_bound_items_per_s": round(per_core * cores),
        "dynamodb_items_per_s_per_partition": round(per_partition),
        "dynamodb_items_per_s_default_table_quota": round(per_table),
        "busy_cores_to_drain_one_partition": round(per_partition / per_core, 1),
        "busy_cores_to_reach_the_table_quota": round(per_table / per_core, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=500, help="items per Scan page")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 items, layouts 1x1 and 2x1 (CI: it runs, figures unread)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    items = 1_000 if args.quick else args.items
    page = min(args.page, items)
    sample = items_of(min(items, 200))
    item_bytes = sum(len(b) for b in scan_bodies(sample, len(sample))) / len(sample)
    cores = os.cpu_count() or 1
    rows = []
    with responder() as port:
        pid = _responder_pid()
        print(f"{items} items of ~{item_bytes:.0f} bytes, pages of {page}, {cores} cores; "
              "one wire_responder as the target")
        for processes, segments in QUICK_LAYOUTS if args.quick else LAYOUTS:
            row = run_layout(port, pid, items, page, processes, segments)
            rows.append(row)
            print(f"  {processes} process(es) x {segments} segment(s): {row['items_per_s']:>7} "
                  f"items/s, client CPU {row['client_cpu_us_per_item']} µs/item "
                  f"({row['client_cores_busy']} cores busy), target CPU "
                  f"{row['target_cpu_us_per_item']} µs/item, load average "
                  f"{row['load_average_before']} -> {row['load_average_after']}", flush=True)
    limits = model(rows, item_bytes, cores)
    print("model (client CPU per item measured above; DynamoDB throughput as AWS documents it):")
    for name, value in limits.items():
        print(f"  {name:<45} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine_info(), "layouts": rows, "model": limits}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
