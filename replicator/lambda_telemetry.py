"""The Lambda handler's metrics and logs, with Powertools for AWS Lambda (``aws-lambda-powertools``,
the package's ``lambda`` extra; only :mod:`replicator.handler` imports this module).

* Metrics: one CloudWatch Embedded Metric Format line per batch (= per invocation), written by
  Powertools' ``Metrics`` (the format: AWS docs, "Specification: Embedded metric format"): the
  figures of :data:`replicator.metrics.FIGURES`, in the namespace ``POWERTOOLS_METRICS_NAMESPACE``
  (default ``DdbMongoReplicator``), with exactly the dimensions ``Table`` and ``Collection``
  (no ``service`` dimension: the alarms name these two). A batch without records has no table to
  name and publishes nothing.
* Logs: the ``replicator`` loggers write JSON lines to stdout through Powertools' ``Logger``
  (service ``replicator``); the batch summary line's figures are its ``batch`` field. The
  project's redaction (:mod:`replicator.redact`) redacts each record when it is made; the formatter
  here redacts the whole JSON line again, because Powertools formats tracebacks itself (from
  ``exc_info``, not the redacted ``exc_text``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.constants import (
    LOGGER_ATTRIBUTE_POWERTOOLS_HANDLER,
    LOGGER_ATTRIBUTE_PRECONFIGURED,
)
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit

from replicator.core import BatchResult
from replicator.metrics import DEFAULT_NAMESPACE, FIGURES
from replicator.redact import known_secrets, redact

LOGGER = "replicator"
_UNITS = {"Count": MetricUnit.Count, "Milliseconds": MetricUnit.Milliseconds}


def new_metrics(environ: Mapping[str, str]) -> Metrics:
    """Powertools' Metrics in the configured namespace, without the ``service`` dimension
    Powertools adds from POWERTOOLS_SERVICE_NAME (an empty service adds none)."""
    namespace = environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    return Metrics(namespace=namespace, service="")


def publish(metrics: Metrics, result: BatchResult) -> bool:
    """Print the batch's EMF line (one JSON line on stdout; Lambda sends it to CloudWatch Logs,
    which extracts the metrics). False, and nothing printed, for a batch without records."""
    if result.records == 0:
        return False
    metrics.add_dimension("Table", result.table or "unknown")
    metrics.add_dimension("Collection", result.collection or "unknown")
    for figure in FIGURES:
        value = figure.value(result)
        if value is not None:
            metrics.add_metric(figure.name, _UNITS[figure.unit], value)
    metrics.flush_metrics()
    return True


class RedactingJsonFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, the whole line redacted (secrets also as JSON escapes them)."""

    def serialize(self, log: Any) -> str:
        secrets = known_secrets()
        escaped = [json.dumps(s, ensure_ascii=False)[1:-1] for s in secrets]
        return redact(super().serialize(log), sorted({*secrets, *escaped}, key=lambda s: -len(s)))


class _Stdout:
    """sys.stdout as it is when a line is written (Lambda's is fixed; a test's capture is not)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


_logger: Logger | None = None


def install_json_logs() -> Logger:
    """Powertools' Logger for the ``replicator`` loggers (the core's, the poller's: children of
    it), JSON lines on stdout; made once. Powertools keeps the records from reaching the root
    logger's handlers as well (Lambda's runtime handler would print each a second time, as text)
    and takes the level from POWERTOOLS_LOG_LEVEL or AWS_LAMBDA_LOG_LEVEL (default INFO)."""
    global _logger
    if _logger is None:
        _logger = Logger(service=LOGGER, logger_handler=logging.StreamHandler(_Stdout()),
                         logger_formatter=RedactingJsonFormatter(utc=True, use_rfc3339=True))
    return _logger


def uninstall_json_logs() -> None:
    """Undo :func:`install_json_logs` (tests, :func:`replicator.handler.reset`): its handler, the
    filters Powertools put on the root logger's handlers, and Powertools' marks on the logger."""
    global _logger
    if _logger is None:
        return
    stdlib = logging.getLogger(LOGGER)
    stdlib.removeHandler(_logger.logger_handler)
    for handler in logging.getLogger().handlers:
        for found in list(handler.filters):
            if isinstance(found, SuppressFilter) and found.logger == LOGGER:
                handler.removeFilter(found)
    for mark in (LOGGER_ATTRIBUTE_PRECONFIGURED, LOGGER_ATTRIBUTE_POWERTOOLS_HANDLER,
                 "powertools_buffer_config", "powertools_buffer_cache"):
        if hasattr(stdlib, mark):
            delattr(stdlib, mark)
    stdlib.setLevel(logging.NOTSET)
    _logger = None


def set_request(context: Any) -> None:
    """Name the invocation's request id in every JSON line (``function_request_id``, the key
    Powertools' ``inject_lambda_context`` uses)."""
    if _logger is None:
        return
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        _logger.append_keys(function_request_id=str(request_id))
    else:
        _logger.remove_keys(["function_request_id"])
