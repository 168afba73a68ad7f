"""DynamoDB Streams records and Kinesis Data Streams for DynamoDB records -> one typed change model.

Three shapes arrive: Lambda events (``{"Records": [...]}``, B values as base64 text,
``ApproximateCreationDateTime`` as epoch seconds), records as boto3's ``get_records`` returns
them (B as bytes, datetimes), and Kinesis records (``eventSource: "aws:kinesis"``: the change JSON
base64 in ``kinesis.data``, ``ApproximateCreationDateTime`` in epoch milliseconds or microseconds,
no DynamoDB sequence number; see :func:`parse_kinesis_record` and docs/kinesis.md). All become a
:class:`Change`. Attribute values are left in DynamoDB JSON here; :mod:`replicator.convert` turns
them into BSON values, so parsing stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from replicator.errors import MalformedRecordError, RecordError
from replicator.frozen import build, check_plain

AttributeMap = Mapping[str, Any]

# AWS marks TTL deletions with this service principal (AWS docs: "Time to Live: streams"). The
# Lambda event spells the member principalId; the DynamoDB Streams API (GetRecords through
# boto3/botocore) spells it PrincipalId (its Identity shape: PrincipalId, Type).
TTL_PRINCIPAL = "dynamodb.amazonaws.com"
# DynamoDB Local emits its TTL deletions with this literal event name, an OldImage and no
# userIdentity (measured, see EMULATORS.md); botocore uses the same name for unknown enum values.
UNKNOWN_EVENT_NAME = "UNKNOWN_TO_SDK_VERSION"


class EventName(str, enum.Enum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


class StreamViewType(str, enum.Enum):
    NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
    NEW_IMAGE = "NEW_IMAGE"
    OLD_IMAGE = "OLD_IMAGE"
    KEYS_ONLY = "KEYS_ONLY"


@dataclass(frozen=True)
class Change:
    """One stream record, validated. Images stay in DynamoDB JSON."""

    index: int
    event_name: EventName
    keys: AttributeMap
    sequence_number: str
    stream_view_type: StreamViewType | None
    new_image: AttributeMap | None = None
    old_image: AttributeMap | None = None
    created_at: datetime | None = None
    is_ttl_delete: bool = False
    event_id: str | None = None
    event_source_arn: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: a Kinesis change's order key (:func:`kds_order_key`; ``sequence_number`` is then the
    #: Kinesis sequenceNumber, the record's identity); None for a DynamoDB Streams record, whose
    #: sequence number is its order. Last, with a default: the C parser builds Changes without it.
    order_key: str | None = None
    #: how many microseconds the order key's time stands for: 1000 for a Kinesis record of
    #: MILLISECOND precision (the key holds the start of its millisecond; the change was made
    #: anywhere in it), else 1. Last, with a default, as ``order_key``.
    order_span: int = 1

    @property
    def sort_key(self) -> str:
        """Sequence numbers are decimal strings of up to 40 digits; compare them padded."""
        return pad_sequence_number(self.sequence_number)


    @property
    def table_name(self) -> str | None:
        """The table name from ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL``."""
        arn = self.event_source_arn or ""
        parts = arn.split(":", 5)
        if len(parts) == 6 and parts[5].startswith("table/"):
            return parts[5].split("/")[1]
        return None


@dataclass(frozen=True)
class BadRecord:
    """A record that can never be applied: kept with its raw form and the error."""

    index: int
    raw: Any
    error: MalformedRecordError | Exception

    @property
    def sequence_number(self) -> str | None:
        return getattr(self.error, "sequence_number", None) or _sequence_of(self.raw)

    @classmethod
    def of(cls, change: Change, error: RecordError) -> BadRecord:
        """``change`` set aside with ``error``, located at the change (index, eventID, sequence
        number): the one way every screen and the planner build a bad record."""
        error.located(index=change.index, event_id=change.event_id,
                      sequence_number=change.sequence_number)
        return cls(index=change.index, raw=change.raw, error=error)


def sequence_of_record(raw: Any) -> str | None:
    """A raw record's identity for ``batchItemFailures``: ``dynamodb.SequenceNumber`` of a
    DynamoDB Streams record, ``kinesis.sequenceNumber`` of a Kinesis record; None when absent."""
    return _sequence_of(raw)


def table_arn_of(event_source_arn: Any) -> str | None:
    """``arn:aws:dynamodb:R:A:table/T/stream/LABEL`` -> ``arn:aws:dynamodb:R:A:table/T``."""
    if type(event_source_arn) is not str or not event_source_arn:
        return None
    return event_source_arn.split("/stream/", 1)[0]


def pad_sequence_number(sequence_number: str) -> str:
    return sequence_number.zfill(40)


def records_of(event: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Any]:
    """The records of a Lambda event, or a list of records (GetRecords' ``Records``).

    Anything else is one MalformedRecordError (a str is not a list of records, nor is None)."""
    if isinstance(event, Mapping):
        records = event.get("Records")
        if not isinstance(records, list):
            raise MalformedRecordError(
                f'the event has no "Records" list (got {type(records).__name__})',
                field_path="Records",
            )
        return records
    if isinstance(event, (list, tuple)):
        return list(event)
    raise MalformedRecordError(
        f'an event is an object with a "Records" list, or a list of records; '
        f"got {type(event).__name__}",
        field_path="event",
    )


def parse_records(
    event: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, native: Any = None
) -> tuple[list[Change], list[BadRecord]]:
    """Parse every record; a malformed one becomes a :class:`BadRecord`, the others go on.

    ``native``: the C accelerator (:data:`replicator.accelerator.native`: the Replicator hands it
    in) parses the well-formed records; None (the default) keeps to pure Python. A list is taken
    as the records themselves (the Replicator has already run :func:`records_of`).
    """
    records = event if type(event) is list else records_of(event)
    fast: list[Change | None] | None = None
    if native is not None and type(records) is list and not (
        records and is_kinesis_record(records[0])
    ):
        # The C accelerator parses the well-formed records; None marks one parse_record decides.
        fast, holes = native.parse_changes(records)
        if not holes:
            return fast, []  # type: ignore[return-value]
    changes: list[Change] = []
    bad: list[BadRecord] = []
    for index, raw in enumerate(records):
        change = fast[index] if fast is not None else None
        if change is not None:
            changes.append(change)
            continue
        try:
            changes.append(parse_record(raw, index))
        except MalformedRecordError as error:
            bad.append(BadRecord(index=index, raw=raw, error=error))
    return changes, bad


def parse_record(raw: Any, index: int = 0) -> Change:
    """Validate one record's shape and build a :class:`Change`; raise with record and path."""
    # Hot path (a few µs per record matter at 1,000 records a batch): ``type(x) is dict`` first
    # spares the slow ABC check of ``isinstance(x, Mapping)``, and errors are built only on failure.
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise MalformedRecordError(
            f"a record must be an object, got {type(raw).__name__}", index=index
        )
    if "kinesis" in raw or raw.get("eventSource") == KINESIS_EVENT_SOURCE or (
            "PartitionKey" in raw and "Data" in raw):
        return parse_kinesis_record(raw, index)
    event_id = raw.get("eventID")
    if type(event_id) is not str:
        event_id = None
    body: Any = raw.get("dynamodb")
    is_body = type(body) is dict or isinstance(body, Mapping)
    sequence = body.get("SequenceNumber") if is_body else None
    if not (
        type(sequence) is str and len(sequence) <= 40 and sequence.isdigit() and sequence.isascii()
    ):
        sequence = None  # as _sequence_of
    where = (index, event_id, sequence)
    if not is_body:
        raise _fail("missing or not an object", "dynamodb", where)
    if sequence is None:
        raise _fail("missing, or not a string of digits", "dynamodb.SequenceNumber", where)

    new_image = _image(body, "NewImage", where)
    old_image = _image(body, "OldImage", where)

    name = raw.get("eventName")
    identity: Any = raw.get("userIdentity")
    is_ttl = (
        identity is not None
        and (type(identity) is dict or isinstance(identity, Mapping))
        and (
            identity.get("principalId") == TTL_PRINCIPAL
            or identity.get("PrincipalId") == TTL_PRINCIPAL
        )
    )
    event_name = EVENT_NAMES.get(name) if type(name) is str else None
    if event_name is None:
        if name == UNKNOWN_EVENT_NAME and new_image is None:
            # DynamoDB Local's TTL deletion (see UNKNOWN_EVENT_NAME).
            event_name, is_ttl = EventName.REMOVE, True
        else:
            try:
                event_name = EventName(name)
            except ValueError:
                raise _fail(
                    f"unknown event name {name!r} (expected INSERT, MODIFY or REMOVE)",
                    "eventName",
                    where,
                ) from None

    keys = body.get("Keys")
    if (type(keys) is not dict and not isinstance(keys, Mapping)) or not keys:
        raise _fail("missing or empty", "dynamodb.Keys", where)
    for key_name, value in keys.items():
        if (type(value) is not dict and not isinstance(value, Mapping)) or len(value) != 1:
            raise _fail(
                "a key must be one typed value like {\"S\": ...}", f"dynamodb.Keys.{key_name}", where
            )

    view = body.get("StreamViewType")
    view_type = VIEW_TYPES.get(view) if type(view) is str else None
    if view_type is None and view is not None:
        try:
            view_type = StreamViewType(view)
        except ValueError:
            raise _fail(
                f"unknown stream view type {view!r}", "dynamodb.StreamViewType", where
            ) from None

    if (
        new_image is None
        and event_name is not EventName.REMOVE
        and (view_type is StreamViewType.NEW_AND_OLD_IMAGES or view_type is StreamViewType.NEW_IMAGE)
    ):
        raise _fail(
            f"{event_name.value} on a {view_type.value} stream needs it", "dynamodb.NewImage", where
        )

    created = body.get("ApproximateCreationDateTime")
    if created is not None:
        cached = EPOCHS.get(created) if type(created) is int or type(created) is float else None
        created = cached if cached is not None else _creation_time(created, where)

    # Change(...) without the frozen dataclass's per-field object.__setattr__ (see frozen.py)
    return build(Change, {
        "index": index,
        "event_name": event_name,
        "keys": keys,
        "sequence_number": sequence,
        "stream_view_type": view_type,
        "new_image": new_image,
        "old_image": old_image,
        "created_at": created,
        "is_ttl_delete": is_ttl,
        "event_id": event_id,
        "event_source_arn": raw.get("eventSourceARN"),
        "raw": raw,
    })


def _image(body: Mapping[str, Any], name: str, where: tuple[int, str | None, str | None]) -> Any:
    image = body.get(name)
    if image is not None and type(image) is not dict and not isinstance(image, Mapping):
        raise _fail("not an object", f"dynamodb.{name}", where)
    return image


def _fail(message: str, path: str, where: tuple[int, str | None, str | None]) -> MalformedRecordError:
    index, event_id, sequence = where
    return MalformedRecordError(
        message, field_path=path, index=index, event_id=event_id, sequence_number=sequence
    )


#: eventName / StreamViewType strings -> their members (also handed to the C accelerator's parser)
EVENT_NAMES = {member.value: member for member in EventName}
VIEW_TYPES = {member.value: member for member in StreamViewType}
check_plain(Change)  # parse_record and the C parse_changes build it with frozen.build


def _sequence_of(raw: Any) -> str | None:
    if not isinstance(raw, Mapping):
        return None
    kinesis = _kinesis_envelope(raw)
    if isinstance(kinesis, Mapping):
        number = kinesis.get("sequenceNumber")
        return number if _is_kinesis_sequence(number) else None
    body = raw.get("dynamodb")
    if not isinstance(body, Mapping):
        return None
    sequence = body.get("SequenceNumber")
    if isinstance(sequence, str) and sequence.isdigit() and sequence.isascii() and len(sequence) <= 40:
        return sequence
    return None


# Epoch seconds -> datetime, remembered: stream records carry whole seconds, so the records of a
# batch share a few values, and datetime.fromtimestamp is a tenth of the parse time (datetimes are
# immutable, so sharing one is safe). Bounded: cleared when full. The C accelerator's parser reads
# it too (replicator.accelerator.configure), leaving a time it has not seen to parse_record.
EPOCHS: dict[int | float, datetime] = {}
_EPOCHS_MAX = 256


def _creation_time(value: Any, where: tuple[int, str | None, str | None]) -> datetime | None:
    if value is None:
        return None
    if type(value) is int or type(value) is float:
        found = EPOCHS.get(value)
        if found is None:
            found = _from_epoch(value, where)
            if len(EPOCHS) >= _EPOCHS_MAX:
                EPOCHS.clear()
            EPOCHS[value] = found
        return found
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value, where)
    raise _fail(
        f"expected epoch seconds or a datetime, got {type(value).__name__}",
        "dynamodb.ApproximateCreationDateTime",
        where,
    )


