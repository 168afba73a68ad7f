"""The ``sync``, ``verify`` and ``recover`` subcommands of ``replicator`` (see replicator/cli/__init__.py).

    replicator sync --table T --mongodb-uri URI [--segments 4] [--read-units-per-s 500]
    replicator sync --table T --mongodb-uri URI --export s3://bucket/prefix/AWSDynamoDB/ID
    replicator verify --table T --mongodb-uri URI [--report verify.json]
    replicator recover --table T --mongodb-uri URI [--incremental-export s3://... | --pitr-export-bucket B]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from replicator.errors import ConfigurationError

log = logging.getLogger("replicator.cli")
EXIT_OK = 0
EXIT_DIVERGENT = 1


def _worker(text: str) -> tuple[int, int]:
    try:
        index, _, total = text.partition("/")
        worker = (int(index), int(total))
    except ValueError:
        raise argparse.ArgumentTypeError("--worker is i/N, e.g. 0/4") from None
    if not 0 <= worker[0] < worker[1]:
        raise argparse.ArgumentTypeError("--worker i/N needs 0 <= i < N")
    return worker


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    sync = commands.add_parser(
        "sync", parents=[common], help="copy the table into the collection, then follow its stream",
        description="Record the stream's positions, copy the table (Parallel Scan, or a DynamoDB "
                    "export to S3) through the replicator core, then apply the stream from the "
                    "recorded positions until caught up. Run again after a kill: it resumes. "
                    "Then start `replicator run` (or the Lambda event source mapping).")
    sync.add_argument("--segments", type=int, default=4, help="Parallel Scan TotalSegments")
    sync.add_argument("--page-size", type=int, default=1000, help="Scan Limit per page")
    sync.add_argument("--consistent-read", action="store_true",
                      help="strongly consistent Scan (twice the read capacity)")
    sync.add_argument("--read-units-per-s", type=float, default=None,
                      help="at most this many read capacity units per second (all segments)")
    sync.add_argument("--no-follow", action="store_true",
                      help="apply the stream only after the copy (default: a thread applies it "
                           "during the copy)")
    sync.add_argument("--restart", action="store_true",
                      help="forget the segments' saved positions: copy from the start")
    sync.add_argument("--export", default=None, metavar="DIR_OR_S3",
                      help="load this full export (.../AWSDynamoDB/<ExportId>) instead of scanning")
    sync.add_argument("--processes", type=int, default=0,
                      help="export: data files loaded by this many processes (default: in-process)")
    sync.add_argument("--worker", type=_worker, default=(0, 1), metavar="i/N",
                      help="export: take the data files i, i+N, ... (split across machines)")
    sync.add_argument("--batch-size", type=int, default=100, help="stream records per batch")
    sync.add_argument("--report", default=None, help="write the JSON report here")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")
    sync.set_defaults(func=cmd_sync)

    verify = commands.add_parser(
        "verify", parents=[common], help="compare the table and the collection (exit 0: equal)",
        description="Parallel Scan of the table against batched $in reads of the collection; "
                    "each difference is re-checked after replication caught up past the item, "
                    "so a live writer causes no false divergence.")
    verify.add_argument("--segments", type=int, default=4)
    verify.add_argument("--page-size", type=int, default=1000)
    verify.add_argument("--rechecks", type=int, default=3)
    verify.add_argument("--recheck-delay", type=float, default=10.0,
                        help="seconds to let replication catch up before a re-check (above the "
                             "replication lag; default 10)")
    verify.add_argument("--report", default=None, help="write the JSON report here")
    verify.set_defaults(func=cmd_verify)

    recover = commands.add_parser(
        "recover", parents=[common], help="recover after a gap past the stream's 24 hours",
        description="Apply the stream from TRIM_HORIZON, then the changes of the gap: an "
                    "incremental export (point-in-time recovery) or a re-copy that writes only "
                    "what differs and deletes documents whose item is gone. The collection is "
                    "never emptied. Stop every poller of the table first.")
    recover.add_argument("--incremental-export", action="append", default=[],
                         metavar="DIR_OR_S3", help="an incremental export covering the gap")
    recover.add_argument("--pitr-export-bucket", default=None,
                         help="request the incremental export(s) into this S3 bucket")
    recover.add_argument("--pitr-export-prefix", default="replicator-recover")
    recover.add_argument("--margin-minutes", type=float, default=15.0)
    recover.add_argument("--segments", type=int, default=4)
    recover.add_argument("--page-size", type=int, default=1000)
    recover.add_argument("--batch-size", type=int, default=100)
    recover.add_argument("--report", default=None)
    recover.add_argument("--last-applied-sequence", default=None, metavar="S",
                         help="instead of the checkpoints (a Lambda deployment has none): the "
                              "gap follows sequence number S; every document at S or below is "
                              "checked against the table (`replicator redrive` prints it)")
    recover.add_argument("--last-applied-at", default=None, metavar="ISO8601",
                         help="with --last-applied-sequence: when S was written (incremental "
                              "exports start there, minus --margin-minutes)")
    recover.add_argument("--yes", action="store_true", help="confirm: no poller is running")
    recover.set_defaults(func=cmd_recover)


# -- progress -----------------------------------------------------------------------------------
class ProgressBar:
    """A rich progress bar (items, items/s, ETA) when rich is installed and stderr is a
    terminal; log lines otherwise."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._done = 0
        self._lock = threading.Lock()
        self._last_log = time.monotonic()
        self._started = time.monotonic()
        if enabled and sys.stderr.isatty():
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )
            except ImportError:
                return
            self._bar = Progress(TextColumn("copy"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} items/s"),
                                 TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task("copy", total=total or None, rate="-")

    def __enter__(self) -> ProgressBar:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, items: int) -> None:
        with self._lock:
            self._done += items
            elapsed = max(time.monotonic() - self._started, 1e-9)
            rate = self._done / elapsed
            if self._bar is not None:
                self._bar.update(self._task, advance=items, rate=f"{rate:,.0f}")
            elif time.monotonic() - self._last_log >= 10:
                self._last_log = time.monotonic()
                log.info("copy: %d items, %.0f items/s", self._done, rate)


