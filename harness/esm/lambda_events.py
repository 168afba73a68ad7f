"""boto3 ``dynamodbstreams.get_records`` records -> the records of a Lambda DynamoDB Streams event.

The two shapes differ only where JSON cannot carry a Python value. boto3 (the low-level client)
decodes B and BS attribute values to ``bytes`` -- at any depth: in ``Keys``, ``NewImage``,
``OldImage`` and inside M and L values -- and ``ApproximateCreationDateTime`` to a ``datetime``.
A Lambda event is JSON: B values are base64 text and ``ApproximateCreationDateTime`` is epoch
seconds (AWS docs, "Using AWS Lambda with Amazon DynamoDB", example event). The event record also
names its source stream (``eventSourceARN``), which ``GetRecords`` does not return.

Pure: the input is never modified, the output shares no mutable object with it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["epoch_seconds", "lambda_event", "to_lambda_record"]

EVENT_SOURCE = "aws:dynamodb"


def to_lambda_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One ``GetRecords`` record as Lambda delivers it.

    Every ``bytes`` value (B, each member of BS, nested in M or L) becomes standard base64 text;
    ``dynamodb.ApproximateCreationDateTime`` becomes epoch seconds as a float (a naive datetime is
    taken as UTC); ``eventSourceARN`` is set to ``stream_arn``; ``awsRegion`` is kept when the
    record has one, else set to ``region``; ``eventVersion``, ``eventSource``, ``eventID``,
    ``eventName``, ``userIdentity`` and everything else are kept (``eventSource`` defaults to
    ``aws:dynamodb`` when missing). Field order follows the input, ``eventSourceARN`` last.
    """
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name == "dynamodb" and isinstance(value, Mapping):
            out[name] = _body(value)
        else:
            out[name] = wire_json(value)
    if not out.get("awsRegion"):
        out["awsRegion"] = region
    out.setdefault("eventSource", EVENT_SOURCE)
    out["eventSourceARN"] = stream_arn
    return out


def lambda_event(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``{"Records": [...]}`` around records already in the Lambda shape."""
    return {"Records": list(records)}


def epoch_seconds(value: Any) -> float | None:
    """``ApproximateCreationDateTime`` in either shape as epoch seconds; None when unreadable."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _body(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name == "ApproximateCreationDateTime":
            epoch = epoch_seconds(value)
            out[name] = epoch if epoch is not None else wire_json(value)
        else:
            out[name] = wire_json(value)
    return out


def wire_json(value: Any) -> Any:
    """A JSON-shaped copy: bytes -> base64 text (as the fixtures hold B values), containers copied,
    scalars kept."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {key: wire_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [wire_json(item) for item in value]
    return value