def creation_time_of(raw: Any) -> datetime | None:
    """A raw record's ``dynamodb.ApproximateCreationDateTime`` as an aware UTC datetime (epoch
    seconds in a Lambda event, a datetime from boto3's GetRecords); None when absent or not a
    time (never raises: for lag figures, not for validation, which :func:`parse_records` does)."""
    body = raw.get("dynamodb") if isinstance(raw, Mapping) else None
    value = body.get("ApproximateCreationDateTime") if isinstance(body, Mapping) else None
    if value is None or isinstance(value, bool):
        return None
    try:
        return _creation_time(value, (-1, None, None))
    except MalformedRecordError:
        return None


def _from_epoch(value: int | float, where: tuple[int, str | None, str | None]) -> datetime:
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):  # NaN, or beyond the years datetime can hold
        raise _fail(
            f"epoch seconds {value!r} are not a time", "dynamodb.ApproximateCreationDateTime", where
        ) from None


# -- Kinesis Data Streams for DynamoDB ----------------------------------------------------------
#: a Lambda event record from a Kinesis data stream (the Kinesis ESM's eventSource)
KINESIS_EVENT_SOURCE = "aws:kinesis"
#: the change JSON's own eventSource and recordFormat (Developer Guide, "Using Kinesis Data Streams
#: to capture changes to DynamoDB"); another value is not a DynamoDB change record
DYNAMODB_EVENT_SOURCE = "aws:dynamodb"
KINESIS_RECORD_FORMAT = "application/json"
#: ApproximateCreationDateTimePrecision of a Kinesis streaming destination; MILLISECOND is AWS's
#: default (EnableKinesisStreamingDestination / UpdateKinesisStreamingDestination)
PRECISION_MICROS = {"MILLISECOND": 1000, "MICROSECOND": 1}
#: Order keys of Kinesis changes start with this letter: they sort after every DynamoDB Streams
#: sequence number (zero-padded digits) and after the copy's "0" (see docs/kinesis.md, switching)
KDS_ORDER_PREFIX = "K"
#: the digest of "the item does not exist" (a REMOVE's new state, an INSERT's old state); "-" sorts
#: below every hexadecimal digit
ABSENT_DIGEST = "-"
_TIME_DIGITS = 17  # microseconds since 1970 up to the year 5138


