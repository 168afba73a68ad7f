"""Re-sync a collection from its table after the stream lost changes (``replicator resync``).

See docs/poller.md, "Re-sync". It drives a :class:`replicator.poller.Poller` through its public
surface only (``make_replicator``, ``run``, ``backoff``, ``checkpoints``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo.errors import PyMongoError

from replicator import aws_json
from replicator.core import BatchResult
from replicator.errors import ConfigurationError, RetriesExhausted
from replicator.item_records import COPY_SEQUENCE, item_record, tally
from replicator.poller.loop import Poller

log = logging.getLogger("replicator.poller")  # the poller's log: one place to follow a re-sync
Record = dict[str, Any]


@dataclass
class ResyncStats:
    checkpoints_deleted: int = 0
    documents_deleted: int = 0
    tombstones_deleted: int = 0
    stream_records_applied: int = 0
    items_scanned: int = 0
    items_written: int = 0
    items_skipped_newer: int = 0


#: The sequence number of a scanned item: below every real one, so any stream change of the item
#: (applied before or after the scan) wins over the scan through the stale-write guard.
SCAN_SEQUENCE = COPY_SEQUENCE


def resync(
    poller: Poller,
    *,
    page_size: int = 100,
    progress_every: int = 10_000,
) -> ResyncStats:
    """Re-sync ``poller``'s collection from its table (see docs/poller.md, "Re-sync").

    1. delete the table's checkpoints (every stream), the collection's documents and tombstones;
    2. write a stream marker at TRIM_HORIZON and apply everything the stream still holds
       (``poller.run(once=True)``), checkpointing as usual;
    3. scan the table (strongly consistent) and write each item as an INSERT with sequence number
       0 through the same Replicator: the guard lets it in only where no stream change of the item
       was applied (document or tombstone), so the scan never overwrites a newer state;
    4. ``replicator run`` then continues from the checkpoints of step 2: every change made during
       the scan is in the stream after them and wins over the scanned copy.
    """
    settings = poller.settings
    if not settings.guard:
        raise ConfigurationError("resync needs the stale-write guard (REPLICATOR_GUARD=true)")
    replicator = poller.make_replicator()
    stats = ResyncStats()
    table = poller.table_name
    stats.checkpoints_deleted = poller.checkpoints.delete(table=table)
    stats.documents_deleted = int(poller.collection.delete_many({}).deleted_count)
    if replicator.tombstones is not None:
        stats.tombstones_deleted = int(
            replicator.tombstones.collection.delete_many({}).deleted_count)
    log.info("resync of %s: deleted %d checkpoint documents, %d documents, %d tombstones",
             table, stats.checkpoints_deleted, stats.documents_deleted, stats.tombstones_deleted)
    poller.starting_position = "TRIM_HORIZON"
    run = poller.run(once=True)
    if poller.stop_event.is_set():
        raise RetriesExhausted("resync interrupted while applying the stream; run it again")
    stats.stream_records_applied = run.records_applied
    log.info("resync of %s: applied %d stream records; scanning the table", table,
             stats.stream_records_applied)
    info = poller.info
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True, "Limit": page_size}
    while True:
        page = aws_json.scan(poller.dynamodb, **request)  # replicator/aws_json.py says why
        items = page.get("Items", [])
        stats.items_scanned += len(items)
        if items:
            # Full images, as the migration's copy: no read-back whatever the stream's view type.
            records = [item_record(item, info.key_schema, SCAN_SEQUENCE,
                                   f"resync-scan-{stats.items_scanned + n}",
                                   source="replicator:resync")
                       for n, item in enumerate(items)]
            attempt = 0
            while True:
                try:
                    result = replicator.process(records)
                except PyMongoError as error:
                    result = BatchResult(records=len(records), failures=[
                        (SCAN_SEQUENCE, f"{type(error).__name__}: {error}")])
                if not result.failures:
                    break
                attempt += 1
                poller.backoff.give_up(attempt, "writing scanned items", result.failures[0][1])
                log.warning("resync: %d of %d scanned items not written (first: %s); retry %d",
                            len(result.failures), len(records), result.failures[0][1], attempt)
                if not poller.backoff.wait(attempt):
                    raise RetriesExhausted("resync interrupted during the scan; run it again")
            counts = tally(result)
            stats.items_written += counts.written
            stats.items_skipped_newer += counts.newer
            if stats.items_scanned // progress_every != (stats.items_scanned - len(items)) // progress_every:
                log.info("resync of %s: %d items scanned", table, stats.items_scanned)
        last = page.get("LastEvaluatedKey")
        if not last:
            break
        request["ExclusiveStartKey"] = last
    log.info("resync of %s done: %d items scanned, %d written, %d already newer from the stream; "
             "now start `replicator run`", table, stats.items_scanned, stats.items_written,
             stats.items_skipped_newer)
    return stats
