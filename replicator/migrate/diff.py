"""Field-path differences between the document an item should be and the one in MongoDB.

Strict on types (a float 19.99 is not the Decimal128 19.99), set-typed attributes compared
without order, datetimes by instant at MongoDB's millisecond precision. The harness's
convergence check (harness/convergence.py) applies the same rules to a whole collection; this
one works a document at a time, for ``replicator verify`` and the gap re-copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SET_TAGS = ("SS", "NS", "BS")
MISSING = "<missing>"


@dataclass(frozen=True)
class FieldDifference:
    path: str
    expected: Any
    actual: Any


def set_paths(item: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Field paths of the item's set-typed attributes (their order means nothing)."""
    paths: set[str] = set()
    for name, attribute in item.items():
        path = f"{prefix}.{name}" if prefix else name
        if not isinstance(attribute, Mapping) or len(attribute) != 1:
            continue
        ((tag, value),) = attribute.items()
        if tag in SET_TAGS:
            paths.add(path)
        elif tag == "M" and isinstance(value, Mapping):
            paths |= set_paths(value, path)
    return paths


def differences(expected: Any, actual: Any, sets: set[str] | frozenset[str] = frozenset(),
                path: str = "") -> Iterator[FieldDifference]:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for name in list(expected) + [n for n in actual if n not in expected]:
            child = f"{path}.{name}" if path else str(name)
            if name not in actual:
                yield FieldDifference(child, expected[name], MISSING)
            elif name not in expected:
                yield FieldDifference(child, MISSING, actual[name])
            else:
                yield from differences(expected[name], actual[name], sets, child)
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if path in sets:
            if sorted(map(_sortable, expected)) != sorted(map(_sortable, actual)):
                yield FieldDifference(path, expected, actual)
            return
        if len(expected) == len(actual):
            for position, (e, a) in enumerate(zip(expected, actual, strict=True)):
                yield from differences(e, a, sets, f"{path}[{position}]")
            return
    if not _same(expected, actual):
        yield FieldDifference(path, expected, actual)


def _same(expected: Any, actual: Any) -> bool:
    if type(expected) is not type(actual):
        return False
    if hasattr(expected, "utcoffset") and hasattr(actual, "utcoffset"):
        return bool(abs(_naive(expected) - _naive(actual)).total_seconds() < 0.001)
    return bool(expected == actual)


def _naive(value: Any) -> Any:
    return value.replace(tzinfo=None) - (value.utcoffset() or (value - value))


def _sortable(value: Any) -> tuple[str, str]:
    return (type(value).__name__, repr(value))


def plain(value: Any) -> Any:
    """JSON-friendly (canonical Extended JSON for BSON types)."""
    import json

    from bson import json_util

    if value is None or isinstance(value, (str, bool, float)) or (
        isinstance(value, int) and abs(value) < 2**53
    ):
        return value
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))