def is_kinesis_record(raw: Any) -> bool:
    """Whether ``raw`` is a Kinesis record (Lambda's ``eventSource: aws:kinesis``, a record with
    a ``kinesis`` object, or Kinesis GetRecords' ``{SequenceNumber, Data, PartitionKey}``), by
    shape only."""
    if type(raw) is dict:  # hot (once per batch on the DynamoDB Streams path): no ABC check
        return ("kinesis" in raw or raw.get("eventSource") == KINESIS_EVENT_SOURCE
                or ("PartitionKey" in raw and "Data" in raw))
    return isinstance(raw, Mapping) and (
        raw.get("eventSource") == KINESIS_EVENT_SOURCE or isinstance(raw.get("kinesis"), Mapping)
        or ("PartitionKey" in raw and "Data" in raw)
    )


def _kinesis_envelope(raw: Mapping[str, Any]) -> Any:
    """The ``kinesis`` object of a Lambda record, or GetRecords' record in that shape (boto3's
    Kinesis client: ``SequenceNumber``, ``Data`` as bytes, ``PartitionKey``)."""
    envelope = raw.get("kinesis")
    if envelope is None and "PartitionKey" in raw and "Data" in raw:
        return {"sequenceNumber": raw.get("SequenceNumber"), "data": raw.get("Data"),
                "partitionKey": raw.get("PartitionKey")}
    return envelope


