"""``replicator``: the standalone poller, re-sync from the table, checkpoints.

This module parses the command line and maps outcomes to exit codes; :mod:`.commands` runs
``run`` / ``resync`` / ``checkpoints``; :mod:`.endpoints` builds the target collection, the boto3
clients and the Poller from the arguments (shared with ``replicator.cli.migrate``).

    replicator run --table NAME --mongodb-uri URI [options]    replicate until SIGTERM/SIGINT
                   [--kinesis-stream ARN]                      (from a Kinesis data stream)
    replicator resync --table NAME --mongodb-uri URI --yes     rebuild the collection from the table
    replicator checkpoints --table NAME --mongodb-uri URI      show (or --delete) the checkpoints
    replicator redrive --table NAME --queue-url URL ...        apply what Lambda discarded (docs/redrive.md)
    replicator sync | verify | recover --table NAME ...        migrate a live table (docs/migration.md)
    replicator prepare --table NAME ... [--dry-run]            the target's indexes and shard key
    replicator sync|run|verify|recover|prepare --migration-file F   every table of F (cli/tables.py)
    replicator load-export-file --table NAME --export S3 --index N   one export data file (Batch)

The MongoDB URI can come from ``MONGODB_URI`` instead of ``--mongodb-uri`` (better: a command line
is visible to every user of the machine); it is never printed. AWS credentials and region come
from the usual boto3 chain (environment, profile, instance role); with ``--endpoint-url`` (DynamoDB
Local) and no credentials anywhere, dummy ones are used. Replicator settings are read from the
same ``REPLICATOR_*`` variables as the Lambda handler (README, "Lambda configuration").

Exit codes (:data:`replicator.cli.commands.EXIT_CODES`, docs/migration.md "Exit codes"): 0 done,
1 verify: diverged / the others: failed after starting (retries exhausted), 2 usage or
configuration error, 3 re-sync required (answer: ``replicator recover``), 4 could not run (MongoDB
or AWS unreachable, credentials refused, table not found). ``redrive``: 3 when a range is no
longer in the stream (run the ``replicator recover`` it prints).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from replicator.cli.commands import (
    EXIT_CODES,
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RESYNC,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    cmd_checkpoints,
    cmd_resync,
    cmd_run,
    recover_command,
)
from replicator.errors import (
    ConfigurationError,
    ReplicationError,
    ResourceUnavailable,
    ResyncRequired,
    RetriesExhausted,
)
from replicator.mongo import DEFAULT_TIMEOUT_MS
from replicator.redact import (
    RedactingFormatter,
    install_log_redaction,
    redact,
    secrets_in_argv,
    secrets_of,
)

__all__ = [
    "EXIT_DIVERGED", "EXIT_FAILED", "EXIT_OK", "EXIT_RESYNC", "EXIT_UNAVAILABLE", "EXIT_USAGE",
    "build_parser", "main", "setup_logging", "unavailable",
]


log = logging.getLogger("replicator.cli")

# -- logging -------------------------------------------------------------------------------------
def setup_logging(level: str, secrets: Sequence[str]) -> logging.Handler:
    """One redacting stderr handler on the root logger (replacing the one of an earlier call);
    ``replicator`` loggers at ``level``, everything else at WARNING. Every record is redacted
    when created (:func:`replicator.redact.install_log_redaction`, whatever handler prints it)
    and the formatted line once more, traceback included."""
    install_log_redaction(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    handler.set_name("replicator-cli")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "replicator-cli":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("replicator").setLevel(level.upper())
    return handler


# -- arguments -----------------------------------------------------------------------------------
class HelpFormatter(argparse.HelpFormatter):
    """Descriptions filled to the terminal as usual; the exit-code table keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("Exit codes:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class RedactingArgumentParser(argparse.ArgumentParser):
    """argparse echoes the offending argument of a usage error straight to stderr (``unrecognized
    arguments: mongodb://user:password@...``, ``ambiguous option: --mongodb=mongodb://...``,
    ``invalid choice: 'mongodb://...'``), before any logging exists. Every message goes through
    ``exit()`` (``error()`` calls it), redacted there; subparsers are of this class too and share
    the secrets."""

    def __init__(self, *args: Any, secrets: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets = list(secrets)

    def add_subparsers(self, **kwargs: Any) -> Any:
        # Every subcommand's --help ends with the exit-code table too.
        kwargs.setdefault("parser_class", functools.partial(
            RedactingArgumentParser, secrets=self.secrets, epilog=EXIT_CODES,
            formatter_class=HelpFormatter))
        return super().add_subparsers(**kwargs)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            message = redact(message, [*self.secrets, *secrets_of(None, os.environ)])
        super().exit(status, message)


def _key_schema(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not 1 <= len(names) <= 2:
        raise argparse.ArgumentTypeError("name one or two key attributes: partition[,sort]")
    return names


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def _batch_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1..1000 (GetRecords returns at most 1000)")
    return value


def build_parser(secrets: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``replicator`` parser; ``secrets`` are masked in its usage errors (besides any MongoDB
    URI userinfo and the environment's AWS secrets)."""
    parser = RedactingArgumentParser(
        secrets=secrets,
        prog="replicator",
        description="DynamoDB Streams -> MongoDB replicator: standalone poller and migration.",
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--table", default=None,
                        help="the DynamoDB table (its stream must be on); required, except with "
                             "--migration-file")
    common.add_argument(
        "--mongodb-uri", default=None,
        help="MongoDB connection string (default: $MONGODB_URI; never printed)")
    common.add_argument("--database", default=None,
                        help="database (default: $MONGODB_DATABASE, else the URI's database)")
    common.add_argument("--collection", default=None,
                        help="collection (default: $MONGODB_COLLECTION, else the table name)")
    common.add_argument("--checkpoint-collection", default=None,
                        help="where checkpoints live (default: <collection>_checkpoints)")
    common.add_argument("--endpoint-url", default=None,
                        help="DynamoDB endpoint (e.g. http://127.0.0.1:8000 for DynamoDB Local)")
    common.add_argument("--region", default=None,
                        help="AWS region (default: the boto3 chain; us-east-1 with --endpoint-url)")
    common.add_argument("--key-schema", type=_key_schema, default=None, metavar="PK[,SK]",
                        help="the table's key attributes (default: from DescribeTable)")
    common.add_argument("--mongodb-timeout-ms", type=int, default=None,
                        help=f"server selection timeout (default: $MONGODB_TIMEOUT_MS, else the URI's "
                             f"serverSelectionTimeoutMS, else {DEFAULT_TIMEOUT_MS})")
    common.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    run = commands.add_parser(
        "run", parents=[common], help="replicate the table's stream until SIGTERM/SIGINT",
        description="Read the table's stream (every shard, in lineage order), write through the "
                    "replicator core, checkpoint each shard after MongoDB acknowledged the writes. "
                    "SIGTERM/SIGINT: finish the current batch, checkpoint, exit 0.")
    run.add_argument("--batch-size", type=_batch_size, default=100,
                     help="records per GetRecords call and per write batch (default 100)")
    run.add_argument("--starting-position", choices=["TRIM_HORIZON", "LATEST"], default="TRIM_HORIZON",
                     help="where a stream never seen before starts (default TRIM_HORIZON); with "
                          "checkpoints, new shards always start at TRIM_HORIZON")
    run.add_argument("--poll-interval", type=_positive_float, default=1.0,
                     help="seconds between polls when the stream is idle (default 1)")
    run.add_argument("--log-interval", type=_positive_float, default=30.0,
                     help="seconds between progress lines (default 30)")
    run.add_argument("--max-attempts", type=int, default=0,
                     help="give up (exit 1) after this many failures in a row; 0: retry forever "
                          "(default)")
    run.add_argument("--once", action="store_true",
                     help="drain what the stream holds now, then exit 0")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve Prometheus figures at /metrics and health at /healthz on this "
                          "port (9108 is the usual choice; default: off; see docs/metrics.md)")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="address the metrics port binds (default 127.0.0.1; 0.0.0.0 in a "
                          "container)")
    run.add_argument("--stall-after", type=_positive_float, default=300.0, metavar="SECONDS",
                     help="/healthz answers 503 when a shard has not advanced for this long "
                          "(default 300)")
    run.add_argument("--kinesis-stream", default=None, metavar="ARN",
                     help="read the Kinesis data stream the table sends its changes to (Kinesis "
                          "Data Streams for DynamoDB) instead of its DynamoDB stream; its "
                          "checkpoints are its own (docs/poller.md, \"Kinesis\")")
    run.set_defaults(func=cmd_run)

    resync = commands.add_parser(
        "resync", parents=[common],
        help="empty the collection and rebuild it from the table (`recover` keeps it)",
        description="Delete the table's checkpoints, empty the collection and its tombstones, "
                    "apply what the stream still holds, then scan the table into the collection "
                    "(items as INSERTs with sequence number 0, so any stream change wins). Stop "
                    "every poller of the table first; start `replicator run` afterwards.")
    resync.add_argument("--batch-size", type=_batch_size, default=100)
    resync.add_argument("--max-attempts", type=int, default=10)
    resync.add_argument("--yes", action="store_true",
                        help="confirm: the collection's documents are deleted and rebuilt")
    resync.set_defaults(func=cmd_resync)

    show = commands.add_parser("checkpoints", parents=[common],
                               help="show the table's checkpoints (or delete them)")
    show.add_argument("--delete", action="store_true", help="delete them (with --yes)")
    show.add_argument("--yes", action="store_true")
    show.set_defaults(func=cmd_checkpoints)

    from replicator.cli import redrive  # the on-failure queue's ranges (docs/redrive.md)
    from replicator.cli.migrate import add_commands  # sync, verify, recover (docs/migration.md)
    from replicator.cli.tables import add_options  # --migration-file, --only

    redrive.add_command(commands, common)
    add_commands(commands, common)
    from replicator.cli import prepare  # the target's indexes and shard key (docs/migration.md)

    prepare.add_command(commands, common)
    for name in ("run", "sync", "verify", "recover", "prepare"):
        add_options(commands.choices[name])

    from replicator.cli import export_file  # one data file of an export (a Batch array child)

    export_file.add_command(commands, common)
    return parser


def unavailable(error: BaseException) -> str | None:
    """Why the command could not run, when ``error`` says MongoDB or AWS cannot be reached, the
    credentials are refused or the table does not exist (exit 4); None for any other error."""
    if isinstance(error, ResourceUnavailable):
        return str(error)
    from pymongo.errors import ConnectionFailure, OperationFailure

    if isinstance(error, ConnectionFailure):  # ServerSelectionTimeoutError, AutoReconnect, ...
        # pymongo appends its whole topology description: the first sentence says it all.
        detail = str(error).split(", Timeout:")[0]
        return (f"MongoDB cannot be reached ({type(error).__name__}: {detail}); check the URI "
                "(--mongodb-uri / MONGODB_URI), the network and --mongodb-timeout-ms")
    if isinstance(error, OperationFailure) and error.code in (13, 18):  # Unauthorized, AuthFailed
        return f"MongoDB refused the credentials or the permission ({error})"
    try:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )
    except ImportError:  # pragma: no cover - boto3 is a dependency of every command using AWS
        return None
    if isinstance(error, ConnectionError):  # EndpointConnectionError, ConnectTimeoutError, ...
        return f"AWS cannot be reached ({type(error).__name__}: {error}); check --endpoint-url, " \
               "--region and the network"
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return f"no usable AWS credentials ({error})"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in AWS_CANNOT_RUN:
            return f"AWS refused the request ({code}: {error})"
    return None


#: DynamoDB error codes that mean "this command cannot run here" (credentials, permissions, a
#: table or stream that does not exist), not a transient failure.
AWS_CANNOT_RUN = frozenset({
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "ExpiredTokenException", "InvalidClientTokenId", "ResourceNotFoundException",
    "MissingAuthenticationTokenException",
})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit code is one of :data:`replicator.cli.commands.EXIT_CODES`."""
    environ = os.environ
    given = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(secrets_in_argv(given))
    args = parser.parse_args(given)  # usage errors: argparse exits with 2, redacted
    secrets = [*secrets_of(args.mongodb_uri, environ), *secrets_in_argv(given)]
    setup_logging(args.log_level, secrets)
    from replicator.cli import tables  # --migration-file: every table of the file

    tables.check_usage(args, parser)  # usage errors: exit 2, before anything connects

    def add_secrets(more: Sequence[str]) -> None:
        secrets.extend(more)
        setup_logging(args.log_level, secrets)

    try:
        if getattr(args, "migration_file", None):
            return tables.run(args, environ, exit_code_of, add_secrets)
        return int(args.func(args, environ))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return exit_code_of(error, args)


def exit_code_of(error: BaseException, args: argparse.Namespace) -> int:
    """The exit code of a command that raised ``error`` (logged here, one line; a migration
    file's table is named in it)."""
    # verify answers 1 only for "diverged": whatever else stops it means it could not check.
    failed = int(getattr(args, "failure_exit", EXIT_FAILED))
    table = f"table {args.table}: " if getattr(args, "table_migration", None) else ""
    if isinstance(error, ResyncRequired):
        if error.command is None:
            error.with_command(recover_command(args))
        log.error("%sre-sync required: %s", table, error)
        return EXIT_RESYNC
    why = unavailable(error)
    if why is not None:
        log.error("%scould not run: %s", table, why)
        return EXIT_UNAVAILABLE
    if isinstance(error, ConfigurationError):
        log.error("%sconfiguration: %s", table, error)
        return EXIT_USAGE
    if isinstance(error, (RetriesExhausted, ReplicationError)):
        log.error("%s%s: %s", table, type(error).__name__, error)
        return failed
    log.error("%sfailed: %s: %s", table, type(error).__name__, error,
              exc_info=logging.getLogger("replicator").isEnabledFor(logging.DEBUG))
    return failed
