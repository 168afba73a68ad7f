"""An in-memory reference DynamoDB table that emits stream records the way DynamoDB does.

:class:`ModelTable` is the oracle of the model-based tests (``tests/replicator/model``,
``tests/replicator/fuzz``): every
write returns the stream record DynamoDB would emit for it, in the shape AWS Lambda delivers
(``eventID``, ``eventName``, ``eventSource`` "aws:dynamodb", ``eventSourceARN``, ``awsRegion``,
``dynamodb.{Keys, NewImage, OldImage, SequenceNumber, SizeBytes, StreamViewType,
ApproximateCreationDateTime}``, B values as base64 text), and the table keeps, per key, the history
of the states the item went through, by sequence number.

What DynamoDB does, and so the model:

- a put of a new item is an INSERT; a put over an existing item a MODIFY with the old image; a put
  identical to the stored item (same attributes, equal numbers, equal sets in any order) changes
  nothing and emits nothing;
- an update (``SET`` / ``REMOVE`` of top-level attributes) creates the item when it is missing
  (INSERT), else is a MODIFY; an update that changes nothing emits nothing; key attributes cannot
  be updated;
- a delete is a REMOVE with the old image; deleting a missing item emits nothing; :meth:`expire`
  is the same delete done by TTL (``userIdentity`` names the DynamoDB service principal);
- sequence numbers increase strictly and are 21-digit zero-padded decimal strings;
- the view type decides the images: NEW_AND_OLD_IMAGES (both), NEW_IMAGE (new only), OLD_IMAGE
  (old only), KEYS_ONLY (none).

Pure Python, no AWS, no randomness: the same calls give the same records.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from harness.dynamodb_values import (
    KEY_TAGS,
    TAGS,
    canonical_number,
    check_set,
    check_value,
    clone,
    item_size,
    raw_bytes,
)

Item = dict[str, Any]
AttributeValue = dict[str, Any]

VIEW_TYPES = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
SEQUENCE_DIGITS = 21


@dataclass(frozen=True)
class Position:
    """Where a stream record sits in its item's history: ``history(key_id)[position]`` is the
    state the record leaves the item in (position 0 is "absent, before any write")."""

    key_id: str
    position: int


class ModelTable:
    """A DynamoDB table in memory, with its stream.

    ``key_schema``: key attribute names, partition key first. Items and values are DynamoDB JSON
    (``{"S": ..}``, ``{"N": "1.5"}``, ...); ``B``/``BS`` may be given as bytes or base64 text and are
    stored and emitted as base64 text (the Lambda event form).
    """

    def __init__(
        self,
        key_schema: Sequence[str] = ("pk",),
        *,
        view_type: str = "NEW_AND_OLD_IMAGES",
        table_name: str = "model",
        region: str = "us-east-1",
        account: str = "000000000000",
        first_sequence: int = 100,
        sequence_step: int = 1,
        clock: int = 1_767_225_600,
        validate: bool = True,
    ) -> None:
        if not 1 <= len(key_schema) <= 2:
            raise ValueError("key_schema names one or two attributes (partition, sort)")
        if view_type not in VIEW_TYPES:
            raise ValueError(f"view_type must be one of {VIEW_TYPES}, got {view_type!r}")
        if sequence_step < 1:
            raise ValueError("sequence_step must be positive")
        self.key_schema = tuple(key_schema)
        self.view_type = view_type
        self.table_name = table_name
        self.region = region
        self.stream_arn = (
            f"arn:aws:dynamodb:{region}:{account}:table/{table_name}/stream/2026-01-01T00:00:00.000"
        )
        self.validate = validate
        self.records: list[dict[str, Any]] = []
        #: record index -> where it sits in its item's history
        self.positions: list[Position] = []
        self._sequence = first_sequence - sequence_step
        self._step = sequence_step
        self._clock = clock
        self._items: dict[str, Item] = {}
        self._keys: dict[str, dict[str, Any]] = {}
        # key_id -> [(sequence number or None, state after: item or None)]
        self._history: dict[str, list[tuple[str | None, Item | None]]] = {}

    # -- writes ----------------------------------------------------------------------------------
    def put(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """PutItem: the emitted record, or None when the put changes nothing."""
        new = _normalized_item(item, self.validate)
        keys = self.keys_of(new)
        key_id = self.key_id(keys)
        old = self._items.get(key_id)
        if old is not None and same_item(old, new):
            return None
        return self._write(key_id, keys, "INSERT" if old is None else "MODIFY", old, new)

    def update(
        self,
        key: Mapping[str, Any],
        set_attributes: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """UpdateItem with ``SET name = value, ...`` and ``REMOVE name, ...`` (top level)."""
        keys = self.keys_of(key)
        set_attributes = dict(set_attributes or {})
        remove = list(remove)
        touched = set(set_attributes) | set(remove)
        if touched & set(self.key_schema):
            raise ValueError(f"cannot update key attributes {sorted(touched & set(self.key_schema))}")
        if set(set_attributes) & set(remove):
            raise ValueError("an attribute is both SET and REMOVEd (DynamoDB rejects that)")
        key_id = self.key_id(keys)
        old = self._items.get(key_id)
        new = clone(old) if old is not None else clone(keys)
        new.update(_normalized_item(set_attributes, self.validate))
        for name in remove:
            new.pop(name, None)
        if old is not None and same_item(old, new):
            return None
        return self._write(key_id, keys, "INSERT" if old is None else "MODIFY", old, new)

    def delete(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """DeleteItem: a REMOVE record, or None when the item does not exist."""
        return self._delete(key, ttl=False)

    def expire(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """A TTL deletion: a REMOVE record whose ``userIdentity`` is the DynamoDB service."""
        return self._delete(key, ttl=True)

    def _delete(self, key: Mapping[str, Any], *, ttl: bool) -> dict[str, Any] | None:
        keys = self.keys_of(key)
        key_id = self.key_id(keys)
        old = self._items.get(key_id)
        if old is None:
            return None
        return self._write(key_id, keys, "REMOVE", old, None, ttl=ttl)

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: Mapping[str, Any]) -> Item | None:
        item = self._items.get(self.key_id(self.keys_of(key)))
        return clone(item) if item is not None else None

    def items(self) -> list[Item]:
        """The current items (DynamoDB JSON, B as base64 text), in first-write order."""
        return [clone(item) for item in self._items.values()]

    def key_ids(self) -> list[str]:
        """Every key ever written, in first-write order."""
        return list(self._history)

    def keys_for(self, key_id: str) -> dict[str, Any]:
        return clone(self._keys[key_id])

    def history(self, key_id: str) -> list[tuple[str | None, Item | None]]:
        """``[(sequence number, state after)]``; entry 0 is ``(None, None)``: absent, unwritten."""
        return [(seq, clone(state) if state is not None else None)
                for seq, state in self._history.get(key_id, [(None, None)])]

    def state_at(self, key_id: str, position: int) -> Item | None:
        state = self._history[key_id][position][1]
        return clone(state) if state is not None else None

    def lambda_event(self, records: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """``{"Records": [...]}`` (every record so far by default), copied."""
        chosen = self.records if records is None else records
        return {"Records": [clone(dict(r)) for r in chosen]}

    # -- keys ------------------------------------------------------------------------------------
    def keys_of(self, item_or_key: Mapping[str, Any]) -> dict[str, Any]:
        """The ``Keys`` of an item or key, partition key first; checks S/N/B and presence."""
        keys: dict[str, Any] = {}
        for name in self.key_schema:
            if name not in item_or_key:
                raise ValueError(f"key attribute {name!r} is missing")
            value = _normalized_value(item_or_key[name], self.validate)
            (tag,) = value
            if tag not in KEY_TAGS:
                raise ValueError(f"key attribute {name!r} must be S, N or B, got {tag}")
            if tag in ("S", "B") and value[tag] == "":
                raise ValueError(f"key attribute {name!r} must not be empty")
            keys[name] = value
        return keys

    @staticmethod
    def key_id(keys: Mapping[str, Any]) -> str:
        """A stable text identity of a key (numbers compared by value)."""
        parts = []
        for name, value in keys.items():
            ((tag, payload),) = value.items()
            text = canonical_number(payload) if tag == "N" else payload
            parts.append(f"{name}\x1f{tag}\x1f{text}")
        return "\x1e".join(parts)

    # -- emission --------------------------------------------------------------------------------
    def _write(
        self,
        key_id: str,
        keys: dict[str, Any],
        event_name: str,
        old: Item | None,
        new: Item | None,
        *,
        ttl: bool = False,
    ) -> dict[str, Any]:
        self._sequence += self._step
        self._clock += 1
        sequence = f"{self._sequence:0{SEQUENCE_DIGITS}d}"
        if len(sequence) > SEQUENCE_DIGITS:
            raise OverflowError("sequence numbers ran past 21 digits")
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": self._clock,
            "Keys": clone(keys),
        }
        size = item_size(keys)
        if new is not None and self.view_type in ("NEW_AND_OLD_IMAGES", "NEW_IMAGE"):
            body["NewImage"] = clone(new)
            size += item_size(new)
        if old is not None and self.view_type in ("NEW_AND_OLD_IMAGES", "OLD_IMAGE"):
            body["OldImage"] = clone(old)
            size += item_size(old)
        body["SequenceNumber"] = sequence
        body["SizeBytes"] = size
        body["StreamViewType"] = self.view_type
        record: dict[str, Any] = {
            "eventID": uuid.UUID(int=self._sequence).hex,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": body,
            "eventSourceARN": self.stream_arn,
        }
        if ttl:
            record["userIdentity"] = dict(TTL_IDENTITY)

        if new is None:
            self._items.pop(key_id, None)
        else:
            self._items[key_id] = clone(new)
        self._keys.setdefault(key_id, clone(keys))
        history = self._history.setdefault(key_id, [(None, None)])
        history.append((sequence, clone(new) if new is not None else None))
        self.positions.append(Position(key_id, len(history) - 1))
        self.records.append(record)
        return clone(record)


# -- values ----------------------------------------------------------------------------------------
def lambda_value(value: Mapping[str, Any]) -> AttributeValue:
    """A checked copy of a typed value as a Lambda event carries it (B and BS as base64 text)."""
    return _normalized_value(value, True)


def same_item(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """DynamoDB's "the item did not change": equal numbers by value, sets in any order."""
    return a.keys() == b.keys() and all(_canonical(a[name]) == _canonical(b[name]) for name in a)


