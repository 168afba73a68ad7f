"""Does the target equal the source? Expected documents, the diff, and how to show it.

Expected documents are what the replicator writes for the table's items -- the core's
:class:`replicator.expected.ExpectedDocuments`, through the replicator's own conversion, transforms
and key mapping --, so the check measures replication, not a second opinion on conversion. Values
are compared by the core's one comparison (replicator/diff.py, shared with
``replicator verify``): by BSON value, an ``Int64`` equal to the ``int`` it holds, a ``DBRef`` to
its map, still strict where storage differs (19.99 as a double is not the Decimal128 19.99,
``Decimal128("21.50")`` is not ``Decimal128("21.5")``, 1 is not ``True``). Set-typed attributes
compare without regard to order, metadata fields are ignored.

In write_mode="merge" a document also holds fields other MongoDB applications added: only the
table's part is compared (``fields_field``: the fields the document's ``_ddb_fields`` lists), or,
where the harness knows the names its own MongoDB-only writer uses (``mongodb_only``: their
prefix, harness/mongodb_only.py), everything but those, strictly -- so an attribute DynamoDB
removed that stayed in the document is a difference even when ``_ddb_fields`` no longer lists it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replicator.diff import (
    FieldDifference,
    document_differences,
    id_key,
)
from replicator.diff import plain as extended_json  # reports: canonical Extended JSON
from replicator.diff import set_paths as set_field_paths
from replicator.expected import ExpectedDocuments
from replicator.plan import Planner

__all__ = ["Diff", "DocumentDifference", "check", "compare", "expected_documents", "extended_json",
           "read_target"]


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
    """Each item -> (document as the replicator would write it, its set-typed field paths).
    ``planner``: built as the Replicator builds it (``replicator.expected.planner_for``)."""
    expected = ExpectedDocuments(planner)
    return [(expected.document(item), set_field_paths(item)) for item in items]


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
    expected: Sequence[tuple[dict[str, Any], set[str]]], actual: Sequence[Mapping[str, Any]],
    *, fields_field: str | None = None, mongodb_only: str | None = None,
) -> Diff:
    """``fields_field``: merge mode (``ExpectedDocuments.fields_field``), the table's part of each
    document is compared; ``mongodb_only``: merge mode with a known MongoDB-only writer, the
    prefix of its field names: those are dropped and the rest compared whole (strict)."""
    if mongodb_only is not None:
        actual = [{k: v for k, v in d.items() if not k.startswith(mongodb_only)} for d in actual]
        fields_field = None
    diff = Diff(expected_count=len(expected), actual_count=len(actual))
    by_id = {id_key(d["_id"]): d for d in actual}
    seen = set()
    for document, set_paths in expected:
        key = id_key(document["_id"])
        seen.add(key)
        if key not in by_id:
            diff.missing.append(document["_id"])
            continue
        fields = tuple(document_differences(document, by_id[key], set_paths,
                                            fields_field=fields_field))
        if fields:
            diff.changed.append(DocumentDifference(document["_id"], fields))
    diff.extra = [d["_id"] for k, d in by_id.items() if k not in seen]
    return diff


def check(
    items: Iterable[Mapping[str, Any]], collection: Any, planner: Planner,
    *, mongodb_only: str | None = None,
) -> Diff:
    """Compare a consistent scan of the table (``items``) with the target collection, as the
    planner's write mode says (``mongodb_only``: see :func:`compare`)."""
    ignore = [planner.settings.sequence_field]
    fields_field = ExpectedDocuments(planner).fields_field
    return compare(expected_documents(items, planner), read_target(collection, ignore),
                   fields_field=fields_field, mongodb_only=mongodb_only)

