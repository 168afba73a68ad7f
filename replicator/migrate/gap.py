"""``replicator recover``: bring the collection back after a gap longer than the stream's 24 hours.

The poller raises ResyncRequired when a checkpoint is older than the oldest record the stream
still holds. ``resync`` answers with an empty collection and a full scan; this module keeps the
collection readable and, with point-in-time recovery, reads only what changed:

1. **Positions.** The last applied sequence number ``S`` -- the newest MongoDB holds for the
   table (documents' guard field, tombstones), or a checkpoint's if higher: the checkpoints lag
   what MongoDB holds by design -- and the time of the last applied change (the checkpoints'
   ``created_at``, the record's ApproximateCreationDateTime, not when the checkpoint was saved)
   are saved in ``<collection>_sync``; the stale checkpoints are deleted and the stream is applied
   from ``TRIM_HORIZON`` until caught up (time ``T``). Every retained record is newer than ``S``
   (the checkpoint is behind the trim horizon), so documents only move forward in time.
2. **The changes of the gap**, written as records through the core with sequence numbers just
   above ``S``: the guard lets them replace only documents written before the gap (sequence
   <= ``S``), never what the stream applied in step 1 (newer), and tombstones of step 1 keep
   deleted items deleted.

   a. *With point-in-time recovery*: an incremental export (``ExportType=INCREMENTAL_EXPORT``)
      from the last applied change's time minus a margin to ``T`` (split in windows of at most
      24 hours, at least 15 minutes: the DynamoDB API's limits). Its lines carry the final state
      of each item changed in the window (no ``NewImage``: deleted). No full scan. The windows
      are written in order of their end, each with its own number ``S + 1``, ``S + 2``, ...
      (:func:`window_sequences`), so a later window wins over an earlier one; refused
      (ResyncRequired) if those numbers would reach what the stream applied in step 1.
   b. *Otherwise*: a consistent Parallel Scan re-copy (sequence number ``S + 1``) that writes only
      the items whose document differs, then deletes the documents still at sequence <= ``S``
      whose item is gone (``BatchGetItem``). The collection is never emptied.
3. **Handover**: the stream again, from the checkpoints of step 1, until caught up.

Killed, it is run again: the saved ``S`` is reused (the checkpoints of step 1 are not the old
ones), the re-copy resumes per segment and the export per data file -- unless step 1's checkpoints
fell off the stream meanwhile (a second gap): then it starts over (:func:`_positions`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.diff import id_key
from replicator.errors import ConfigurationError, ResyncRequired
from replicator.events import KDS_ORDER_PREFIX, pad_sequence_number
from replicator.item_records import COPY_SEQUENCE, after
from replicator.migrate.copy import CopyStats, ScanCopy
from replicator.migrate.export import INCREMENTAL, ExportManifest, ExportStats, load_export
from replicator.migrate.segments import SegmentStore
from replicator.migrate.sync import copy_replicator_factory
from replicator.migrate.verify import Verifier
from replicator.poller import Poller
from replicator.poller.resume import COVERED, RETENTION
from replicator.tombstones import SEQUENCE as TOMBSTONE_SEQUENCE

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


def _sequence_fields(poller: Poller) -> list[tuple[Any, str]]:
    """Where the guard keeps sequence numbers (zero-padded strings): the documents' field and,
    with tombstones, theirs."""
    replicator = poller.make_replicator()
    fields: list[tuple[Any, str]] = [(poller.collection, poller.settings.sequence_field)]
    if replicator.tombstones is not None:
        fields.append((replicator.tombstones.collection, TOMBSTONE_SEQUENCE))
    return fields


def newest_stored_sequence(poller: Poller) -> str | None:
    """The newest sequence number MongoDB holds for this table: the guard field of the documents
    and the tombstones' (the guard's own view; the checkpoints lag it by design: a checkpoint is
    saved after the writes it covers). None when nothing carries one."""
    newest: int | None = None
    for collection, field_name in _sequence_fields(poller):
        found = collection.find({field_name: {"$type": "string"}}, {field_name: 1}).sort(
            field_name, -1).limit(10)
        for document in found:
            value = document.get(field_name)
            if isinstance(value, str) and value.startswith(KDS_ORDER_PREFIX):
                raise ConfigurationError(
                    f"{collection.full_name} holds Kinesis order keys ({field_name} {value}): it is "
                    "replicated from Kinesis Data Streams, whose records stay for the stream's "
                    "retention (24 hours to 365 days). Within it, recovery is a replay: "
                    f"`replicator recover --table {poller.table_name} --kinesis-stream "
                    "<the data stream's ARN> --from-timestamp <ISO 8601 time before the gap> "
                    "--yes` (or `replicator run --kinesis-stream ARN`, which resumes after its "
                    "checkpoints); past it, a re-copy into an emptied collection: `replicator "
                    f"sync --table {poller.table_name} --kinesis-stream ARN --restart` "
                    "(docs/kinesis.md, Recovery)")
            if isinstance(value, str) and value.isdigit():  # padded: the first is the newest
                newest = max(newest or 0, int(value))
                break
    return None if newest is None else str(newest)


def _lowest_stored_after(poller: Poller, sequence: str) -> int | None:
    """The lowest sequence number above ``sequence`` MongoDB holds (documents, tombstones): what
    step 1 applied from the stream, to check the windows' numbers stay below it."""
    bound = pad_sequence_number(sequence)
    lowest: int | None = None
    for collection, field_name in _sequence_fields(poller):
        for document in collection.find({field_name: {"$gt": bound}}, {field_name: 1}).sort(
                field_name, 1).limit(10):
            value = document.get(field_name)
            if isinstance(value, str) and value.isdigit():
                lowest = int(value) if lowest is None else min(lowest, int(value))
                break
    return lowest


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment and moment.tzinfo is None else moment