def _is_kinesis_sequence(number: Any) -> bool:
    # Kinesis sequence numbers are decimal strings of up to 128 digits (Kinesis API, Record).
    return type(number) is str and 0 < len(number) <= 128 and number.isdigit() and number.isascii()


def image_digest(image: Mapping[str, Any] | None) -> str:
    """16 hex digits naming an item's state (an image in DynamoDB JSON); ABSENT_DIGEST for None.

    Equal items give equal digests whichever shape carries them: B / BS values as base64 text or
    bytes (a Lambda event vs a boto3 read-back), set members in any order, attributes in any order.
    Hand-written (hashlib over canonical JSON): no library digests DynamoDB JSON."""
    if image is None:
        return ABSENT_DIGEST
    text = json.dumps(_canonical(image), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping):
        out = {}
        for name, inner in value.items():
            if name in ("SS", "NS", "BS") and isinstance(inner, (list, tuple, set, frozenset)):
                out[name] = sorted(_canonical(v) for v in inner)
            else:
                out[name] = _canonical(inner)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def kds_order_key(micros: int, new_image: Mapping[str, Any] | None) -> str:
    """``K<17-digit microseconds since 1970>.<digest of the state the change leaves>``: what the
    document's sequence field holds when a Kinesis change wrote it (and a tombstone, with the
    absent digest). Strings of one length: they compare as their times, and at one time the
    digest tells a duplicate (same state) from a tie (another change of that time)."""
    return f"{KDS_ORDER_PREFIX}{micros:0{_TIME_DIGITS}d}.{image_digest(new_image)}"


