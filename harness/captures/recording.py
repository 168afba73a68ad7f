"""``harness record``: capture a table's stream into the fixture format, optionally anonymized.

The format is the one of ``tests/fixtures/dynamodb-local/<case>/`` (see harness/captures/format.py):
``table.json`` (the CreateTable request: key schema, key attribute types, stream view),
``events.json`` (the stream as one Lambda event ``{"Records": [...]}``, shards in lineage order)
and ``final_items.json`` (a strongly consistent scan at the end, DynamoDB JSON with B in base64),
plus ``recording.json`` (where it came from, the shards and their record counts, whether it was
anonymized) which ``harness replay`` does not need.

Sources: any boto3 ``dynamodb``/``dynamodbstreams`` client pair -- an emulator backend's, or the
user's own AWS credentials (:func:`aws_clients`). :func:`record_workload` runs a scenario's
workload on a fresh table first, for a recording of a known mix.

Anonymizing (:class:`Anonymizer`) replaces every S and B value -- in keys, images, nested in M and L,
members of SS and BS, and in the final items -- by a keyed hash (HMAC-SHA256) of the same type and
the same size in bytes, the same value always by the same replacement (so keys stay consistent
across records, and sets keep their members distinct); numbers, booleans, nulls, attribute names
and the stream's metadata are kept. Without the key a replacement cannot be traced back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends.base import TableSpec
from harness.esm.lambda_events import to_lambda_record, wire_json

if TYPE_CHECKING:
    from harness.scenario import Scenario

#: replacement characters: printable ASCII without quote, backslash and space (1 byte each in UTF-8)
_ALPHABET = string.ascii_letters + string.digits + "-_.:/+=@#%&*!?~"


@dataclass
class Recording:
    """A captured stream: what the three fixture files hold, and where it came from."""

    table: TableSpec
    records: list[dict[str, Any]]  # Lambda-shaped stream records
    final_items: list[dict[str, Any]] | None
    metadata: dict[str, Any] = field(default_factory=dict)


# -- capturing -------------------------------------------------------------------------------------
def describe_table_spec(dynamodb: Any, table_name: str) -> tuple[TableSpec, str]:
    """The table's spec (from DescribeTable) and its latest stream ARN."""
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    stream_arn = table.get("LatestStreamArn")
    specification = table.get("StreamSpecification") or {}
    if not stream_arn or not specification.get("StreamEnabled", True):
        raise ValueError(f"table {table_name} has no stream enabled")
    request = {
        "TableName": table["TableName"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "KeySchema": table["KeySchema"],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType":
                                specification.get("StreamViewType", "NEW_AND_OLD_IMAGES")},
    }
    return TableSpec.from_create_table_request(request), stream_arn


def record_table(
    dynamodb: Any, streams: Any, table_name: str, *, region: str = "us-east-1",
    source: str = "", final_items: bool = True,
) -> Recording:
    """Every record the table's stream holds now (TRIM_HORIZON to the end) and a final scan."""
    from harness.lane import parent_of, scan_items
    from replicator.poller.streams import StreamReader

    spec, stream_arn = describe_table_spec(dynamodb, table_name)
    reader = StreamReader(streams, stream_arn)
    per_shard = reader.drain(idle_polls=2)
    records: list[dict[str, Any]] = []
    shards = []
    for shard_id, shard_records in per_shard.items():
        parent = parent_of(reader, shard_id)
        shards.append({"shard_id": shard_id, "parent_shard_id": parent,
                       "records": len(shard_records)})
        records.extend(to_lambda_record(r, stream_arn=stream_arn, region=region)
                       for r in shard_records)
    items = wire_json(scan_items(dynamodb, table_name)) if final_items else None
    return Recording(spec, records, items, {
        "source": source, "table": table_name, "stream_arn": stream_arn, "shards": shards,
        "records": len(records), "anonymized": False,
    })


