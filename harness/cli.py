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

from harness.backends.base import BackendUnavailable, started, target_backend
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
    return target_backend(name or "mongomock")


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
    target: Annotated[str, typer.Option(help="target backend")] = "mongomock",
    target_uri: Annotated[str | None, typer.Option(help="MongoDB URI (overrides --target)")] = None,
    handler: Annotated[str, typer.Option(help="replicator | baseline | module:function")] = (
        "replicator"
    ),
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    database: str = "replay",
    collection: str | None = None,
    dump_target: Annotated[
        Path | None, typer.Option(help="write the collection as canonical Extended JSON lines")
    ] = None,
    report_json: Annotated[Path | None, typer.Option(help="write a JSON report")] = None,
) -> None:
    """Replay a captured stream through a handler; compare with the expected items."""
    from harness.fixtures import load_capture
    from harness.replay import dump_collection, replay as run_replay
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


@app.command("list")
def list_things() -> None:
    """List shipped scenarios, backends and handlers."""
    from rich.table import Table

    from harness.backends.base import iter_registered
    from harness.handlers import BUILTIN

    table = Table(title="Backends and handlers")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("about")
    for kind, name in iter_registered():
        table.add_row(kind, name, "")
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
