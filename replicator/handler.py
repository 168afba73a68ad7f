"""AWS Lambda entry point: ``replicator.handler.lambda_handler``.

Configuration comes from the environment (see README, "Lambda configuration"):
the MongoDB URI (required; never logged) from Secrets Manager (``MONGODB_URI_SECRET_ARN``), SSM
(``MONGODB_URI_PARAMETER``) or ``MONGODB_URI`` (see uri_source.py), ``MONGODB_DATABASE``,
``MONGODB_COLLECTION`` and the optional ``REPLICATOR_*`` settings read by
:meth:`Settings.from_env`. The MongoClient (and so the secret read) and the Replicator are created
once per container and reused by every invocation, as AWS recommends.
Turn on "ReportBatchItemFailures" on the event source mapping so Lambda reads the response.
The mapping may read the table's DynamoDB stream or the Kinesis data stream of its Kinesis
streaming destination (``eventSource: aws:kinesis`` records; ``REPLICATOR_SOURCE``,
docs/kinesis.md): the same handler takes both, and ``batchItemFailures`` names the DynamoDB
SequenceNumber or the Kinesis sequenceNumber accordingly.
The invocation's ``context`` gives each batch its deadline (:mod:`replicator.deadline`): no
MongoDB command of an invocation can be applied after its timeout, i.e. after Lambda's retry.

At cold start the handler installs the project's log redaction (:mod:`replicator.redact`): with
``AWS_LAMBDA_LOG_LEVEL=DEBUG`` botocore logs the signed requests of the read-back client, session
token and access key id included, and a MongoDB error may quote the URI.

Each invocation (one batch) prints one CloudWatch Embedded Metric Format line and one JSON summary
log line (:mod:`replicator.lambda_telemetry`, docs/metrics.md): the replicator's logs are JSON on
stdout, redacted.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from replicator import lambda_telemetry
from replicator.accelerator import planning_path
from replicator.core import Replicator
from replicator.redact import install_log_redaction, secrets_of

log = logging.getLogger("replicator")
_lock = threading.Lock()
_replicator: Replicator | None = None
_metrics: Any = None  # Powertools' Metrics, made at cold start with the Replicator


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    replicator = _get_replicator()
    lambda_telemetry.set_request(context)
    result = replicator.handle_batch(event, context)
    # One EMF line per invocation, i.e. per batch (flushed here rather than by Powertools'
    # log_metrics decorator: a batch without records has no table and publishes nothing, where
    # the decorator would warn "No application metrics to publish").
    lambda_telemetry.publish(_metrics, result)
    return result.lambda_response()


def _get_replicator() -> Replicator:
    global _replicator, _metrics
    with _lock:
        if _replicator is None:
            lambda_telemetry.install_json_logs()
            _metrics = lambda_telemetry.new_metrics(os.environ)
            _replicator = build_from_env(os.environ)
        return _replicator


def build_from_env(environ: Any) -> Replicator:
    """A Replicator from environment variables; the URI is read, never printed. Every value is
    checked before the client is made (:mod:`replicator.environment`): one ConfigurationError
    naming the variable, secret or parameter that is wrong, never its value."""
    # Before the first client exists: nothing it logs is unredacted.
    install_log_redaction(secrets_of(None, environ))
    from replicator.environment import LambdaEnvironment
    from replicator.mongo import connect

    config = LambdaEnvironment.from_env(environ)  # the URI: Secrets Manager / SSM / plain
    # A URI read from Secrets Manager or SSM has a password the environment does not show.
    install_log_redaction(secrets_of(config.uri, environ))
    client = connect(config.uri, server_selection_timeout_ms=config.timeout_ms)
    collection = client[config.database][config.collection]
    item_reader = None
    if config.read_back_table:
        import boto3

        from replicator.readback import DynamoDBItemReader

        item_reader = DynamoDBItemReader(boto3.client("dynamodb"), config.read_back_table)
    settings = config.settings
    # Once per container (cold start), not per batch: which path plans, and why.
    log.info(
        "replicating into %s.%s (source=%s, guard=%s, ttl_deletes=%s, bad_records=%s); "
        "planning: %s",
        config.database, config.collection, settings.source,
        settings.guard, settings.ttl_deletes, settings.bad_records, planning_path(settings),
    )
    return Replicator(collection, settings, item_reader=item_reader)


def reset() -> None:
    """Forget the cached client and undo the JSON logs (tests, or a changed environment)."""
    global _replicator, _metrics
    with _lock:
        close_client(_replicator)
        _replicator = None
        _metrics = None
        lambda_telemetry.uninstall_json_logs()


def close_client(replicator: Replicator | None) -> None:
    """Close the MongoDB client behind ``replicator``'s collection, if it has one (a reset of this
    module or of replicator.export_copy_handler)."""
    if replicator is None:
        return
    close = getattr(getattr(replicator.collection.database, "client", None), "close", None)
    if callable(close):
        close()
