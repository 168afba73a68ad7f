"""``replicator verify``: does the collection hold the table, while the application writes?

1. **Scan.** A Parallel Scan of the table; each page's documents are read with one ``$in``
   query on ``_id`` and compared field by field (replicator/diff.py) with the documents the core makes of
   the items. Every ``_id`` seen is kept; then the collection's ``_id``s not seen are *extra*.
2. **Re-check.** Under live writes a first-pass difference is usually replication lag (the
   document is older than the item) or a write after the scan (the document newer). So every
   suspect is re-checked: read the item (strongly consistent ``BatchGetItem``), wait until
   replication has caught up past that read (``wait_for_replication``), read the document. Equal:
   it was lag. Still different and the item unchanged since the read: a **divergence**. The item
   changed meanwhile: check again (up to ``rechecks`` rounds), else it is reported as
   *unsettled* (written to continuously), not as a divergence.

3. **Names.** A document without the sequence field was not written by the replicator (the
   application's own in a shared collection, or planted by hand): it is listed as *foreign*, not
   a divergence, and never re-checked; ``recover`` never deletes such a document
   (docs/migration.md, "Repairing what verify finds").

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

from replicator.diff import (
    MISSING,
    FieldDifference,
    document_differences,
    id_key,
    plain,
    set_paths,
)
from replicator.errors import RecordError
from replicator.expected import ExpectedDocuments, Key, key_types_of
from replicator.settings import Settings

log = logging.getLogger("replicator.migrate")
Item = dict[str, Any]
#: The ``_id`` of an item whose key mapping raises (its records are quarantined): no document.
NO_ID: Any = object()
#: the kinds of divergence, in the order reports list them
KINDS = ("changed", "missing", "extra")

@dataclass
class Divergence:
    document_id: Any
    kind: str  # "missing" | "extra" | "changed"
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
    #: _ids of documents the replicator did not write (no sequence field, and no item key maps
    #: to their _id: the application's own documents in a shared collection); not re-checked,
    #: not a divergence, never touched by recover
    foreign: list[Any] = field(default_factory=list)
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
            "foreign": [plain(i) for i in self.foreign],
            "unchecked": [plain(i) for i in self.unchecked],
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)


@dataclass
class _Suspect:
    document_id: Any
    key: Key  # DynamoDB key of the item


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
        self.dynamodb = dynamodb
        self.table = table
        self.collection = collection
        self.settings = settings
        # What the replicator writes, built as the Replicator builds its planner (transforms,
        # id_mapping, numbers); raises ConfigurationError without a key schema.
        self.expected_documents = ExpectedDocuments(settings, key_types=self._key_types)
        self.key_schema = self.expected_documents.key_schema
        self.planner = self.expected_documents.planner
        self.segments = segments
        self.page_size = page_size
        self.batch_size = batch_size
        self.rechecks = rechecks
        self.wait_for_replication = wait_for_replication
        self.after_page = after_page
        self._lock = threading.Lock()

    # -- documents ---------------------------------------------------------------------------------
    def expected(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The document the replicator writes for ``item`` (replicator/expected.py), without the
        sequence field. Raises RecordError where the replicator quarantines the item's records."""
        return self.expected_documents.document(item)

    def document_id(self, item: Mapping[str, Any]) -> Any:
        """The item's ``_id``, or :data:`NO_ID` when the key mapping raises (the replicator
        quarantines the item's records: no document can stand for it)."""
        try:
            return self.expected_documents.document_id(item)
        except RecordError:
            return NO_ID

    def key_of(self, document: Mapping[str, Any]) -> Key | None:
        """The DynamoDB key of the item ``document`` stands for, or None (not the replicator's)."""
        return self.expected_documents.key_of(document)

    def _key_types(self) -> dict[str, str]:
        # Only to tell a 35-38-digit number key from a string key (both are text in MongoDB).
        table = self.dynamodb.describe_table(TableName=self.table)["Table"]
        return key_types_of(table.get("AttributeDefinitions", []))

    def _read_documents(self, ids: Sequence[Any]) -> dict[Any, dict[str, Any]]:
        """The documents of ``ids``, keyed by :func:`~replicator.diff.id_key` (pymongo
        may decode an ``_id`` in another type than the planner made it: ``Int64``)."""
        found: dict[Any, dict[str, Any]] = {}
        ids = [i for i in ids if i is not NO_ID]
        for start in range(0, len(ids), self.batch_size):
            chunk = list(ids[start:start + self.batch_size])
            for document in self.collection.find({"_id": {"$in": chunk}}):
                document.pop(self.settings.sequence_field, None)
                found[id_key(document["_id"])] = document
        return found

    def compare(self, item: Mapping[str, Any] | None,
                document: Mapping[str, Any] | None) -> Divergence | None:
        """The divergence of ``document`` from what the replicator writes for ``item`` (by BSON
        value, replicator/diff.py), or None."""
        if item is None and document is None:
            return None
        if item is None:
            assert document is not None
            return Divergence(document["_id"], "extra")
        try:
            expected = self.expected(item)
        except RecordError as error:
            # The replicator quarantines this item's records: no document can be right for it.
            document_id = document["_id"] if document is not None else self.key_of_item(item)
            wrong = FieldDifference(error.field_path, f"<not replicable: {error.reason}>",
                                    MISSING if document is None else "<stored>")
            return Divergence(document_id, "missing" if document is None else "changed", [wrong])
        if document is None:
            return Divergence(expected["_id"], "missing")
        found = document_differences(expected, document, set_paths(item),
                                     fields_field=self.expected_documents.fields_field)
        return Divergence(expected["_id"], "changed", found) if found else None

    def key_of_item(self, item: Mapping[str, Any]) -> Any:
        """The item's ``_id``, or its DynamoDB key where the key mapping raises."""
        document_id = self.document_id(item)
        return self.expected_documents.key(item) if document_id is NO_ID else document_id

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
        sequence_field = self.settings.sequence_field
        projection = {**self.expected_documents.projection(), sequence_field: 1}
        for document in self.collection.find({}, projection):
            report.documents += 1
            key = id_key(document["_id"])
            if key in seen:
                continue
            item_key = self.key_of(document)
            if item_key is not None:
                suspects[key] = _Suspect(document["_id"], item_key)
            elif sequence_field in document:
                # Written by the replicator, yet no key maps to its _id (an id_mapping whose
                # transforms drop the key attributes): extra, with nothing to re-read.
                report.divergences.append(Divergence(document["_id"], "extra"))
            else:
                report.foreign.append(document["_id"])
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
            ids = [self.document_id(item) for item in items]
            documents = self._read_documents(ids)
            found: dict[Any, _Suspect] = {}
            for item, document_id in zip(items, ids, strict=True):
                key = id_key(self.key_of_item(item))
                if self.compare(item, documents.get(key)) is not None:
                    found[key] = _Suspect(document_id, self.expected_documents.key(item))
            with self._lock:
                report.items += len(items)
                seen.update(id_key(i) for i in ids if i is not NO_ID)
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
        report.unsettled = [s.key if s.document_id is NO_ID else s.document_id
                            for s in pending.values()]

    def _name_foreign(self, report: VerifyReport) -> None:
        """A confirmed extra document without the sequence field (its ``_id`` maps to a key the
        table does not hold) was not written by the replicator either: ``foreign``, not a
        divergence (``recover`` keeps it; its repair is by hand)."""
        extras = [d for d in report.divergences if d.kind == "extra"]
        ours: set[Any] = set()
        field_name = self.settings.sequence_field
        for start in range(0, len(extras), self.batch_size):
            chunk = [d.document_id for d in extras[start:start + self.batch_size]]
            ours.update(id_key(document["_id"]) for document in self.collection.find(
                {"_id": {"$in": chunk}, field_name: {"$exists": True}}, {"_id": 1}))
        foreign = [d for d in extras if id_key(d.document_id) not in ours]
        if foreign:
            report.foreign.extend(d.document_id for d in foreign)
            gone = {id(d) for d in foreign}
            report.divergences = [d for d in report.divergences if id(d) not in gone]

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


def _attribute_text(value: Mapping[str, Any]) -> str:
    ((tag, inner),) = value.items()
    if tag == "B":
        return f"B:{bytes(inner).hex()}"
    if tag == "N":
        from decimal import Context, Decimal

        # Exact (DynamoDB numbers have up to 38 digits; the default context rounds to 28).
        return f"N:{Decimal(str(inner)).normalize(Context(prec=40))}"
    return f"{tag}:{inner}"
