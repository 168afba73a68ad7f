"""Does the target equal the source? Expected documents, the diff, and how to show it.

Expected documents are made from the table's items through the replicator's own conversion,
transforms and key mapping (``Planner.document``), so the check measures replication, not a second
opinion on conversion. Values are compared by their BSON encoding -- what MongoDB stores --, not by
Python type: pymongo decodes an int64 as ``bson.int64.Int64`` and a ``{"$ref", "$id"}`` subdocument
as ``DBRef`` (pymongo's "BSON types" doc), which are the same stored values as the ``int`` and the
map the planner wrote. Still strict where storage differs: 19.99 as a double is not the Decimal128
19.99, an int32 is not an int64, ``Decimal128("21.50")`` is not ``Decimal128("21.5")``.
Set-typed attributes compare without regard to order, metadata fields are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import bson
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.errors import BSONError

from replicator.migrate.diff import set_paths as set_field_paths
from replicator.plan import Planner

SET_TAGS = ("SS", "NS", "BS")
#: normalize() without rounding: a double's exact value has up to ~770 digits, a Decimal128 34.
_EXACT = Context(prec=1000, Emax=10**6, Emin=-(10**6))
MISSING = "<missing>"


@dataclass(frozen=True)
class FieldDifference:
    path: str
    expected: Any
    actual: Any


@dataclass(frozen=True)
class DocumentDifference:
    document_id: Any
    fields: tuple[FieldDifference, ...]


@dataclass
class Diff:
    missing: list[Any] = field(default_factory=list)  # _ids in the source, not in the target
    extra: list[Any] = field(default_factory=list)  # _ids in the target, not in the source
    changed: list[DocumentDifference] = field(default_factory=list)
    expected_count: int = 0
    actual_count: int = 0

    @property
    def converged(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "expected_documents": self.expected_count,
            "actual_documents": self.actual_count,
            "missing_ids": [extended_json(i) for i in self.missing],
            "extra_ids": [extended_json(i) for i in self.extra],
            "changed": [
                {
                    "_id": extended_json(d.document_id),
                    "fields": [
                        {"path": f.path, "expected": extended_json(f.expected),
                         "actual": extended_json(f.actual)}
                        for f in d.fields
                    ],
                }
                for d in self.changed
            ],
        }


def expected_documents(
    items: Iterable[Mapping[str, Any]], planner: Planner
) -> list[tuple[dict[str, Any], set[str]]]:
    """Each item -> (document as the replicator would write it, its set-typed field paths)."""
    out = []
    for item in items:
        keys = {name: item[name] for name in _key_names(planner, item)}
        document_id = planner.key_mapper.document_id(keys)
        document = planner.document(document_id, item, "0")
        document.pop(planner.settings.sequence_field, None)
        out.append((document, set_field_paths(item)))
    return out


def read_target(collection: Any, ignore: Sequence[str]) -> list[dict[str, Any]]:
    """Every document of the target, metadata fields removed (the mongomock adapter unescapes
    the names it stores escaped)."""
    documents = []
    for document in collection.find({}):
        for name in ignore:
            document.pop(name, None)
        documents.append(document)
    return documents


def compare(
    expected: Sequence[tuple[dict[str, Any], set[str]]], actual: Sequence[Mapping[str, Any]]
) -> Diff:
    diff = Diff(expected_count=len(expected), actual_count=len(actual))
    by_id = {_id_key(d["_id"]): d for d in actual}
    seen = set()
    for document, set_paths in expected:
        key = _id_key(document["_id"])
        seen.add(key)
        if key not in by_id:
            diff.missing.append(document["_id"])
            continue
        # _id matched by MongoDB's equality already: its stored form (the first write's) may be
        # another representation of the same key, e.g. Decimal128 "21.50" for an item keyed 21.5.
        fields = tuple(_differences(_without_id(document), _without_id(by_id[key]), "",
                                    set_paths))
        if fields:
            diff.changed.append(DocumentDifference(document["_id"], fields))
    diff.extra = [d["_id"] for k, d in by_id.items() if k not in seen]
    return diff


def check(
    items: Iterable[Mapping[str, Any]], collection: Any, planner: Planner
) -> Diff:
    """Compare a consistent scan of the table (``items``) with the target collection."""
    ignore = [planner.settings.sequence_field]
    return compare(expected_documents(items, planner), read_target(collection, ignore))


# -- comparison ----------------------------------------------------------------------------------
def _differences(
    expected: Any, actual: Any, path: str, set_paths: set[str]
) -> Iterable[FieldDifference]:
    expected, actual = _as_stored(expected), _as_stored(actual)
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for name in list(expected) + [n for n in actual if n not in expected]:
            child = f"{path}.{name}" if path else str(name)
            if name not in actual:
                yield FieldDifference(child, expected[name], MISSING)
            elif name not in expected:
                yield FieldDifference(child, MISSING, actual[name])
            else:
                yield from _differences(expected[name], actual[name], child, set_paths)
        return
    if path in set_paths and isinstance(expected, list) and isinstance(actual, list):
        if sorted(map(bson_value, expected)) != sorted(map(bson_value, actual)):
            yield FieldDifference(path, expected, actual)
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for position, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from _differences(e, a, f"{path}[{position}]", set_paths)
        return
    if not _same(expected, actual):
        yield FieldDifference(path, expected, actual)


def bson_value(value: Any) -> bytes:
    """The value as MongoDB stores it: its BSON element (type byte and bytes).

    ``int`` and ``Int64`` of one int64 value, ``bytes`` and ``Binary`` subtype 0, a ``DBRef`` and
    its ``{"$ref", "$id"}`` map, a naive UTC and an aware ``datetime`` of the same millisecond all
    encode alike; a double and a Decimal128, an int32 and an int64, a bool and an int do not.
    A value bson cannot encode (a mock may hold one) is keyed by its type and repr, after every
    encodable value (a BSON document starts with its length, never 0xff 0xff).
    """
    try:
        return bson.encode({"": value})
    except (BSONError, OverflowError, TypeError, ValueError):
        return b"\xff\xff" + f"{type(value).__name__}:{value!r}".encode("utf-8", "replace")


def _same(expected: Any, actual: Any) -> bool:
    return bson_value(expected) == bson_value(actual)


def _as_stored(value: Any) -> Any:
    # pymongo decodes a subdocument shaped {"$ref", "$id", ...} as DBRef: compare it as the map it is.
    return dict(value.as_doc()) if isinstance(value, DBRef) else value


def _id_key(value: Any) -> Any:
    """``_id``s match as MongoDB matches them: numbers by value whatever their type (``21.5``
    finds ``Decimal128("21.50")``, an ``Int64`` finds an ``int``), embedded documents field by
    field in order (MongoDB's "Comparison/Sort Order" doc)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float, Decimal128)):
        number = value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)
        return ("number", number.normalize(_EXACT) if number.is_finite() else str(number))
    if isinstance(value, Mapping):
        return ("document", tuple((name, _id_key(v)) for name, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_id_key(v) for v in value))
    return ("bson", bson_value(value))


def _without_id(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "_id"}


def _key_names(planner: Planner, item: Mapping[str, Any]) -> tuple[str, ...]:
    schema = planner.key_mapper.key_schema
    if schema:
        return schema
    raise ValueError("the convergence check needs the table's key schema")


def extended_json(value: Any) -> Any:
    """JSON-friendly rendering for reports (canonical Extended JSON for BSON types)."""
    import json

    from bson import json_util

    if value is None or isinstance(value, (str, bool, float)) or (
        isinstance(value, int) and abs(value) < 2**53
    ):
        return value
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


_plain = extended_json  # the old name, still imported by harness/report.py
