"""``replicator recover``: bring the collection back after a gap longer than the stream's 24 hours.

The poller raises ResyncRequired when a checkpoint is older than the oldest record the stream
still holds. ``resync`` answers with an empty collection and a full scan; this module keeps the
collection readable and, with point-in-time recovery, reads only what changed:

1. **Positions.** The last applied sequence number ``S`` (the highest checkpoint) and its time
   are saved in ``<collection>_sync``; the stale checkpoints are deleted and the stream is applied
   from ``TRIM_HORIZON`` until caught up (time ``T``). Every retained record is newer than ``S``
   (the checkpoint is behind the trim horizon), so documents only move forward in time.
2. **The changes of the gap**, written as records with sequence number ``S + 1`` through the core:
   the guard lets them replace only documents written before the gap (sequence <= ``S``), never
   what the stream applied in step 1 (newer), and tombstones of step 1 keep deleted items deleted.

   a. *With point-in-time recovery*: an incremental export (``ExportType=INCREMENTAL_EXPORT``)
      from the last applied change's time minus a margin to ``T`` (split in windows of at most
      24 hours, at least 15 minutes: the DynamoDB API's limits). Its lines carry the final state
      of each item changed in the window (no ``NewImage``: deleted). No full scan.
   b. *Otherwise*: a consistent Parallel Scan re-copy that writes only the items whose document
      differs, then deletes the documents still at sequence <= ``S`` whose item is gone
      (``BatchGetItem``). The collection is never emptied.
3. **Handover**: the stream again, from the checkpoints of step 1, until caught up.

Killed, it is run again: the saved ``S`` is reused (the checkpoints of step 1 are not the old
ones), the re-copy resumes per segment and the export per data file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.errors import ConfigurationError
from replicator.events import pad_sequence_number
from replicator.migrate.copy import CopyStats, ScanCopy
from replicator.migrate.diff import id_key
from replicator.migrate.export import INCREMENTAL, ExportManifest, ExportStats, load_export
from replicator.migrate.records import COPY_SEQUENCE, after
from replicator.migrate.segments import SegmentStore
from replicator.migrate.sync import copy_replicator_factory
from replicator.migrate.verify import Verifier
from replicator.poller import Poller

log = logging.getLogger("replicator.migrate")
KIND = "recovery"
MIN_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)


@dataclass
class RecoveryReport:
    table: str
    method: str
    last_applied_sequence: str | None = None
    last_applied_at: datetime | None = None
    resumed: bool = False
    checkpoints_deleted: int = 0
    stream_records_applied: int = 0
    export_windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    export: list[ExportStats] = field(default_factory=list)
    copy: CopyStats | None = None
    documents_deleted: int = 0
    consistent_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "table": self.table, "method": self.method,
            "last_applied_sequence": self.last_applied_sequence,
            "last_applied_at": when(self.last_applied_at), "resumed": self.resumed,
            "checkpoints_deleted": self.checkpoints_deleted,
            "stream_records_applied": self.stream_records_applied,
            "export_windows": [[when(a), when(b)] for a, b in self.export_windows],
            "export": [{k: v for k, v in asdict(s).items() if k != "per_file"}
                       for s in self.export],
            "copy": asdict(self.copy) if self.copy else None,
            "documents_deleted": self.documents_deleted,
            "consistent_at": when(self.consistent_at),
        }


def export_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into incremental-export windows of 15 minutes to 24 hours."""
    if end - start < MIN_WINDOW:
        start = end - MIN_WINDOW
    windows = []
    while start < end:
        stop = min(end, start + MAX_WINDOW)
        if end - stop and end - stop < MIN_WINDOW:  # leave the last window at least 15 minutes
            stop = end - MIN_WINDOW
        windows.append((start, stop))
        start = stop
    return windows


def _state(poller: Poller) -> Any:
    return SegmentStore.beside(poller.collection, poller.table_name).collection