def order_time_floor(order_key: str) -> str:
    """The part of a Kinesis order key that every key of the same time starts with: a stored key
    ``< floor`` is strictly older (the guard's filter), ``>= floor`` is of the same time or newer."""
    return order_key[: 1 + _TIME_DIGITS]


#: where in its millisecond a Kinesis copy's order key sits (``replicator sync
#: --kinesis-stream``: half-way, so a MILLISECOND change is strictly before or after the cutoff).
#: A stored key there is taken as a copy's, never as a MICROSECOND change inside a MILLISECOND
#: change's millisecond (:func:`order_relation`).
COPY_OFFSET_US = 500


def order_time_micros(order_key: str) -> int:
    """A Kinesis order key's time, in microseconds since 1970."""
    return int(order_key[1: 1 + _TIME_DIGITS])


def order_time_end(order_key: str, span: int = 1) -> str:
    """Just above every Kinesis order key of ``order_key``'s time: a stored key ``< end`` is of
    that time or older ("." is the separator after the time, "/" the next character). ``span``
    (:attr:`Change.order_span`): the microseconds the time stands for -- a MILLISECOND change's
    end is above every key inside its millisecond, since a MICROSECOND key there may be older
    (docs/kinesis.md, "Mixed precisions")."""
    if span > 1:
        last = order_time_micros(order_key) + span - 1
        return f"{KDS_ORDER_PREFIX}{last:0{_TIME_DIGITS}d}/"
    return order_time_floor(order_key) + "/"


OrderRelation = str  # "older" | "same" | "newer" | "tie" | "other-source"


