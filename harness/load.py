"""The ``load`` scenario's two measured runs (issue 14, part 4; ``nox -s load``,
benchmarks/bench_load.py):

* :func:`replay_load` -- a recorded stream (:mod:`harness.loadgen`) through the event source
  mapping emulation into a target: no source emulator in the loop ("load-scenario replay in CI");
* :func:`live_load` -- the scenario itself, the source in its own process (``moto-process``).

Each returns a plain dict of figures: wall seconds, events/s, this process's peak RSS, the handler
time per batch, each part's busy seconds and share (harness/timing.py), lag percentiles. The
figures are one run's, on whatever machine runs it.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.backends.base import DEFAULT_TARGET, TableSpec, started, target_backend
from harness.captures.format import Capture
from harness.captures.replay import iter_recorded_records, recorded_shards, replay
from harness.runner import driver_config, rss_peak_mb, run_scenario
from harness.scenario import Scenario
from harness.timing import Stopwatch, shares, timed_collection

__all__ = ["live_load", "replay_load", "with_operations"]


def with_operations(scenario: Scenario, operations: int | None) -> Scenario:
    """The scenario with ``workload.operations`` replaced (small runs of the load scenario)."""
    if operations is None:
        return scenario
    return replace(scenario, workload={**scenario.workload, "operations": operations})


def replay_load(
    recording: Path, scenario: Scenario, *, target: str = DEFAULT_TARGET, database: str = "load"
) -> dict[str, Any]:
    """Replay ``recording`` with the scenario's event source mapping settings into ``target``."""
    directory = Path(recording)
    # The events are read as they are fed (iter_recorded_records), never all parsed at once.
    capture = Capture(
        TableSpec.from_create_table_request(json.loads((directory / "table.json").read_text())),
        {"Records": []},
        json.loads((directory / "final_items.json").read_text()),
    )
    shards = recorded_shards(directory)
    events = sum(count for _, _, count in shards) if shards else \
        sum(1 for _ in iter_recorded_records(directory / "events.json"))
    stopwatch = Stopwatch()
    backend = target_backend(target)
    with started(backend):
        collection = backend.collection(database, capture.table.name)
        collection.delete_many({})
        began = time.perf_counter()
        result = replay(capture, collection, writes_to=timed_collection(collection, stopwatch),
                        esm=driver_config(scenario), shards=shards,
                        records=iter_recorded_records(directory / "events.json"), total=events)
        wall = time.perf_counter() - began
        documents = collection.count_documents({})
    report = result.driver
    assert report is not None
    return {
        "run": "replay",
        "target": target,
        "events": events,
        "documents": documents,
        "converged": bool(result.diff and result.diff.converged),
        "error": result.error,
        "wall_s": round(wall, 2),
        "events_per_s": round(events / wall, 1) if wall > 0 else None,
        "rss_peak_mb": rss_peak_mb(),
        "invocations": report.invocations,
        "handler_batch_s": report.handler_s.as_dict(),
        "wait_s": report.wait_s.as_dict(),
        "parts": shares(stopwatch.seconds, handler_total_s=report.handler_s.total),
        # Summed over the lanes that run at once (ParallelizationFactor), so it may exceed wall_s.
        "handler_busy_s": round(report.handler_s.total, 2),
    }


def live_load(
    scenario: Scenario, *, source: str | None = None, target: str = DEFAULT_TARGET,
    plot: Path | None = None,
) -> dict[str, Any]:
    """Run the scenario live; with ``plot``, write the lag-over-time PNG there."""
    began = time.perf_counter()
    result = run_scenario(scenario, source=source, target=target)
    wall = time.perf_counter() - began
    report = result.as_dict()
    primary = result.outcomes[0] if result.outcomes else None
    if plot is not None and primary is not None:
        from harness.lag import plot as plot_lag

        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_lag(primary.lag, str(plot), f"{scenario.name}: lag over time ({result.source})")
    return {
        "run": "live",
        "source": result.source,
        "target": result.target,
        "events": result.stream_records,
        "documents": report["counts"]["documents"],
        "converged": report["converged"],
        "error": result.error,
        "wall_s": round(wall, 2),
        "write_and_drain_s": round(result.timings.get("write_and_drive_s", 0)
                                   + result.timings.get("drain_s", 0), 2),
        "events_per_s": round(result.events_per_s, 1) if result.events_per_s else None,
        "rss_peak_mb": rss_peak_mb(),
        "handler_batch_s": primary.driver.get("handler_s") if primary else None,
        "parts": result.parts(),
        "lag_s": report["lag"],
        "timings_s": result.timings,
        "plot": str(plot) if plot is not None else None,
    }