def _positions(poller: Poller, report: RecoveryReport,
               last_applied: tuple[str, datetime | None] | None = None) -> None:
    """Step 1 (see the module docstring)."""
    state = _state(poller)
    saved = state.find_one({"_id": f"{poller.table_name}#{KIND}", "done": False})
    if saved is not None:
        report.resumed = True
        report.last_applied_sequence = saved["last_applied_sequence"]
        moment = saved.get("last_applied_at")
        report.last_applied_at = (moment.replace(tzinfo=timezone.utc)
                                  if moment and moment.tzinfo is None else moment)
    else:
        everything = poller.checkpoints.all(poller.table_name)
        documents = [d for d in everything
                     if d.get("kind") == "shard" and d.get("sequence_number")]
        markers = [d for d in everything if d.get("kind") == "stream"]
        times: list[datetime] = []
        if last_applied is not None:
            report.last_applied_sequence = last_applied[0]
            times = [last_applied[1]] if last_applied[1] is not None else []
        elif documents:
            last = max(documents, key=lambda d: pad_sequence_number(d["sequence_number"]))
            report.last_applied_sequence = str(last["sequence_number"])
            times = [d["updated_at"] for d in documents if d.get("updated_at")]
        elif markers:
            # Followed (a sync's handover, or `replicator run`) but no record ever applied: every
            # document is a copy (sequence "0").
            report.last_applied_sequence = COPY_SEQUENCE
            times = [d["alive_at"] for d in markers if d.get("alive_at")]
        else:
            raise ConfigurationError(
                f"no checkpoints of {poller.table_name}: nothing was replicated before, so there "
                "is no gap to recover; run `replicator sync`")
        newest = max(times) if times else None
        report.last_applied_at = (newest.replace(tzinfo=timezone.utc)
                                  if newest is not None and newest.tzinfo is None else newest)
        state.update_one({"_id": f"{poller.table_name}#{KIND}"},
                         {"$set": {"kind": KIND, "table": poller.table_name, "done": False,
                                   "last_applied_sequence": report.last_applied_sequence,
                                   "last_applied_at": report.last_applied_at}}, upsert=True)
        report.checkpoints_deleted = poller.checkpoints.delete(table=poller.table_name)
    poller.starting_position = "TRIM_HORIZON"
    poller.prepare()
    report.stream_records_applied += poller.run(once=True).records_applied


