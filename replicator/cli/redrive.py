"""``replicator redrive``: apply the ranges the Lambda event source mapping discarded to its
on-failure queue (replicator/redrive.py; docs/redrive.md).

    replicator redrive --table T --mongodb-uri URI --queue-url https://sqs.../on-failure [--dry-run]

One line per message on stdout (what became of its range and of the message), then a summary
with exact counts. Exit codes: 0 every range applied (or, with ``--dry-run``, readable from the
stream), 3 some range is no longer in the stream (its line names the ``replicator recover``
command), 1 some message could not be applied (the stream or MongoDB kept failing, the message is
not an on-failure record, or it is of another table: kept for a later run), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from replicator.cli import endpoints
from replicator.cli.commands import EXIT_FAILED, EXIT_OK, EXIT_RESYNC, repair_command

if TYPE_CHECKING:
    from replicator.redrive import BatchInfo

log = logging.getLogger("replicator.cli")

#: a range the stream no longer holds: the same code as `run`'s "re-sync required" (the changes
#: are gone from the stream; only a command that reads the table repairs the collection)
EXIT_RECOVER = EXIT_RESYNC


def _wait_seconds(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError("must be 0..20 (SQS long polling waits at most 20 s)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    redrive = commands.add_parser(
        "redrive", parents=[common],
        help="apply the batches Lambda discarded to its on-failure SQS queue",
        description="Read the on-failure queue's messages (DDBStreamBatchInfo: stream, shard, "
                    "start and end sequence numbers), read each range back from the stream, "
                    "apply it through the replicator core (the stale-write guard makes that "
                    "idempotent) and delete the message once its whole range is applied. A range "
                    "the stream no longer holds keeps its message (or moves it with "
                    "--move-unavailable-to) and names the `replicator recover` command.")
    redrive.add_argument("--queue-url", required=True,
                         help="the on-failure destination's SQS queue URL")
    redrive.add_argument("--max-messages", type=_positive_int, default=None,
                         help="handle at most this many messages (default: until the queue is "
                              "empty)")
    redrive.add_argument("--dry-run", action="store_true",
                         help="read the ranges from the stream, write nothing, delete nothing")
    redrive.add_argument("--move-unavailable-to", default=None, metavar="QUEUE_URL",
                         help="move the messages whose range is no longer in the stream to this "
                              "queue (default: keep them)")
    redrive.add_argument("--batch-size", type=_positive_int, default=100,
                         help="records per write batch and GetRecords call (default 100)")
    redrive.add_argument("--max-attempts", type=_positive_int, default=5,
                         help="attempts per write batch before the range counts as failed "
                              "(default 5)")
    redrive.add_argument("--wait-seconds", type=_wait_seconds, default=2,
                         help="ReceiveMessage long polling (default 2)")
    redrive.add_argument("--visibility-timeout", type=_positive_int, default=300,
                         help="seconds a received message stays hidden while its range is "
                              "applied (default 300); kept messages are visible again at the end")
    redrive.add_argument("--kinesis-stream", default=None, metavar="ARN",
                         help="the table's Kinesis data stream: redrive the KinesisBatchInfo "
                              "ranges of its Kinesis event source mapping (docs/kinesis.md)")
    redrive.add_argument("--sqs-endpoint-url", default=None,
                         help="SQS endpoint (default: --endpoint-url)")
    redrive.set_defaults(func=cmd_redrive)


def cmd_redrive(args: argparse.Namespace, environ: Any) -> int:
    from replicator.poller.streams import StreamReader
    from replicator.redrive import RangeOutcome, RangeRedriver, redrive_queue
    from replicator.retry import Backoff

    stop = threading.Event()
    target = endpoints.Target(args, environ)
    unavailable: list[BatchInfo] = []
    try:
        poller = endpoints.make_poller(args, environ, target, stop, poll_interval=0.2,
                                       log_interval=3600.0)
        sqs = endpoints.aws_client(args, environ, "sqs", args.sqs_endpoint_url)
        limit = min(args.batch_size, 1000)
        reader_type = poller.reader_type if poller.kinesis_arn else StreamReader
        redriver = RangeRedriver(
            lambda arn: reader_type(poller.streams, arn, limit=limit),
            poller.make_replicator, table=args.table, batch_size=args.batch_size,
            backoff=Backoff(max_attempts=args.max_attempts, sleep=stop.wait),
            dry_run=args.dry_run, kinesis_arn=poller.kinesis_arn)

        def report(message_id: str, outcome: RangeOutcome, disposition: str) -> None:
            if outcome.status == "not-in-stream" and outcome.info is not None:
                unavailable.append(outcome.info)
            print(line(message_id, outcome, disposition, recover_command(args, [outcome.info]
                                                                         if outcome.info else [])),
                  flush=True)

        summary = redrive_queue(
            sqs, args.queue_url, redriver, max_messages=args.max_messages,
            wait_s=args.wait_seconds, visibility_timeout_s=args.visibility_timeout,
            move_unavailable_to=args.move_unavailable_to, on_message=report)
    finally:
        target.close()
    counts = summary.messages
    print(
        f"redrive{' (dry run)' if args.dry_run else ''} of {args.table}: "
        f"{summary.received} messages: {counts['applied']} applied, "
        f"{counts['would-apply']} would apply, {counts['not-in-stream']} not in the stream, "
        f"{counts['failed']} failed, {counts['unreadable']} unreadable, "
        f"{counts['other-table']} of another table; {summary.records} records read "
        f"({summary.written} written, {summary.stale} already newer, {summary.quarantined} "
        f"quarantined); messages: {summary.deleted} deleted, {summary.moved} moved, "
        f"{summary.kept} kept" + ("; stopped at the failed message (the rest stay in the "
                                  "queue)" if summary.stopped_early else ""), flush=True)
    if counts["not-in-stream"]:
        print(f"repair what the stream no longer holds (every range above): run\n"
              f"    {recover_command(args, unavailable)}", flush=True)
        return EXIT_RECOVER
    if counts["failed"] or counts["unreadable"] or counts["other-table"]:
        return EXIT_FAILED
    return EXIT_OK


def recover_command(args: argparse.Namespace, ranges: Sequence[BatchInfo]) -> str:
    """The ``replicator recover`` command that repairs ``ranges`` (docs/redrive.md): every
    document last written below the highest ``endSequenceNumber`` is checked against the table
    (``--last-applied-sequence`` one below it: a change of a range may already be applied, and
    what the table holds now is at least as new); with point-in-time recovery, incremental
    exports start at the earliest ``approximateArrivalOfFirstRecord``."""
    extra: list[str] = []
    kinesis = [info for info in ranges if info.kind == "kinesis"]
    if kinesis:
        # A Kinesis range the data stream no longer holds: past its retention nothing replays
        # it; re-copy (docs/kinesis.md, "Recovery").
        return (f"empty the collection, then replicator sync --table {args.table} "
                f"--kinesis-stream {kinesis[0].stream_arn} --restart (the data stream no longer "
                "holds the range: a replay cannot repair it)")
    if ranges:
        end = max(int(info.end) for info in ranges)
        extra += ["--last-applied-sequence", str(end - 1)]
        arrivals = sorted(info.first_arrival for info in ranges if info.first_arrival)
        if arrivals and len(arrivals) == len(ranges):
            extra += ["--last-applied-at", arrivals[0]]
    return repair_command(args, "recover", extra)


def line(message_id: str, outcome: Any, disposition: str, recover: str) -> str:
    """The one output line of a message."""
    where = outcome.info.describe() if outcome.info is not None else "-"
    head = f"{outcome.status} message {message_id} {where}"
    if outcome.status in ("applied", "would-apply"):
        detail = (f"{outcome.records} records" if outcome.status == "would-apply" else
                  f"{outcome.records} records ({outcome.written} written, {outcome.stale} "
                  f"already newer, {outcome.quarantined} quarantined)")
        return f"{head}: {detail}; message {disposition}"
    text = f"{head}: {outcome.reason}; message {disposition}"
    if outcome.status == "not-in-stream":
        text += f"; repair: {recover}"
    elif outcome.status == "failed":
        text += "; run redrive again once the cause is fixed"
    return text
