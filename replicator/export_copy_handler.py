"""AWS Lambda entry points of the distributed export copy (deploy/export-copy.yaml: a Step
Functions Distributed Map over an export's ``manifest-files.json``; docs/migration.md).

* ``replicator.export_copy_handler.load_file`` -- the map's child: one data file (one
  ``manifest-files.json`` line, event ``{"Item", "Export", "ExportArn", "ExportType", "Index"}``)
  loaded once through the core (:func:`replicator.migrate.distributed.load_task`). Answers the
  file's counts; raises for a file that does not match its manifest line (``ExportFileMismatch``,
  not retried by the state machine) or MongoDB refusing writes past the retries.
* ``replicator.export_copy_handler.stream_step`` -- before and after the map, event ``{"Step":
  "prepare", "Export": "s3://...", "Table": ...}`` (positions recorded, the map's inputs
  answered) or ``{"Step": "handover", "Table": ...}`` (the stream applied until caught up, within
  the invocation's time).

Configuration is the replicator function's (replicator/handler.py): the MongoDB URI from Secrets
Manager / SSM / the environment, ``MONGODB_DATABASE``, ``MONGODB_COLLECTION`` and the
``REPLICATOR_*`` settings (``REPLICATOR_KEY_SCHEMA`` required here: an export line carries no key
schema). The MongoDB client is made once per container, as AWS recommends; logs are JSON and
redacted as the replicator function's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from replicator import lambda_telemetry
from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.handler import build_from_env, close_client

#: seconds the handover leaves of the invocation for its last batch and its answer
HANDOVER_MARGIN_S = 60.0

_lock = threading.Lock()
_replicator: Replicator | None = None
_clients: dict[str, Any] = {}


def load_file(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Distributed Map's child (module docstring)."""
    from replicator.migrate.distributed import ExportFileTask, load_task, result_of

    replicator = _get_replicator()
    lambda_telemetry.set_request(context)
    task = ExportFileTask.from_event(event)
    s3 = _client("s3") if task.export.startswith("s3://") else None  # boto3: Lambda's runtime's
    return result_of(load_task(task, replicator, s3=s3))


def stream_step(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """``prepare`` or ``handover`` (module docstring)."""
    from replicator.migrate import distributed
    from replicator.poller import Poller

    replicator = _get_replicator()
    lambda_telemetry.set_request(context)
    step = event.get("Step")
    table = event.get("Table")
    if step not in ("prepare", "handover") or not table:
        raise ConfigurationError(
            f"the event needs Step (prepare or handover) and Table; got Step={step!r}, "
            f"Table={table!r}")
    poller = Poller(_client("dynamodbstreams"), _client("dynamodb"), str(table),
                    replicator.collection, replicator.settings, log_interval=60.0)
    if step == "prepare":
        export = event.get("Export")
        if not export:
            raise ConfigurationError("prepare needs Export: the export's directory, "
                                     "s3://<bucket>/<prefix>/AWSDynamoDB/<ExportId>")
        return distributed.prepare(poller, str(export), s3=_client("s3"))
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    budget = remaining() / 1000.0 - HANDOVER_MARGIN_S if callable(remaining) else None
    return distributed.handover(poller, budget_s=budget)


def _get_replicator() -> Replicator:
    global _replicator
    with _lock:
        if _replicator is None:
            lambda_telemetry.install_json_logs()
            _replicator = build_from_env(os.environ)
        return _replicator


def _client(service: str) -> Any:
    with _lock:
        if service not in _clients:
            import boto3

            _clients[service] = boto3.client(service)
        return _clients[service]


def reset() -> None:
    """Forget the cached client and boto3 clients (tests, or a changed environment)."""
    global _replicator
    with _lock:
        close_client(_replicator)
        _replicator = None
        _clients.clear()
        lambda_telemetry.uninstall_json_logs()
