"""``replicator prepare``: the target's indexes and shard key from the table (replicator/migrate/
target.py; docs/migration.md, "The target's indexes and shard key").

    replicator prepare --table T --mongodb-uri URI --database D [--collection C]
        [--shard-key "pk:hashed"] [--no-indexes] [--dry-run]

Each command run (with ``--dry-run``: that would run) is one mongosh line on stdout, then what
exists already, what is skipped and what is only noted, as ``//`` comments: the output of a dry
run can be pasted into mongosh. ``--dry-run`` without a MongoDB URI lists the plan as a sharded
cluster would get it. ``replicator sync`` prepares the target the same way before its copy
(``--no-prepare``: not). Exit codes: 0 done, 2 an index or shard key in the way (the message
names it and the command that clears it) or a bad ``--shard-key``, 4 MongoDB or AWS unreachable.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from replicator.cli import endpoints
from replicator.cli.commands import EXIT_OK

log = logging.getLogger("replicator.cli")

SHARD_KEY_HELP = ("the collection's shard key on a sharded cluster: fields, each ascending or "
                  "FIELD:hashed (e.g. pk:hashed, or tenant,pk); default: REPLICATOR_SHARD_KEY's "
                  "fields (the first hashed), else hashed on the partition key. Must name "
                  "REPLICATOR_SHARD_KEY's fields")


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    prepare = commands.add_parser(
        "prepare", parents=[common],
        help="make the collection's indexes (from the GSIs and LSIs) and shard key",
        description="From DescribeTable: each GSI and LSI becomes a partial, non-unique index on "
                    "the same attributes; on a sharded cluster the collection is sharded "
                    "(enableSharding, shardCollection) first. What exists as planned is left "
                    "alone; an index of the same name with another definition stops the "
                    "command (exit 2), naming it.")
    add_options(prepare)
    prepare.add_argument("--dry-run", action="store_true",
                         help="print the commands, run none (no MongoDB URI: as on a sharded "
                              "cluster)")
    prepare.set_defaults(func=cmd_prepare)


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--shard-key`` and ``--no-indexes``: ``prepare``'s and ``sync``'s."""
    parser.add_argument("--shard-key", default=None, metavar="FIELD[:hashed],...",
                        help=SHARD_KEY_HELP)
    parser.add_argument("--no-indexes", action="store_true",
                        help="make no secondary index (the shard key still, on a sharded "
                             "cluster)")


def cmd_prepare(args: argparse.Namespace, environ: Any) -> int:
    if args.dry_run and not (args.mongodb_uri or environ.get("MONGODB_URI")):
        database = args.database or environ.get("MONGODB_DATABASE") or "?"
        name = args.collection or environ.get("MONGODB_COLLECTION") or args.table
        _, dynamodb = endpoints.aws_clients(args, environ)
        run(args, environ, dynamodb, None, print, namespace=(database, name))
        return EXIT_OK
    target = endpoints.Target(args, environ)
    try:
        _, dynamodb = endpoints.aws_clients(args, environ)
        run(args, environ, dynamodb, target.collection, print)
    finally:
        target.close()
    return EXIT_OK


def run(args: argparse.Namespace, environ: Any, dynamodb: Any, collection: Any,
        write: Callable[[str], None], namespace: tuple[str, str] | None = None) -> Any:
    """Prepare the arguments' table's target (``sync`` calls it before its copy)."""
    from replicator.migrate.target import prepare_table

    create_indexes, shard_key = not args.no_indexes, args.shard_key
    entry = getattr(args, "table_migration", None)  # a table of --migration-file: its own options
    if entry is not None:
        create_indexes = create_indexes and entry.create_indexes
        if shard_key is None and entry.shard_key is not None:
            shard_key = dict(entry.shard_key)
    return prepare_table(dynamodb, args.table, collection, endpoints.settings_of(args, environ),
                         create_indexes=create_indexes, shard_key=shard_key,
                         dry_run=bool(getattr(args, "dry_run", False)), namespace=namespace,
                         write=write)
