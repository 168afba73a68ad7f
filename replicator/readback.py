"""Read the current item back from DynamoDB, for streams whose records carry no new image.

KEYS_ONLY and OLD_IMAGE streams say *that* an item changed, not what it is now. With a reader the
replicator fetches the item with a strongly consistent read (``BatchGetItem``) and writes that;
without one each such record is quarantined (UnsupportedRecordError), because guessing would
lose data.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from replicator.errors import UnsupportedRecordError
from replicator.events import BadRecord, Change, EventName

AttributeMap = Mapping[str, Any]


class ItemReader(Protocol):
    def read(self, keys: Sequence[AttributeMap]) -> list[AttributeMap | None]:
        """The current item for each key (None where it no longer exists), in order."""
        ...


class DynamoDBItemReader:
    """Consistent ``BatchGetItem`` through a boto3 DynamoDB client (100 keys per request)."""

    def __init__(self, client: Any, table_name: str, *, max_attempts: int = 8) -> None:
        self.client = client
        self.table_name = table_name
        self.max_attempts = max_attempts

    def read(self, keys: Sequence[AttributeMap]) -> list[AttributeMap | None]:
        found: dict[str, AttributeMap] = {}
        unique = {_fingerprint(k): _wire_key(k) for k in keys}
        pending = list(unique.values())
        key_names = set().union(*(k.keys() for k in pending)) if pending else set()
        attempt = 0
        while pending:
            chunk, pending = pending[:100], pending[100:]
            request: dict[str, Any] = {
                self.table_name: {"Keys": chunk, "ConsistentRead": True}
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    key = {name: item[name] for name in key_names if name in item}
                    found[_fingerprint(key)] = item
                request = response.get("UnprocessedKeys") or {}
                if request:
                    attempt += 1
                    if attempt >= self.max_attempts:
                        raise RuntimeError(
                            f"BatchGetItem on {self.table_name} left keys unprocessed "
                            f"after {attempt} attempts"
                        )
                    time.sleep(min(0.05 * 2**attempt, 2.0))
        return [found.get(_fingerprint(k)) for k in keys]


def _wire_key(key: AttributeMap) -> dict[str, Any]:
    """The key as boto3's low-level client takes it: a B value as bytes (botocore base64-encodes
    blobs itself, so the base64 text of a Lambda event would be sent encoded twice and name
    another item)."""
    wire: dict[str, Any] = {}
    for name, typed in key.items():
        if isinstance(typed, Mapping) and len(typed) == 1 and isinstance(typed.get("B"), str):
            wire[name] = {"B": base64.b64decode(typed["B"], validate=True)}
        else:
            wire[name] = dict(typed) if isinstance(typed, Mapping) else typed
    return wire


def _fingerprint(key: AttributeMap) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return json.dumps(plain(key), sort_keys=True)


def fill_new_images(
    changes: list[Change], bad: list[BadRecord], reader: ItemReader | None
) -> list[Change]:
    """The changes with every INSERT/MODIFY's missing new image read back (one ``read`` for the
    batch); without a reader each such record is quarantined, judged per record (one record
    without a new image must not stop the batch)."""
    needed = [c for c in changes if c.event_name is not EventName.REMOVE and c.new_image is None]
    if not needed:
        return changes
    if reader is None:
        for change in needed:
            view = change.stream_view_type
            error = UnsupportedRecordError(
                f"a {change.event_name.value} from a "
                f"{view.value if view else 'image-less'} stream does not carry the new item: "
                "give Replicator an item reader (replicator.readback.DynamoDBItemReader) so "
                "it can read the item back, or set the stream to NEW_AND_OLD_IMAGES or "
                "NEW_IMAGE",
                problem="no new image and no item reader",
                field_path="dynamodb.NewImage",
            )
            bad.append(BadRecord.of(change, error))
        skipped = {c.index for c in needed}
        return [c for c in changes if c.index not in skipped]
    images = reader.read([c.keys for c in needed])
    filled = {
        c.index: (
            replace(c, new_image=image)
            if image is not None
            # Gone by now: the delete's own record follows; deleting here is the same state.
            else replace(c, event_name=EventName.REMOVE)
        )
        for c, image in zip(needed, images, strict=True)
    }
    return [filled.get(c.index, c) for c in changes]
