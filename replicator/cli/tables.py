"""``--migration-file PATH [--only TABLE]``: ``replicator sync``, ``run``, ``verify``,
``recover`` and ``prepare`` for every table of a migration file (replicator/migration_file.py;
docs/migration.md, "A whole application").

* ``sync``, ``verify``, ``recover``, ``prepare``: the tables one after another, each through the same command
  as ``--table`` (its own target, checkpoints, settings), each in its own try: a table that fails
  is reported and the next one runs (a sync is resumable: run the same command again). After a
  SIGTERM/SIGINT the table in progress ends as its command does and the others are not started.
* ``run``: every table's :class:`replicator.poller.Poller` in its own thread of one process, one
  MongoDB client, one stop event; with ``--metrics-port``, one ``/metrics`` (a ``table`` label)
  and one ``/healthz`` for all (:class:`replicator.poller.metrics.TablesMetrics`). A table whose
  poller stops on an error (re-sync required, retries exhausted, table not found) is logged with
  its exit code and the command that repairs it, ``/healthz`` answers 503 naming it, and the other
  tables go on; the process exits when every poller has ended (SIGTERM/SIGINT, ``--once``
  drained, or all failed).

The exit code is the highest of the tables' codes (0 < 1 diverged/failed < 2 usage < 3 re-sync
required < 4 could not run); one line per table on stderr gives its own code and exact counts.
A file that cannot be used is exit 2 before any table runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from replicator.cli.commands import EXIT_FAILED, EXIT_OK, SIGNALLED
from replicator.errors import ConfigurationError

log = logging.getLogger("replicator.cli")

#: the options a migration file replaces (it names each table's target and key schema)
PER_TABLE_OPTIONS = ("table", "database", "collection", "checkpoint_collection", "key_schema")
#: options that name one table's own input: allowed with a migration file only for one table
ONE_TABLE_OPTIONS = ("export", "incremental_export", "last_applied_sequence", "last_applied_at",
                     "kinesis_stream")
MEANING = {0: "done", 1: "failed", 2: "usage or configuration error", 3: "re-sync required",
           4: "could not run"}

ExitCodeOf = Callable[[BaseException, argparse.Namespace], int]


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--migration-file`` and ``--only`` of a command that takes them."""
    parser.add_argument(
        "--migration-file", default=None, metavar="PATH",
        help="every table of this TOML file, each into its own namespace with its own settings "
             "(instead of --table, --database, --collection, --key-schema; docs/migration.md, "
             "\"A whole application\")")
    parser.add_argument(
        "--only", action="append", default=None, metavar="TABLE",
        help="with --migration-file: this table only (repeat for several)")


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors (exit 2) of ``--table`` / ``--migration-file`` / ``--only``."""
    if getattr(args, "migration_file", None) is None:
        if getattr(args, "only", None):
            parser.error("--only picks tables of a --migration-file")
        if args.table is None:
            parser.error("the following arguments are required: --table (or --migration-file "
                         "with sync, run, verify, recover, prepare)")
        return
    given = [f"--{name.replace('_', '-')}" for name in PER_TABLE_OPTIONS
             if getattr(args, name, None)]
    if given:
        parser.error(f"{', '.join(given)}: the migration file names each table's target and key "
                     "schema (pick tables with --only TABLE)")


def run(args: argparse.Namespace, environ: Mapping[str, str], exit_code_of: ExitCodeOf,
        add_secrets: Callable[[Sequence[str]], None]) -> int:
    """Run ``args.func`` for every selected table of ``args.migration_file``; the highest exit
    code. ``exit_code_of(error, table_args)`` maps what a table's command raised to its exit code
    (and logs it), as for ``--table``; ``add_secrets`` adds the URI read from the file's source to
    what logs never show."""
    from replicator.migration_file import load

    migration = load(args.migration_file)
    selected = migration.select(args.only)
    for option in ONE_TABLE_OPTIONS:
        if getattr(args, option, None) and len(selected) > 1:
            raise ConfigurationError(
                f"--{option.replace('_', '-')} belongs to one table: add --only TABLE "
                f"({len(selected)} tables selected from {migration.path})")
    environ = _with_uri(args, environ, migration, add_secrets)
    per_table = [table_args(args, entry, migration) for entry in selected]
    log.info("migration file %s: %s of %d table(s): %s", migration.path, args.command,
             len(per_table), ", ".join(f"{t.table} -> {t.table_migration.namespace}"
                                       for t in per_table))
    if args.command == "run":
        codes = _run_pollers(per_table, environ, exit_code_of)
    else:
        codes = _one_after_another(per_table, environ, exit_code_of)
    worst = max(codes.values())
    print(f"{args.command} of {len(codes)} table(s) from {migration.path}: exit {worst} "
          f"({', '.join(f'{table} {code}' for table, code in codes.items())})", file=sys.stderr)
    return worst


def table_args(args: argparse.Namespace, entry: Any, migration: Any) -> argparse.Namespace:
    """The command's arguments for one table of the file: its target, key schema, settings and
    report; the command line's region, endpoint and URI win over the file's."""
    values = dict(vars(args))
    values.update(
        table=entry.table, database=entry.database, collection=entry.collection,
        checkpoint_collection=entry.checkpoint_collection, key_schema=entry.key_schema,
        region=args.region or migration.defaults.region,
        endpoint_url=args.endpoint_url or migration.defaults.endpoint_url,
        table_settings=dict(entry.settings_values), table_migration=entry,
        report=report_path(getattr(args, "report", None), entry.table),
        # the command line's --kinesis-stream (one table only) wins over the entry's
        kinesis_stream=getattr(args, "kinesis_stream", None) or entry.kinesis_stream,
        command_line=args, outcome=[],
    )
    return argparse.Namespace(**values)


def report_path(path: str | None, table: str) -> str | None:
    """``--report out.json`` with a migration file: ``out.<table>.json`` for each table."""
    if not path:
        return None
    given = Path(path)
    return str(given.with_name(f"{given.stem}.{table}{given.suffix or '.json'}"))


def _with_uri(args: argparse.Namespace, environ: Mapping[str, str], migration: Any,
              add_secrets: Callable[[Sequence[str]], None]) -> Mapping[str, str]:
    """The environment the tables' commands see: ``MONGODB_URI`` from the file's source when the
    command line gives no ``--mongodb-uri``."""
    source = migration.defaults.uri_source
    if source is None or args.mongodb_uri:
        return environ
    from replicator import uri_source
    from replicator.redact import secrets_of

    where = f"{migration.path}: [defaults] mongodb_uri_{source.kind}"
    if source.kind == "env":
        if not environ.get(source.name):
            raise ConfigurationError(f"{where} names the variable {source.name}, which is not set")
        uri = uri_source.checked_uri(environ[source.name], source.name)
    else:
        from replicator.cli import endpoints

        # Secrets Manager / SSM of the file's region, never the DynamoDB endpoint (DynamoDB Local)
        aws = argparse.Namespace(region=args.region or migration.defaults.region,
                                 endpoint_url=None)
        variable = uri_source.SECRET_ARN if source.kind == "secret_arn" else uri_source.PARAMETER
        uri = uri_source.mongodb_uri(
            {variable: source.name},
            client=lambda service: endpoints.aws_client(aws, environ, service))
    add_secrets(secrets_of(uri, {}))
    return {**environ, "MONGODB_URI": uri}


def _summary(table_args: argparse.Namespace, code: int) -> None:
    """One line per table: its exit code, what it means, and the command's exact counts."""
    entry = table_args.table_migration
    meaning = MEANING.get(code, "interrupted")
    if code == 1 and table_args.command == "verify":
        meaning = "diverged"
    counts = "; ".join(f"{name}: {value}" for name, value in table_args.outcome)
    print(f"table {entry.table} -> {entry.namespace}: exit {code} ({meaning})"
          + (f"; {counts}" if counts else ""), file=sys.stderr)


