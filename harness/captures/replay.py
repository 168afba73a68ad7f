"""Replay a captured stream into a target and check it against the captured final items."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson import json_util
from bson.decimal128 import Decimal128

from harness.captures.format import Capture
from harness.convergence import Diff
from harness.esm.config import EsmConfig
from harness.esm.report import DriverReport
from harness.handlers import Handler
from harness.lane import IMAGE_VIEWS, ItemsReader, Lane
from replicator.settings import Settings

#: the stream ARN replayed records are delivered under when the recording names none
DEFAULT_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/replay/stream/replay"
#: records fed to the mapping at a time (each chunk runs before the next is read)
FEED_CHUNK = 1000
#: the one shard of a recording that does not list its shards
DEFAULT_SHARD = "shardId-00000000000000000000-00000000"

#: ``(shard_id, parent_shard_id, record count)`` in lineage order, as recording.json lists them
Shards = list[tuple[str, str | None, int]]


@dataclass
class ReplayResult:
    batches: int = 0
    invocations: int = 0
    redelivered: int = 0
    responses: list[Any] = field(default_factory=list)
    diff: Diff | None = None
    error: str | None = None
    #: the event source mapping's report (counts, handler time, wait histograms)
    driver: DriverReport | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and (self.diff is None or self.diff.converged)


def settings_for(capture: Capture, base: Settings | None = None) -> Settings:
    """The capture's key schema folded into the settings."""
    from dataclasses import replace

    return replace(base or Settings(), key_schema=capture.table.key_schema)


def recorded_shards(directory: Path) -> Shards | None:
    """The shards a recording lists beside its events.json: recording.json (``harness record``)
    or schedule.json (a chaos recording); None when it lists none (one shard is assumed)."""
    directory = Path(directory)
    recording = directory / "recording.json"
    if recording.exists():
        listed = json.loads(recording.read_text()).get("shards") or []
        return [(s["shard_id"], s.get("parent_shard_id"), int(s["records"])) for s in listed] or None
    schedule = directory / "schedule.json"
    if schedule.exists():
        # [shard id, record count] or, since shard splits, [shard id, record count, parent]
        entries = json.loads(schedule.read_text()).get("shards") or []
        return [(str(entry[0]), entry[2] if len(entry) > 2 else None, int(entry[1]))
                for entry in entries] or None
    return None


