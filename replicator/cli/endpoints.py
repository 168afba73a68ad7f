"""The source and the target a ``replicator`` command works on, built from its arguments and
the environment: one way for ``run``/``resync``/``checkpoints`` and ``sync``/``verify``/``recover``.

* :class:`Target` -- the MongoDB client (:func:`replicator.mongo.connect`), the collection and
  the checkpoint store;
* :func:`aws_clients` -- the boto3 ``dynamodbstreams`` and ``dynamodb`` clients (:func:`aws_client`:
  any service, e.g. ``sqs`` for ``redrive``);
* :func:`settings_of` -- the Replicator settings (``REPLICATOR_*``, then a migration file's
  values for the table, plus ``--key-schema``);
* :func:`make_poller` -- a :class:`replicator.poller.Poller` over all three (over the Kinesis
  data stream of ``--kinesis-stream`` instead of the table's stream, when given).
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from replicator.errors import ConfigurationError


class Target:
    """The MongoDB client, collection and checkpoint store named by the arguments."""

    def __init__(self, args: argparse.Namespace, environ: Any, client: Any = None) -> None:
        """``client``: an open MongoClient to share (the tables of a migration file in one
        process); it is then not closed by :meth:`close`."""
        from replicator.uri_source import checked_uri

        uri = args.mongodb_uri or environ.get("MONGODB_URI")
        if not uri:
            raise ConfigurationError("give --mongodb-uri or set MONGODB_URI")
        # surrounding whitespace removed, the parser's refusal named by its source, never shown
        uri = checked_uri(uri, "--mongodb-uri" if args.mongodb_uri else "MONGODB_URI")
        #: the resolved URI (export pool processes open their own clients); never printed
        self.uri: str = uri
        self._owned = client is None
        self.client = self._connect(uri, args, environ) if client is None else client
        database = args.database or environ.get("MONGODB_DATABASE") or self._default_database()
        name = args.collection or environ.get("MONGODB_COLLECTION") or args.table
        self.collection = self.client[database][name]
        from replicator.poller.checkpoints import CheckpointStore

        self.checkpoints = CheckpointStore(
            self.client[database][args.checkpoint_collection or f"{name}_checkpoints"],
            table=args.table)

    def _connect(self, uri: str, args: argparse.Namespace, environ: Any) -> Any:
        from replicator.mongo import APPNAME, connect

        timeout = args.mongodb_timeout_ms or environ.get("MONGODB_TIMEOUT_MS")
        return connect(uri, appname=f"{APPNAME}-poller",
                       server_selection_timeout_ms=int(timeout) if timeout else None)

    def _default_database(self) -> str:
        from pymongo.errors import ConfigurationError as MongoConfigurationError

        try:
            return str(self.client.get_default_database().name)
        except MongoConfigurationError:
            raise ConfigurationError(
                "name the database: --database, MONGODB_DATABASE or a path in the URI") from None

    def close(self) -> None:
        if not self._owned:
            return
        close = getattr(self.client, "close", None)
        if callable(close):
            close()


def aws_clients(args: argparse.Namespace, environ: Any) -> tuple[Any, Any]:
    """boto3 ``dynamodbstreams`` and ``dynamodb`` clients for the arguments."""
    return aws_client(args, environ, "dynamodbstreams"), aws_client(args, environ, "dynamodb")


def aws_client(args: argparse.Namespace, environ: Any, service: str,
               endpoint_url: str | None = None) -> Any:
    """A boto3 client of ``service`` for the arguments (region, ``--endpoint-url`` or
    ``endpoint_url``; dummy credentials for a local endpoint when none are configured)."""
    try:
        from botocore.config import Config

        from replicator.boto_session import new_session

        # a new session per client, reading credentials and region as they are now; only
        # botocore's parsed models are shared (replicator/boto_session.py)
        session = new_session()
    except ImportError as error:
        raise ConfigurationError("the poller needs boto3: pip install boto3") from error
    endpoint = endpoint_url or args.endpoint_url
    region = (args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
              or session.region_name or ("us-east-1" if endpoint else None))
    if not region:
        raise ConfigurationError("give --region (or set AWS_REGION)")
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 5,
        "read_timeout": 30,
    }
    credentials: dict[str, Any] = {}
    if endpoint:
        options["account_id_endpoint_mode"] = "disabled"
        if session.get_credentials() is None:
            credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return session.client(service, region_name=region, endpoint_url=endpoint,
                          config=Config(**options), **credentials)


def settings_of(args: argparse.Namespace, environ: Any) -> Any:
    from dataclasses import replace

    from replicator.settings import Settings

    settings = Settings.from_env(environ)
    # a migration file's table: its [defaults] and entry over the REPLICATOR_* variables
    table_settings = getattr(args, "table_settings", None)
    if table_settings:
        from replicator.migration_file import settings_over

        settings = settings_over(settings, table_settings)
    if args.key_schema:
        settings = replace(settings, key_schema=tuple(args.key_schema))
    return settings


def make_poller(args: argparse.Namespace, environ: Any, target: Target, stop: threading.Event,
                **options: Any) -> Any:
    """The Poller of the arguments' table, writing into ``target``; ``stop`` ends it."""
    from replicator.poller import Poller

    streams, dynamodb = aws_clients(args, environ)
    max_attempts = getattr(args, "max_attempts", 0) or None
    kinesis_arn = getattr(args, "kinesis_stream", None)
    if kinesis_arn:
        # ``--kinesis-stream``: the data stream's shards instead of the table's stream.
        from replicator.poller.kinesis import KinesisReader, is_kinesis_arn

        if not is_kinesis_arn(kinesis_arn):
            raise ConfigurationError(
                f"--kinesis-stream: {kinesis_arn!r} is not a Kinesis data stream ARN "
                "(arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)")
        options = {"reader_type": KinesisReader, "stream_arn": kinesis_arn, **options}
        streams = aws_client(args, environ, "kinesis")
    settings = settings_of(args, environ)
    if not kinesis_arn and settings.source == "kinesis":
        # Without the data stream's ARN the table's DynamoDB stream would be read, and every
        # record quarantined as the other source (after a whole copy, for sync).
        raise ConfigurationError(
            f"table {args.table}: the source is \"kinesis\" (REPLICATOR_SOURCE or the migration "
            "file) but no Kinesis data stream is named: add --kinesis-stream "
            "arn:aws:kinesis:REGION:ACCOUNT:stream/NAME (or kinesis_stream = \"arn...\" in the "
            "table's migration-file entry), or unset the source to follow DynamoDB Streams")
    return Poller(
        streams, dynamodb, args.table, target.collection, settings,
        target.checkpoints, batch_size=args.batch_size, stop=stop,
        key_schema=args.key_schema, max_attempts=max_attempts, **options,
    )
