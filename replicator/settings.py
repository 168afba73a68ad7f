"""Typed settings of the replicator, from code or from the Lambda environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from replicator.convert import NumberMode
from replicator.errors import ConfigurationError

TtlDeleteMode = Literal["delete", "ignore", "archive"]
BadRecordMode = Literal["quarantine", "fail"]
SourceMode = Literal["auto", "dynamodb", "kinesis"]
#: a Kinesis data stream keeps records 24 hours to 365 days (Kinesis: IncreaseStreamRetentionPeriod)
MAX_STREAM_RETENTION_S = 365 * 24 * 3600

#: Reserved field written into every replicated document: the zero-padded (40 digits) sequence
#: number of the stream record that wrote it. The stale-write guard compares against it.
SEQUENCE_FIELD = "_ddb_seq"


@dataclass(frozen=True)
class Settings:
    """What the replicator does; every field has a safe default.

    key_schema: the table's key attribute names, partition key first. Needed for a composite key
        (a record's ``Keys`` carry no order); a single-attribute key is found on its own.
    id_mapping: dotted path of a function ``keys document -> _id`` that overrides the default
        (``_id`` = the key's value, or ``{partition: v, sort: v}`` for a composite key).
    guard: the stale-write guard (see SEQUENCE_FIELD). Off means last delivery wins.
    transforms: dotted paths (``pkg.module:function`` or ``pkg.module.function``) of functions
        ``document -> document`` applied in order to every new image.
    numbers: "lossless" (default) or "float".
    ttl_deletes: what a TTL expiry does: "delete" (default), "ignore" or "archive" (move the
        document to ``archive_collection``).
    bad_records: "quarantine" (default: keep raw record + error in ``quarantine_collection`` and go
        on) or "fail" (report the record as a batch item failure, so Lambda retries it).
    shard_key: field names of the target collection's shard key (sharded clusters).
    tombstones: remember deletes in ``tombstone_collection`` (default ``<collection>_tombstones``)
        for ``tombstone_retention_s`` so an older change arriving after a delete cannot bring the
        document back (see replicator/tombstones.py). Needs the guard; on by default.
    source_table: the table to replicate, by name or table ARN. Records whose ``eventSourceARN``
        names another table are quarantined. Unset: the first table seen is pinned (records
        without ``eventSourceARN``, as GetRecords returns them, always pass).
    deadline_margin_s: how long before the invocation's timeout (Lambda's remaining time, or
        ``process(deadline_s=...)``) the batch's MongoDB commands must be over; None (default):
        10 % of the remaining time, at most 1 s. Every command carries the rest as ``maxTimeMS``,
        so the server never applies an invocation's write after its timeout (replicator/deadline.py).
    source: where changes come from: "dynamodb" (DynamoDB Streams), "kinesis" (Kinesis Data
        Streams for DynamoDB: ordered by creation time, docs/kinesis.md) or "auto" (default: the
        kind of the first record seen is pinned). A record of the other kind is quarantined:
        the two kinds' order keys cannot be compared (docs/kinesis.md, "Switching").
    stream_retention_s: how long the source stream keeps records: 24 hours (default; DynamoDB
        Streams' fixed retention) up to 365 days (a Kinesis data stream's retention period).
        Tombstones must outlive it; ``tombstone_retention_s`` left at 0 (default) is this plus
        24 hours.
    """

    key_schema: tuple[str, ...] | None = None
    id_mapping: str | None = None
    guard: bool = True
    sequence_field: str = SEQUENCE_FIELD
    transforms: tuple[str, ...] = ()
    numbers: NumberMode = "lossless"
    ttl_deletes: TtlDeleteMode = "delete"
    archive_collection: str | None = None
    bad_records: BadRecordMode = "quarantine"
    quarantine_collection: str | None = None
    shard_key: tuple[str, ...] = field(default=())
    tombstones: bool = True
    tombstone_collection: str | None = None
    #: 0 (default): ``stream_retention_s`` + 24 h (48 h for a 24-hour stream); set in __post_init__
    tombstone_retention_s: int = 0
    source_table: str | None = None
    deadline_margin_s: float | None = None
    source: SourceMode = "auto"
    stream_retention_s: int = 24 * 3600

    def __post_init__(self) -> None:
        _check_choice("numbers", self.numbers, ("lossless", "float"))
        _check_choice("ttl_deletes", self.ttl_deletes, ("delete", "ignore", "archive"))
        _check_choice("bad_records", self.bad_records, ("quarantine", "fail"))
        if self.key_schema is not None and not 1 <= len(self.key_schema) <= 2:
            raise ConfigurationError("key_schema names one or two attributes (partition, sort)")
        _check_choice("source", self.source, ("auto", "dynamodb", "kinesis"))
        retention = self.stream_retention_s
        if isinstance(retention, bool) or not 24 * 3600 <= retention <= MAX_STREAM_RETENTION_S:
            raise ConfigurationError(
                "stream_retention_s is the source stream's retention: 86400 (24 hours) to "
                f"{MAX_STREAM_RETENTION_S} (365 days)"
            )
        if self.tombstone_retention_s == 0:
            object.__setattr__(self, "tombstone_retention_s", retention + 24 * 3600)
        if self.tombstone_retention_s < 24 * 3600:
            raise ConfigurationError(
                "tombstone_retention_s must cover the stream's 24-hour retention (>= 86400)"
            )
        if self.tombstone_retention_s < retention:
            raise ConfigurationError(
                f"tombstone_retention_s ({self.tombstone_retention_s}) must cover the stream's "
                f"retention, stream_retention_s ({retention}): an older change can arrive until "
                "the stream drops it; set REPLICATOR_TOMBSTONE_RETENTION_S to at least "
                "REPLICATOR_STREAM_RETENTION_S, or leave it unset (the retention + 24 hours)"
            )
        if not self.sequence_field or "." in self.sequence_field or "$" in self.sequence_field:
            raise ConfigurationError("sequence_field must be a plain top-level field name")
        margin = self.deadline_margin_s
        if margin is not None and (isinstance(margin, bool) or not 0 <= margin < float("inf")):
            raise ConfigurationError(
                f"deadline_margin_s must be a number of seconds >= 0 (or None), got {margin!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the optional ``REPLICATOR_*`` variables (:data:`ENVIRONMENT`; README, "Lambda
        configuration"). Surrounding whitespace is removed; an empty variable is unset. A value
        that does not fit raises :class:`ConfigurationError` naming the variable and what it
        takes, never the value (each variable is checked on its own, through ``__post_init__``)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, variable in ENVIRONMENT.items():
            raw = env.get(variable)
            if raw is None or not raw.strip():
                continue
            value = _READERS[_KINDS[name]](raw.strip(), variable)
            try:
                cls(**{name: value})  # type: ignore[arg-type]
            except ConfigurationError as error:
                raise ConfigurationError(f"{variable}: {error}") from None
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        # The value is not repeated: the same check guards values read from the environment.
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}")


#: The environment variable of every Settings field (a test enforces that each field has one and
#: that README's settings table lists them all).
ENVIRONMENT: dict[str, str] = {
    "key_schema": "REPLICATOR_KEY_SCHEMA",
    "id_mapping": "REPLICATOR_ID_MAPPING",
    "guard": "REPLICATOR_GUARD",
    "sequence_field": "REPLICATOR_SEQUENCE_FIELD",
    "transforms": "REPLICATOR_TRANSFORMS",
    "numbers": "REPLICATOR_NUMBERS",
    "ttl_deletes": "REPLICATOR_TTL_DELETES",
    "archive_collection": "REPLICATOR_ARCHIVE_COLLECTION",
    "bad_records": "REPLICATOR_BAD_RECORDS",
    "quarantine_collection": "REPLICATOR_QUARANTINE_COLLECTION",
    "shard_key": "REPLICATOR_SHARD_KEY",
    "tombstones": "REPLICATOR_TOMBSTONES",
    "tombstone_collection": "REPLICATOR_TOMBSTONE_COLLECTION",
    "tombstone_retention_s": "REPLICATOR_TOMBSTONE_RETENTION_S",
    "source_table": "REPLICATOR_SOURCE_TABLE",
    "deadline_margin_s": "REPLICATOR_DEADLINE_MARGIN_S",
    "source": "REPLICATOR_SOURCE",
    "stream_retention_s": "REPLICATOR_STREAM_RETENTION_S",
}


def _names(raw: str, variable: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _flag(raw: str, variable: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable} must be true or false (or 1/0, yes/no, on/off)")


def _whole_number(raw: str, variable: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a whole number") from None


def _seconds(raw: str, variable: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a number of seconds") from None


def _text(raw: str, variable: str) -> str:
    return raw


_READERS = {"names": _names, "flag": _flag, "int": _whole_number, "seconds": _seconds,
            "text": _text}
_KINDS = {
    "key_schema": "names", "transforms": "names", "shard_key": "names",
    "guard": "flag", "tombstones": "flag",
    "tombstone_retention_s": "int", "deadline_margin_s": "seconds", "stream_retention_s": "int",
    **{name: "text" for name in ("id_mapping", "sequence_field", "numbers", "ttl_deletes",
                                 "archive_collection", "bad_records", "quarantine_collection",
                                 "tombstone_collection", "source_table", "source")},
}