def last_applied_change(shards: Sequence[dict[str, Any]]) -> datetime | None:
    """When the gap began, from the shard checkpoints: the ``created_at`` (the applied record's
    ApproximateCreationDateTime) of each lineage's last checkpointed shard (a shard that is no
    other checkpoint's parent), the earliest of them: each lineage may have lost the changes made
    after its own last applied record. A checkpoint without ``created_at`` (saved before it was
    kept) counts as ``updated_at`` minus 24 hours: the record it names was read from the stream,
    so it was at most 24 hours old then."""
    parents = {d.get("parent_shard_id") for d in shards}
    times = []
    for document in shards:
        if document.get("shard_id") in parents:
            continue
        created = _aware(document.get("created_at"))
        saved = _aware(document.get("updated_at"))
        if created is None and saved is not None:
            created = saved - RETENTION
        if created is not None:
            times.append(created)
    return min(times) if times else None


def _positions(poller: Poller, report: RecoveryReport,
               last_applied: tuple[str, datetime | None] | None = None) -> None:
    """Step 1 (see the module docstring)."""
    state = _state(poller)
    saved = state.find_one({"_id": f"{poller.table_name}#{KIND}", "done": False})
    if saved is not None:
        report.resumed = True
        report.last_applied_sequence = saved["last_applied_sequence"]
        report.last_applied_at = _aware(saved.get("last_applied_at"))
        try:
            poller.starting_position = "TRIM_HORIZON"
            poller.prepare()
            report.stream_records_applied += poller.run(once=True).records_applied
            return
        except ResyncRequired as trimmed:
            # Killed, then run again after the stream dropped records past the checkpoints
            # step 1 saved (a second gap, e.g. a killed recovery left for a day): those changes
            # are in neither the stream nor below S. Start over: S raised to the newest sequence
            # number MongoDB holds now (step 1 applied records above the saved S, so a write at
            # the saved S + 1 would lose to them), the saved time of the last applied change kept
            # (what changed since the first gap began is still to recover: an incremental export
            # must reach back to it), the re-copy's segments forgotten (one done before the
            # second gap misses its changes), the stale checkpoints deleted below.
            log.warning("recovery of %s: its own positions are no longer in the stream (%s); "
                        "starting the recovery over", poller.table_name, trimmed)
            last_applied = (str(max(int(report.last_applied_sequence),
                                    int(newest_stored_sequence(poller) or 0))),
                            report.last_applied_at)
            report.resumed = False
            SegmentStore(state, f"{poller.table_name}#{KIND}").clear()
            poller.forget_positions()
            saved = None
    if saved is None:
        everything = poller.checkpoints.all(poller.table_name)
        documents = [d for d in everything
                     if d.get("kind") == "shard" and d.get("sequence_number")]
        markers = [d for d in everything if d.get("kind") == "stream"]
        if last_applied is None and not documents and not markers:
            raise ConfigurationError(
                f"no checkpoints of {poller.table_name}: nothing was replicated before, so there "
                "is no gap to recover; run `replicator sync`")
        candidates = [int(d["sequence_number"]) for d in documents]
        if last_applied is not None:  # given (a Lambda deployment has no checkpoints)
            candidates.append(int(last_applied[0]))
        stored = newest_stored_sequence(poller)
        if stored is not None:
            candidates.append(int(stored))
        # Followed (a sync's handover, or `replicator run`) but no record ever applied: every
        # document is a copy (sequence "0").
        report.last_applied_sequence = str(max(candidates)) if candidates else COPY_SEQUENCE
        if last_applied is not None and last_applied[1] is not None:
            report.last_applied_at = _aware(last_applied[1])
        elif documents:
            report.last_applied_at = last_applied_change(documents)
        else:
            times = [d["alive_at"] for d in markers if d.get("alive_at")]
            report.last_applied_at = _aware(max(times)) if times else None
        state.update_one({"_id": f"{poller.table_name}#{KIND}"},
                         {"$set": {"kind": KIND, "table": poller.table_name, "done": False,
                                   "last_applied_sequence": report.last_applied_sequence,
                                   "last_applied_at": report.last_applied_at},
                          "$unset": {"stream_floor": ""}}, upsert=True)
        report.checkpoints_deleted = poller.checkpoints.delete(table=poller.table_name)
    poller.starting_position = "TRIM_HORIZON"
    poller.prepare()
    report.stream_records_applied += poller.run(once=True).records_applied


