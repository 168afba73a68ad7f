"""May a poller resume from its checkpoints, or did the stream lose changes since (re-sync)?

DynamoDB Streams keeps a record 24 hours
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html): a checkpoint in a
shard no longer listed, a stream that changed under the checkpoints, or a poller that last ran
more than 24 hours ago with an unread parent shard gone all mean records expired unread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from replicator.errors import ResyncRequired, StreamRecreated
from replicator.poller.checkpoints import Checkpoint, CheckpointStore, StreamMarker

#: How long DynamoDB Streams keeps a record.
RETENTION = timedelta(hours=24)
#: The age up to which a position is taken to be still covered by the stream: the retention less
#: an hour for clock skew between this machine and AWS ("data older than 24 hours is susceptible
#: to trimming at any moment", DynamoDB Streams docs).
COVERED = RETENTION - timedelta(hours=1)


def stream_created_at(streams_client: Any, stream_arn: str) -> datetime | None:
    """When the stream was enabled: DescribeStream's ``CreationRequestDateTime``, else the stream
    label (DescribeStream's ``StreamLabel``, the last part of the ARN: an ISO 8601 time in UTC,
    DynamoDB API reference "StreamSpecification"/"LatestStreamLabel"). None when neither says.
    A stream holds only changes made from then on ("Change data capture for DynamoDB Streams")."""
    description: Mapping[str, Any] = {}
    try:
        description = streams_client.describe_stream(StreamArn=stream_arn, Limit=1)[
            "StreamDescription"]
    except Exception:  # any failure (access, throttling): the label in the ARN still says it
        description = {}
    created = description.get("CreationRequestDateTime")
    if isinstance(created, datetime):
        return created if created.tzinfo else created.replace(tzinfo=timezone.utc)
    label = description.get("StreamLabel") or stream_arn.rsplit("/stream/", 1)[-1]
    try:
        moment = datetime.fromisoformat(str(label).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_resume(store: CheckpointStore, table: str, stream_arn: str,
                 checkpoints: Mapping[str, Checkpoint], marker: StreamMarker | None,
                 listing: Sequence[Mapping[str, Any]], now: datetime, *,
                 retention: timedelta = RETENTION) -> None:
    """Raise ResyncRequired if a checkpoint points at records the stream no longer holds
    (``listing``: DescribeStream's / ListShards' shards; ``now``: the current time;
    ``retention``: how long the stream keeps a record, a Kinesis data stream's own).

    The "stream changed" check compares streams of one kind: a table's DynamoDB stream and the
    Kinesis data stream it also sends its changes to are two sources, each with its checkpoints
    (``_id`` ``<stream ARN>#<shard id>``: the ARNs differ), not one stream replaced."""
    from replicator.poller.kinesis import is_kinesis_arn

    arn = stream_arn
    listed = {s["ShardId"]: s for s in listing}
    covered = retention - (RETENTION - COVERED)
    if not checkpoints and marker is None:
        others = [a for a in store.streams(table)
                  if a != arn and is_kinesis_arn(a) == is_kinesis_arn(arn)]
        if others:
            raise ResyncRequired(
                f"table {table}'s stream changed: there are checkpoints for "
                f"{', '.join(others)} but none for the current stream {arn} (the stream was "
                "turned off and on again, or the table re-created), so the changes between "
                "the two streams are unknown", table=table, stream_arn=arn)
        return
    for checkpoint in sorted(checkpoints.values(), key=lambda c: c.shard_id):
        if checkpoint.finished or checkpoint.shard_id in listed:
            continue
        descendants = [s for s in listed if _descends(s, checkpoint.shard_id, listed)]
        raise ResyncRequired(
            f"the checkpoint of shard {checkpoint.shard_id} (SequenceNumber "
            f"{checkpoint.sequence_number}, saved {_when(checkpoint.updated_at)}) is older than "
            "the oldest record the stream still holds: DescribeStream no longer lists the "
            f"shard{' while it lists its descendants ' + ', '.join(descendants) if descendants else ''}",
            table=table, stream_arn=arn, shard_id=checkpoint.shard_id,
            sequence_number=checkpoint.sequence_number)
    alive = marker.alive_at if marker is not None else None
    if alive is not None and now - alive > retention:
        known = set(checkpoints)
        for shard_id, shard in listed.items():
            parent = shard.get("ParentShardId")
            if shard_id in known or not parent or parent in listed or parent in known:
                continue
            raise ResyncRequired(
                f"the poller last ran {_when(alive)}, more than {_hours(retention)} ago, and shard "
                f"{shard_id}'s parent {parent} is no longer listed and was never read: "
                "its records expired unseen", table=table, stream_arn=arn,
                shard_id=parent)
    if alive is not None and now - alive > covered:
        # Shards without a checkpoint start at TRIM_HORIZON: after this long, whatever they held
        # when the poller last ran may be trimmed, unread (a sync killed or stopped past 24 h).
        unread = sorted(s for s in listed if s not in checkpoints)
        if unread:
            raise ResyncRequired(
                f"the poller last ran {_when(alive)}, more than {_hours(covered)} ago, and shard(s) "
                f"{', '.join(unread)} have no checkpoint: they would be read from TRIM_HORIZON, "
                "which no longer holds what was written to them soon after that",
                table=table, stream_arn=arn, shard_id=unread[0])


def created_text(created: datetime) -> str:
    """A data stream's creation time as the stream marker keeps it (ISO 8601, UTC, to the
    microsecond)."""
    return created.astimezone(timezone.utc).isoformat()


def check_recreated(table: str, stream_arn: str, checkpoints: Mapping[str, Checkpoint],
                    marker: StreamMarker | None, created: datetime | None) -> None:
    """Raise StreamRecreated when the Kinesis data stream ``stream_arn`` is not the one the
    checkpoints were saved in: it was deleted and created again under its name, which keeps the
    ARN (and, with as many shards, the shard ids) but not the records. ``created``: the stream's
    StreamCreationTimestamp now (None: not known, nothing checked).

    The marker keeps the creation time it was written with; one an earlier version wrote has
    none, and then a checkpoint of a change made before the stream existed says it (a DynamoDB
    change reaches a data stream only once the stream exists; the two times are AWS's own)."""
    if created is None or (marker is None and not checkpoints):
        return
    now_created = created_text(created)
    if marker is not None and marker.stream_created_at is not None:
        if marker.stream_created_at == now_created:
            return
        why = (f"the checkpoints were saved in the data stream created "
               f"{marker.stream_created_at}, and {stream_arn} now names one created {now_created}")
    else:
        older = sorted((c for c in checkpoints.values()
                        if c.created_at is not None and c.created_at < created),
                       key=lambda c: c.shard_id)
        if not older:
            return
        why = (f"the checkpoint of shard {older[0].shard_id} is of a change made "
               f"{_when(older[0].created_at)}, before {stream_arn} was created ({now_created})")
    raise StreamRecreated(
        f"Kinesis data stream {stream_arn} was deleted and created again under the same name: "
        f"{why}; its positions and records are not the old stream's, and the changes the old "
        "stream held after the checkpoints, and those made before the new one was created and "
        "written to it, are in no stream", table=table, stream_arn=stream_arn).with_command(
        f"replicator checkpoints --table {table} --delete --yes; empty the collection; then "
        f"replicator sync --table {table} --kinesis-stream {stream_arn} --restart")


def _descends(shard_id: str, ancestor: str, listed: Mapping[str, Mapping[str, Any]]) -> bool:
    seen: set[str] = set()
    current: str | None = shard_id
    while current is not None and current not in seen:
        seen.add(current)
        parent = listed.get(current, {}).get("ParentShardId")
        if parent == ancestor:
            return True
        current = parent
    return False


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} hours"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "at an unknown time"