def order_relation(held: Any, ours: str, span: int = 1) -> OrderRelation:
    """How a stored order key (a document's sequence field, a tombstone's) stands to a write's.

    "newer" / "older": the stored one is newer / older than ours; "same": the same change (or a
    change leaving the same state at the same time: a duplicate); "tie": a Kinesis change of the
    same time leaving another state (only the item itself can tell which is newer: docs/kinesis.md);
    "other-source": a DynamoDB Streams write against a Kinesis key, which no sequence number can be
    ordered against (a Kinesis write sorts after every DynamoDB Streams number: the switch is
    one way), except the copy's sequence number "0", older than every change of either source.
    A missing or non-string stored key is "older". ``span``: the microseconds our key's time
    stands for (:attr:`Change.order_span`): a MILLISECOND change's key is the start of its
    millisecond, so a stored key of a later time inside that millisecond (a MICROSECOND change,
    after the destination's precision was changed) may be older or newer: a "tie" too -- except
    one at :data:`COPY_OFFSET_US` into it, taken as a copy's (which saw every change of that
    millisecond)."""
    if not isinstance(held, str):
        return "older"
    mine_kds = ours.startswith(KDS_ORDER_PREFIX)
    held_kds = held.startswith(KDS_ORDER_PREFIX)
    if not mine_kds:
        if held_kds:
            # a copy's COPY_SEQUENCE ("0", padded) is older than any change: stale, not refused
            return "newer" if not ours.lstrip("0") else "other-source"
        return "newer" if held > ours else "same" if held == ours else "older"
    if not held_kds:
        return "older"
    held_floor, our_floor = order_time_floor(held), order_time_floor(ours)
    if held_floor != our_floor:
        if span > 1 and held_floor > our_floor:
            held_micros = order_time_micros(held)
            if (held_micros < order_time_micros(ours) + span
                    and held_micros % 1000 != COPY_OFFSET_US):
                # the same state (digest) stored at a later time of our span is no tie: it is
                # what we would write, and one batch keeps a state's newest time too
                # (plan.kds_ordered) -- without this, separate batches quarantined it
                same_state = held.rpartition(".")[2] == ours.rpartition(".")[2]
                return "newer" if same_state else "tie"
        return "newer" if held_floor > our_floor else "older"
    return "same" if held == ours else "tie"


def parse_kinesis_record(raw: Mapping[str, Any], index: int = 0) -> Change:
    """A Kinesis Data Streams for DynamoDB record -> :class:`Change`; MalformedRecordError naming
    the record and the field path otherwise (bad base64, bad JSON, not a DynamoDB change).

    The Lambda shape: ``{"eventSource": "aws:kinesis", "eventSourceARN": <the Kinesis stream>,
    "kinesis": {"sequenceNumber", "partitionKey", "data": base64 of the change JSON, ...}}``; the
    change JSON: ``{"awsRegion", "eventID", "eventName", "userIdentity", "recordFormat":
    "application/json", "tableName", "dynamodb": {"ApproximateCreationDateTime" (epoch ms, or µs
    with ``ApproximateCreationDateTimePrecision: MICROSECOND``), "Keys", "NewImage", "OldImage",
    "SizeBytes"}, "eventSource": "aws:dynamodb"}`` (tests/fixtures/kinesis/). ``kinesis.data`` may
    be bytes, and a record may be Kinesis GetRecords' own (boto3: ``{"SequenceNumber", "Data":
    bytes, "PartitionKey", ...}``; its table ARN then has no account: set Settings.source_table
    to the table's name, not its ARN).

    ``sequence_number`` is the Kinesis sequenceNumber (what ``batchItemFailures`` names);
    ``order_key`` the change's :func:`kds_order_key`; ``event_source_arn`` the table's ARN, made
    from the change's ``awsRegion`` and ``tableName`` and the stream ARN's account."""
    envelope = _kinesis_envelope(raw)
    outer_id = raw.get("eventID") if type(raw.get("eventID")) is str else None
    if not isinstance(envelope, Mapping):
        raise _fail("missing or not an object", "kinesis", (index, outer_id, None))
    number = envelope.get("sequenceNumber")
    sequence = number if _is_kinesis_sequence(number) else None
    where = (index, outer_id, sequence)
    if sequence is None:
        raise _fail("missing, or not a string of digits", "kinesis.sequenceNumber", where)
    data = envelope.get("data")
    try:
        blob = data if isinstance(data, (bytes, bytearray)) else (
            base64.b64decode(data, validate=True) if isinstance(data, str) else None)
    except (binascii.Error, ValueError):
        raise _fail("not base64 text", "kinesis.data", where) from None
    if blob is None:
        raise _fail("missing, or not base64 text", "kinesis.data", where)
    try:
        change = json.loads(blob)
    except (UnicodeDecodeError, ValueError) as error:
        raise _fail(f"not JSON ({error})", "kinesis.data", where) from None
    if not isinstance(change, dict):
        raise _fail(f"the change must be a JSON object, got {type(change).__name__}",
                    "kinesis.data", where)
    inner_id = change.get("eventID")
    where = (index, inner_id if type(inner_id) is str else outer_id, sequence)
    for name, expected in (("eventSource", DYNAMODB_EVENT_SOURCE),
                           ("recordFormat", KINESIS_RECORD_FORMAT)):
        if name in change and change[name] != expected:
            raise _fail(f"{change[name]!r:.60} is not a DynamoDB change record ({expected!r})",
                        f"kinesis.data.{name}", where)
    table = change.get("tableName")
    if type(table) is not str or not table:
        raise _fail("missing, or not a table name", "kinesis.data.tableName", where)
    body = change.get("dynamodb")
    if not isinstance(body, Mapping):
        raise _fail("missing or not an object", "kinesis.data.dynamodb", where)
    micros, span = _kds_micros(body, where)
    # The rest as a DynamoDB Streams record (one validation of names, keys and images); the
    # placeholder sequence number is replaced by the Kinesis one below.
    shaped = {"eventID": where[1], "eventName": change.get("eventName"),
              "userIdentity": change.get("userIdentity"),
              "dynamodb": {**body, "SequenceNumber": "0", "ApproximateCreationDateTime": None}}
    try:
        parsed = parse_record(shaped, index)
    except MalformedRecordError as error:
        path = error.field_path
        raise _fail(error.reason, f"kinesis.data.{path}" if path else "kinesis.data",
                    where) from None
    if parsed.event_name is not EventName.REMOVE and parsed.new_image is None:
        # A Kinesis change always carries both images (there is no stream view type to choose)
        raise _fail(f"{parsed.event_name.value} needs it", "kinesis.data.dynamodb.NewImage", where)
    values = dict(vars(parsed))
    values.update(
        sequence_number=sequence,
        created_at=datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc),
        event_source_arn=_table_arn(change.get("awsRegion"), raw.get("eventSourceARN"), table),
        raw=raw,
        order_key=kds_order_key(
            micros, None if parsed.event_name is EventName.REMOVE else parsed.new_image),
        order_span=span,
    )
    return build(Change, values)