def replay(
    capture: Capture,
    collection: Any,
    *,
    handler_name: str = "replicator",
    settings: Settings | None = None,
    batch_size: int = 100,
    max_attempts: int = 3,
    progress: Callable[[int, int], None] | None = None,
    shards: Shards | None = None,
    esm: EsmConfig | None = None,
    handler: Callable[[dict[str, Any]], Any] | None = None,
    records: Iterable[dict[str, Any]] | None = None,
    total: int | None = None,
    writes_to: Any = None,
    mongodb_only: bool = False,
) -> ReplayResult:
    """Deliver the capture's records through one :class:`~harness.lane.Lane` -- the event source
    mapping emulation (harness/esm/mapping.py): its batching, partial batch responses and retries
    -- and check the final items with the lane's planner (the settings' transforms and
    ``id_mapping`` loaded, as the handler has them).

    ``shards`` (from :func:`recorded_shards`) splits the records into the recorded shards, a child
    after its parent; without it they are one shard. The mapping: ``batch_size`` records a batch,
    ReportBatchItemFailures on, ``max_attempts`` invocations a batch at most (MaximumRetryAttempts
    ``max_attempts - 1``), or ``esm`` as given. A response Lambda does not read as a failure (such
    as the baseline's ``{"statusCode": 500}``) counts as success, exactly as it would in AWS --
    which is how the baseline loses records. A batch still failing after its attempts is
    discarded by the mapping and makes ``error``. ``handler`` replaces the named handler (it gets
    the collection's writes itself). ``records`` (with their ``total``) replaces the capture's
    records, e.g. :func:`iter_recorded_records` for a stream too large to hold parsed: they are
    fed in chunks, each processed before the next is read. ``writes_to``: what the named handler
    writes to instead of ``collection`` (a timed wrapper of it); the check reads ``collection``.
    ``mongodb_only`` (write_mode="merge"): another MongoDB application adds fields of its own
    after each batch (harness/mongodb_only.py, ``Lane.add_mongodb_only_writer``); convergence
    ignores its fields only (strict on everything else), and a field it lost is a difference.
    """
    settings = settings_for(capture, settings)
    if records is None:
        listed = capture.records
        records, total = listed, len(listed)
    elif total is None:
        raise ValueError("replay: records given without their total")
    result = ReplayResult()
    config = esm or EsmConfig(
        batch_size=batch_size, report_batch_item_failures=True,
        maximum_retry_attempts=max(0, max_attempts - 1),
    )

    def recording(function: Handler) -> Handler:
        def recorded(event: dict[str, Any]) -> Any:
            response = function(event)
            result.responses.append(response)
            return response

        return recorded

    done = 0

    lanes: list[Lane] = []

    def completed(_at: float, batch: Sequence[Mapping[str, Any]]) -> None:
        nonlocal done
        for lane in lanes:
            lane.after_batch(_at, batch)
        done += len(batch)
        if progress:
            progress(done, total)

    stream = iter(records)
    head = next(stream, None)
    stream_arn = head.get("eventSourceARN") if isinstance(head, dict) else None
    if not isinstance(stream_arn, str):
        stream_arn = DEFAULT_STREAM_ARN
    if head is not None:
        stream = itertools.chain([head], stream)
    chunk = max(FEED_CHUNK, config.batch_size * config.parallelization_factor * 2)
    given = handler
    # A KEYS_ONLY / OLD_IMAGE stream: the replicator reads each item back; after the fact, the
    # capture's final items are what a consistent read returns.
    reader = None
    if capture.table.stream_view_type not in IMAGE_VIEWS and capture.final_items is not None:
        reader = ItemsReader(capture.final_items, capture.table.key_schema)
    lane = Lane(
        handler_name if given is None else (lambda event, _context: given(event)),
        collection, settings, esm=config, stream_arn=stream_arn,
        partition_key=capture.table.partition_key[0], name=handler_name, writes_to=writes_to,
        item_reader=reader,
        on_complete=completed, accept_unsequenced=True,
    )
    lane.wrap(recording)
    if mongodb_only:
        lane.add_mongodb_only_writer()
    lanes.append(lane)
    try:
        for shard_id, parent, count in _split(shards, total):
            left = count
            while left > 0:
                part = list(itertools.islice(stream, min(chunk, left)))
                if not part:
                    raise ValueError(f"the recording lists {total} records; the events hold fewer")
                lane.feed(shard_id, part, parent_shard_id=parent)
                left -= len(part)
                del part
                lane.pump()  # this chunk's batches run before the next chunk is read
        report = lane.drain()
    finally:
        lane.close()
    result.driver = report
    result.invocations = report.invocations
    result.batches = report.invocations - report.retries - report.bisections
    result.redelivered = max(0, report.records_delivered - report.records_fed)
    if report.discarded:
        first = report.discarded[0]
        result.error = (
            f"batch starting at {first.sequence_numbers[0]!r} (shard {first.shard_id}) still "
            f"failed after {first.invocations} attempts: "
            f"{first.last_error or first.last_outcome}"[:500]
        )
        return result
    if capture.final_items is not None:
        result.diff = lane.diff(capture.final_items)
    return result


def iter_recorded_records(events: Path, *, read_size: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The records of an ``events.json`` (``{"Records": [...]}``) one by one, parsed as the file
    is read: a 50,000-record stream parsed whole takes ~300 MB of Python objects."""
    decoder = json.JSONDecoder()
    with Path(events).open() as source:
        buffer = source.read(read_size)
        while len(buffer) < 4096:  # the header, whatever the read size
            more = source.read(read_size)
            if not more:
                break
            buffer += more
        match = re.match(r'\s*\{\s*"Records"\s*:\s*\[', buffer)
        if match is None:
            raise ValueError(f'{events}: expected a Lambda event starting {{"Records": [')
        position = match.end()
        ended = False
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            if position < len(buffer) and buffer[position] == "]":
                return
            try:
                record, position = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError:
                if ended:
                    raise ValueError(f"{events}: not JSON at character {position}") from None
                more = source.read(read_size)
                ended = not more
                buffer, position = buffer[position:] + more, 0
                continue
            yield record


def _split(shards: Shards | None, total: int) -> Shards:
    if not shards:
        return [(DEFAULT_SHARD, None, total)]
    listed = sum(count for _, _, count in shards)
    if listed != total:
        raise ValueError(f"the recording lists {listed} records in its shards, events.json {total}")
    return shards


def dump_collection(collection: Any, path: Path) -> int:
    """Write the collection as canonical Extended JSON, one document per line, sorted by ``_id``."""
    documents = sorted(collection.find({}), key=lambda d: _id_order(d["_id"]))
    with Path(path).open("w") as out:
        for document in documents:
            out.write(
                json_util.dumps(document, json_options=json_util.CANONICAL_JSON_OPTIONS) + "\n"
            )
    return len(documents)


def _id_order(value: Any) -> tuple[int, Any]:
    # BSON's comparison order: numbers, then strings, then documents, then binary.
    if isinstance(value, bool):
        return (5, str(value))
    if isinstance(value, (int, float)):
        return (0, Decimal(value))
    if isinstance(value, Decimal128):
        return (0, value.to_decimal())
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, dict):
        return (2, json.dumps([_id_order(v) for v in value.values()], default=str))
    if isinstance(value, bytes):
        return (3, value)
    return (4, repr(value))
