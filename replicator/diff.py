"""The one comparison of an expected document with a stored one: by BSON value, with field paths.

Used by ``replicator verify``, ``recover``'s re-copy and the harness's convergence check
(harness/convergence.py imports it), so "equal" means one thing everywhere.

Values compare by their BSON encoding -- what MongoDB stores -- after one normalisation, not by
Python type: pymongo decodes every BSON int64 as ``bson.int64.Int64`` and a ``{"$ref", "$id"}``
subdocument as ``DBRef`` (pymongo's "BSON types" doc), and the replicator writes plain ``int``\\ s
(int32 where they fit) and maps. So an integer is compared by value whatever its width (``Int64(5)``
is ``5``: the same failure class as alibaba/NimoShake#21, a checker whose type-strict comparison
reported correctly migrated numbers), ``bytes`` is ``Binary`` subtype 0, a naive UTC and an aware
``datetime`` of the same millisecond are one instant. Still strict where the stored value differs:
19.99 as a double is not the Decimal128 19.99, ``Decimal128("21.50")`` is not ``Decimal128("21.5")``,
1 is not ``True``, 5 is not 5.0. Set-typed attributes (SS, NS, BS) compare without order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

import bson
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.errors import BSONError

SET_TAGS = ("SS", "NS", "BS")
MISSING = "<missing>"
#: normalize() without rounding: a double's exact value has up to ~770 digits, a Decimal128 34.
_EXACT = Context(prec=1000, Emax=10**6, Emin=-(10**6))


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


def canonical(value: Any) -> Any:
    """``value`` with the Python-only distinctions of one stored value removed: an integer of any
    width as ``int``, a ``DBRef`` as the map it is stored as (recursively)."""
    if isinstance(value, int) and type(value) is not int and not isinstance(value, bool):
        return int(value)  # Int64
    if isinstance(value, DBRef):
        value = value.as_doc()
    if isinstance(value, Mapping):
        return {name: canonical(inner) for name, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(inner) for inner in value]
    return value


def bson_value(value: Any) -> bytes:
    """The value as MongoDB stores it, normalised (:func:`canonical`): its BSON element.

    A value bson cannot encode (a mock may hold one) is keyed by its type and repr, after every
    encodable value (a BSON document starts with its length, never 0xff 0xff).
    """
    try:
        return bson.encode({"": canonical(value)})
    except (BSONError, OverflowError, TypeError, ValueError):
        return b"\xff\xff" + f"{type(value).__name__}:{value!r}".encode("utf-8", "replace")


def same(expected: Any, actual: Any) -> bool:
    return bson_value(expected) == bson_value(actual)


def id_key(value: Any) -> Any:
    """A hashable key under which ``_id``\\ s match as MongoDB matches them: numbers by value
    whatever their type (``21.5`` finds ``Decimal128("21.50")``, an ``Int64`` finds an ``int``),
    embedded documents field by field in order (MongoDB's "Comparison/Sort Order" doc)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float, Decimal128)):
        number = value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)
        return ("number", number.normalize(_EXACT) if number.is_finite() else str(number))
    if isinstance(value, DBRef):
        value = value.as_doc()
    if isinstance(value, Mapping):
        return ("document", tuple((name, id_key(v)) for name, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(id_key(v) for v in value))
    return ("bson", bson_value(value))


def differences(expected: Any, actual: Any, sets: set[str] | frozenset[str] = frozenset(),
                path: str = "") -> Iterator[FieldDifference]:
    """Every field path where ``actual`` differs from ``expected`` (``sets``: paths of set-typed
    attributes, compared without order)."""
    if isinstance(expected, DBRef):
        expected = expected.as_doc()
    if isinstance(actual, DBRef):
        actual = actual.as_doc()
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
            if sorted(map(bson_value, expected)) != sorted(map(bson_value, actual)):
                yield FieldDifference(path, expected, actual)
            return
        if len(expected) == len(actual):
            for position, (e, a) in enumerate(zip(expected, actual, strict=True)):
                yield from differences(e, a, sets, f"{path}[{position}]")
            return
    if not same(expected, actual):
        yield FieldDifference(path, expected, actual)


def document_differences(expected: Mapping[str, Any], actual: Mapping[str, Any],
                         sets: set[str] | frozenset[str] = frozenset(), *,
                         fields_field: str | None = None) -> list[FieldDifference]:
    """:func:`differences` of two documents already matched on ``_id`` (by :func:`id_key`): the
    stored ``_id`` may be another form of the same key (``Decimal128("21.50")`` for an item keyed
    21.5, the first write's form), so it is not compared again. ``fields_field``: write_mode="merge"
    (``ExpectedDocuments.fields_field``): only the stored document's :func:`table_part` is
    compared, its MongoDB-only fields are not the table's."""
    if fields_field is not None:
        actual = table_part(actual, fields_field)
    return list(differences({k: v for k, v in expected.items() if k != "_id"},
                            {k: v for k, v in actual.items() if k != "_id"}, sets))


def table_part(stored: Mapping[str, Any], fields_field: str) -> dict[str, Any]:
    """write_mode="merge": the fields of a stored document that came from the table: those its
    ``fields_field`` lists, that list itself and ``_id`` (callers drop the sequence field, as in
    replace mode). A document without the list (not written in merge
    mode) is compared whole. A table attribute that should have been removed but stayed, and is
    no longer listed, looks like a MongoDB-only field here: the harness, which knows the names its
    MongoDB-only writer uses, compares strictly (``harness/convergence.py``)."""
    listed = stored.get(fields_field)
    if not isinstance(listed, list):
        return dict(stored)
    owned = {name for name in listed if isinstance(name, str)}
    return {k: v for k, v in stored.items()
            if k in owned or k == fields_field or k == "_id"}


def plain(value: Any) -> Any:
    """JSON-friendly (canonical Extended JSON for BSON types)."""
    import json

    from bson import json_util

    if value is None or isinstance(value, (str, bool, float)) or (
        isinstance(value, int) and abs(value) < 2**53
    ):
        return value
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))