def record_workload(
    source_name: str, scenario: Scenario, *, seed: int | None = None,
    source_options: dict[str, Any] | None = None,
) -> Recording:
    """Run ``scenario``'s workload on a fresh table of the source, then record it."""
    from harness.backends.base import source_backend, started
    from harness.runner import provision
    from harness.workload import WorkloadSpec, run_workload

    fields = dict(scenario.workload)
    if seed is not None:
        fields["seed"] = seed
    workload = WorkloadSpec.from_dict(fields)
    with started(source_backend(source_name, **(source_options or {}))) as source:
        table = provision(source, scenario)
        try:
            run_workload(source.dynamodb(), table.spec, workload)
            recording = record_table(
                source.dynamodb(), source.streams(), table.spec.name,
                region=source.region, source=source_name,
            )
        finally:
            source.delete_table(table)
    recording.metadata.update(scenario=scenario.name, workload=workload.to_dict())
    return recording


def aws_clients(region: str | None = None, profile: str | None = None) -> tuple[Any, Any, str]:
    """``dynamodb`` and ``dynamodbstreams`` clients from the user's own AWS configuration."""
    import boto3

    session = boto3.session.Session(profile_name=profile, region_name=region)
    if not session.region_name:
        raise ValueError("no AWS region: pass --region or set AWS_REGION")
    return session.client("dynamodb"), session.client("dynamodbstreams"), session.region_name


# -- writing and reading ---------------------------------------------------------------------------
def write_recording(recording: Recording, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "table.json").write_text(
        json.dumps(recording.table.create_table_request(), indent=1) + "\n")
    (directory / "events.json").write_text(
        json.dumps({"Records": recording.records}, indent=1) + "\n")
    if recording.final_items is not None:
        (directory / "final_items.json").write_text(
            json.dumps(recording.final_items, indent=1) + "\n")
    (directory / "recording.json").write_text(
        json.dumps(recording.metadata, indent=1, default=str) + "\n")
    return directory


def read_recording(directory: Path) -> Recording:
    from harness.captures.format import load_capture_dir

    directory = Path(directory)
    capture = load_capture_dir(directory)
    meta = directory / "recording.json"
    metadata = json.loads(meta.read_text()) if meta.exists() else {}
    return Recording(capture.table, capture.records, capture.final_items, metadata)


