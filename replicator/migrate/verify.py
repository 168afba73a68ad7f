"""``replicator verify``: does the collection hold the table, while the application writes?

1. **Scan.** A Parallel Scan of the table; each page's documents are read with one ``$in``
   query on ``_id`` and compared field by field (diff.py) with the documents the core makes of
   the items. Every ``_id`` seen is kept; then the collection's ``_id``s not seen are *extra*.
2. **Re-check.** Under live writes a first-pass difference is usually replication lag (the
   document is older than the item) or a write after the scan (the document newer). So every
   suspect is re-checked: read the item (strongly consistent ``BatchGetItem``), wait until
   replication has caught up past that read (``wait_for_replication``), read the document. Equal:
   it was lag. Still different and the item unchanged since the read: a **divergence**. The item
   changed meanwhile: check again (up to ``rechecks`` rounds), else it is reported as
   *unsettled* (written to continuously), not as a divergence.

3. **Names.** A confirmed *extra* document without the sequence field was not written by the
   replicator (the application's own, or planted by hand): it is reported as *foreign*, since
   ``recover`` never deletes such a document (docs/migration.md, "Repairing what verify finds").

When replication cannot be waited for (``wait_for_replication`` answers False: no poller is
running), the documents still different are reported as *could not be re-checked*
(``unchecked``), not as divergences.

Exit code of the CLI: 0 when there is no divergence and every suspect was re-checked, 1 with a
divergence, 4 when documents could not be re-checked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from replicator.errors import ConfigurationError
from replicator.keys import identity
from replicator.migrate.diff import FieldDifference, differences, plain, set_paths
from replicator.plan import Planner
from replicator.settings import Settings

log = logging.getLogger("replicator.migrate")
Item = dict[str, Any]
#: the kinds of divergence, in the order reports list them
KINDS = ("changed", "missing", "extra", "foreign")

@dataclass
class Divergence:
    document_id: Any
    kind: str  # "missing" | "extra" | "changed" | "foreign"
    fields: list[FieldDifference] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"_id": plain(self.document_id), "kind": self.kind,
                "fields": [{"path": f.path, "table": plain(f.expected),
                            "collection": plain(f.actual)} for f in self.fields]}


@dataclass
class VerifyReport:
    table: str
    items: int = 0
    documents: int = 0
    first_pass_differences: int = 0
    cleared_by_recheck: int = 0
    rounds: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    unsettled: list[Any] = field(default_factory=list)
    #: still different when no replication could be waited for: neither cleared nor confirmed
    unchecked: list[Any] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.divergences and not self.unchecked

    def counts(self) -> dict[str, int]:
        """Divergences by kind (every kind named, zeros included)."""
        kinds = dict.fromkeys(KINDS, 0)
        for divergence in self.divergences:
            kinds[divergence.kind] = kinds.get(divergence.kind, 0) + 1
        return kinds

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "ok": self.ok, "items": self.items,
            "documents": self.documents, "first_pass_differences": self.first_pass_differences,
            "cleared_by_recheck": self.cleared_by_recheck, "recheck_rounds": self.rounds,
            "divergences": self.counts(),
            "divergent": [d.as_dict() for d in self.divergences],
            "unsettled": [plain(i) for i in self.unsettled],
            "unchecked": [plain(i) for i in self.unchecked],
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)


@dataclass
class _Suspect:
    document_id: Any
    key: dict[str, Any]  # DynamoDB key of the item


class Verifier:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        collection: Any,
        settings: Settings,
        *,
        segments: int = 4,
        page_size: int = 1000,
        batch_size: int = 100,
        rechecks: int = 3,
        wait_for_replication: Callable[[], object] = lambda: None,
        after_page: Callable[[int, int], None] | None = None,
    ) -> None:
        if settings.key_schema is None:
            raise ConfigurationError("verify needs the table's key schema")
        self.dynamodb = dynamodb
        self.table = table
        self.collection = collection
        self.settings = settings
        self.key_schema = tuple(settings.key_schema)
        self.planner = Planner(settings)
        self.segments = segments
        self.page_size = page_size
        self.batch_size = batch_size
        self.rechecks = rechecks
        self.wait_for_replication = wait_for_replication
        self.after_page = after_page
        self._lock = threading.Lock()

    # -- documents ---------------------------------------------------------------------------------
    def expected(self, item: Mapping[str, Any]) -> dict[str, Any]:
        keys = {name: item[name] for name in self.key_schema}
        document_id = self.planner.key_mapper.document_id(keys)
        document = self.planner.document(document_id, item, "0")
        document.pop(self.settings.sequence_field, None)
        return document

    def _read_documents(self, ids: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        found: dict[Any, dict[str, Any]] = {}
        for start in range(0, len(ids), self.batch_size):
            chunk = list(ids[start:start + self.batch_size])
            for document in self.collection.find({"_id": {"$in": chunk}}):
                document.pop(self.settings.sequence_field, None)
                found[identity(document["_id"])] = document
        return found

    def compare(self, item: Mapping[str, Any] | None,
                document: Mapping[str, Any] | None) -> Divergence | None:
        if item is None and document is None:
            return None
        if item is None:
            assert document is not None
            return Divergence(document["_id"], "extra")
        expected = self.expected(item)
        if document is None:
            return Divergence(expected["_id"], "missing")
        found = list(differences(expected, document, set_paths(item)))
        return Divergence(expected["_id"], "changed", found) if found else None

    # -- pass 1 --------------------------------------------------------------------------------------
    def run(self) -> VerifyReport:
        started = time.monotonic()
        report = VerifyReport(self.table)
        seen: set[Any] = set()
        suspects: dict[Any, _Suspect] = {}
        with ThreadPoolExecutor(max_workers=self.segments, thread_name_prefix="verify") as pool:
            futures = [pool.submit(self._scan_segment, s, report, seen, suspects)
                       for s in range(self.segments)]
            for future in futures:
                future.result()
        for document in self.collection.find({}, {"_id": 1}):
            report.documents += 1
            key = identity(document["_id"])
            if key not in seen:
                suspects[key] = _Suspect(document["_id"], self._key_of_document(document["_id"]))
        report.first_pass_differences = len(suspects)
        log.info("verify %s: %d items, %d documents, %d differences on the first pass",
                 self.table, report.items, report.documents, len(suspects))
        self._recheck(suspects, report)
        self._name_foreign(report)
        report.elapsed_s = time.monotonic() - started
        return report

    def _scan_segment(self, segment: int, report: VerifyReport, seen: set[Any],
                      suspects: dict[Any, _Suspect]) -> None:
        request: dict[str, Any] = {"TableName": self.table, "Segment": segment,
                                   "TotalSegments": self.segments, "Limit": self.page_size}
        page_number = 0
        while True:
            page = self.dynamodb.scan(**request)
            items: list[Item] = page.get("Items", [])
            expected = [self.expected(item) for item in items]
            documents = self._read_documents([e["_id"] for e in expected])
            found: dict[Any, _Suspect] = {}
            for item, document in zip(items, expected, strict=True):
                key = identity(document["_id"])
                if self.compare(item, documents.get(key)) is not None:
                    found[key] = _Suspect(document["_id"], {k: item[k] for k in self.key_schema})
            with self._lock:
                report.items += len(items)
                seen.update(identity(e["_id"]) for e in expected)
                suspects.update(found)
            page_number += 1
            if self.after_page is not None:
                self.after_page(segment, page_number)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    # -- pass 2 --------------------------------------------------------------------------------------
    def _recheck(self, suspects: dict[Any, _Suspect], report: VerifyReport) -> None:
        pending = dict(suspects)
        rounds = 0
        while pending and rounds < self.rechecks:
            rounds += 1
            items = self._read_items([s.key for s in pending.values()])
            # caught up past the item reads above; False: nothing replicates to wait for
            caught_up = self.wait_for_replication() is not False
            documents = self._read_documents([s.document_id for s in pending.values()])
            still: dict[Any, _Suspect] = {}
            for key, suspect in pending.items():
                item = items.get(self._key_identity(suspect.key))
                divergence = self.compare(item, documents.get(key))
                if divergence is None:
                    report.cleared_by_recheck += 1
                    continue
                if not caught_up:
                    report.unchecked.append(suspect.document_id)
                    continue
                if self._unchanged_since(suspect, item):
                    report.divergences.append(divergence)
                    continue
                still[key] = suspect  # written to meanwhile: look again
            pending = still
        report.rounds = rounds
        report.unsettled = [s.document_id for s in pending.values()]

    def _name_foreign(self, report: VerifyReport) -> None:
        """An extra document without the sequence field was not written by the replicator:
        ``foreign`` (``recover`` keeps it; its repair is by hand)."""
        extras = [d for d in report.divergences if d.kind == "extra"]
        ours: set[Any] = set()
        field_name = self.settings.sequence_field
        for start in range(0, len(extras), self.batch_size):
            chunk = [d.document_id for d in extras[start:start + self.batch_size]]
            ours.update(identity(document["_id"]) for document in self.collection.find(
                {"_id": {"$in": chunk}, field_name: {"$exists": True}}, {"_id": 1}))
        for divergence in extras:
            if identity(divergence.document_id) not in ours:
                divergence.kind = "foreign"

    def _unchanged_since(self, suspect: _Suspect, item: Item | None) -> bool:
        """Read the item again: unchanged since before the wait means the document had the
        time to catch up with it and did not."""
        again = self._read_items([suspect.key]).get(self._key_identity(suspect.key))
        return again == item

    def _read_items(self, keys: Iterable[Mapping[str, Any]]) -> dict[Any, Item | None]:
        """Strongly consistent BatchGetItem (100 keys a call; unprocessed keys asked again)."""
        out: dict[Any, Item | None] = {}
        keys = list(keys)
        for start in range(0, len(keys), 100):
            chunk = keys[start:start + 100]
            for key in chunk:
                out[self._key_identity(key)] = None
            request: dict[str, Any] = {self.table: {"Keys": chunk, "ConsistentRead": True}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    out[self._key_identity({k: item[k] for k in self.key_schema})] = item
                request = answer.get("UnprocessedKeys") or {}
        return out

    def _key_identity(self, key: Mapping[str, Any]) -> Any:
        return json.dumps({k: _attribute_text(key[k]) for k in self.key_schema}, sort_keys=True)

    def _key_of_document(self, document_id: Any) -> dict[str, Any]:
        """The DynamoDB key of a document (default ``_id`` mapping: the key value, or a
        ``{partition, sort}`` document)."""
        if self.settings.id_mapping is not None:
            raise ConfigurationError("verify cannot map an _id back to a key with id_mapping set")
        if len(self.key_schema) == 1:
            return {self.key_schema[0]: _attribute(document_id)}
        return {name: _attribute(document_id[name]) for name in self.key_schema}


def _attribute(value: Any) -> dict[str, Any]:
    from bson import Binary, Decimal128

    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, Binary)):
        return {"B": bytes(value)}
    if isinstance(value, Decimal128):
        return {"N": str(value.to_decimal())}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"N": str(value)}
    raise ConfigurationError(f"cannot make a DynamoDB key of {type(value).__name__} {value!r}")


def _attribute_text(value: Mapping[str, Any]) -> str:
    ((tag, inner),) = value.items()
    if tag == "B":
        return f"B:{bytes(inner).hex()}"
    if tag == "N":
        from decimal import Decimal

        return f"N:{Decimal(str(inner)).normalize()}"
    return f"{tag}:{inner}"
