"""``replicator load-export-file``: one data file of a DynamoDB export, loaded once -- the unit
of the distributed export copy run by AWS Batch array jobs or any scheduler that starts N copies
of a command (replicator/migrate/distributed.py; docs/migration.md, "The distributed export copy").

    replicator load-export-file --table T --export s3://bucket/prefix/AWSDynamoDB/<ExportId> \\
        [--index N]    # default: $AWS_BATCH_JOB_ARRAY_INDEX

``--index`` is the line of the export's ``manifest-files.json`` (from 0, the file's order); an
array job of that many children covers the export. A file already loaded (by this command,
``sync --export`` or the Distributed Map) is skipped. Prints one JSON line on stdout (the file's
counts, as a Map child answers). Exit codes: 0 loaded or skipped, 1 the file does not match its
manifest line or MongoDB kept refusing (run it again once fixed), 2 usage or configuration error
(no index, an index past the last line, no key schema), 4 could not run.

This command loads; it does not record stream positions nor hand over: ``replicator sync
--export ... --worker 0/1`` after the array job does both (its loaded files are skipped), or
the steps of docs/migration.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from typing import Any

from replicator.cli import endpoints
from replicator.cli.commands import EXIT_OK
from replicator.errors import ConfigurationError

log = logging.getLogger("replicator.cli")
#: the variable AWS Batch sets in each child of an array job (0 .. size - 1)
ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX"


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "load-export-file", parents=[common],
        help="load one data file of an export (a Batch array job's unit)",
        description="Load the data file on line --index of the export's manifest-files.json "
                    "through the replicator core (its MD5, ETag, itemCount and gzip checked; bad "
                    "lines quarantined with file and line), once: a file already loaded is "
                    "skipped, and the file is marked loaded only when every line is in MongoDB.")
    parser.add_argument("--export", required=True, metavar="DIR_OR_S3",
                        help="the full export: s3://<bucket>/<prefix>/AWSDynamoDB/<ExportId> "
                             "(or a local copy)")
    parser.add_argument("--index", type=_index, default=None,
                        help=f"the manifest line to load, from 0 (default: ${ARRAY_INDEX})")
    parser.add_argument("--s3-endpoint-url", default=None,
                        help="S3 endpoint (a local S3; default: AWS's)")
    parser.set_defaults(func=cmd_load_export_file)


def cmd_load_export_file(args: argparse.Namespace, environ: Any) -> int:
    from replicator.core import Replicator
    from replicator.migrate.distributed import load_task, result_of, task_at

    index = args.index
    if index is None:
        given = environ.get(ARRAY_INDEX)
        if given is None or not given.strip().isdigit():
            raise ConfigurationError(f"give --index N or run as an AWS Batch array child "
                                     f"({ARRAY_INDEX} is {'unset' if given is None else 'not a number'})")
        index = int(given)
    settings = endpoints.settings_of(args, environ)
    target = endpoints.Target(args, environ)
    try:
        s3 = None
        if args.export.startswith("s3://"):
            s3 = endpoints.aws_client(args, environ, "s3", endpoint_url=args.s3_endpoint_url)
        task = task_at(args.export, index, s3)
        if not settings.key_schema:
            from replicator.poller.tables import describe_table

            dynamodb = endpoints.aws_client(args, environ, "dynamodb")
            settings = replace(settings, key_schema=describe_table(dynamodb, args.table).key_schema)
        result = load_task(task, Replicator(target.collection, settings), s3=s3)
    finally:
        target.close()
    print(json.dumps({"Index": index, **result_of(result)}), flush=True)
    return EXIT_OK
