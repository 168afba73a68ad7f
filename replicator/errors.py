"""Errors of the replication core.

Every error about a record carries where it came from (its index in the batch, its eventID and its
sequence number) and the field path inside the record, so a log line or a quarantine entry is enough
to find the offending value.
"""

from __future__ import annotations

from typing import Any


class ReplicationError(Exception):
    """Base class of every error the replicator raises on purpose."""


class ConfigurationError(ReplicationError):
    """The settings, the environment or the stream view type cannot work together."""


class RecordError(ReplicationError):
    """A stream record that cannot be applied; names the record and the field path."""

    def __init__(
        self,
        message: str,
        *,
        field_path: str = "",
        index: int | None = None,
        event_id: str | None = None,
        sequence_number: str | None = None,
    ) -> None:
        self.reason = message
        self.field_path = field_path
        self.index = index
        self.event_id = event_id
        self.sequence_number = sequence_number
        super().__init__(self._render())

    def located(
        self, *, index: int | None, event_id: str | None, sequence_number: str | None
    ) -> RecordError:
        """Fill in the record's identity (conversion errors are raised before it is known)."""
        self.index = index if self.index is None else self.index
        self.event_id = event_id if self.event_id is None else self.event_id
        self.sequence_number = (
            sequence_number if self.sequence_number is None else self.sequence_number
        )
        self.args = (self._render(),)
        return self

    def _render(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"index {self.index}")
        if self.event_id:
            where.append(f"eventID {self.event_id}")
        if self.sequence_number:
            where.append(f"SequenceNumber {self.sequence_number}")
        record = f"record {', '.join(where)}" if where else "record"
        path = f" at {self.field_path}" if self.field_path else ""
        return f"{record}{path}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {
            "type": type(self).__name__,
            "message": str(self),
            "reason": self.reason,
            "field_path": self.field_path,
            "index": self.index,
            "event_id": self.event_id,
            "sequence_number": self.sequence_number,
        }


class MalformedRecordError(RecordError):
    """The record does not have the shape of a DynamoDB Streams record."""


class ConversionError(RecordError):
    """An attribute value cannot be converted to BSON or stored by MongoDB (unknown type tag, bad
    number, bad base64, nesting beyond 100 levels, NUL in a name, text UTF-8 cannot encode)."""


class TransformError(RecordError):
    """User code failed on a record: a transform raised or returned something that is not a
    document, or the ``id_mapping`` raised."""


class UnsupportedRecordError(RecordError):
    """A record the configuration cannot handle (a composite key without ``key_schema``, a record
    without a new image and no item reader, a record of another table). The message names the
    setting to change; ``problem`` names the kind, so the Replicator logs each kind once."""

    def __init__(self, message: str, *, problem: str, **where: object) -> None:
        self.problem = problem
        super().__init__(message, **where)  # type: ignore[arg-type]


# -- the poller, the re-sync and the migration --------------------------------------------------
class ResyncRequired(ReplicationError):
    """A checkpoint is older than what the stream still holds: changes were lost; the answer is
    ``replicator recover`` (never emptying the collection; ``resync`` empties it first).

    ``command`` is filled in by the CLI with the exact command to run.
    """

    def __init__(self, reason: str, *, table: str | None, stream_arn: str,
                 shard_id: str | None = None, sequence_number: str | None = None) -> None:
        self.reason = reason
        self.table = table
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self.sequence_number = sequence_number
        self.command: str | None = None
        super().__init__(self._render())

    def _render(self) -> str:
        command = self.command or (
            f"replicator recover --table {self.table or '<table>'} --yes "
            "(with the same MongoDB and AWS options as `replicator run`)"
        )
        return (
            f"{self.reason}. The stream keeps records for 24 hours, so the changes after the "
            "checkpoint are gone and the collection cannot be brought up to date from the "
            "stream alone. Recover it: stop every poller of this table, then run\n"
            f"    {command}\n"
            "which applies what the stream still holds and then the changes of the gap (a "
            "re-copy that writes only what differs; add --pitr-export-bucket <bucket> to read "
            "them from an incremental export when point-in-time recovery is on), never emptying "
            "the collection; then start `replicator run` again (docs/migration.md, \"recover\")."
        )

    def with_command(self, command: str) -> ResyncRequired:
        self.command = command
        self.args = (self._render(),)
        return self


class StreamRecreated(ResyncRequired):
    """The Kinesis data stream the checkpoints were saved in was deleted and a new one created
    under the same name (the same ARN): the checkpoints name positions of the old stream, and
    the changes it held after them, and those made before the new one existed, are in no stream.
    A ResyncRequired (the poller's refusals share its exit code, 3); ``command`` is the re-copy
    (:func:`replicator.poller.resume.check_recreated` fills it in)."""

    def _render(self) -> str:
        return (
            f"{self.reason}. Nothing was read or written. Start over from the table: stop every "
            f"poller of table {self.table or '<table>'}, then\n    {self.command}\n(with the same "
            "MongoDB and AWS options as `replicator run`; docs/kinesis.md, \"A data stream "
            "re-created under the same name\")."
        )


class ResourceUnavailable(ConfigurationError):
    """The command could not run: MongoDB or AWS cannot be reached, the credentials are refused,
    or the table does not exist. The CLI exits 4 ("could not run"), apart from 1 (``verify``:
    diverged; the others: failed after they started). A ConfigurationError too, so code that
    refuses bad configuration keeps catching it."""


class RetriesExhausted(ReplicationError):
    """A write, checkpoint or stream read kept failing ``max_attempts`` times in a row."""


class CopyInterrupted(ReplicationError):
    """The copy stopped (signal, or retries exhausted) before every segment was done; run it
    again to resume."""


class RangeUnavailable(ReplicationError):
    """A sequence range of one shard that the stream no longer holds in full: its first record is
    older than the stream's 24-hour retention (``TrimmedDataAccessException``, or the first record
    read comes after the range's start), or the shard or the stream is gone
    (``ResourceNotFoundException``). Only ``replicator recover`` can repair what it held."""

    def __init__(self, reason: str, *, stream_arn: str, shard_id: str, start: str,
                 end: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stream_arn = stream_arn
        self.shard_id = shard_id
        self.start = start
        self.end = end


class OnFailureMessageError(ReplicationError):
    """An on-failure destination message that is not a DynamoDB stream batch record (no
    ``DDBStreamBatchInfo``, or a field of it missing or of the wrong type); names the field."""


class StreamReadTimeout(TimeoutError):
    """``drain`` ran out of time while records were still arriving; ``records`` holds what was read."""

    def __init__(self, message: str, records: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(message)
        self.records = records