# -- anonymizing -----------------------------------------------------------------------------------
class Anonymizer:
    """Deterministic, keyed, type- and size-keeping replacement of S and B values.

    One instance keeps one mapping, so the same original always gets the same replacement and two
    originals never share one (a collision is resolved by hashing again with a counter; only when
    every replacement of that size is taken -- e.g. more than 79 distinct one-byte strings -- are
    two values merged, and :attr:`merged` counts it).
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the anonymizing key must not be empty")
        self.key = key
        self._strings: dict[str, str] = {}
        self._binaries: dict[bytes, bytes] = {}
        self._used_strings: set[str] = set()
        self._used_binaries: set[bytes] = set()
        self.merged = 0

    def _stream(self, tag: bytes, value: bytes, counter: int, size: int) -> bytes:
        out = b""
        block = 0
        while len(out) < size:
            message = tag + counter.to_bytes(4, "big") + block.to_bytes(4, "big") + value
            out += hmac.new(self.key, message, hashlib.sha256).digest()
            block += 1
        return out[:size]

    def string(self, value: str) -> str:
        if value in self._strings:
            return self._strings[value]
        size = len(value.encode("utf-8"))  # the same size in bytes (DynamoDB's item size unit)
        replacement = value
        for counter in range(64):
            raw = self._stream(b"S", value.encode("utf-8"), counter, size)
            replacement = "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw)
            if replacement not in self._used_strings:
                break
        else:
            self.merged += 1
        self._strings[value] = replacement
        self._used_strings.add(replacement)
        return replacement

    def binary(self, value: bytes) -> bytes:
        if value in self._binaries:
            return self._binaries[value]
        replacement = value
        for counter in range(64):
            replacement = self._stream(b"B", value, counter, len(value))
            if replacement not in self._used_binaries:
                break
        else:
            self.merged += 1
        self._binaries[value] = replacement
        self._used_binaries.add(replacement)
        return replacement

    def attribute(self, attribute: Any) -> Any:
        """One DynamoDB JSON attribute value (B and BS as base64 text, as in the fixtures)."""
        if not isinstance(attribute, Mapping) or len(attribute) != 1:
            return attribute
        ((tag, value),) = attribute.items()
        if tag == "S" and isinstance(value, str):
            return {"S": self.string(value)}
        if tag == "SS" and isinstance(value, list):
            return {"SS": [self.string(v) for v in value]}
        if tag == "B":
            return {"B": self._b64(value)}
        if tag == "BS" and isinstance(value, list):
            return {"BS": [self._b64(v) for v in value]}
        if tag == "M" and isinstance(value, Mapping):
            return {"M": self.image(value)}
        if tag == "L" and isinstance(value, list):
            return {"L": [self.attribute(v) for v in value]}
        return {tag: value}

    def _b64(self, text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return base64.b64encode(self.binary(base64.b64decode(text))).decode("ascii")

    def image(self, image: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.attribute(value) for name, value in image.items()}

    def record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(record)
        body = dict(record.get("dynamodb") or {})
        for part in ("Keys", "NewImage", "OldImage"):
            if isinstance(body.get(part), Mapping):
                body[part] = self.image(body[part])
        out["dynamodb"] = body
        return out


def anonymize(recording: Recording, key: bytes) -> Recording:
    """A copy of the recording with every S and B value replaced (see :class:`Anonymizer`)."""
    anonymizer = Anonymizer(key)
    records = [anonymizer.record(r) for r in recording.records]
    items = ([anonymizer.image(item) for item in recording.final_items]
             if recording.final_items is not None else None)
    metadata = {**recording.metadata, "anonymized": True, "anonymizer": "HMAC-SHA256, keyed",
                "merged_values": anonymizer.merged}
    return replace(recording, records=records, final_items=items, metadata=metadata)


def resolve_key(key_file: Path | None, environ: Mapping[str, str]) -> bytes:
    """The anonymizing key: the file's content, else ``$HARNESS_ANONYMIZE_KEY`` (never an
    argument: a key on a command line lands in shell history and ``ps``)."""
    key = Path(key_file).read_bytes().strip() if key_file is not None else (
        environ.get("HARNESS_ANONYMIZE_KEY", "").encode())
    if not key:
        raise ValueError(
            "--anonymize needs a key: set HARNESS_ANONYMIZE_KEY or pass --anonymize-key-file")
    return key


def record_for_cli(
    *, scenario: str | None, table: str | None, source: str, endpoint_url: str | None = None,
    region: str | None = None, profile: str | None = None, seed: int | None = None,
) -> Recording:
    """What ``harness record`` records: a scenario's workload on a fresh table of ``source``,
    or an existing table (``source="aws"``: the user's credentials; else an emulator at
    ``endpoint_url``). Usage errors are ValueErrors with the message to show."""
    from harness.backends.base import SOURCES, load_sources

    if (scenario is None) == (table is None):
        raise ValueError("give --scenario (record a workload) or --table (record an existing table)")
    if scenario is not None:
        from harness.scenario import load_scenario

        load_sources()
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; known: {', '.join(sorted(SOURCES))}")
        return record_workload(source, load_scenario(scenario), seed=seed)
    assert table is not None
    if source == "aws":
        dynamodb, streams, region_name = aws_clients(region, profile)
        return record_table(dynamodb, streams, table, region=region_name, source="aws")
    if not endpoint_url:
        raise ValueError("--table needs --source aws or an emulator's --endpoint-url")
    from harness.backends.moto_source import make_client

    region_name = region or "us-east-1"
    dynamodb = make_client("dynamodb", endpoint_url=endpoint_url, region=region_name)
    streams = make_client("dynamodbstreams", endpoint_url=endpoint_url, region=region_name)
    return record_table(dynamodb, streams, table, region=region_name, source=endpoint_url)