def print_summary(title: str, rows: list[tuple[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for name, value in rows:
            print(f"{name}: {value}", file=sys.stderr)
        return
    table = Table(title=title)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    Console(stderr=True).print(table)


def _write_report(path: str | None, data: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)


# -- commands -----------------------------------------------------------------------------------
def _poller(args: argparse.Namespace, environ: Any, stop: threading.Event) -> tuple[Any, Any]:
    from replicator.cli import commands, endpoints

    commands.install_signal_handlers(stop)
    target = endpoints.Target(args, environ)
    poller = endpoints.make_poller(args, environ, target, stop, poll_interval=0.2,
                                  log_interval=30.0)
    return target, poller


def cmd_sync(args: argparse.Namespace, environ: Any) -> int:
    from replicator.migrate.export import WorkerTarget, load_manifest
    from replicator.migrate.sync import sync_export, sync_scan

    stop = threading.Event()
    target, poller = _poller(args, environ, stop)
    try:
        if args.export:
            manifest = load_manifest(args.export)
            worker_target = None
            if args.processes > 0:
                worker_target = WorkerTarget(target.uri,
                                             target.collection.database.name,
                                             target.collection.name, None, ())
            with ProgressBar(manifest.item_count, not args.no_progress) as bar:
                report = sync_export(poller, manifest, processes=args.processes,
                                     worker=args.worker, worker_target=worker_target,
                                     on_file=lambda r: bar.advance(r.lines))
            copied = report.export
            rows: list[tuple[str, Any]] = [("source", report.source)]
            if copied is not None:
                rows += [("data files", copied.files), ("lines", copied.lines),
                         ("written", copied.written), ("newer from the stream", copied.skipped_newer),
                         ("lines quarantined", copied.quarantined),
                         ("items/s", f"{copied.items_per_s:,.0f}")]
        else:
            total = poller.dynamodb.describe_table(TableName=args.table)["Table"].get("ItemCount")
            with ProgressBar(total, not args.no_progress) as bar:
                report = sync_scan(poller, segments=args.segments, page_size=args.page_size,
                                   consistent_read=args.consistent_read,
                                   read_units_per_s=args.read_units_per_s, restart=args.restart,
                                   follow=not args.no_follow,
                                   on_progress=bar.advance)
            stats = report.copy
            rows = [("source", report.source)]
            if stats is not None:
                rows += [("segments (done before / resumed)",
                          f"{stats.segments} ({stats.segments_already_done} / "
                          f"{stats.segments_resumed})"),
                         ("items read", stats.items_read), ("written", stats.items_written),
                         ("newer from the stream", stats.items_skipped_newer),
                         ("read capacity units", f"{stats.consumed_read_units:,.1f}"),
                         ("throttled s", f"{stats.throttled_s:.1f}"),
                         ("items/s", f"{stats.items_per_s:,.0f}")]
        rows += [("stream records applied", report.stream_records_applied),
                 ("consistent at", report.consistent_at.isoformat() if report.consistent_at
                  else "-")]
        print_summary(f"sync of {args.table}", rows)
        _write_report(args.report, report.as_dict())
    finally:
        target.close()
    log.info("sync done; start `replicator run` with the same options to keep following the "
             "stream (or the Lambda event source mapping: docs/migration.md)")
    return EXIT_OK


def replication_waiter(checkpoints: Any, stream_arn: str | None, delay_s: float,
                       timeout_s: float = 300.0, running_within_s: float = 120.0,
                       now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                       sleep: Callable[[float], None] = time.sleep) -> Callable[[], None]:
    """Wait ``delay_s``; then, if a poller is running (its stream marker was refreshed within
    ``running_within_s``; it refreshes it every log interval), until the marker shows it alive
    after the wait began: a poller alive past a moment has polled past the records before it.
    With no running poller (a Lambda event source mapping) the delay alone."""

    def wait() -> None:
        asked = now()
        sleep(delay_s)
        if stream_arn is None:
            return
        marker = checkpoints.marker(stream_arn)
        if (marker is None or marker.alive_at is None
                or (asked - marker.alive_at).total_seconds() > running_within_s):
            return
        waited = 0.0
        while waited < timeout_s:
            marker = checkpoints.marker(stream_arn)
            if marker is None or (marker.alive_at is not None and marker.alive_at > asked):
                return
            step = max(1.0, min(5.0, delay_s))
            sleep(step)
            waited += step
        log.warning("the poller's marker did not move for %.0f s: is `replicator run` running?",
                    timeout_s)

    return wait


def cmd_verify(args: argparse.Namespace, environ: Any) -> int:
    from dataclasses import replace

    from replicator.cli import endpoints
    from replicator.migrate.verify import Verifier
    from replicator.poller.tables import describe_table

    target = endpoints.Target(args, environ)
    try:
        _, dynamodb = endpoints.aws_clients(args, environ)
        info = describe_table(dynamodb, args.table)
        settings = endpoints.settings_of(args, environ)
        if settings.key_schema is None:
            settings = replace(settings, key_schema=info.key_schema)
        waiter = replication_waiter(target.checkpoints, info.stream_arn, args.recheck_delay)
        report = Verifier(dynamodb, args.table, target.collection, settings,
                          segments=args.segments, page_size=args.page_size,
                          rechecks=args.rechecks, wait_for_replication=waiter).run()
    finally:
        target.close()
    counts = report.counts()
    print_summary(f"verify of {args.table}", [
        ("items", report.items), ("documents", report.documents),
        ("first-pass differences", report.first_pass_differences),
        ("cleared by re-check (lag)", report.cleared_by_recheck),
        ("missing", counts["missing"]), ("extra", counts["extra"]),
        ("changed", counts["changed"]), ("unsettled (still being written)", len(report.unsettled)),
        ("foreign (not written by the replicator; not a divergence)", len(report.foreign)),
    ])
    for divergence in report.divergences[:20]:
        paths = ", ".join(f.path for f in divergence.fields)
        print(f"{divergence.kind}: {divergence.as_dict()['_id']}"
              + (f" ({paths})" if paths else ""), file=sys.stderr)
    _write_report(args.report, report.as_dict())
    if args.report is None:
        print(report.to_json())
    return EXIT_OK if report.ok else EXIT_DIVERGENT


def _last_applied(args: argparse.Namespace) -> tuple[str, datetime | None] | None:
    sequence, moment = args.last_applied_sequence, args.last_applied_at
    if sequence is None:
        if moment is not None:
            raise ConfigurationError("--last-applied-at goes with --last-applied-sequence")
        return None
    if not sequence.isdigit():
        raise ConfigurationError("--last-applied-sequence is a stream sequence number (digits)")
    if moment is None:
        return sequence, None
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError("--last-applied-at is an ISO 8601 time, e.g. "
                                 "2026-01-31T12:00:00Z") from None
    return sequence, parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cmd_recover(args: argparse.Namespace, environ: Any) -> int:
    from datetime import timedelta

    from replicator.migrate.export import load_manifest, request_export
    from replicator.migrate.gap import recover

    if not args.yes:
        raise ConfigurationError("recover applies the stream and rewrites documents: stop every "
                                 "poller of this table, then run again with --yes")
    stop = threading.Event()
    target, poller = _poller(args, environ, stop)
    try:
        exports = [load_manifest(location) for location in args.incremental_export]
        requester = None
        if args.pitr_export_bucket:
            table_arn = poller.dynamodb.describe_table(TableName=args.table)["Table"]["TableArn"]

            def requester(start: datetime, end: datetime) -> Any:
                location = request_export(poller.dynamodb, table_arn, args.pitr_export_bucket,
                                          args.pitr_export_prefix, incremental=(start, end))
                return load_manifest(location)

        report = recover(poller, exports=exports, request_export=requester,
                         margin=timedelta(minutes=args.margin_minutes), segments=args.segments,
                         page_size=args.page_size, last_applied=_last_applied(args))
        _write_report(args.report, report.as_dict())
        print_summary(f"recovery of {args.table}", [
            ("method", report.method), ("last applied before the gap",
                                        report.last_applied_sequence),
            ("stream records applied", report.stream_records_applied),
            ("documents deleted (items gone)", report.documents_deleted),
            ("consistent at", report.consistent_at.isoformat() if report.consistent_at else "-"),
        ])
    finally:
        target.close()
    return EXIT_OK