def window_sequences(manifests: Sequence[ExportManifest], last_applied: str,
                     caught_up: datetime) -> list[tuple[ExportManifest, str]]:
    """The incremental exports in the order they are written, each with its sequence number.

    Each line of an incremental export is the item's final state at the end of its window, so of
    two windows holding an item the one ending later holds its newer state (overlapping windows
    too). The windows are written in order of their end (``exportToTime``, then
    ``exportFromTime``), each with its own number: ``S + 1`` for the first that holds lines,
    ``S + 2`` for the next, ... (an empty one takes none). With the stale-write guard, a later
    window then replaces what an earlier one wrote (updates and deletes alike) and all of them
    replace what was stored before the gap (``<= S``). Not the lines' ``WriteTimestampMicros``:
    those are microseconds since 1970, not comparable with DynamoDB sequence numbers."""
    ordered = sorted(manifests, key=lambda m: (m.export_to_time or caught_up,
                                               m.export_from_time or caught_up))
    numbered = []
    next_sequence = int(last_applied) + 1
    for manifest in ordered:
        numbered.append((manifest, str(next_sequence)))
        if manifest.item_count != 0:
            next_sequence += 1
    return numbered


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
    longer holds); every document at sequence <= ``S`` is checked against the table (``S`` is
    raised to the newest sequence number MongoDB holds, if that is higher).

    Raises ResyncRequired when the exports' sequence numbers would not fit below what the stream
    still holds (:func:`window_sequences`; run without exports: a re-copy), ExportFileMismatch
    when a data file does not match its manifest (run again once the files are whole)."""
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
        if request_export is None:
            _check_coverage(poller, report, manifests, caught_up)
        numbered = window_sequences(manifests, report.last_applied_sequence, caught_up)
        _check_room(poller, report.last_applied_sequence, numbered)
        for manifest, window_sequence in numbered:
            report.export.append(load_export(
                manifest, key_schema=key_schema, make_replicator=make_replicator,
                sequence=window_sequence, progress=_state(poller)))
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


def _check_coverage(poller: Poller, report: RecoveryReport, manifests: Sequence[ExportManifest],
                    caught_up: datetime) -> None:
    """Exports given by the operator must cover the gap: from the last applied change to the
    oldest changes the stream still holds (taken as 23 hours before the stream was caught up: it
    keeps records 24 hours). Else changes made in between are in neither: refuse."""
    start = report.last_applied_at
    end = caught_up - COVERED
    periods = sorted((m.export_from_time, m.export_to_time) for m in manifests
                     if m.export_from_time is not None and m.export_to_time is not None)
    covered_to = start
    for begin, finish in periods:
        # a second of slack: MongoDB keeps times to the millisecond, exports to the microsecond
        if covered_to is None or begin > covered_to + timedelta(seconds=1):
            break
        covered_to = max(covered_to, finish)
    if start is not None and covered_to is not None and covered_to >= end:
        return

    def when(moment: datetime | None) -> str:
        return moment.isoformat(timespec="seconds") if moment else "an unknown time"

    raise ResyncRequired(
        f"the incremental exports given cover "
        f"{', '.join(f'{when(a)}..{when(b)}' for a, b in periods) or 'no period'}, not the whole "
        f"gap from the last applied change ({when(start)}) to {when(end)} (from then on the "
        "stream still holds the changes): the changes in between would be lost",
        table=poller.table_name, stream_arn=poller.stream_arn).with_command(
        f"replicator recover --table {poller.table_name} --pitr-export-bucket <bucket> --yes "
        "(or add the missing --incremental-export windows, or without exports: a re-copy)")


def _check_room(poller: Poller, last_applied: str,
                numbered: Sequence[tuple[ExportManifest, str]]) -> None:
    """The windows' numbers must sort below every record the stream applied in step 1 (and so
    below every later one): else a window's older state would replace a newer stream change.
    DynamoDB Streams numbers the expired records of the gap in between; an emulator numbering
    records one by one may leave too little room for many windows over few changes."""
    if not numbered:
        return
    highest = max(int(s) for _, s in numbered)
    # Measured once, before any window is written (a rerun finds the windows' own numbers there):
    # kept in the recovery's state.
    state = _state(poller)
    saved = state.find_one({"_id": f"{poller.table_name}#{KIND}"}) or {}
    if "stream_floor" in saved:
        lowest = None if saved["stream_floor"] is None else int(saved["stream_floor"])
    else:
        lowest = _lowest_stored_after(poller, last_applied)
        state.update_one({"_id": f"{poller.table_name}#{KIND}"},
                         {"$set": {"stream_floor": None if lowest is None else str(lowest)}})
    if lowest is not None and highest >= lowest:
        raise ResyncRequired(
            f"the {len(numbered)} incremental export window(s) need sequence numbers "
            f"{int(last_applied) + 1}..{highest}, but the stream already applied sequence "
            f"number {lowest}: their older states could replace newer changes",
            table=poller.table_name, stream_arn=poller.stream_arn).with_command(
            f"replicator recover --table {poller.table_name} --yes (without exports: a re-copy)")


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


@dataclass
class ReplayReport:
    """What :func:`replay_kinesis` did: the time it replayed from, the stream records read and
    applied (duplicates and older changes count as read, not applied), when it caught up."""

    table: str
    stream_arn: str
    from_timestamp: datetime
    checkpoints_deleted: int = 0
    records_read: int = 0
    records_applied: int = 0
    stale: int = 0
    quarantined: int = 0
    consistent_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("from_timestamp", "consistent_at"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value else None
        return out


def replay_kinesis(poller: Poller, from_timestamp: datetime, *,
                   now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                   ) -> ReplayReport:
    """Recovery of a Kinesis-fed collection within the data stream's retention: forget the
    stream's checkpoints and marker, read every shard from ``AT_TIMESTAMP from_timestamp`` and
    apply until caught up; ``replicator run --kinesis-stream`` then resumes after the new
    checkpoints. Re-applying changes already applied is harmless: the order keys make a
    duplicate or an older change stale (docs/kinesis.md).

    Raises ConfigurationError when the poller does not read a Kinesis data stream, and
    ResyncRequired when ``from_timestamp`` is older than the stream keeps records (less the
    hour :data:`replicator.poller.resume.COVERED` allows for clock skew): the changes before the
    trim horizon are gone, only a re-copy repairs that."""
    arn = poller.kinesis_arn
    if arn is None:
        raise ConfigurationError("a replay reads a Kinesis data stream: give --kinesis-stream")
    if from_timestamp.tzinfo is None:
        from_timestamp = from_timestamp.replace(tzinfo=timezone.utc)
    held = poller.retention() - (RETENTION - COVERED)
    if now() - from_timestamp > held:
        raise ResyncRequired(
            f"--from-timestamp {from_timestamp.isoformat()} is older than the Kinesis data "
            f"stream keeps records ({int(poller.retention().total_seconds() // 3600)} hours, "
            "less an hour for clock skew): the changes before its trim horizon are gone",
            table=poller.table_name, stream_arn=arn).with_command(
            f"empty the collection, then replicator sync --table {poller.table_name} "
            f"--kinesis-stream {arn} --restart")
    report = ReplayReport(poller.table_name, arn, from_timestamp)
    report.checkpoints_deleted = poller.checkpoints.delete(stream_arn=arn)
    poller.starting_position = "TRIM_HORIZON"
    poller.starting_timestamp = from_timestamp
    poller.prepare()
    stats = poller.run(once=True)
    report.records_read = stats.records_read
    report.records_applied = stats.records_applied
    report.stale = stats.stale
    report.quarantined = stats.quarantined
    report.consistent_at = now()
    log.info("replay of %s from %s: %d Kinesis records read, %d applied, %d stale, %d "
             "quarantined; caught up at %s", poller.table_name, from_timestamp.isoformat(),
             report.records_read, report.records_applied, report.stale, report.quarantined,
             report.consistent_at.isoformat())
    return report
