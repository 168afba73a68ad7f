"""Commands that run scenarios: ``run`` (workload, replication, convergence check, reports; or a
migration scenario's copy under a live writer), ``chaos`` (seeded fault schedules) and ``list``
(scenarios, backends, handlers)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from harness.backends.base import DEFAULT_TARGET
from harness.cli.app import (
    app,
    check_names,
    console,
    err,
    fail,
    parent_ready,
    progress_bar,
    wrote,
)
from replicator.redact import redact_uri


@app.command()
def run(
    scenario: Annotated[
        list[str] | None, typer.Argument(help="scenario name or .toml path (default: smoke)")
    ] = None,
    all_scenarios: Annotated[bool, typer.Option("--all", help="every shipped scenario")] = False,
    source: Annotated[
        str | None, typer.Option(help="moto | moto-server | moto-process | dynamodb-local")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="mongoeco (default) | mongomock | uri | testcontainers-*")
    ] = None,
    target_uri: Annotated[str | None, typer.Option(help="MongoDB URI (target uri)")] = None,
    handler: Annotated[
        str | None, typer.Option(help="replicator | baseline | module:function")
    ] = None,
    seed: Annotated[int | None, typer.Option(
        help="override the seed (the workload's; a migration scenario's live writer's)")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="override a scenario key, checked by the schema (repeatable): "
             "migration.items=20000, workload.operations=5000")] = None,
    report_json: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    junit: Annotated[Path | None, typer.Option(help="write a JUnit XML report here")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a lag-over-time PNG here")] = None,
    esm_template: Annotated[Path | None, typer.Option(
        help="take the event source mapping settings from this SAM/CloudFormation template "
             "(e.g. deploy/template.yaml)")] = None,
) -> None:
    """Run scenarios: write a workload, replicate it, check MongoDB converged to the table.

    A migration scenario (initial-sync, gap-recovery) copies a table under a live writer instead.
    Exit code 0 if and only if every scenario met its expectation.
    """
    from harness.backends.base import BackendUnavailable
    from harness.report import print_diff, summary_table
    from harness.run import run_any
    from harness.scenario import (
        DEFAULT_SCENARIO,
        ScenarioError,
        list_scenarios,
        load_scenario,
        parse_overrides,
    )

    check_names(source, None if target_uri else target)
    parent_ready(report_json, junit, plot)
    try:
        assignments = parse_overrides(overrides or [])
        if all_scenarios:
            scenarios = []
            for path, shipped in list_scenarios():
                if shipped.migration and handler:
                    err.print(f"skipped {shipped.name}: a migration scenario has no handler "
                              f"(--handler {handler})", highlight=False, markup=False)
                    continue
                if shipped.name == "load":
                    # 50,000 events: minutes, and measured by nox -s load (bench_load.py).
                    err.print("skipped load: run it by name or with nox -s load",
                              highlight=False, markup=False)
                    continue
                needs = shipped.target.get("name")
                if needs and target is None and target_uri is None:
                    # sharded/standalone need a real topology (Docker): never run them silently
                    # on the embedded stack in their place.
                    err.print(f"skipped {shipped.name}: needs target {needs} "
                              f"(run it with --target {needs})", highlight=False, markup=False)
                    continue
                scenarios.append(load_scenario(path, assignments) if assignments else shipped)
        else:
            scenarios = [load_scenario(name, assignments)
                         for name in (scenario or [DEFAULT_SCENARIO])]
    except ScenarioError as error:
        fail(str(error))
    if esm_template is not None:
        from harness.esm.template import TemplateError, with_template_esm

        try:
            # a migration scenario has no event source mapping: the replicator's poller reads
            scenarios = [s if s.migration else with_template_esm(s, esm_template)
                         for s in scenarios]
        except TemplateError as error:
            fail(str(error))
    results = []
    for chosen in scenarios:
        with progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def progress(
                step: str, done: int, total: int | None,
                tasks: dict[str, Any] = tasks, label: str = chosen.name, bar: Progress = bar,
            ) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(f"{label}: {step}", total=total)
                bar.update(tasks[step], completed=done, total=total)

            try:
                result = run_any(
                    chosen, source=source, target=target, target_uri=target_uri,
                    handlers=[handler] if handler else None, seed=seed, progress=progress,
                )
            except (BackendUnavailable, OSError, RuntimeError, ValueError) as error:
                fail(f"{chosen.name}: {redact_uri(str(error), target_uri)}")
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
            *[(f"check {name}", "passed" if passed else "FAILED")
              for name, passed in result.checks.items()],
            ("timings (s)", ", ".join(f"{k}={v}" for k, v in result.timings.items())),
            *[("note", note) for note in result.notes],
        ], title=f"Scenario {chosen.name}: {'PASS' if result.met else 'FAIL'}"))
        if plot and chosen.migration:
            err.print(f"no lag plot for {chosen.name}: a migration scenario measures no stream lag",
                      highlight=False, markup=False)
        elif plot and lag is not None:
            from harness.lag import plot as plot_lag

            target_png = plot if len(scenarios) == 1 else plot.with_name(
                f"{plot.stem}-{chosen.name}{plot.suffix}")
            plot_lag(lag, str(target_png), f"{chosen.name}: replication lag")
            wrote("the lag plot", target_png)
    if report_json:
        payload: Any = results[0].as_dict() if len(results) == 1 else {
            "scenarios": [r.as_dict() for r in results],
            "expectation_met": all(r.met for r in results),
        }
        report_json.write_text(json.dumps(payload, indent=2, default=str))
        wrote("the JSON report", report_json)
    if junit:
        from harness.junit import write_junit

        write_junit(junit, results)
        wrote("the JUnit report", junit)
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
        str, typer.Option(help="embedded target: mongoeco (the wire server, the default "
                                 "everywhere) or mongomock (in-process, faster)")
    ] = "mongoeco",
    plant: Annotated[
        list[str] | None, typer.Option(
            help="plant a bug to see chaos find it: no_tombstones, no_recheck, children_first "
                 "(with --no-guard), no_deadline, arrival_order (the KDS source; repeatable); "
                 "each also sets the schedule shape it needs to show")
    ] = None,
    source: Annotated[
        str, typer.Option(help="where the records come from: dynamodb (the table's stream) or "
                               "kinesis (Kinesis Data Streams for DynamoDB: shuffled, duplicated; "
                               "docs/sources.md)")
    ] = "dynamodb",
) -> None:
    """Random fault schedules on moto + an embedded target; exit 0 only with no divergence, no
    loss, no regression and no resurrection."""
    from harness.chaos.shape import PLANTS, SOURCES

    if target not in ("mongomock", "mongoeco"):
        fail(f"unknown chaos target {target!r}; valid: mongoeco, mongomock")
    for name in plant or []:
        if name not in PLANTS:
            fail(f"unknown planted bug {name!r}; valid: {', '.join(PLANTS)}")
    if source not in SOURCES:
        fail(f"unknown chaos source {source!r}; valid: {', '.join(SOURCES)}")
    parent_ready(report_json)
    from rich.table import Table

    from harness.chaos import run_chaos

    # Injected faults make the replicator log every retry; the table below is the summary.
    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)
    try:
        with progress_bar() as bar:
            task = bar.add_task("chaos schedules", total=schedules)
            report = run_chaos(
                schedules, seed, guard=not no_guard, recordings=recordings, target=target,
                plants=plant or (),
                shape_overrides={"source": source} if source != "dynamodb" else None,
                progress=lambda done, total, result: bar.update(task, completed=done),
            )
    finally:
        replicator_log.setLevel(level)
    planted = "".join(f" --plant {name}" for name in plant or [])
    planted += f" --source {source}" if source != "dynamodb" else ""
    guard_note = " --no-guard" if no_guard else ""
    table = Table(title=f"chaos: {report['schedules']} schedules from seed {seed} on {target}"
                        f"{guard_note}{planted}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in ("schedules", "records", "diverged", "lost_records", "regressions",
                 "resurrections", "mid_delivery_sightings", "seconds"):
        table.add_row(name, str(report.get(name, 0)))
    for fault, count in sorted(report["faults_injected"].items()):
        table.add_row(f"injected: {fault}", str(count))
    console.print(table)
    for divergence in report["divergences"][:10]:
        console.print(
            f"[red]seed {divergence['seed']}[/red]: lost={len(divergence['lost_records'])} "
            f"violations={len(divergence.get('violations') or [])} "
            f"faults={json.dumps(divergence['faults'])} shape={json.dumps(divergence['shape'])} "
            f"recording={divergence['recording']}", highlight=False,
        )
    if report_json:
        report_json.write_text(json.dumps(report, indent=2, default=str))
        wrote("the JSON report", report_json)
    raise typer.Exit(0 if not report["divergences"] else 1)


#: reST in docstrings: ``literal`` and :role:`target` / :role:`~module.Name` (shown as Name).
_REST_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def plain_text(doc: str) -> str:
    """The first paragraph of a docstring or description as plain text on one line: its lines
    joined (never cut at the first line break), reST literals and roles unwrapped. Hand-written
    (two substitutions) rather than docutils, which renders whole documents, not a phrase."""
    paragraph = doc.strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    text = _REST_ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    return text.replace("``", "")


@app.command("list")
def list_things() -> None:
    """List shipped scenarios, backends and handlers, as plain text."""
    from harness.backends.base import SOURCES, TARGETS, iter_registered
    from harness.handlers import BUILTIN

    sections: dict[str, list[tuple[str, str]]] = {
        "sources (--source)": [],
        f"targets (--target; default {DEFAULT_TARGET})": [],
        "handlers (--handler; or module:function)": [],
        "scenarios (harness run NAME)": [],
    }
    sources, targets, handlers, scenarios = sections.values()
    for kind, name in iter_registered():
        backend = (SOURCES if kind == "source" else TARGETS)[name]
        (sources if kind == "source" else targets).append((name, plain_text(backend.__doc__ or "")))
    handlers.extend((name, plain_text(about)) for name, about in BUILTIN.items())
    try:
        from harness.scenario import list_scenarios

        scenarios.extend((path.stem, plain_text(scenario.description))
                         for path, scenario in list_scenarios())
    except ImportError:
        pass
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    name_width = max(len(name) for rows in sections.values() for name, _ in rows) + 2
    lines: list[str] = []
    for title, rows in sections.items():
        if not rows:
            continue
        lines.append(title)
        for name, about in rows:
            lines.extend(textwrap.wrap(
                about or "-", width=width, initial_indent=f"  {name:<{name_width}}",
                subsequent_indent=" " * (2 + name_width), break_on_hyphens=False))
        lines.append("")
    typer.echo("\n".join(lines).rstrip("\n"))
