"""The ``sync``, ``verify`` and ``recover`` subcommands of ``replicator`` (see replicator/cli/__init__.py).

    replicator sync --table T --mongodb-uri URI [--segments 4] [--read-units-per-s 500]
    replicator sync --table T --mongodb-uri URI --export s3://bucket/prefix/AWSDynamoDB/ID
    replicator verify --table T --mongodb-uri URI [--report verify.json]
    replicator recover --table T --mongodb-uri URI [--incremental-export s3://... | --pitr-export-bucket B]
    replicator sync --table T --mongodb-uri URI --kinesis-stream ARN        (a Kinesis-fed table)
    replicator recover --table T --mongodb-uri URI --kinesis-stream ARN --from-timestamp T --yes
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.cli.commands import EXIT_DIVERGED, EXIT_OK, EXIT_UNAVAILABLE
from replicator.errors import ConfigurationError

log = logging.getLogger("replicator.cli")


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
    sync.add_argument("--kinesis-stream", default=None, metavar="ARN",
                      help="the table sends its changes to this Kinesis data stream: position "
                           "it AT_TIMESTAMP before the copy, copy, hand over to it (instead of "
                           "the table's DynamoDB stream; docs/kinesis.md, \"Copying\")")
    sync.add_argument("--report", default=None, help="write the JSON report here")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")
    sync.add_argument("--no-prepare", action="store_true",
                      help="do not prepare the target first (`replicator prepare`: indexes from "
                           "the GSIs and LSIs, the shard key on a sharded cluster)")
    from replicator.cli import prepare

    prepare.add_options(sync)
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
    verify.add_argument("--recheck-timeout", type=float, default=90.0,
                        help="seconds to wait, once, for a running `replicator run` to show it "
                             "polled past a re-check's reads (it refreshes its stream marker "
                             "every --log-interval, default 30); if it does not, the documents "
                             "still different are reported as \"could not be re-checked\" "
                             "(default 90)")
    verify.add_argument("--kinesis-stream", default=None, metavar="ARN",
                        help="replication follows this Kinesis data stream: wait on its "
                             "poller's stream marker")
    verify.add_argument("--report", default=None, help="write the JSON report here")
    # 1 means "diverged" only: whatever else stops verify means it could not check (4).
    verify.set_defaults(func=cmd_verify, failure_exit=EXIT_UNAVAILABLE)

    recover = commands.add_parser(
        "recover", parents=[common], help="recover after a gap past the stream's 24 hours",
        description="Apply the stream from TRIM_HORIZON, then the changes of the gap: an "
                    "incremental export (point-in-time recovery) or a re-copy that writes only "
                    "what differs and deletes documents whose item is gone. The collection is "
                    "never emptied. Stop every poller of the table first. A collection replicated "
                    "from Kinesis Data Streams needs no recover within the Kinesis stream's "
                    "retention (24 hours to 365 days): replay the stream with --kinesis-stream "
                    "ARN --from-timestamp T (docs/kinesis.md, \"Recovery\").")
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
    recover.add_argument("--kinesis-stream", default=None, metavar="ARN",
                         help="the collection follows this Kinesis data stream: recovery within "
                              "its retention is a replay from --from-timestamp")
    recover.add_argument("--from-timestamp", default=None, metavar="ISO8601",
                         help="with --kinesis-stream: forget the stream's checkpoints and replay "
                              "every shard from AT_TIMESTAMP this time (before the gap began)")
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
    """The summary on stderr: a rich table on a terminal, ``name: value`` lines otherwise (a log
    file or a pipe; docs/migration.md says what each line means)."""
    rich = sys.stderr.isatty()
    if rich:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            rich = False
    if not rich:
        print(title, file=sys.stderr)
        for name, value in rows:
            print(f"  {name}: {value}", file=sys.stderr)
        return
    table = Table(title=title, show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    Console(stderr=True).print(table)


def note(args: argparse.Namespace, rows: list[tuple[str, Any]]) -> None:
    """Keep a command's summary rows for the one line per table of a migration file
    (replicator/cli/tables.py fills ``args.outcome``; a single-table run has none)."""
    outcome = getattr(args, "outcome", None)
    if outcome is not None:
        outcome.extend(rows)


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

    if args.export and getattr(args, "kinesis_stream", None):
        raise ConfigurationError(
            "sync over a Kinesis data stream copies by Parallel Scan: leave out --export "
            "(docs/kinesis.md, \"Copying\")")
    stop = threading.Event()
    target, poller = _poller(args, environ, stop)
    try:
        poller.info  # noqa: B018 - DescribeTable first: a missing table is named as such (exit 4)
        if not args.no_prepare:  # before the copy: the shard key must be (docs/migration.md)
            from replicator.cli import prepare

            prepare.run(args, environ, poller.dynamodb, target.collection,
                        lambda line: log.info("prepare: %s", line))
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
        rows += [("positions", report.positions),
                 ("stream records applied", report.stream_records_applied),
                 ("consistent at", report.consistent_at.isoformat() if report.consistent_at
                  else "-")]
        print_summary(f"sync of {args.table}", rows)
        note(args, rows)
        _write_report(args.report, report.as_dict())
    finally:
        target.close()
    log.info("sync done; start `replicator run` with the same options to keep following the "
             "stream (or the Lambda event source mapping: docs/migration.md)")
    return EXIT_OK


class ReplicationWaiter:
    """What ``verify`` waits for before each re-check; called once per re-check round.

    * A running ``replicator run`` (its stream marker alive within ``running_within_s`` and not
      marked stopped): wait ``delay_s``, then until the marker shows it alive after the wait
      began -- a poller alive past a moment has polled past the records before it -- at most
      ``timeout_s`` more. Answers True; False if the marker did not move (the poller is gone),
      and every later call answers False at once: documents still different are then reported
      as "could not be re-checked", not as divergences.
    * A poller that ended its run within ``running_within_s`` (the marker says stopped, e.g.
      the ``sync`` just done): the delay (a Lambda event source mapping may follow the
      stream), then False: no poller to wait for.
    * No marker, or one silent for longer (a Lambda event source mapping follows the stream):
      the delay alone, True.

    Each wait is announced in one log line saying what it waits for and until when, so the
    whole of verify's waiting is bounded by ``rounds * delay_s + timeout_s``.
    """

    def __init__(self, checkpoints: Any, stream_arn: str | None, delay_s: float,
                 timeout_s: float = 90.0, running_within_s: float = 120.0,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.checkpoints = checkpoints
        self.stream_arn = stream_arn
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self.running_within_s = running_within_s
        self.now = now
        self.sleep = sleep
        #: why replication cannot be waited for (then every call answers False at once)
        self.not_running: str | None = None

    def __call__(self) -> bool:
        if self.not_running is not None:
            return False
        asked = self.now()
        marker = self.checkpoints.marker(self.stream_arn) if self.stream_arn else None
        heard = [m for m in (marker.alive_at, marker.stopped_at) if m] if marker else []
        if not heard or (asked - max(heard)).total_seconds() > self.running_within_s:
            seen = (f"the stream marker was last alive at {_clock(max(heard))}" if heard
                    else "no `replicator run` has a stream marker")
            log.info("re-check: waiting %.0f s (--recheck-delay), until %s, for replication to "
                     "catch up (%s: assuming a Lambda event source mapping follows the stream)",
                     self.delay_s, _clock(asked + timedelta(seconds=self.delay_s)), seen)
            self.sleep(self.delay_s)
            return True
        assert marker is not None
        if marker.stopped:
            ended = (f"the last poller of this stream ended its run at "
                     f"{_clock(marker.stopped_at)} and none has started since")
            log.info("re-check: waiting %.0f s (--recheck-delay), until %s, in case a Lambda "
                     "event source mapping follows the stream (%s)", self.delay_s,
                     _clock(asked + timedelta(seconds=self.delay_s)), ended)
            self.sleep(self.delay_s)
            self._give_up(ended)
            return False
        deadline = asked + timedelta(seconds=self.delay_s + self.timeout_s)
        log.info("re-check: waiting %.0f s (--recheck-delay), then for `replicator run` to show "
                 "it polled past %s (its stream marker), until %s at the latest",
                 self.delay_s, _clock(asked), _clock(deadline))
        self.sleep(self.delay_s)
        while True:
            marker = self.checkpoints.marker(self.stream_arn)
            if marker is None or (marker.alive_at is not None and marker.alive_at > asked):
                return True
            if marker.stopped:
                self._give_up(f"the poller ended its run at {_clock(marker.stopped_at)} "
                              "without polling past the re-check's reads")
                return False
            if self.now() >= deadline:
                break
            self.sleep(max(0.5, min(5.0, (deadline - self.now()).total_seconds())))
        self._give_up(f"the stream marker did not move from {_clock(marker.alive_at)} by "
                      f"{_clock(self.now())}: no `replicator run` is following the stream")
        return False

    def _give_up(self, why: str) -> None:
        self.not_running = why
        log.warning("re-check: %s; the documents still different are reported as \"could not "
                    "be re-checked\" (start `replicator run`, then run verify again)", why)


def _clock(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "?"


def repairs(args: argparse.Namespace, collection: str, sequence_field: str) -> dict[str, str]:
    """How to repair each kind of finding of ``verify`` (docs/migration.md, "Repairing what
    verify finds"), with the exact command for this table and target."""
    from replicator.cli.commands import recover_command

    recover = recover_command(args)
    return {
        "changed": f"{recover} (stop every poller of the table first, start `replicator run` "
                   "after): rewrites each document that differs from its item",
        "missing": f"{recover}: writes each item that has no document",
        "extra": f"{recover}: deletes each document the replicator wrote whose item is gone",
        "foreign": f"not written by the replicator (no {sequence_field}), so recover never "
                   f"deletes it: if it does not belong, delete it yourself "
                   f"(db.{collection}.deleteOne({{_id: ...}})), or keep the application's own "
                   "documents in another collection",
        "unsettled": "written to continuously while verify ran: run verify again when the "
                     "writes calm down",
        "unchecked": "no replication was running to wait for: start `replicator run` (or check "
                     "the Lambda event source mapping), then run verify again",
    }


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
        followed = getattr(args, "kinesis_stream", None) or info.stream_arn
        waiter = ReplicationWaiter(target.checkpoints, followed, args.recheck_delay,
                                    timeout_s=args.recheck_timeout)
        report = Verifier(dynamodb, args.table, target.collection, settings,
                          segments=args.segments, page_size=args.page_size,
                          rechecks=args.rechecks, wait_for_replication=waiter).run()
        collection = target.collection.name
    finally:
        target.close()
    counts = report.counts()
    summary: list[tuple[str, Any]] = [
        ("items", report.items), ("documents", report.documents),
        ("first-pass differences", report.first_pass_differences),
        ("cleared by re-check (lag)", report.cleared_by_recheck),
        *((kind, count) for kind, count in counts.items()),
        ("unsettled (still being written)", len(report.unsettled)),
        ("could not be re-checked", len(report.unchecked)),
        ("foreign (not written by the replicator; not a divergence)", len(report.foreign)),
    ]
    print_summary(f"verify of {args.table}", summary)
    note(args, summary)
    for divergence in report.divergences[:20]:
        paths = ", ".join(f.path for f in divergence.fields)
        print(f"{divergence.kind}: {divergence.as_dict()['_id']}"
              + (f" ({paths})" if paths else ""), file=sys.stderr)
    if len(report.divergences) > 20:
        print(f"... and {len(report.divergences) - 20} more (the JSON report lists them all)",
              file=sys.stderr)
    found = {kind for kind, count in counts.items() if count}
    if report.unsettled:
        found.add("unsettled")
    if report.unchecked:
        found.add("unchecked")
    if report.foreign:
        found.add("foreign")
    repair = {kind: text for kind, text in repairs(args, collection,
                                                   settings.sequence_field).items()
              if kind in found}
    for kind, text in repair.items():
        print(f"to repair {kind}: {text}", file=sys.stderr)
    data = {**report.as_dict(), "repair": repair}
    _write_report(args.report, data)
    if args.report is None:
        print(json.dumps(data, indent=2))
    if report.divergences:
        return EXIT_DIVERGED
    if report.unchecked:
        return EXIT_UNAVAILABLE  # the check could not be completed for these documents
    return EXIT_OK


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
    if getattr(args, "kinesis_stream", None) or args.from_timestamp:
        return _replay_kinesis(args, environ)
    stop = threading.Event()
    target, poller = _poller(args, environ, stop)
    try:
        poller.info  # noqa: B018 - DescribeTable first: a missing table is named as such (exit 4)
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
        rows: list[tuple[str, Any]] = [
            ("method", report.method),
            ("last applied before the gap", report.last_applied_sequence),
            ("stream records applied", report.stream_records_applied)]
        if report.copy is not None:
            rows += [("items read", report.copy.items_read),
                     ("written (differed)", report.copy.items_written),
                     ("unchanged", report.copy.items_unchanged),
                     ("newer from the stream", report.copy.items_skipped_newer),
                     ("documents deleted (items gone)", report.documents_deleted)]
        for stats in report.export:
            rows += [("export lines", stats.lines), ("written", stats.written),
                     ("newer from the stream", stats.skipped_newer)]
        rows.append(("consistent at",
                     report.consistent_at.isoformat() if report.consistent_at else "-"))
        print_summary(f"recovery of {args.table}", rows)
        note(args, rows)
    finally:
        target.close()
    return EXIT_OK


def _replay_kinesis(args: argparse.Namespace, environ: Any) -> int:
    """``recover --kinesis-stream ARN --from-timestamp T``: replay the data stream from ``T``
    (replicator/migrate/gap.replay_kinesis)."""
    from replicator.migrate.gap import replay_kinesis

    if not getattr(args, "kinesis_stream", None) or not args.from_timestamp:
        raise ConfigurationError(
            "a Kinesis replay takes both --kinesis-stream ARN and --from-timestamp ISO8601 (a "
            "time before the gap began; the data stream keeps records for its retention)")
    mixed = [f"--{name.replace('_', '-')}" for name in
             ("incremental_export", "pitr_export_bucket", "last_applied_sequence",
              "last_applied_at") if getattr(args, name, None)]
    if mixed:
        raise ConfigurationError(f"{', '.join(mixed)}: DynamoDB Streams recovery; a Kinesis "
                                 "replay takes --kinesis-stream and --from-timestamp only")
    try:
        moment = datetime.fromisoformat(args.from_timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError("--from-timestamp is an ISO 8601 time, e.g. "
                                 "2026-01-31T12:00:00Z") from None
    stop = threading.Event()
    target, poller = _poller(args, environ, stop)
    try:
        poller.info  # noqa: B018 - DescribeTable first: a missing table is named as such (exit 4)
        report = replay_kinesis(poller, moment)
        _write_report(args.report, report.as_dict())
        rows: list[tuple[str, Any]] = [
            ("method", "Kinesis replay"),
            ("from", report.from_timestamp.isoformat()),
            ("checkpoints forgotten", report.checkpoints_deleted),
            ("stream records read", report.records_read),
            ("stale or duplicate", report.stale),
            ("quarantined", report.quarantined),
            ("consistent at", report.consistent_at.isoformat() if report.consistent_at
             else "-")]
        print_summary(f"recovery of {args.table}", rows)
        note(args, rows)
    finally:
        target.close()
    log.info("replay done; start `replicator run --kinesis-stream %s` with the same options to "
             "keep following the stream", report.stream_arn)
    return EXIT_OK