def _canonical(value: Mapping[str, Any]) -> Any:
    ((tag, payload),) = value.items()
    if tag == "N":
        return ("N", Decimal(payload))
    if tag == "B":
        return ("B", raw_bytes(payload))
    if tag == "SS":
        return ("SS", frozenset(payload))
    if tag == "NS":
        return ("NS", frozenset(Decimal(v) for v in payload))
    if tag == "BS":
        return ("BS", frozenset(raw_bytes(v) for v in payload))
    if tag == "M":
        return ("M", {name: _canonical(v) for name, v in payload.items()})
    if tag == "L":
        return ("L", [_canonical(v) for v in payload])
    return (tag, payload)


def _normalized_item(item: Mapping[str, Any], validate: bool) -> Item:
    out: Item = {}
    for name, value in item.items():
        if validate and (not isinstance(name, str) or not name):
            raise ValueError(f"attribute names are non-empty strings, got {name!r}")
        out[name] = _normalized_value(value, validate, name)
    return out


def _normalized_value(value: Any, validate: bool, path: str = "") -> AttributeValue:
    """A copy with B/BS as base64 text; with ``validate``, checks DynamoDB's value rules."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"{path}: expected one typed value like {{'S': ...}}, got {value!r:.60}")
    ((tag, payload),) = value.items()
    if tag not in TAGS:
        raise ValueError(f"{path}: unknown type tag {tag!r}")
    if tag == "B":
        return {"B": _base64(payload)}
    if tag == "BS":
        members = [_base64(v) for v in payload]
        if validate:
            check_set(path, "BS", members)
        return {"BS": members}
    if tag == "M":
        if validate and not isinstance(payload, Mapping):
            raise ValueError(f"{path}: M holds {type(payload).__name__}")
        return {"M": {name: _normalized_value(v, validate, f"{path}.{name}")
                      for name, v in payload.items()}}
    if tag == "L":
        if validate and not isinstance(payload, (list, tuple)):
            raise ValueError(f"{path}: L holds {type(payload).__name__}")
        return {"L": [_normalized_value(v, validate, f"{path}[{i}]") for i, v in enumerate(payload)]}
    if validate:
        check_value(path, {tag: payload})
    if tag in ("SS", "NS"):
        return {tag: list(payload)}
    return {tag: payload}


def _base64(payload: Any) -> str:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(payload)).decode("ascii")
    if isinstance(payload, str):
        raw_bytes(payload)
        return payload
    raise ValueError(f"B holds {type(payload).__name__}")
