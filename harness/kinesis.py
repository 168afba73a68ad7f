"""The KDS source: a table's changes through a Kinesis data stream on moto, as Kinesis Data Streams
for DynamoDB would deliver them -- out of order and more than once.

moto does not send a table's changes to Kinesis itself, so the harness does: the changes the
table's DynamoDB stream carries (what DynamoDB emits, read with ``StreamReader``) are turned into
the change JSON DynamoDB puts in a Kinesis record (:func:`kds_change`: ``tableName``,
``eventName``, ``dynamodb.Keys/NewImage/OldImage``, ``ApproximateCreationDateTime`` in epoch
milliseconds or microseconds per :attr:`KdsSettings.precision`, no DynamoDB sequence number), put
into a moto Kinesis stream with ``PutRecords`` (partition key: a hash of the item's key, so one
item's changes share a shard, as AWS's do), read back with the poller's own
:class:`replicator.poller.kinesis.KinesisReader` and handed to the lanes as a Lambda event's
Kinesis records. The Kinesis event source mapping then delivers each shard in the order of its
sequence numbers (harness/esm/mapping.py), with batches and partial batch responses whose
``itemIdentifier`` is the Kinesis ``sequenceNumber``.

**Reordering and duplicates, bounded.** AWS: "the records might appear in a different order than
the item modifications occurred ... [and] may appear more than once" (Developer Guide, "Using
Kinesis Data Streams to capture changes to DynamoDB"); it gives no bound. Here a change may be put
after at most ``shuffle_window - 1`` changes that were made after it, and a duplicate lands within
the same window after its change: each change (and each duplicate) gets the priority
``position + uniform(0, shuffle_window)`` and records are put in priority order. The default
window, 8, stands for a retried ``PutRecords`` batch overtaken by the batches sent while it was
retried -- a bounded number of records in flight per table partition; the bound is what makes
the wait bounded (a change waits at most until ``shuffle_window`` later changes were seen, or the
source goes idle) and the run reproducible from its seed. ``duplicate_rate`` is the share of
changes put twice. The order the KDS record carries -- ``ApproximateCreationDateTime`` -- is left
as DynamoDB made it: ordering is the replicator's job (docs/kinesis.md).

moto's own Kinesis misplaces records after a reshard (harness/backends/moto_kinesis.py); the
source runs inside :class:`harness.backends.moto_kinesis.KinesisResharding`, and ``split_after``
splits the stream's first shard once that many records were put, mid-run.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from replicator.poller.kinesis import KinesisReader
from replicator.poller.streams import ShardState

Precision = Literal["MILLISECOND", "MICROSECOND"]
SOURCES = ("dynamodb", "kinesis")
#: PutRecords takes at most 500 records a call (Kinesis API reference).
PUT_RECORDS_MAX = 500


@dataclass(frozen=True)
class KdsSettings:
    """A scenario's ``[stream]`` table (schema: harness/schema/scenario.schema.json)."""

    #: "dynamodb": the table's DynamoDB stream (the default); "kinesis": the KDS source
    source: str = "dynamodb"
    #: ApproximateCreationDateTimePrecision of the emulated streaming destination
    precision: Precision = "MILLISECOND"
    #: the data stream's shards
    shards: int = 2
    #: a change is put after at most this many - 1 later changes (1: in order)
    shuffle_window: int = 8
    #: share of changes put twice
    duplicate_rate: float = 0.1
    #: split the first shard once this many records were put (None: no reshard)
    split_after: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"stream.source must be one of {SOURCES}, not {self.source!r}")
        if self.precision not in ("MILLISECOND", "MICROSECOND"):
            raise ValueError(f"stream.precision must be MILLISECOND or MICROSECOND, "
                             f"not {self.precision!r}")
        if self.shuffle_window < 1 or self.shards < 1 or not 0 <= self.duplicate_rate <= 1:
            raise ValueError("stream: shuffle_window and shards must be >= 1, duplicate_rate "
                             "in 0..1")

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any], *, seed: int | None = None) -> KdsSettings:
        values = dict(fields)
        if seed is not None and "seed" not in values:
            values["seed"] = seed
        return cls(**values)

    @property
    def kinesis(self) -> bool:
        return self.source == "kinesis"


