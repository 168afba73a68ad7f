"""Replay a captured stream into a target and check it against the captured final items."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson import json_util
from bson.decimal128 import Decimal128

from harness.convergence import Diff, check
from harness.driver import MalformedResponse, retry_from_index
from harness.fixtures import Capture
from harness.handlers import make_handler
from replicator.plan import Planner
from replicator.settings import Settings


@dataclass
class ReplayResult:
    batches: int = 0
    invocations: int = 0
    redelivered: int = 0
    responses: list[Any] = field(default_factory=list)
    diff: Diff | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and (self.diff is None or self.diff.converged)


def settings_for(capture: Capture, base: Settings | None = None) -> Settings:
    """The capture's key schema folded into the settings."""
    from dataclasses import replace

    return replace(base or Settings(), key_schema=capture.table.key_schema)


def replay(
    capture: Capture,
    collection: Any,
    *,
    handler_name: str = "replicator",
    settings: Settings | None = None,
    batch_size: int = 100,
    max_attempts: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Feed the events in batches of ``batch_size``; honour partial batch failures like Lambda.

    A response naming failed items makes the batch restart at the lowest of them, up to
    ``max_attempts`` times; a raised exception retries the whole batch likewise. A response Lambda
    does not understand (such as the baseline's ``{"statusCode": 500}``) counts as success, exactly
    as it would in AWS -- which is how the baseline loses records.
    """
    settings = settings_for(capture, settings)
    handler = make_handler(handler_name, collection, settings)
    records = capture.records
    result = ReplayResult()
    position = 0
    attempts = 0
    while position < len(records):
        batch = records[position : position + batch_size]
        result.invocations += 1
        if attempts == 0:
            result.batches += 1
        try:
            response = handler({"Records": batch})
        except Exception as error:  # a function error: Lambda retries the same batch
            response = error
        result.responses.append(response)
        restart = _restart_index(batch, response)
        if restart is None:
            position += len(batch)
            attempts = 0
        else:
            attempts += 1
            if attempts >= max_attempts:
                result.error = (
                    f"batch starting at record {position} still failed after {attempts} attempts: "
                    f"{response!r:.300}"
                )
                return result
            result.redelivered += len(batch) - restart
            position += restart
        if progress:
            progress(position, len(records))
    if capture.final_items is not None:
        result.diff = check(capture.final_items, collection, Planner(settings))
    return result


def _restart_index(batch: list[dict[str, Any]], response: Any) -> int | None:
    """Where the batch restarts, by the event source mapping's own rules (driver.py)."""
    if isinstance(response, Exception):
        return 0
    if not isinstance(response, dict):
        return None  # see replay(): a response Lambda does not read counts as success here
    try:
        return retry_from_index(response, [_sequence_number(r) for r in batch])
    except MalformedResponse:
        return 0  # the whole batch fails


def _sequence_number(record: Any) -> str:
    # A malformed record (no SequenceNumber) was quarantined by the handler: it cannot be named in
    # batchItemFailures, so "" (never a valid itemIdentifier) keeps its place in the batch.
    dynamodb = record.get("dynamodb") if isinstance(record, dict) else None
    sequence = dynamodb.get("SequenceNumber") if isinstance(dynamodb, dict) else None
    return sequence if isinstance(sequence, str) else ""


def dump_collection(collection: Any, path: Path) -> int:
    """Write the collection as canonical Extended JSON, one document per line, sorted by ``_id``."""
    documents = sorted(collection.find({}), key=lambda d: _id_order(d["_id"]))
    with Path(path).open("w") as out:
        for document in documents:
            out.write(
                json_util.dumps(document, json_options=json_util.CANONICAL_JSON_OPTIONS) + "\n"
            )
    return len(documents)


def _id_order(value: Any) -> tuple[int, Any]:
    # BSON's comparison order: numbers, then strings, then documents, then binary.
    if isinstance(value, bool):
        return (5, str(value))
    if isinstance(value, (int, float)):
        return (0, Decimal(value))
    if isinstance(value, Decimal128):
        return (0, value.to_decimal())
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, dict):
        return (2, json.dumps([_id_order(v) for v in value.values()], default=str))
    if isinstance(value, bytes):
        return (3, value)
    return (4, repr(value))