def _kds_micros(body: Mapping[str, Any], where: tuple[int, str | None, str | None]
                ) -> tuple[int, int]:
    """ApproximateCreationDateTime in microseconds (epoch milliseconds, or microseconds when the
    record says ``ApproximateCreationDateTimePrecision: MICROSECOND``) and the microseconds it
    stands for (:attr:`Change.order_span`)."""
    value = body.get("ApproximateCreationDateTime")
    path = "kinesis.data.dynamodb.ApproximateCreationDateTime"
    if type(value) is not int or value < 0:
        raise _fail("missing, or not a whole number of epoch milliseconds / microseconds",
                    path, where)
    precision = body.get("ApproximateCreationDateTimePrecision", "MILLISECOND")
    scale = PRECISION_MICROS.get(precision) if type(precision) is str else None
    if scale is None:
        raise _fail(f"unknown precision {precision!r:.40} (MILLISECOND or MICROSECOND)",
                    "kinesis.data.dynamodb.ApproximateCreationDateTimePrecision", where)
    micros = value * scale
    if micros >= 10**_TIME_DIGITS:
        raise _fail(f"{value} is beyond any time in {precision.lower()}s", path, where)
    return micros, scale


def _table_arn(region: Any, stream_arn: Any, table: str) -> str:
    """``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`` from the change's region and table name and
    the Kinesis stream ARN's partition and account (the KDS destination is in the table's account)."""
    parts = stream_arn.split(":", 5) if type(stream_arn) is str else []
    partition = parts[1] if len(parts) == 6 else "aws"
    account = parts[4] if len(parts) == 6 else ""
    if type(region) is not str:
        region = parts[3] if len(parts) == 6 else ""
    return f"arn:{partition}:dynamodb:{region}:{account}:table/{table}"


def is_kinesis_arn(arn: str) -> bool:
    """``arn:<partition>:kinesis:<region>:<account>:stream/<name>``: a Kinesis data stream's ARN
    (here, below the poller and the migration file, which both check one)."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] == "kinesis"
