"""The ``run``, ``resync`` and ``checkpoints`` commands of ``replicator`` (parsed in
replicator/cli/__init__.py; the migration's ``sync``, ``verify``, ``recover`` are in
replicator/cli/migrate.py).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import threading
from collections.abc import Sequence
from typing import Any

from replicator.cli import endpoints
from replicator.errors import ConfigurationError

#: Exit codes (one table: :data:`EXIT_CODES`, docs/migration.md "Exit codes").
EXIT_OK = 0
#: ``verify``: divergences found; the other commands: failed after they started
EXIT_FAILED = 1
EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_RESYNC = 3
#: could not run: MongoDB or AWS unreachable, credentials refused, table not found (``verify``:
#: also documents it could not re-check because no replication was running)
EXIT_UNAVAILABLE = 4
EXIT_CODES = """Exit codes:
  0  done; verify: the collection holds the table
  1  verify: divergences found (the report names the repair of each kind);
     run, sync, recover, resync: failed after starting (retries exhausted, copy interrupted)
  2  usage or configuration error
  3  re-sync required (the stream lost changes): replicator recover ... --yes
  4  could not run: MongoDB or AWS unreachable, credentials refused, table not found;
     verify: also when documents could not be re-checked (no replication running)"""
log = logging.getLogger("replicator.cli")


def recover_command(args: argparse.Namespace) -> str:
    """The `replicator recover` command for the same table and target (the URI left out): the
    answer to "re-sync required" and to what ``verify`` finds, which never empties the
    collection (docs/migration.md). The options naming the table and the target are repeated;
    the URI never is (``--mongodb-uri <the same URI>`` when one was given)."""
    return repair_command(args, "recover")


def repair_command(args: argparse.Namespace, command: str, extra: Sequence[str] = ()) -> str:
    """``replicator <command> ... [extra] --yes`` for the same table, target and AWS endpoint as
    ``args``; the URI is left out (``<the same URI>`` when it was given)."""
    migration_file = getattr(args, "migration_file", None)
    if migration_file:
        # the file names the target, the key schema and the settings; only what the command
        # line gave besides is repeated
        given = getattr(args, "command_line", args)
        parts = ["replicator", command, "--migration-file", migration_file, "--only", args.table]
        options: tuple[str, ...] = ("endpoint_url", "region")
    else:
        given = args
        parts = ["replicator", command, "--table", args.table]
        options = ("database", "collection", "checkpoint_collection", "endpoint_url", "region")
    for option in options:
        value = getattr(given, option, None)
        if value:
            parts += [f"--{option.replace('_', '-')}", value]
    if getattr(args, "key_schema", None) and not migration_file:
        parts += ["--key-schema", ",".join(args.key_schema)]
    parts += extra
    text = " ".join(shlex.quote(part) for part in parts)
    uri = " --mongodb-uri <the same URI>" if args.mongodb_uri else ""
    return f"{text}{uri} --yes"


#: set by the first SIGTERM/SIGINT of the process: a migration file's next table is not started
SIGNALLED = threading.Event()


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT: finish the current batch, checkpoint, exit 0. A second one: exit now."""

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        SIGNALLED.set()
        if stop.is_set():
            log.warning("%s again: stopping now (the last batch is applied again after a restart)",
                        name)
            raise KeyboardInterrupt
        log.info("%s: finishing the current batch, then stopping", name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)



def cmd_run(args: argparse.Namespace, environ: Any) -> int:
    stop = threading.Event()
    install_signal_handlers(stop)
    target = endpoints.Target(args, environ)
    server = None
    try:
        metrics = None
        if getattr(args, "metrics_port", None) is not None:
            try:
                from replicator.poller.metrics import PollerMetrics
            except ImportError as error:
                raise ConfigurationError(
                    "--metrics-port needs prometheus_client: pip install "
                    "'ddb-mongo-replicator[poller]'") from error
            metrics = PollerMetrics(args.table, target.collection.name,
                                    stall_after_s=args.stall_after)
            server = metrics.serve(args.metrics_port, args.metrics_host)
            log.info("metrics at %s/metrics, health at %s/healthz", server.url, server.url)
        poller = endpoints.make_poller(args, environ, target, stop, starting_position=args.starting_position,
                         poll_interval=args.poll_interval, log_interval=args.log_interval,
                         metrics=metrics)
        stats = poller.run(once=args.once)
    finally:
        if server is not None:
            server.close()
        target.close()
    why = "stopped by signal" if stats.stopped_by_signal else "stream drained (--once)"
    log.info("%s: %d records applied, %d checkpoints saved; exiting", why,
             stats.records_applied, stats.checkpoints)
    return EXIT_OK


def cmd_resync(args: argparse.Namespace, environ: Any) -> int:
    from replicator.poller.resync import resync

    if not args.yes:
        raise ConfigurationError(
            "resync deletes the collection's documents, its tombstones and the table's "
            "checkpoints, then rebuilds them from the stream and a table scan: stop every "
            "poller of this table and run again with --yes (to bring the collection up to "
            f"date without emptying it: {recover_command(args)})")
    stop = threading.Event()
    install_signal_handlers(stop)
    target = endpoints.Target(args, environ)
    try:
        poller = endpoints.make_poller(args, environ, target, stop, poll_interval=0.2, log_interval=30.0)
        stats = resync(poller, page_size=args.batch_size)
    finally:
        target.close()
    log.info("resync done: %d stream records applied, %d items scanned (%d written, %d already "
             "newer); start `replicator run` now", stats.stream_records_applied,
             stats.items_scanned, stats.items_written, stats.items_skipped_newer)
    return EXIT_OK


def cmd_checkpoints(args: argparse.Namespace, environ: Any) -> int:
    target = endpoints.Target(args, environ)
    try:
        store = target.checkpoints
        if args.delete:
            if not args.yes:
                raise ConfigurationError("--delete needs --yes")
            count = store.delete(table=args.table)
            print(f"deleted {count} checkpoint documents of table {args.table}")
            return EXIT_OK
        documents = store.all(table=args.table)
        if not documents:
            print(f"no checkpoints for table {args.table}")
        for document in documents:
            if document.get("kind") == "stream":
                print(f"stream {document.get('stream_arn')}: started at "
                      f"{document.get('starting_position')} {document.get('started_at')}, "
                      f"alive {document.get('alive_at')}")
            else:
                state = "finished" if document.get("finished") else "open"
                print(f"  shard {document.get('shard_id')}: {document.get('sequence_number')} "
                      f"({state}, {document.get('updated_at')})")
        return EXIT_OK
    finally:
        target.close()
