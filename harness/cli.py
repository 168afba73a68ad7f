"""``harness``: run scenarios, replay captured streams, list what exists."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup
from typer.exceptions import TyperException

from harness.backends.base import (
    DEFAULT_TARGET,
    MAX_BATCH_RECORDS,
    BackendUnavailable,
    started,
    target_backend,
)
from harness.secrets import install_log_redaction, redact, redact_known, redact_uri, secrets_in_argv


class RedactingGroup(TyperGroup):
    """click echoes bad arguments in its usage errors (``Got unexpected extra argument
    (mongodb://user:password@...)``, ``No such command 'mongodb://...'``) and rich may wrap the
    message across lines: redact it before it is rendered. Also for ``CliRunner``."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        install_log_redaction(secrets_in_argv(argv))
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except TyperException as error:  # typer's (vendored) click.ClickException and UsageError
            message = getattr(error, "message", None)
            if isinstance(message, str):
                error.message = redact_known(redact(message, secrets_in_argv(argv)))
            if not standalone_mode:
                raise
            try:
                from typer.rich_utils import rich_format_error
            except ImportError:  # typer without rich
                error.show()  # type: ignore[attr-defined]
            else:
                rich_format_error(error)  # type: ignore[arg-type]
            sys.exit(getattr(error, "exit_code", 1))
        except typer.Abort:
            if not standalone_mode:
                raise
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=RedactingGroup,
    add_completion=False,
    no_args_is_help=True,
    # Locals in tracebacks could hold a MongoDB URI with its password: never show them.
    pretty_exceptions_show_locals=False,
    help="Dev kit for DynamoDB Streams -> MongoDB replication: scenarios, replay, chaos.",
)
console = Console(stderr=False)
err = Console(stderr=True)


def _check_names(source: str | None = None, target: str | None = None) -> None:
    """A mistyped --source/--target ends in one line naming the valid ones (exit 2), before any
    emulator or container starts."""
    from harness.backends.base import SOURCES, TARGETS, iter_registered

    list(iter_registered())  # imports the backend modules, which register themselves
    for kind, name, known in (("source", source, SOURCES), ("target", target, TARGETS)):
        if name is not None and name not in known:
            _fail(f"unknown {kind} {name!r}; valid: {', '.join(sorted(known))}")


def _parent_ready(*paths: Path | None) -> None:
    """Create the folders of the report/plot/dump paths before the run, not after it."""
    for path in paths:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            _fail(f"cannot create the folder for {path}: {error}")
        if path.is_dir():
            _fail(f"{path} is a folder; give a file name")


def _wrote(what: str, path: Path) -> None:
    err.print(f"wrote {what} to {path.resolve()}", highlight=False, markup=False)


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
    no_faults: Annotated[bool, typer.Option(
        "--no-faults", help="a chaos recording (schedule.json beside events.json): replay it "
                            "without its fault plan")] = False,
) -> None:
    """Replay a captured stream through a handler; compare with the expected items.

    A chaos recording (``schedule.json`` beside ``events.json``) is replayed with its fault plan
    and settings, so its divergence comes back; ``--no-faults`` replays the records alone.
    """
    _check_names(target=None if target_uri else target)
    _parent_ready(report_json, dump_target)
    if (events.parent / "schedule.json").exists() and not no_faults:
        _replay_chaos(events.parent, report_json)
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
                _wrote(f"{count} documents", dump_target)
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
        _wrote("the JSON report", report_json)
    if result.error:
        _fail(result.error)
    raise typer.Exit(0 if result.ok else 1)


def _replay_chaos(directory: Path, report_json: Path | None) -> None:
    from harness.chaos import replay_recording

    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)  # injected faults make it log every retry
    try:
        result = replay_recording(directory)
    except (OSError, ValueError, KeyError) as error:
        _fail(f"{directory}: not a chaos recording ({error})")
    finally:
        replicator_log.setLevel(level)
    console.print(f"chaos recording {directory}: seed {result.seed}, guard "
                  f"{'on' if result.guard else 'off'}, {result.records} records, faults "
                  f"{dict(sorted(result.injected.items()))}", highlight=False)
    console.print(("[red]diverged[/red]" if result.diverged else "converged")
                  + f", lost records: {len(result.lost_records)}")
    if result.diff:
        console.print_json(json.dumps(result.diff, default=str))
    if report_json:
        report_json.write_text(json.dumps({
            "chaos_recording": str(directory), "seed": result.seed, "guard": result.guard,
            "diverged": result.diverged, "lost_records": result.lost_records,
            "injected": result.injected, "diff": result.diff,
        }, indent=2, default=str))
        _wrote("the JSON report", report_json)
    raise typer.Exit(1 if result.failed else 0)


