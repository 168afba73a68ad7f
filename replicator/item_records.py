"""Copied items and export lines as stream-shaped records, so they go through the same core.

A record made here carries a sequence number chosen by the caller:

* ``COPY_SEQUENCE`` ("0") for the initial copy: below every real sequence number, so the
  stale-write guard lets a copied item in only where no stream change of it was applied, and a
  tombstone keeps a deleted item from coming back (the same rule as ``resync``'s scan).
* a Kinesis order key for a copy into a Kinesis-fed collection (:func:`kinesis_item_record`):
  the copy is made to look like a Kinesis change of the copy's cutoff time, so a Kinesis change
  made after the cutoff replaces it and one made before is stale (docs/kinesis.md, "Copying").
* ``after(sequence)`` for a gap recovery: just above the last position applied before the gap, so
  the copy replaces what was written before the gap but never what the stream applied since.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from replicator.errors import ConfigurationError
from replicator.events import Change

Record = dict[str, Any]
COPY_SEQUENCE = "0"
#: the eventSource of every record made here (replicator:copy, :export, :resync)
COPY_SOURCE_PREFIX = "replicator:"
#: Records of a copy carry full images: no read-back is needed whatever the stream's view type.
VIEW = "NEW_AND_OLD_IMAGES"


class Outcome(Protocol):
    """What :func:`tally` reads of a :class:`replicator.core.BatchResult`."""

    applied: int
    stale: int
    already: int
    quarantined: list[Any]


@dataclass(frozen=True)
class Tally:
    """What a batch of copied records did, exactly: ``written`` -- the items whose document
    now holds the copied version; ``newer`` -- the items a stream change (document or
    tombstone) had made newer; ``quarantined``."""

    written: int
    newer: int
    quarantined: int


def tally(result: Outcome) -> Tally:
    """The counts of the attempt that succeeded. A failed batch is written again whole (the
    core names failed records by sequence number, and every record of a copy carries the same
    one), so the items an earlier attempt had written come back stale: they are told apart by
    the core (``already``: the document holds this very sequence number) and counted as
    written, not as "newer from the stream"."""
    return Tally(written=result.applied + result.already,
                 newer=result.stale - result.already,
                 quarantined=len(result.quarantined))


def is_copy(change: Change) -> bool:
    """Whether ``change`` was made here from a copied item (:func:`item_record`'s
    ``replicator:*`` sources, :func:`kinesis_item_record`'s sequence number) rather than read
    from a stream: it shows the item as it is, not a change made at its time (an INSERT of a copy
    is no new item)."""
    if change.order_key is not None:
        return change.sequence_number == COPY_SEQUENCE
    source = change.raw.get("eventSource") if isinstance(change.raw, Mapping) else None
    return type(source) is str and source.startswith(COPY_SOURCE_PREFIX)


def after(sequence_number: str) -> str:
    """The next sequence number (numeric strings of up to 40 digits)."""
    return str(int(sequence_number) + 1)


def item_record(item: Mapping[str, Any], key_schema: Sequence[str], sequence: str,
                event_id: str, *, source: str = "replicator:copy",
                created: datetime | None = None, owned: bool = False) -> Record:
    """A scanned or exported item as an INSERT record, made at ``created`` (default: now; a page
    or batch passes one time for all its records: one clock read, not one per item).
    ``owned``: the caller hands ``item`` over (a line it has just parsed and keeps no reference
    to), so it becomes the record's NewImage as it is instead of a copy (issue 21: the copy was
    ~1,000 instructions of an export line's ~13,000 here)."""
    try:
        keys = {k: item[k] for k in key_schema}
    except Exception:  # any: the check below names what is wrong, as before
        keys = None
    if keys is None:
        missing = [k for k in key_schema if k not in item]
        if missing:
            raise ConfigurationError(
                f"item lacks key attribute(s) {missing} (event {event_id}): wrong key schema?")
        keys = {k: item[k] for k in key_schema}
    return {
        "eventID": event_id,
        "eventName": "INSERT",
        "eventSource": source,
        "dynamodb": {
            "Keys": keys,
            "NewImage": item if owned and type(item) is dict else dict(item),
            "SequenceNumber": sequence,
            "StreamViewType": VIEW,
            "ApproximateCreationDateTime": created or datetime.now(timezone.utc),
        },
    }


def removal_record(keys: Mapping[str, Any], sequence: str, event_id: str,
                   old_image: Mapping[str, Any] | None = None, *,
                   source: str = "replicator:copy") -> Record:
    dynamodb: dict[str, Any] = {
        "Keys": dict(keys),
        "SequenceNumber": sequence,
        "StreamViewType": VIEW,
        "ApproximateCreationDateTime": datetime.now(timezone.utc),
    }
    if old_image is not None:
        dynamodb["OldImage"] = dict(old_image)
    return {"eventID": event_id, "eventName": "REMOVE", "eventSource": source,
            "dynamodb": dynamodb}


def kinesis_item_record(item: Mapping[str, Any], key_schema: Sequence[str], order_micros: int,
                        event_id: str, *, table: str, stream_arn: str) -> Record:
    """A scanned item as the Lambda-shaped Kinesis record of an INSERT made at ``order_micros``
    (epoch microseconds, ``ApproximateCreationDateTimePrecision: MICROSECOND``), from the Kinesis
    data stream ``stream_arn``: the core gives it the order key ``K<order_micros>.<digest>``
    (replicator/events.py), so the copy's version is ordered against the stream's changes by
    time. ``kinesis.sequenceNumber`` is :data:`COPY_SEQUENCE` (a copy has no place in a shard;
    failures name it, as for the DynamoDB Streams copy). ``B``/``BS`` values given as bytes
    become base64 text, as in a Kinesis record's JSON."""
    missing = [k for k in key_schema if k not in item]
    if missing:
        raise ConfigurationError(
            f"item lacks key attribute(s) {missing} (event {event_id}): wrong key schema?")
    change = {
        "eventID": event_id, "eventName": "INSERT", "recordFormat": "application/json",
        "tableName": table, "eventSource": "aws:dynamodb",
        "dynamodb": {"ApproximateCreationDateTime": order_micros,
                     "ApproximateCreationDateTimePrecision": "MICROSECOND",
                     "Keys": {k: item[k] for k in key_schema}, "NewImage": dict(item)},
    }
    data = json.dumps(change, separators=(",", ":"), default=_json_bytes).encode()
    return {"eventSource": "aws:kinesis", "eventID": event_id, "eventSourceARN": stream_arn,
            "kinesis": {"sequenceNumber": COPY_SEQUENCE, "data": data,
                        "partitionKey": event_id}}


def _json_bytes(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not DynamoDB JSON")