def recover(
    poller: Poller,
    *,
    exports: Sequence[ExportManifest] = (),
    request_export: Callable[[datetime, datetime], ExportManifest] | None = None,
    margin: timedelta = timedelta(minutes=15),
    segments: int = 4,
    page_size: int = 1000,
    after_page: Callable[[int, int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    last_applied: tuple[str, datetime | None] | None = None,
) -> RecoveryReport:
    """Recover ``poller``'s collection after a gap (module docstring). ``exports`` (incremental
    exports already taken) or ``request_export`` (take them): method a; neither: method b.
    ``last_applied``: ``(S, its time)`` instead of the checkpoints' -- where no poller
    checkpointed (a Lambda deployment: ``replicator redrive`` names it for a range the stream no
    longer holds); every document at sequence <= ``S`` is checked against the table."""
    incremental = bool(exports) or request_export is not None
    report = RecoveryReport(poller.table_name,
                            "incremental-export" if incremental else "re-copy")
    make_replicator = copy_replicator_factory(poller)
    _positions(poller, report, last_applied)
    caught_up = now()
    assert report.last_applied_sequence is not None
    sequence = after(report.last_applied_sequence)
    key_schema = poller.info.key_schema
    if incremental:
        manifests = list(exports)
        if request_export is not None:
            start = (report.last_applied_at or caught_up - MAX_WINDOW) - margin
            report.export_windows = export_windows(start, caught_up)
            manifests += [request_export(a, b) for a, b in report.export_windows]
        for manifest in manifests:
            if manifest.export_type != INCREMENTAL:
                raise ConfigurationError(f"{manifest.location} is a {manifest.export_type}; "
                                         "recover reads incremental exports")
        for manifest in sorted(manifests, key=lambda m: m.export_from_time or caught_up):
            report.export.append(load_export(
                manifest, key_schema=key_schema, make_replicator=make_replicator,
                sequence=sequence, progress=_state(poller)))
    else:
        report.copy, report.documents_deleted = _recopy(
            poller, make_replicator, sequence, key_schema, segments=segments,
            page_size=page_size, after_page=after_page, on_progress=on_progress)
    report.stream_records_applied += poller.run(once=True).records_applied
    report.consistent_at = now()
    _state(poller).update_one({"_id": f"{poller.table_name}#{KIND}"},
                              {"$set": {"done": True, "consistent_at": report.consistent_at}})
    log.info("recovery of %s (%s) done: consistent at %s", poller.table_name, report.method,
             report.consistent_at.isoformat())
    return report


def _recopy(poller: Poller, make_replicator: Callable[[], Any], sequence: str,
            key_schema: Sequence[str], *, segments: int, page_size: int,
            after_page: Callable[[int, int], None] | None,
            on_progress: Callable[[int], None] | None) -> tuple[CopyStats, int]:
    comparer = Verifier(poller.dynamodb, poller.table_name, poller.collection, poller.settings,
                        segments=segments)

    def differing(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The document the replicator writes for each item (its transforms and id_mapping,
        # replicator/expected.py), compared by BSON value: only real differences are rewritten.
        documents = comparer._read_documents([comparer.document_id(item) for item in items])
        return [item for item in items
                if comparer.compare(item, documents.get(id_key(comparer.key_of_item(item))))
                is not None]

    store = SegmentStore(_state(poller), f"{poller.table_name}#{KIND}")
    copier = ScanCopy(poller.dynamodb, poller.table_name, make_replicator, key_schema, store,
                      segments=segments, page_size=page_size, consistent_read=True,
                      sequence=sequence, select=differing, after_page=after_page,
                      on_progress=on_progress, stop=poller.stop_event)
    stats = copier.run()
    deleted = _delete_gone(poller, comparer, sequence)
    store.clear()
    return stats, deleted


def _delete_gone(poller: Poller, comparer: Verifier, sequence: str) -> int:
    """Delete the documents not rewritten since the gap (sequence below ``sequence``) whose item
    is gone; the filter on the sequence keeps a document the stream just wrote.

    Each document's item key is read from the document itself (``Verifier.key_of``: its key
    attributes, or its ``_id`` under the default mapping, accepted only when it maps back to the
    same ``_id``), never guessed from ``_id`` alone: a 35-38-digit number key, a composite or
    binary key and a custom ``id_mapping`` all find their item. A document no key maps to is
    left in place and counted in one log line."""
    field_name = poller.settings.sequence_field
    bound = pad_sequence_number(sequence)
    deleted = 0
    unkeyed = 0
    projection = {**comparer.expected_documents.projection(), field_name: 1}
    candidates = poller.collection.find({field_name: {"$lt": bound}}, projection)
    batch: list[dict[str, Any]] = []

    def flush() -> int:
        nonlocal unkeyed
        keyed = [(d, comparer.key_of(d)) for d in batch]
        unkeyed += sum(1 for _, key in keyed if key is None)
        found = [(d, key) for d, key in keyed if key is not None]
        items = comparer._read_items([key for _, key in found])
        gone = 0
        for document, key in found:
            if items.get(comparer._key_identity(key)) is None:
                result = poller.collection.delete_one(
                    {"_id": document["_id"], field_name: document[field_name]})
                gone += int(result.deleted_count)
        batch.clear()
        return gone

    for document in candidates:
        batch.append(document)
        if len(batch) >= 100:
            deleted += flush()
    if batch:
        deleted += flush()
    if unkeyed:
        log.warning("recovery of %s: %d documents at a sequence number before the gap map to no "
                    "item key (their key attributes are not in the document and the id_mapping "
                    "cannot be inverted); left in place: `replicator verify` lists them",
                    poller.table_name, unkeyed)
    return deleted
