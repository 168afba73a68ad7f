"""Kinesis Data Streams for DynamoDB records in the Lambda event shape, for tests.

The shape is AWS's (Developer Guide, "Using Kinesis Data Streams to capture changes to DynamoDB";
Lambda Developer Guide, "Using Lambda with Kinesis Data Streams"), kept as a fixture in
tests/fixtures/kinesis/lambda-event.json: an outer Kinesis record whose ``kinesis.data`` is the
base64 of the change JSON.
"""

from __future__ import annotations

import base64
import json
from typing import Any

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/users-changes"
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
#: 2026-12-07T00:00:00Z in epoch milliseconds
T0_MS = 1796601600000


def change_json(name: str, keys: dict[str, Any], *, new: dict[str, Any] | None = None,
                old: dict[str, Any] | None = None, created: int = T0_MS,
                precision: str | None = None, table: str = "users", ttl: bool = False,
                event_id: str | None = None) -> dict[str, Any]:
    """The change JSON DynamoDB puts into the Kinesis data stream."""
    body: dict[str, Any] = {"ApproximateCreationDateTime": created, "Keys": keys,
                            "SizeBytes": 42}
    if precision is not None:
        body["ApproximateCreationDateTimePrecision"] = precision
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {
        "awsRegion": "us-east-1",
        "eventID": event_id or f"{name}-{created}-{json.dumps(keys, sort_keys=True)}",
        "eventName": name,
        "userIdentity": dict(TTL_IDENTITY) if ttl else None,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": body,
        "eventSource": "aws:dynamodb",
    }


def kinesis_record(change: dict[str, Any] | bytes | str, sequence: int | str,
                   *, stream_arn: str = STREAM_ARN) -> dict[str, Any]:
    """A Lambda event record of a Kinesis data stream carrying ``change`` (a dict is JSON-encoded
    and base64'd; bytes are base64'd as they are; a str is put in ``data`` as it is)."""
    if isinstance(change, dict):
        data = base64.b64encode(json.dumps(change).encode()).decode()
    elif isinstance(change, bytes):
        data = base64.b64encode(change).decode()
    else:
        data = change
    number = str(sequence).rjust(56, "4") if str(sequence).isdigit() else str(sequence)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "7C2E6F1B5A9D4E3F",
            "sequenceNumber": number,
            "data": data,
            "approximateArrivalTimestamp": 1796601600.5,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/replicator",
        "awsRegion": "us-east-1",
        "eventSourceARN": stream_arn,
    }


def item(id_: str, v: int | str = 1) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}}


def keys(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


class Changes:
    """Changes of items with a running Kinesis sequence number: ``put``, ``modify``, ``remove``."""

    def __init__(self) -> None:
        self.sequence = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def record(self, name: str, id_: str, *, new: int | None = None, old: int | None = None,
               at: int = T0_MS, **options: Any) -> dict[str, Any]:
        change = change_json(
            name, keys(id_), new=None if new is None else item(id_, new),
            old=None if old is None else item(id_, old), created=at,
            event_id=options.pop("event_id", f"ev-{self.sequence + 1}"), **options)
        return kinesis_record(change, self._next())

    def insert(self, id_: str, v: int, at: int = T0_MS, **options: Any) -> dict[str, Any]:
        return self.record("INSERT", id_, new=v, at=at, **options)

    def modify(self, id_: str, old: int, new: int, at: int = T0_MS,
               **options: Any) -> dict[str, Any]:
        return self.record("MODIFY", id_, new=new, old=old, at=at, **options)

    def remove(self, id_: str, old: int, at: int = T0_MS, **options: Any) -> dict[str, Any]:
        return self.record("REMOVE", id_, old=old, at=at, **options)


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def history(rng: Any, items: int, steps: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Changes of a few items with few values (so states repeat: cycles) and times that often
    collide (0-1 ms apart), as DynamoDB would emit them; the items' final values."""
    state: dict[str, int | None] = {f"i{n}": None for n in range(items)}
    clock = dict.fromkeys(state, T0_MS)
    changes = Changes()
    records = []
    for _ in range(steps):
        name = rng.choice(sorted(state))
        clock[name] += rng.choice((0, 0, 1))
        old = state[name]
        if old is None:
            new: int | None = rng.randint(1, 3)
            records.append(changes.insert(name, new, clock[name]))
        elif rng.random() < 0.2:
            new = None
            records.append(changes.remove(name, old, clock[name]))
        else:
            new = rng.choice([v for v in (1, 2, 3) if v != old])
            records.append(changes.modify(name, old, new, clock[name]))
        state[name] = new
    return records, {k: v for k, v in state.items() if v is not None}


def shuffled_history(seed: int, table: Any, table_name: str = "users"
                     ) -> tuple[Any, list[dict[str, Any]], dict[str, int]]:
    """A seeded :func:`history` of three items, 25 steps: the table ``table_name`` set to its final
    items (what a read-back finds), its records with 30 % duplicated, shuffled. Answers the seeded
    ``random.Random`` (for the batch sizes that follow), the records, the final values."""
    import random

    rng = random.Random(seed)
    records, final = history(rng, items=3, steps=25)
    for name in ("i0", "i1", "i2"):
        table.delete_item(TableName=table_name, Key=keys(name))
    for name, value in final.items():
        table.put_item(TableName=table_name, Item=item(name, value))
    delivered = records + [r for r in records if rng.random() < 0.3]
    rng.shuffle(delivered)
    return rng, delivered, final