def _one_after_another(per_table: Sequence[argparse.Namespace], environ: Mapping[str, str],
                       exit_code_of: ExitCodeOf) -> dict[str, int]:
    codes: dict[str, int] = {}
    for index, table_args in enumerate(per_table):
        if SIGNALLED.is_set():
            for rest in per_table[index:]:
                log.warning("table %s not started: stopped by signal", rest.table)
                codes[rest.table] = EXIT_FAILED
                rest.outcome.append(("not started", "stopped by signal"))
                _summary(rest, EXIT_FAILED)
            break
        log.info("table %s (%s): %s", table_args.table, table_args.table_migration.entry,
                 table_args.command)
        try:
            code = int(table_args.func(table_args, environ))
        except KeyboardInterrupt:
            raise
        except Exception as error:
            code = exit_code_of(error, table_args)
        codes[table_args.table] = code
        _summary(table_args, code)
    return codes


def _run_pollers(per_table: Sequence[argparse.Namespace], environ: Mapping[str, str],
                 exit_code_of: ExitCodeOf) -> dict[str, int]:
    """Every table's poller in its own thread; see the module docstring for a failing table."""
    from replicator.cli import commands, endpoints

    first = per_table[0]
    stop = threading.Event()
    commands.install_signal_handlers(stop)
    metrics = None
    if first.metrics_port is not None:
        try:
            from replicator.poller.metrics import TablesMetrics
        except ImportError as error:
            raise ConfigurationError(
                "--metrics-port needs prometheus_client: pip install "
                "'ddb-mongo-replicator[poller]'") from error
        metrics = TablesMetrics(stall_after_s=first.stall_after)
    shared = endpoints.Target(first, environ)
    server = None
    codes: dict[str, int] = {}
    try:
        pollers = []
        for table_args in per_table:
            target = shared if table_args is first else endpoints.Target(
                table_args, environ, client=shared.client)
            poller = endpoints.make_poller(
                table_args, environ, target, stop, starting_position=table_args.starting_position,
                poll_interval=table_args.poll_interval, log_interval=table_args.log_interval,
                metrics=(metrics.table(table_args.table, target.collection.name)
                         if metrics is not None else None))
            pollers.append((table_args, poller))
        if metrics is not None:
            server = metrics.serve(first.metrics_port, first.metrics_host)
            log.info("metrics at %s/metrics, health at %s/healthz (%d tables)", server.url,
                     server.url, len(pollers))

        def follow(table_args: argparse.Namespace, poller: Any) -> None:
            try:
                stats = poller.run(once=table_args.once)
            except Exception as error:
                code = exit_code_of(error, table_args)
                log.error("table %s: its poller stopped (exit %d: %s); the other tables go on",
                          table_args.table, code, MEANING.get(code, "?"))
                if metrics is not None:
                    metrics.stopped(table_args.table, code, str(error))
                codes[table_args.table] = code
                return
            table_args.outcome.extend([
                ("records applied", stats.records_applied),
                ("checkpoints saved", stats.checkpoints),
                ("stopped by", "signal" if stats.stopped_by_signal else "stream drained (--once)")])
            codes[table_args.table] = EXIT_OK

        threads = [threading.Thread(target=follow, args=pair, name=f"poller-{pair[0].table}",
                                    daemon=True) for pair in pollers]
        for thread in threads:
            thread.start()
        for thread in threads:
            # a timeout, so the main thread keeps running its signal handlers between waits
            while thread.is_alive():
                thread.join(timeout=1.0)
    finally:
        if server is not None:
            server.close()
        shared.close()
    for table_args in per_table:
        _summary(table_args, codes.get(table_args.table, EXIT_FAILED))
    return {t.table: codes.get(t.table, EXIT_FAILED) for t in per_table}