# -- the record shapes -------------------------------------------------------------------------------
def kds_change(record: Mapping[str, Any], *, table_name: str,
               precision: Precision = "MILLISECOND") -> dict[str, Any]:
    """A DynamoDB Streams record in the Lambda shape (``ApproximateCreationDateTime`` in epoch
    seconds, B as base64 text: what ``StreamReader`` hands out) -> the change JSON of a Kinesis
    Data Streams for DynamoDB record (Developer Guide's example record)."""
    body = record["dynamodb"]
    seconds = float(body["ApproximateCreationDateTime"])
    # Truncated, as a clock of that precision reads: two changes of one millisecond tie.
    stamp = int(seconds * 1000) if precision == "MILLISECOND" else round(seconds * 1_000_000)
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": stamp,
                                "ApproximateCreationDateTimePrecision": precision,
                                "Keys": body["Keys"]}
    for image in ("NewImage", "OldImage"):
        if image in body:
            dynamodb[image] = body[image]
    if "SizeBytes" in body:
        dynamodb["SizeBytes"] = body["SizeBytes"]
    return {
        "awsRegion": record.get("awsRegion"),
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "userIdentity": record.get("userIdentity"),
        "recordFormat": "application/json",
        "tableName": table_name,
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    }


def partition_key_of(keys: Mapping[str, Any]) -> str:
    """The Kinesis partition key of an item's changes: a hash of its key (one item, one shard)."""
    text = json.dumps(keys, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(text.encode()).hexdigest()


def change_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The change JSON a Lambda-shaped Kinesis record carries (None when it is not one). The
    harness's view of the records it wrote itself (lag, checks); the replicator's parser is
    ``replicator.events``."""
    envelope = record.get("kinesis") if isinstance(record, Mapping) else None
    if not isinstance(envelope, Mapping):
        return None
    try:
        change = json.loads(base64.b64decode(envelope.get("data") or ""))
    except ValueError:
        return None
    return change if isinstance(change, dict) else None


def keys_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``dynamodb.Keys`` of a DynamoDB Streams record or of a Kinesis record's change."""
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    if not isinstance(body, Mapping):
        change = change_of(record)
        body = change.get("dynamodb") if change else None
    keys = body.get("Keys") if isinstance(body, Mapping) else None
    return keys if isinstance(keys, Mapping) else None


# -- shuffling -----------------------------------------------------------------------------------
@dataclass
class Shuffler:
    """Puts changes in a bounded, seeded disorder with duplicates (see the module docstring)."""

    window: int
    duplicate_rate: float
    rng: random.Random
    _heap: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    _position: int = 0
    _tiebreak: int = 0
    duplicated: int = 0

    def add(self, change: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one change (in the order they were made); returns what may go out now."""
        copies = 2 if self.rng.random() < self.duplicate_rate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            self._tiebreak += 1
            priority = self._position + self.rng.uniform(0, self.window)
            heapq.heappush(self._heap, (priority, self._tiebreak, change))
        self._position += 1
        # Every later change gets a priority >= its position >= self._position.
        out: list[dict[str, Any]] = []
        while self._heap and self._heap[0][0] < self._position:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def flush(self) -> list[dict[str, Any]]:
        out = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return out

    @property
    def held(self) -> int:
        return len(self._heap)


# -- the source ----------------------------------------------------------------------------------
class KdsFeed:
    """A DynamoDB stream reader's records, through a Kinesis data stream, read back per Kinesis
    shard. Looks like a ``StreamReader`` to the runner: :meth:`poll` gives ``(shard_id,
    records)``, :attr:`state` each shard's parent (``harness.lane.parent_of``).

    ``upstream``: anything with ``poll() -> [(shard_id, records)]`` in the Lambda shape (the
    table's ``StreamReader``, or a fixed list: :meth:`put`); ``kinesis``: a boto3 kinesis client
    on moto (inside ``KinesisResharding`` when ``split_after`` is set).
    """

    def __init__(self, kinesis: Any, stream_name: str, table_name: str, settings: KdsSettings,
                 upstream: Any = None) -> None:
        self.client = kinesis
        self.settings = settings
        self.table_name = table_name
        self.upstream = upstream
        kinesis.create_stream(StreamName=stream_name, ShardCount=settings.shards)
        summary = kinesis.describe_stream_summary(StreamName=stream_name)
        self.stream_arn = str(summary["StreamDescriptionSummary"]["StreamARN"])
        self.shuffler = Shuffler(settings.shuffle_window, settings.duplicate_rate,
                                 random.Random(settings.seed))
        self.reader = KinesisReader(kinesis, self.stream_arn, poll_interval=0.0,
                                    refresh_interval=0.2)
        self.changes = 0  # changes taken from upstream
        self.put_count = 0  # Kinesis records put (duplicates included)
        self.split_done = False

    @property
    def state(self) -> dict[str, ShardState]:
        return self.reader.state

    def put(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Take DynamoDB Streams records (in the order they were made) into the shuffle; put what
        may go out. Returns how many Kinesis records were put."""
        out: list[dict[str, Any]] = []
        for record in records:
            self.changes += 1
            out += self.shuffler.add(kds_change(record, table_name=self.table_name,
                                                precision=self.settings.precision))
        return self._put(out)

    def flush(self) -> int:
        """Put every change still held by the shuffle (the source went idle)."""
        return self._put(self.shuffler.flush())

    def _put(self, changes: Sequence[dict[str, Any]]) -> int:
        for start in range(0, len(changes), PUT_RECORDS_MAX):
            chunk = changes[start:start + PUT_RECORDS_MAX]
            entries = [{"Data": json.dumps(change, separators=(",", ":")).encode(),
                        "PartitionKey": partition_key_of(change["dynamodb"]["Keys"])}
                       for change in chunk]
            answer = self.client.put_records(StreamARN=self.stream_arn, Records=entries)
            if answer.get("FailedRecordCount"):
                raise RuntimeError(f"PutRecords failed for {answer['FailedRecordCount']} records "
                                   f"of {len(entries)} (moto)")
            self.put_count += len(entries)
            self._maybe_split()
        return len(changes)

    def _maybe_split(self) -> None:
        after = self.settings.split_after
        if after is None or self.split_done or self.put_count < after:
            return
        shards = self.client.list_shards(StreamARN=self.stream_arn)["Shards"]
        first = shards[0]
        low = int(first["HashKeyRange"]["StartingHashKey"])
        high = int(first["HashKeyRange"]["EndingHashKey"])
        self.client.split_shard(StreamARN=self.stream_arn, ShardToSplit=first["ShardId"],
                                NewStartingHashKey=str((low + high) // 2))
        self.split_done = True
        self.reader._rediscover = True  # list the children on the next poll

    def poll(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """New Kinesis records per shard (lineage order). Reads upstream first; when upstream
        has nothing new, the shuffle's held changes are put."""
        if self.upstream is not None:
            fresh = [record for _, records in self.upstream.poll() for record in records]
            if fresh:
                self.put(fresh)
            elif self.shuffler.held:
                self.flush()
        return self.reader.poll()

    def drain(self, idle_polls: int = 3) -> dict[str, list[dict[str, Any]]]:
        """Flush the shuffle and read every record back, per shard (lineage order)."""
        self.flush()
        return self.reader.drain(idle_polls=idle_polls)


def layout(feed: KdsFeed, drained: Mapping[str, list[dict[str, Any]]]
           ) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
    """``(shard_id, parent, records)`` of records read back from ``feed`` (chaos's shard layout)."""
    return [(shard_id, feed.state[shard_id].parent_id if shard_id in feed.state else None,
             records) for shard_id, records in drained.items()]
