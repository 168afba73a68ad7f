"""The response contract of partial batch responses, and ParallelizationFactor's routing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MalformedResponse", "lane_for", "retry_from_index"]


# -- the response contract -----------------------------------------------------------------------
class MalformedResponse(ValueError):
    """A ``ReportBatchItemFailures`` response Lambda treats as a complete batch failure."""


def retry_from_index(response: Any, sequence_numbers: Sequence[str]) -> int | None:
    """Where a ``ReportBatchItemFailures`` response makes the batch restart.

    None: the whole batch succeeded (a null response, a response without ``batchItemFailures``,
    a null or empty list). An index: the position of the lowest reported sequence number; the
    records before it are done. Raises :class:`MalformedResponse` for what the ESM counts as a
    complete failure: a response that is not a JSON object, ``batchItemFailures`` that is not a
    list, an entry that is not an object or whose ``itemIdentifier`` is missing (a wrong key
    name), null, not a string, empty, or not a sequence number of this batch.
    """
    if response is None:
        return None
    if not isinstance(response, Mapping):
        raise MalformedResponse(f"the response is a {type(response).__name__}, not an object")
    failures = response.get("batchItemFailures")
    if failures is None:
        return None
    if not isinstance(failures, list):
        raise MalformedResponse(f"batchItemFailures is a {type(failures).__name__}, not a list")
    if not failures:
        return None
    positions = {sequence: index for index, sequence in enumerate(sequence_numbers)}
    lowest: int | None = None
    for entry in failures:
        if not isinstance(entry, Mapping):
            raise MalformedResponse(f"a batchItemFailures entry is not an object: {entry!r:.100}")
        identifier = entry.get("itemIdentifier")
        if not isinstance(identifier, str) or not identifier:
            raise MalformedResponse(f"itemIdentifier missing, null, empty or not text: {entry!r:.100}")
        if identifier not in positions:
            raise MalformedResponse(f"itemIdentifier {identifier!r:.60} is not in the batch")
        index = positions[identifier]
        lowest = index if lowest is None else min(lowest, index)
    return lowest


def lane_for(keys: Mapping[str, Any], factor: int, partition_key: str | None = None) -> int:
    """The concurrent batch (0..factor-1) a record goes to: MD5 of its partition key, mod factor.

    ``partition_key`` names the table's partition attribute; without it the canonical JSON of all
    of ``Keys`` is hashed (one item's records still stay in order, which is what replication needs;
    items sharing a partition key may then run in different lanes).
    """
    if factor <= 1:
        return 0
    if partition_key is not None and partition_key in keys:
        material: Any = keys[partition_key]
    else:
        material = keys
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=_key_default)
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big") % factor


def _key_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"a key value of type {type(value).__name__} is not DynamoDB JSON")
