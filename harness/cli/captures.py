"""Commands on captured streams: ``replay`` a recording through a handler, ``record`` one from a
scenario or a table's stream, ``shrink`` a failing one."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from harness.backends.base import DEFAULT_TARGET, MAX_BATCH_RECORDS, BackendUnavailable, started
from harness.cli.app import app, check_names, console, fail, parent_ready, progress_bar, target_for, wrote
from replicator.redact import redact_uri


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
    check_names(target=None if target_uri else target)
    parent_ready(report_json, dump_target)
    if (events.parent / "schedule.json").exists() and not no_faults:
        _replay_chaos(events.parent, report_json)
    from harness.captures.format import load_capture
    from harness.captures.replay import dump_collection, recorded_shards
    from harness.captures.replay import replay as run_replay
    from harness.report import print_diff, summary_table
    from replicator.errors import ReplicationError

    try:
        capture = load_capture(table, events, expect_items)
    except ValueError as error:
        fail(str(error))
    backend = target_for(target, target_uri)
    name = collection or capture.table.name
    try:
        with started(backend):
            target_collection = backend.collection(database, name)
            target_collection.delete_many({})
            with progress_bar() as bar:
                task = bar.add_task("replaying", total=len(capture.records))
                result = run_replay(
                    capture, target_collection, handler_name=handler, batch_size=batch_size,
                    progress=lambda done, total: bar.update(task, completed=done),
                    shards=recorded_shards(events.parent),
                )
            if dump_target:
                count = dump_collection(target_collection, dump_target)
                wrote(f"{count} documents", dump_target)
            actual = target_collection.count_documents({})
    except (BackendUnavailable, ReplicationError) as error:
        fail(redact_uri(str(error), target_uri))
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
        wrote("the JSON report", report_json)
    if result.error:
        fail(result.error)
    raise typer.Exit(0 if result.ok else 1)


def _replay_chaos(directory: Path, report_json: Path | None) -> None:
    from harness.chaos import replay_recording

    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)  # injected faults make it log every retry
    try:
        result = replay_recording(directory)
    except (OSError, ValueError, KeyError) as error:
        fail(f"{directory}: not a chaos recording ({error})")
    finally:
        replicator_log.setLevel(level)
    console.print(f"chaos recording {directory}: seed {result.seed}, guard "
                  f"{'on' if result.guard else 'off'}, {result.records} records, faults "
                  f"{dict(sorted(result.injected.items()))}", highlight=False)
    console.print(("[red]diverged[/red]" if result.diverged else "converged")
                  + f", lost records: {len(result.lost_records)}, regressions: "
                  f"{result.regressions}, resurrections: {result.resurrections}")
    if result.diff:
        console.print_json(json.dumps(result.diff, default=str))
    if report_json:
        report_json.write_text(json.dumps({
            "chaos_recording": str(directory), "seed": result.seed, "guard": result.guard,
            "diverged": result.diverged, "lost_records": result.lost_records,
            "injected": result.injected, "diff": result.diff,
            "regressions": result.regressions, "resurrections": result.resurrections,
            "violations": result.violations,
        }, indent=2, default=str))
        wrote("the JSON report", report_json)
    raise typer.Exit(1 if result.failed else 0)


@app.command()
def record(
    out: Annotated[Path, typer.Option(help="folder for table.json, events.json, final_items.json")],
    scenario: Annotated[str | None, typer.Option(
        help="run this scenario's workload on a fresh table of --source, then record it")] = None,
    table: Annotated[str | None, typer.Option(help="record this existing table's stream")] = None,
    source: Annotated[str, typer.Option(
        help="moto | moto-server | moto-process | dynamodb-local (with --scenario), or with --table: "
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

    from harness.captures.recording import anonymize as anonymize_recording
    from harness.captures.recording import record_for_cli, resolve_key, write_recording
    from harness.scenario import ScenarioError

    try:
        key = resolve_key(anonymize_key_file, os.environ) if anonymize else b""
        recording = record_for_cli(scenario=scenario, table=table, source=source,
                                   endpoint_url=endpoint_url, region=region, profile=profile,
                                   seed=seed)
    except (BackendUnavailable, ScenarioError, OSError, RuntimeError, ValueError) as error:
        fail(str(error))
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
    handler: Annotated[str | None, typer.Option(
        help="replicator | baseline | module:function (default: the handler recording.json "
             "names, else replicator: the failure you recorded)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> None:
    """Delta-debug a failing recording down to the fewest records that still fail."""
    from harness.captures.shrink import shrink_directory

    handler = handler or recorded_handler(recording)
    target = out or recording.with_name(recording.name + "-shrunk")
    replicator_log = logging.getLogger("replicator")
    level = replicator_log.level
    replicator_log.setLevel(logging.CRITICAL)
    try:
        result = shrink_directory(recording, target, handler, batch_size=batch_size)
    except (OSError, ValueError) as error:
        fail(f"{error} (handler: {handler})")
    finally:
        replicator_log.setLevel(level)
    console.print(
        f"{result.original} records -> {len(result.kept)} (positions {result.kept}) after "
        f"{result.trials} replays; {handler}: {result.reason}\nwrote {target.resolve()}",
        highlight=False,
    )


def recorded_handler(recording: Path) -> str:
    """The handler a recording was made with (``"handler"`` in its recording.json, when it names
    one), else ``replicator``: by default shrink reduces the user's own failure."""
    meta = recording / "recording.json"
    try:
        named = json.loads(meta.read_text()).get("handler") if meta.exists() else None
    except (OSError, ValueError, AttributeError):
        named = None  # a broken recording.json is reported by the shrink itself
    return named if isinstance(named, str) and named else "replicator"
