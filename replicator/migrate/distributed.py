"""The export copy as independent units, one data file each, for engines that fan out: an AWS
Step Functions Distributed Map (deploy/export-copy.yaml), an AWS Batch array job, or
``replicator load-export-file`` on any machine (docs/migration.md, "The distributed export copy").

The same three steps as ``replicator sync --export`` (replicator/migrate/sync.py), cut where an
engine can run them apart:

1. :func:`prepare` -- the export is a full DYNAMODB_JSON export the stream covers
   (:func:`~replicator.migrate.sync.check_export_covered`), and the stream positions are recorded
   exactly as ``sync --export`` records them (``TRIM_HORIZON``, the poller's checkpoints in
   MongoDB: :func:`~replicator.migrate.sync.record_positions`). Returns what the map needs: the
   bucket and key of ``manifest-files.json`` (the ItemReader's object) and the export's ARN and
   type (each child's context).
2. :func:`load_task` -- one item: one line of ``manifest-files.json`` (``{"itemCount",
   "md5Checksum", "etag", "dataFileS3Key"}``, as the ItemReader hands it over) with its context,
   loaded by :func:`~replicator.migrate.export.load_export_file`: the integrity checks, bad lines
   quarantined with file and line, and the file's progress in ``<collection>_sync`` (the same
   documents ``sync --export`` keeps: whichever path loaded a file, the other skips it).
3. :func:`handover` -- the stream applied from the recorded positions until a poll brings nothing,
   within a time budget (a Lambda invocation has 15 minutes; the state machine calls it again
   until it answers ``CaughtUp``), then ``consistent_at`` is marked as ``sync`` marks it.

A child killed mid-file (timeout, out of memory, redrive after a MongoDB outage) left no progress
mark: run again, it writes the whole file again, and the guard makes the lines written twice
no-ops (copied items carry sequence number "0": they never overwrite a stream change, nor each
other). Only a file whose every line MongoDB acknowledged is marked done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.migrate.export import (
    FULL,
    FileResult,
    data_file_of,
    load_export_file,
    load_manifest,
    manifest_files_location,
    manifest_of,
    read_bytes,
    read_summary,
)
from replicator.migrate.segments import SegmentStore
from replicator.migrate.sync import (
    check_export_covered,
    copy_replicator_factory,
    mark_consistent,
    record_positions,
)
from replicator.poller import Poller

log = logging.getLogger("replicator.migrate")
#: the ``source`` the handover marks in ``<collection>_sync``
SOURCE = "export (distributed)"


@dataclass(frozen=True)
class ExportFileTask:
    """One unit of the distributed copy: a line of the export's ``manifest-files.json`` and
    where the export is.

    ``export``: the export directory, ``s3://<bucket>/<prefix>/AWSDynamoDB/<ExportId>`` (or a
    local copy of it); ``entry``: the manifest line as AWS writes it; ``export_arn`` /
    ``export_type``: from ``manifest-summary.json`` (read when not given); ``index``: the line's
    position, for messages."""

    export: str
    entry: Mapping[str, Any]
    export_arn: str | None = None
    export_type: str | None = None
    index: int | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ExportFileTask:
        """The task a Distributed Map child receives (the state machine's ItemSelector):
        ``{"Item": <manifest line>, "Export": "s3://...", "ExportArn", "ExportType", "Index"}``.
        Raises ConfigurationError naming the missing field."""
        if not isinstance(event, Mapping):
            raise ConfigurationError(f"the event is not an object: {type(event).__name__}")
        for name in ("Item", "Export"):
            if not event.get(name):
                raise ConfigurationError(
                    f"the event has no {name!r} (the map's ItemSelector gives Item: "
                    "$$.Map.Item.Value and Export: the export's s3:// directory)")
        item = event["Item"]
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"the event's Item is not a manifest-files.json line: {item!r:.200}")
        index = event.get("Index")
        return cls(str(event["Export"]), item, event.get("ExportArn") or None,
                   event.get("ExportType") or None, None if index is None else int(index))


def task_at(export: str, index: int, s3: Any = None) -> ExportFileTask:
    """Line ``index`` (from 0, the file's order) of the export's ``manifest-files.json``: what an
    AWS Batch array child (``AWS_BATCH_JOB_ARRAY_INDEX``) loads. Raises ConfigurationError for an
    index past the last line."""
    manifest = load_manifest(export, s3)
    if not 0 <= index < len(manifest.files):
        raise ConfigurationError(
            f"index {index}: the export {export} has {len(manifest.files)} data file(s) "
            f"(indexes 0..{len(manifest.files) - 1}; an array job's size is that count)")
    data_file = manifest.files[index]
    entry = {"dataFileS3Key": data_file.key, "itemCount": data_file.item_count,
             "md5Checksum": data_file.md5, "etag": data_file.etag}
    return ExportFileTask(manifest.location, entry, manifest.export_arn, manifest.export_type,
                          index)


def progress_collection(collection: Any) -> Any:
    """Where each data file's completion is kept: ``<collection>_sync``, as ``sync --export``."""
    return SegmentStore.beside(collection, "").collection


def load_task(task: ExportFileTask, replicator: Replicator, *, s3: Any = None,
              progress: Any = None) -> FileResult:
    """Load the task's data file once (module docstring) through ``replicator``, whose settings
    name the key schema and keep the guard on. ``progress``: default ``<collection>_sync``.
    Raises ConfigurationError (no key schema, guard off, not a full export, a bad item),
    ExportFileMismatch (the file is not its manifest line), RetriesExhausted (MongoDB)."""
    settings = replicator.settings
    if not settings.guard:
        raise ConfigurationError("the export copy needs the stale-write guard "
                                 "(REPLICATOR_GUARD=true): without it a copied item could "
                                 "overwrite a newer change")
    if not settings.key_schema:
        raise ConfigurationError("the export copy needs the table's key schema: set "
                                 "REPLICATOR_KEY_SCHEMA (partition[,sort]) or --key-schema")
    summary: Mapping[str, Any]
    if task.export_arn and task.export_type:
        summary = {"exportArn": task.export_arn, "exportType": task.export_type}
    else:
        summary = read_summary(task.export, s3)
    data_file = data_file_of(task.export, task.entry)
    manifest = manifest_of(task.export, summary, (data_file,))
    if manifest.export_type != FULL:
        raise ConfigurationError(f"export {manifest.export_arn or task.export} is "
                                 f"{manifest.export_type}: the copy reads a full export (an "
                                 "incremental one is for `replicator recover`)")
    return load_export_file(
        manifest, data_file, replicator, key_schema=settings.key_schema, s3=s3,
        progress=progress if progress is not None else progress_collection(replicator.collection))


def result_of(result: FileResult) -> dict[str, Any]:
    """A child's answer (a Map child's output, the CLI's report): counts of lines."""
    return {"DataFileS3Key": result.key, "AlreadyLoaded": result.already_loaded,
            "Lines": result.lines, "Written": result.written,
            "NewerKept": result.skipped_newer, "Quarantined": result.quarantined}


# -- before and after the map ----------------------------------------------------------------------
def prepare(poller: Poller, export: str, *, s3: Any = None,
            now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> dict[str, Any]:
    """Step 1 (module docstring). Raises ConfigurationError (not a full export, guard off),
    ResyncRequired (the stream does not cover the export's exportTime: take a new export).

    Returns ``{"Export", "Bucket", "ManifestFilesKey", "ExportArn", "ExportType", "Table",
    "DataFiles", "ItemCount", "PositionsAt", "StreamRecordsApplied"}``; ``Bucket`` and
    ``ManifestFilesKey`` are None for a local export."""
    manifest = load_manifest(export, s3)
    if manifest.export_type != FULL:
        raise ConfigurationError(f"export {manifest.export_arn or export} is "
                                 f"{manifest.export_type}: the copy reads a full export")
    check_export_covered(poller, manifest, now())
    copy_replicator_factory(poller)  # the guard is on, the key schema known
    applied = record_positions(poller, trim_horizon=True).records_applied
    listing = manifest_files_location(manifest.location, read_summary(manifest.location, s3))
    bucket, key = None, None
    if listing.startswith("s3://"):
        bucket, _, key = listing[5:].partition("/")
        read_bytes(listing, s3)  # the ItemReader reads this object: fail here if it cannot
    log.info("export copy of %s prepared: export %s, %d data files, %s items; stream positions "
             "recorded (TRIM_HORIZON), %d records applied", poller.table_name,
             manifest.export_arn or manifest.location, len(manifest.files),
             manifest.item_count, applied)
    return {"Export": manifest.location, "Bucket": bucket, "ManifestFilesKey": key,
            "ExportArn": manifest.export_arn, "ExportType": manifest.export_type,
            "Table": poller.table_name, "DataFiles": len(manifest.files),
            "ItemCount": manifest.item_count, "PositionsAt": now().isoformat(),
            "StreamRecordsApplied": applied}


def handover(poller: Poller, *, budget_s: float | None = None,
             now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> dict[str, Any]:
    """Step 3 (module docstring): apply the stream from the recorded positions until a poll
    brings nothing, or for at most ``budget_s`` seconds (the poller stops after its current
    batch, checkpointed). Returns ``{"CaughtUp", "StreamRecordsApplied", "ConsistentAt"}``;
    ``CaughtUp`` false: call again (it resumes from the checkpoints)."""
    timer = None
    if budget_s is not None:
        # The Lambda invocation's deadline, not a synchronisation: stopping early loses nothing.
        timer = threading.Timer(max(budget_s, 0.0), poller.stop)
        timer.daemon = True
        timer.start()
    try:
        stats = poller.run(once=True)
    finally:
        if timer is not None:
            timer.cancel()
    if stats.stopped_by_signal:
        log.info("handover of %s: %d stream records applied, not caught up yet (time budget)",
                 poller.table_name, stats.records_applied)
        return {"CaughtUp": False, "StreamRecordsApplied": stats.records_applied,
                "ConsistentAt": None}
    when = now()
    mark_consistent(poller, SOURCE, when)
    log.info("handover of %s: %d stream records applied; consistent at %s", poller.table_name,
             stats.records_applied, when.isoformat())
    return {"CaughtUp": True, "StreamRecordsApplied": stats.records_applied,
            "ConsistentAt": when.isoformat()}