@app.command()
def record(
    out: Annotated[Path, typer.Option(help="folder for table.json, events.json, final_items.json")],
    scenario: Annotated[str | None, typer.Option(
        help="run this scenario's workload on a fresh table of --source, then record it")] = None,
    table: Annotated[str | None, typer.Option(help="record this existing table's stream")] = None,
    source: Annotated[str, typer.Option(
        help="moto | moto-server | dynamodb-local (with --scenario), or with --table: "
             "aws (your credentials) or an emulator at --endpoint-url")] = "moto",
    endpoint_url: Annotated[str | None, typer.Option(help="emulator endpoint (with --table)")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (with --source aws)")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (with --source aws)")] = None,
    seed: Annotated[int | None, typer.Option(help="override the workload seed")] = None,
    anonymize: Annotated[bool, typer.Option(
        "--anonymize", help="replace S and B values by keyed hashes (same type, size and "
                            "consistency); the key comes from $HARNESS_ANONYMIZE_KEY or "
                            "--anonymize-key-file")] = False,
    anonymize_key_file: Annotated[Path | None, typer.Option(help="file holding the key")] = None,
) -> None:
    """Capture a stream into the fixture format that `harness replay` and `harness shrink` read."""
    import os

    from harness.recording import anonymize as anonymize_recording
    from harness.recording import record_for_cli, resolve_key, write_recording
    from harness.scenario import ScenarioError

    try:
        key = resolve_key(anonymize_key_file, os.environ) if anonymize else b""
        recording = record_for_cli(scenario=scenario, table=table, source=source,
                                   endpoint_url=endpoint_url, region=region, profile=profile,
                                   seed=seed)
    except (BackendUnavailable, ScenarioError, OSError, RuntimeError, ValueError) as error:
        _fail(str(error))
    if anonymize:
        recording = anonymize_recording(recording, key)
    write_recording(recording, out)
    console.print(f"recorded {len(recording.records)} stream records of {recording.table.name} "
                  f"into {out.resolve()}" + (" (anonymized)" if anonymize else ""), highlight=False)


@app.command()
def shrink(
    recording: Annotated[Path, typer.Argument(help="folder of a recording that fails")],
    out: Annotated[Path | None, typer.Option(help="where the minimal recording goes "
                                                  "(default: <recording>-shrunk)")] = None,
    handler: Annotated[str, typer.Option(help="replicator | baseline | module:function")] = (
        "baseline"),
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> None:
    """Delta-debug a failing recording down to the fewest records that still fail."""
    from harness.shrink import shrink_directory

    target = out or recording.with_name(recording.name + "-shrunk")
    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)
    try:
        result = shrink_directory(recording, target, handler, batch_size=batch_size)
    except (OSError, ValueError) as error:
        _fail(str(error))
    finally:
        replicator_log.setLevel(level)
    console.print(
        f"{result.original} records -> {len(result.kept)} (positions {result.kept}) after "
        f"{result.trials} replays; {handler}: {result.reason}\nwrote {target.resolve()}",
        highlight=False,
    )


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
    esm_template: Annotated[Path | None, typer.Option(
        help="take the event source mapping settings from this SAM/CloudFormation template "
             "(e.g. deploy/template.yaml)")] = None,
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

    _check_names(source, None if target_uri else target)
    _parent_ready(report_json, junit, plot)
    try:
        if all_scenarios:
            scenarios = []
            for _, shipped in list_scenarios():
                needs = shipped.target.get("name")
                if needs and target is None and target_uri is None:
                    # sharded/standalone need a real topology (Docker): never run them silently
                    # on the embedded stack in their place.
                    err.print(f"skipped {shipped.name}: needs target {needs} "
                              f"(run it with --target {needs})", highlight=False, markup=False)
                    continue
                scenarios.append(shipped)
        else:
            scenarios = [load_scenario(name) for name in (scenario or [DEFAULT_SCENARIO])]
    except ScenarioError as error:
        _fail(str(error))
    if esm_template is not None:
        from harness.esm_template import TemplateError, with_template_esm

        try:
            scenarios = [with_template_esm(s, esm_template) for s in scenarios]
        except TemplateError as error:
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
            _wrote("the lag plot", target_png)
    if report_json:
        payload: Any = results[0].as_dict() if len(results) == 1 else {
            "scenarios": [r.as_dict() for r in results],
            "expectation_met": all(r.met for r in results),
        }
        report_json.write_text(json.dumps(payload, indent=2, default=str))
        _wrote("the JSON report", report_json)
    if junit:
        from harness.junit import write_junit

        write_junit(junit, results)
        _wrote("the JUnit report", junit)
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
    target: Annotated[
        str, typer.Option(help="embedded target: mongomock or mongoeco (the wire server)")
    ] = "mongomock",
    plant: Annotated[
        list[str] | None, typer.Option(help="plant a bug to see chaos find it: no_tombstones, "
                                            "no_recheck, children_first (repeatable)")
    ] = None,
) -> None:
    """Random fault schedules on moto + an embedded target; exit 0 only with no divergence and no
    loss."""
    from harness.chaos.shape import PLANTS

    if target not in ("mongomock", "mongoeco"):
        _fail(f"unknown chaos target {target!r}; valid: mongoeco, mongomock")
    for name in plant or []:
        if name not in PLANTS:
            _fail(f"unknown planted bug {name!r}; valid: {', '.join(PLANTS)}")
    _parent_ready(report_json)
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
                schedules, seed, guard=not no_guard, recordings=recordings, target=target,
                plants=plant or (),
                progress=lambda done, total, result: bar.update(task, completed=done),
            )
    finally:
        replicator_log.setLevel(level)
    table = Table(title=f"chaos: {report['schedules']} schedules from seed {seed} on {target}")
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
            f"faults={json.dumps(divergence['faults'])} shape={json.dumps(divergence['shape'])} "
            f"recording={divergence['recording']}", highlight=False,
        )
    if report_json:
        report_json.write_text(json.dumps(report, indent=2, default=str))
        _wrote("the JSON report", report_json)
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
    # Messages may quote an argument (a mistyped URI given as a scenario path): redact them all.
    err.print(f"[red]error:[/red] {redact_known(message)}", highlight=False, markup=True)
    raise typer.Exit(2)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="harness")


if __name__ == "__main__":
    main()
