"""Where the standalone poller is in each shard, kept in a MongoDB collection beside the data.

One document per (stream ARN, shard): the sequence number of the last record whose write MongoDB
acknowledged (with every record before it in the shard), that record's
``ApproximateCreationDateTime`` (``created_at``), whether the shard was read to its end
(``finished``) and when it changed (``updated_at``: when it was saved, which lags ``created_at`` by
the poller's lag). One more document per stream, the *stream marker*, says the
poller has started on that stream (where: ``TRIM_HORIZON`` or ``LATEST``) and when it was last
alive; with a marker, shards without a checkpoint are new ones and start at ``TRIM_HORIZON``.

The poller saves a checkpoint only after the writes of the records up to it were acknowledged, so
a crash at any moment leaves a checkpoint at or before what MongoDB holds: the records after it
are read and applied again, which the stale-write guard makes harmless.

A checkpoint never moves back: :meth:`CheckpointStore.save` is one ``update_one`` upsert whose
filter only matches an older (or no) position; a newer one makes the upsert collide on ``_id``
(duplicate key), which is read as "already further". It needs only ``update_one`` (no
``bulk_write``, no transaction), so it works on any target with pymongo's collection API. The
default collection is ``<collection>_checkpoints``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pymongo.errors import DuplicateKeyError

from replicator.events import pad_sequence_number

SHARD = "shard"
STREAM = "stream"
SUFFIX = "_checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    """The position of one shard: everything up to ``sequence_number`` is in MongoDB."""

    stream_arn: str
    shard_id: str
    sequence_number: str | None
    finished: bool = False
    parent_shard_id: str | None = None
    updated_at: datetime | None = None
    table: str | None = None
    #: ApproximateCreationDateTime of the record at ``sequence_number`` (when the change was made)
    created_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Checkpoint:
        return cls(
            stream_arn=document["stream_arn"],
            shard_id=document["shard_id"],
            sequence_number=document.get("sequence_number"),
            finished=bool(document.get("finished")),
            parent_shard_id=document.get("parent_shard_id"),
            updated_at=_aware(document.get("updated_at")),
            table=document.get("table"),
            created_at=_aware(document.get("created_at")),
        )


@dataclass(frozen=True)
class StreamMarker:
    """The poller started on this stream (at ``starting_position``) and was last alive then;
    ``stopped_at``: when a poller last ended its run (a killed one never says so)."""

    stream_arn: str
    table: str | None
    starting_position: str
    started_at: datetime | None
    alive_at: datetime | None
    stopped_at: datetime | None = None
    #: a Kinesis data stream's StreamCreationTimestamp when the marker was written (ISO 8601,
    #: UTC, exact: a BSON date would keep milliseconds only); None for a DynamoDB stream, or a
    #: marker an earlier version wrote
    stream_created_at: str | None = None

    @property
    def stopped(self) -> bool:
        """The last poller ended its run after its last sign of life: none is running now."""
        return (self.stopped_at is not None
                and (self.alive_at is None or self.alive_at <= self.stopped_at))


class CheckpointStore:
    """Checkpoints of one table's streams in ``collection`` (any pymongo-compatible collection)."""

    def __init__(self, collection: Any, *, table: str | None = None) -> None:
        self.collection = collection
        self.table = table

    @classmethod
    def beside(cls, target: Any, name: str | None = None, *, table: str | None = None) -> CheckpointStore:
        """The store in ``name`` (default ``<target collection>_checkpoints``) of the target's database."""
        return cls(target.database[name or f"{target.name}{SUFFIX}"], table=table)

    # -- reading -----------------------------------------------------------------------------------
    def load(self, stream_arn: str) -> dict[str, Checkpoint]:
        """Every shard checkpoint of the stream, by shard id."""
        return {
            document["shard_id"]: Checkpoint.from_document(document)
            for document in self.collection.find({"kind": SHARD, "stream_arn": stream_arn})
        }

    def marker(self, stream_arn: str) -> StreamMarker | None:
        document = self.collection.find_one({"_id": _stream_id(stream_arn)})
        if document is None:
            return None
        return StreamMarker(
            stream_arn=stream_arn,
            table=document.get("table"),
            starting_position=document.get("starting_position", "TRIM_HORIZON"),
            started_at=_aware(document.get("started_at")),
            alive_at=_aware(document.get("alive_at")),
            stopped_at=_aware(document.get("stopped_at")),
            stream_created_at=document.get("stream_created_at"),
        )

    def streams(self, table: str | None = None) -> list[str]:
        """The stream ARNs this store holds anything for (of ``table``, if given)."""
        query: dict[str, Any] = {} if table is None else {"table": table}
        return sorted({d["stream_arn"] for d in self.collection.find(query, {"stream_arn": 1})
                       if d.get("stream_arn")})

    def all(self, table: str | None = None) -> list[dict[str, Any]]:
        """Every document (shards and stream markers), for display."""
        query: dict[str, Any] = {} if table is None else {"table": table}
        return sorted(self.collection.find(query), key=lambda d: (d.get("stream_arn", ""),
                                                                   d.get("kind") != STREAM,
                                                                   d.get("shard_id") or ""))

    # -- writing -----------------------------------------------------------------------------------
    def save(self, stream_arn: str, shard_id: str, sequence_number: str, *,
             parent_shard_id: str | None = None, created_at: datetime | None = None) -> bool:
        """Move the shard's checkpoint to ``sequence_number`` (``created_at``: that record's
        ApproximateCreationDateTime, kept so a gap recovery knows when the last applied change was
        made); False if it already was further."""
        padded = sequence_key(stream_arn, sequence_number)
        now = datetime.now(timezone.utc)
        fields: dict[str, Any] = {"sequence_number": sequence_number, "sequence_key": padded,
                                  "updated_at": now}
        if created_at is not None:
            fields["created_at"] = created_at
        try:
            self.collection.update_one(
                {"_id": _shard_id(stream_arn, shard_id),
                 "$or": [{"sequence_key": {"$lt": padded}}, {"sequence_key": None}]},
                {"$set": fields,
                 "$setOnInsert": self._identity(stream_arn, shard_id, parent_shard_id)},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # a checkpoint at or after this one is there: never go back
        return True

    def finish(self, stream_arn: str, shard_id: str, *, parent_shard_id: str | None = None) -> None:
        """The shard was read to its end and every record of it is in MongoDB."""
        self.collection.update_one(
            {"_id": _shard_id(stream_arn, shard_id)},
            {"$set": {"finished": True, "updated_at": datetime.now(timezone.utc)},
             "$setOnInsert": {k: v for k, v in self._identity(stream_arn, shard_id,
                                                                parent_shard_id).items()
                              if k != "finished"}},
            upsert=True,
        )

    def start_stream(self, stream_arn: str, starting_position: str, *,
                     stream_created_at: str | None = None) -> None:
        """Write the stream marker (once; a second call only refreshes ``alive_at``);
        ``stream_created_at``: see :attr:`StreamMarker.stream_created_at`."""
        now = datetime.now(timezone.utc)
        identity: dict[str, Any] = {"kind": STREAM, "stream_arn": stream_arn, "table": self.table,
                                    "starting_position": starting_position, "started_at": now}
        if stream_created_at is not None:
            identity["stream_created_at"] = stream_created_at
        self.collection.update_one(
            {"_id": _stream_id(stream_arn)},
            {"$set": {"alive_at": now}, "$setOnInsert": identity},
            upsert=True,
        )

    def note_stream_created(self, stream_arn: str, stream_created_at: str) -> None:
        """Keep the data stream's creation time in a marker written without it (an earlier
        version's), never changing one it holds."""
        self.collection.update_one(
            {"_id": _stream_id(stream_arn), "stream_created_at": {"$exists": False}},
            {"$set": {"stream_created_at": stream_created_at}})

    def touch(self, stream_arn: str) -> None:
        """The poller is alive (the marker's ``alive_at``)."""
        self.collection.update_one({"_id": _stream_id(stream_arn)},
                                   {"$set": {"alive_at": datetime.now(timezone.utc)}})

    def stopped(self, stream_arn: str) -> None:
        """A poller ended its run (``verify`` then knows not to wait for it)."""
        self.collection.update_one({"_id": _stream_id(stream_arn)},
                                   {"$set": {"stopped_at": datetime.now(timezone.utc)}})

    def delete(self, *, table: str | None = None, stream_arn: str | None = None) -> int:
        """Delete checkpoints and markers (of a table, of a stream, or all); how many."""
        query: dict[str, Any] = {}
        if table is not None:
            query["table"] = table
        if stream_arn is not None:
            query["stream_arn"] = stream_arn
        return int(self.collection.delete_many(query).deleted_count)

    def _identity(self, stream_arn: str, shard_id: str, parent: str | None) -> dict[str, Any]:
        return {"kind": SHARD, "stream_arn": stream_arn, "shard_id": shard_id,
                "parent_shard_id": parent, "table": self.table, "finished": False}


def sequence_key(stream_arn: str, sequence_number: str) -> str:
    """The sequence number as a key that sorts as the number: padded to 40 digits (DynamoDB
    Streams, as before), or to 130 for a Kinesis data stream (its sequence numbers run to 129
    digits, Kinesis API reference ``SequenceNumber``)."""
    if stream_arn.split(":", 3)[2:3] == ["kinesis"]:
        return sequence_number.zfill(130)
    return pad_sequence_number(sequence_number)


def _shard_id(stream_arn: str, shard_id: str) -> str:
    return f"{stream_arn}#{shard_id}"


def _stream_id(stream_arn: str) -> str:
    return stream_arn


def _aware(value: Any) -> datetime | None:
    """MongoDB hands datetimes back naive (UTC) unless tz_aware; make them aware."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None
