"""``harness``: run scenarios, replay captured streams, list what exists."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.backends.base import (
    DEFAULT_TARGET,
    MAX_BATCH_RECORDS,
    BackendUnavailable,
    started,
    target_backend,
)
from harness.secrets import redact_uri

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Locals in tracebacks could hold a MongoDB URI with its password: never show them.
    pretty_exceptions_show_locals=False,
    help="Dev kit for DynamoDB Streams -> MongoDB replication: scenarios, replay, chaos.",
)
console = Console(stderr=False)
err = Console(stderr=True)


def _target(name: str | None, uri: str | None) -> Any:
    if uri:
        return target_backend("uri", uri=uri)
    return target_backend(name or DEFAULT_TARGET)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


@app.command()
def replay(
    table: Annotated[Path, typer.Option(help="CreateTable request (table.json)")],
    events: Annotated[Path, typer.Option(help='Lambda event {"Records": [...]} (events.json)')],
    expect_items: Annotated[
        Path | None, typer.Option(help="consistent scan at the end (final_items.json)")
    ] = None,
    target: Annotated[
        str, typer.Option(help="mongoeco (default) | mongomock | uri | testcontainers-*")
    ] = DEFAULT_TARGET,
    target_uri: Annotated[str | None, typer.Option(help="MongoDB URI (overrides --target)")] = None,
    handler: Annotated[str, typer.Option(help="replicator | baseline | module:function")] = (
        "replicator"
    ),
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH_RECORDS)] = 100,
    database: str = "replay",
    collection: str | None = None,
    dump_target: Annotated[
        Path | None, typer.Option(help="write the collection as canonical Extended JSON lines")
    ] = None,
    report_json: Annotated[Path | None, typer.Option(help="write a JSON report")] = None,
) -> None:
    """Replay a captured stream through a handler; compare with the expected items."""
    from harness.fixtures import load_capture
    from harness.replay import dump_collection
    from harness.replay import replay as run_replay
    from harness.report import print_diff, summary_table
    from replicator.errors import ReplicationError

    try:
        capture = load_capture(table, events, expect_items)
    except ValueError as error:
        _fail(str(error))
    backend = _target(target, target_uri)
    name = collection or capture.table.name
    try:
        with started(backend):
            target_collection = backend.collection(database, name)
            target_collection.delete_many({})
            with _progress() as bar:
                task = bar.add_task("replaying", total=len(capture.records))
                result = run_replay(
                    capture, target_collection, handler_name=handler, batch_size=batch_size,
                    progress=lambda done, total: bar.update(task, completed=done),
                )
            if dump_target:
                count = dump_collection(target_collection, dump_target)
                err.print(f"wrote {count} documents to {dump_target}")
            actual = target_collection.count_documents({})
    except (BackendUnavailable, ReplicationError) as error:
        _fail(redact_uri(str(error), target_uri))
    console.print(summary_table([
        ("handler", handler),
        ("target", backend.describe()),
        ("records", len(capture.records)),
        ("batches", result.batches),
        ("invocations", result.invocations),
        ("redelivered records", result.redelivered),
        ("documents in target", actual),
    ], title=f"Replay of {capture.table.name}"))
    if result.diff is not None:
        print_diff(console, result.diff)
    if report_json:
        report_json.write_text(json.dumps({
            "converged": result.diff.converged if result.diff else None,
            "records": len(capture.records),
            "invocations": result.invocations,
            "error": result.error,
            "diff": result.diff.as_dict() if result.diff else None,
        }, indent=2, default=str))
    if result.error:
        _fail(result.error)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def run(
    scenario: Annotated[
        list[str] | None, typer.Argument(help="scenario name or .toml path (default: smoke)")
    ] = None,
    all_scenarios: Annotated[bool, typer.Option("--all", help="every shipped scenario")] = False,
    source: Annotated[str | None, typer.Option(help="moto | moto-server | dynamodb-local")] = None,
    target: Annotated[
        str | None, typer.Option(help="mongoeco (default) | mongomock | uri | testcontainers-*")
    ] = None,
    target_uri: Annotated[str | None, typer.Option(help="MongoDB URI (target uri)")] = None,
    handler: Annotated[
        str | None, typer.Option(help="replicator | baseline | module:function")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="override the workload seed")] = None,
    report_json: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    junit: Annotated[Path | None, typer.Option(help="write a JUnit XML report here")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a lag-over-time PNG here")] = None,
) -> None:
    """Run scenarios: write a workload, replicate it, check MongoDB converged to the table.

    Exit code 0 if and only if every scenario met its expectation.
    """
    from harness.backends.base import BackendUnavailable
    from harness.report import print_diff, summary_table
    from harness.runner import run_scenario
    from harness.scenario import (
        DEFAULT_SCENARIO,
        ScenarioError,
        list_scenarios,
        load_scenario,
    )

    try:
        if all_scenarios:
            scenarios = [s for _, s in list_scenarios()]
        else:
            scenarios = [load_scenario(name) for name in (scenario or [DEFAULT_SCENARIO])]
    except ScenarioError as error:
        _fail(str(error))
    results = []
    for chosen in scenarios:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(
                step: str, done: int, total: int | None,
                tasks: dict[str, Any] = tasks, label: str = chosen.name, bar: Progress = bar,
            ) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(f"{label}: {step}", total=total)
                bar.update(tasks[step], completed=done, total=total)

            try:
                result = run_scenario(
                    chosen, source=source, target=target, target_uri=target_uri,
                    handlers=[handler] if handler else None, seed=seed, progress=progress,
                )
            except (BackendUnavailable, OSError, RuntimeError, ValueError) as error:
                _fail(f"{chosen.name}: {redact_uri(str(error), target_uri)}")
        results.append(result)
        for outcome in result.outcomes:
            print_diff(console, outcome.diff, title=f"{chosen.name} / {outcome.handler}: diff")
        lag = result.outcomes[0].lag if result.outcomes else None
        console.print(summary_table([
            ("source -> target", f"{result.source} -> {result.target}"),
            ("table", result.table),
            ("stream records", result.stream_records),
            ("events/s (write+drain)", _fmt(result.events_per_s)),
            ("lag p50 / p95 / p99 (ms)", _lag_cell(lag)),
            *[(f"{o.handler}: expected {o.expectation}",
               ("met" if o.met else "NOT met") + f" ({o.diff.actual_count} docs)")
              for o in result.outcomes],
            *[(f"{name}: missing diverging paths", ", ".join(paths))
              for name, paths in result.missing_paths.items() if paths],
            ("timings (s)", ", ".join(f"{k}={v}" for k, v in result.timings.items())),
            *[("note", note) for note in result.notes],
        ], title=f"Scenario {chosen.name}: {'PASS' if result.met else 'FAIL'}"))
        if plot and lag is not None:
            from harness.lag import plot as plot_lag

            target_png = plot if len(scenarios) == 1 else plot.with_name(
                f"{plot.stem}-{chosen.name}{plot.suffix}")
            plot_lag(lag, str(target_png), f"{chosen.name}: replication lag")
    if report_json:
        payload: Any = results[0].as_dict() if len(results) == 1 else {
            "scenarios": [r.as_dict() for r in results],
            "expectation_met": all(r.met for r in results),
        }
        report_json.write_text(json.dumps(payload, indent=2, default=str))
    if junit:
        from harness.junit import write_junit

        write_junit(junit, results)
    raise typer.Exit(0 if all(r.met for r in results) else 1)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _lag_cell(lag: Any) -> str:
    if lag is None or not lag.samples:
        return "-"
    return " / ".join(f"{lag.percentile(p) * 1000:,.0f}" for p in (50, 95, 99))


@app.command()
def chaos(
    schedules: Annotated[int, typer.Option(min=1, help="how many seeded schedules")] = 20,
    seed: Annotated[int, typer.Option(help="the first schedule's seed")] = 0,
    report_json: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    recordings: Annotated[
        Path, typer.Option(help="where failing schedules are recorded for replay")
    ] = Path("chaos-recordings"),
    no_guard: Annotated[
        bool, typer.Option("--no-guard", help="switch the stale-write guard off (to see it fail)")
    ] = False,
) -> None:
    """Random fault schedules on moto + mongomock; exit 0 only with no divergence and no loss."""
    from rich.table import Table

    from harness.chaos import run_chaos

    # Injected faults make the replicator log every retry; the table below is the summary.
    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)
    try:
        with _progress() as bar:
            task = bar.add_task("chaos schedules", total=schedules)
            report = run_chaos(
                schedules, seed, guard=not no_guard, recordings=recordings,
                progress=lambda done, total, result: bar.update(task, completed=done),
            )
    finally:
        replicator_log.setLevel(level)
    table = Table(title=f"chaos: {report['schedules']} schedules from seed {seed}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in ("schedules", "records", "diverged", "lost_records", "seconds"):
        table.add_row(name, str(report[name]))
    for fault, count in sorted(report["faults_injected"].items()):
        table.add_row(f"injected: {fault}", str(count))
    console.print(table)
    for divergence in report["divergences"][:10]:
        console.print(
            f"[red]seed {divergence['seed']}[/red]: lost={len(divergence['lost_records'])} "
            f"recording={divergence['recording']}", highlight=False,
        )
    if report_json:
        report_json.write_text(json.dumps(report, indent=2, default=str))
    raise typer.Exit(0 if not report["divergences"] else 1)


@app.command("list")
def list_things() -> None:
    """List shipped scenarios, backends and handlers."""
    from rich.table import Table

    from harness.backends.base import SOURCES, TARGETS, iter_registered
    from harness.handlers import BUILTIN

    table = Table(title="Backends and handlers")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("about")
    for kind, name in iter_registered():
        backend = (SOURCES if kind == "source" else TARGETS)[name]
        about = (backend.__doc__ or "").strip().split("\n")[0]
        if kind == "target" and name == DEFAULT_TARGET:
            about = f"(default) {about}"
        table.add_row(kind, name, about)
    for name, about in BUILTIN.items():
        table.add_row("handler", name, about)
    try:
        from harness.scenario import list_scenarios

        for path, scenario in list_scenarios():
            table.add_row("scenario", path.stem, scenario.description)
    except ImportError:
        pass
    console.print(table)


def _fail(message: str) -> Any:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="harness")


if __name__ == "__main__":
    sys.exit(main())
