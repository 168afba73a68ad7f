"""The initial copy by Parallel Scan: segments run concurrently, each resumable on its own.

Each segment (``Segment``/``TotalSegments``, DynamoDB docs "Parallel Scan") scans its share of the
table page by page; each page goes through the Replicator as INSERT records with the copy's
sequence number (see replicator/item_records.py) and, once MongoDB acknowledged it, the segment's
``LastEvaluatedKey`` is saved (segments.py). Killed at any point, the next run resumes every
unfinished segment after its last saved page and skips the finished ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import PyMongoError

from replicator import aws_json
from replicator.core import BatchResult, Replicator
from replicator.errors import ConfigurationError, CopyInterrupted
from replicator.item_records import COPY_SEQUENCE, Record, item_record, tally
from replicator.migrate import collector
from replicator.migrate.segments import SegmentStore
from replicator.migrate.throttle import ReadCapacityThrottle
from replicator.retry import Backoff

log = logging.getLogger("replicator.migrate")
Item = dict[str, Any]
#: Chooses which items of a page are written (all by default); a gap re-copy writes only the
#: ones that differ from their documents.
Select = Callable[[list[Item]], list[Item]]


@dataclass
class CopyStats:
    segments: int = 0
    segments_already_done: int = 0
    segments_resumed: int = 0
    pages: int = 0
    items_read: int = 0
    items_written: int = 0
    #: items whose document a stream change (or tombstone) already made newer
    items_skipped_newer: int = 0
    #: items that matched their document (gap re-copy only)
    items_unchanged: int = 0
    quarantined: int = 0
    retries: int = 0
    consumed_read_units: float = 0.0
    throttled_s: float = 0.0
    elapsed_s: float = 0.0
    per_segment: dict[int, int] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items_read / self.elapsed_s if self.elapsed_s > 0 else 0.0


class ScanCopy:
    """Copies ``table`` through Replicators made by ``make_replicator`` (one per segment)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        make_replicator: Callable[[], Replicator],
        key_schema: Sequence[str],
        store: SegmentStore,
        *,
        segments: int = 4,
        concurrency: int | None = None,
        page_size: int = 1000,
        consistent_read: bool = False,
        throttle: ReadCapacityThrottle | None = None,
        sequence: str = COPY_SEQUENCE,
        make_record: Callable[[Item, str, datetime], Record] | None = None,
        select: Select | None = None,
        on_progress: Callable[[int], None] | None = None,
        after_page: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
        max_attempts: int = 10,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= segments <= 1_000_000:
            raise ConfigurationError("segments (TotalSegments) must be 1..1000000")
        if page_size < 1:
            raise ConfigurationError("page_size must be at least 1")
        self.dynamodb = dynamodb
        self.table = table
        self.make_replicator = make_replicator
        self.key_schema = tuple(key_schema)
        self.store = store
        self.segments = segments
        #: segments scanned at once (default: all); 1 copies them one after the other, in order
        self.concurrency = concurrency or segments
        self.page_size = page_size
        self.consistent_read = consistent_read
        self.throttle = throttle
        self.sequence = sequence
        #: ``(item, event_id, now) -> record``; default: an INSERT at ``sequence``
        #: (a Kinesis-fed collection's copy: :func:`replicator.item_records.kinesis_item_record`)
        self.make_record = make_record or (
            lambda item, event_id, now: item_record(item, self.key_schema, self.sequence,
                                                    event_id, created=now))
        self.select = select
        self.on_progress = on_progress
        self.after_page = after_page
        self.stop = stop or threading.Event()
        #: retries of a page's writes; a stop ends its waits at once
        self.backoff = Backoff(backoff_base_s, backoff_max_s, max_attempts,
                               sleep=self.stop.wait)
        self._clock = clock
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self.stats = CopyStats(segments=segments)

    def run(self) -> CopyStats:
        others = self.store.other_layouts(self.segments)
        if others:
            raise ConfigurationError(
                f"an unfinished copy of {self.table} used TotalSegments={others[0]}: resume it "
                f"with --segments {others[0]}, or start over with --restart")
        states = self.store.load(self.segments)
        started = self._clock()
        todo = []
        for segment in range(self.segments):
            state = states.get(segment)
            if state is not None and state.done:
                self.stats.segments_already_done += 1
                self.stats.per_segment[segment] = state.items
                continue
            if state is not None and state.last_evaluated_key is not None:
                self.stats.segments_resumed += 1
            todo.append((segment, state.last_evaluated_key if state else None,
                         state.items if state else 0))
        log.info("copy of %s: %d segments, %d already done, %d resumed", self.table,
                 self.segments, self.stats.segments_already_done, self.stats.segments_resumed)
        errors: list[BaseException] = []
        if todo:
            # fewer cyclic GC passes while pages come and go (collector.py says why)
            with collector.fewer_collections(), ThreadPoolExecutor(
                    max_workers=min(len(todo), self.concurrency),
                    thread_name_prefix="scan-segment") as pool:
                futures = [pool.submit(self._segment, *work) for work in todo]
                for future in futures:
                    error = future.exception()
                    if error is not None:
                        errors.append(error)
        self.stats.elapsed_s = self._clock() - started
        if self.throttle is not None:
            self.stats.throttled_s = self.throttle.waited_s
        if errors:
            raise errors[0]
        if self.stop.is_set():
            raise CopyInterrupted(f"copy of {self.table} stopped; run it again to resume")
        return self.stats

    # -- one segment ---------------------------------------------------------------------------
    def _segment(self, segment: int, start_key: dict[str, Any] | None, items: int) -> None:
        if self._abort.is_set():
            return  # queued behind a segment that failed
        try:
            self._copy_segment(segment, start_key, items)
        except BaseException:
            self._abort.set()  # the other segments stop after their current page
            raise

    def _copy_segment(self, segment: int, start_key: dict[str, Any] | None, items: int) -> None:
        replicator = self.make_replicator()
        request: dict[str, Any] = {
            "TableName": self.table, "Segment": segment, "TotalSegments": self.segments,
            "Limit": self.page_size, "ConsistentRead": self.consistent_read,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if start_key is not None:
            request["ExclusiveStartKey"] = start_key
        page_number = 0
        while not (self.stop.is_set() or self._abort.is_set()):
            # json.loads of the page, not botocore's parser: replicator/aws_json.py says why
            page = aws_json.scan(self.dynamodb, **request)
            page_items: list[Item] = page.get("Items", [])
            units = float((page.get("ConsumedCapacity") or {}).get("CapacityUnits") or 0.0)
            written, newer, quarantined = self._write(replicator, segment, page_items)
            last = page.get("LastEvaluatedKey")
            items += len(page_items)
            self.store.save(segment, self.segments, last, items)
            page_number += 1
            with self._lock:
                stats = self.stats
                stats.pages += 1
                stats.items_read += len(page_items)
                stats.items_written += written
                stats.items_skipped_newer += newer
                stats.items_unchanged += len(page_items) - written - newer - quarantined
                stats.quarantined += quarantined
                stats.consumed_read_units += units
                stats.per_segment[segment] = items
            if self.on_progress is not None:
                self.on_progress(len(page_items))
            if self.after_page is not None:
                self.after_page(segment, page_number)
            if not last:
                return
            request["ExclusiveStartKey"] = last
            if self.throttle is not None and units:
                self.throttle.consumed(units)

    def _write(self, replicator: Replicator, segment: int,
               items: list[Item]) -> tuple[int, int, int]:
        chosen = self.select(items) if self.select is not None and items else items
        if not chosen:
            return 0, 0, 0
        now = datetime.now(timezone.utc)
        records = [self.make_record(item, f"copy-{segment}-{n}", now)
                   for n, item in enumerate(chosen)]
        attempt = 0
        while True:
            try:
                result = replicator.process(records)
            except PyMongoError as error:
                result = BatchResult(records=len(records),
                                     failures=[(self.sequence, f"{type(error).__name__}: {error}")])
            if not result.failures:
                counts = tally(result)
                return counts.written, counts.newer, counts.quarantined
            attempt += 1
            with self._lock:
                self.stats.retries += 1
            if self.backoff.exhausted(attempt):
                raise CopyInterrupted(
                    f"segment {segment}: writing {len(records)} items failed {attempt} times; "
                    f"last error: {result.failures[0][1]}")
            log.warning("segment %d: %d of %d items not written (first: %s); retry %d of %s",
                        segment, len(result.failures), len(records), result.failures[0][1],
                        attempt, self.backoff.max_attempts)
            if not self.backoff.wait(attempt):
                raise CopyInterrupted(f"segment {segment} stopped while retrying")
