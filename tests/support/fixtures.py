"""The shared fixtures (a pytest plugin loaded by tests/conftest.py): stream records and shared
failing cases, the sources (moto in-process, DynamoDB Local, moto's mock for other AWS services)
and the targets (mongomock, mongoeco's wire server), the fake DynamoDB Streams client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.mongomock_target import mongomock_client
from support.fake_streams import STREAM_DATA, FakeStreams, wire_record

ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2026-01-01T00:00:00.000"
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
CASES = Path(__file__).resolve().parents[1] / "data" / "cases"

RecordFactory = Callable[..., dict[str, Any]]


def lambda_stream_record(
    seq: str,
    name: str = "INSERT",
    keys: dict[str, Any] | None = None,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    view: str | None = "NEW_AND_OLD_IMAGES",
    ttl: bool = False,
    created: Any = 1795712760,
) -> dict[str, Any]:
    """A Lambda-shape DynamoDB Streams record (B as base64 text, epoch-seconds timestamp)."""
    body: dict[str, Any] = {
        "Keys": keys if keys is not None else {"id": {"S": "u1"}},
        "SequenceNumber": seq,
        "ApproximateCreationDateTime": created,
    }
    if view is not None:
        body["StreamViewType"] = view
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    record: dict[str, Any] = {
        "eventID": f"e{seq}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": ARN,
        "dynamodb": body,
    }
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return record


# -- records and cases -----------------------------------------------------------------------------
@pytest.fixture
def stream_record() -> RecordFactory:
    """``stream_record(seq, name, keys, new=..., old=..., view=..., ttl=...)`` -> a record."""
    return lambda_stream_record


@pytest.fixture
def shared_case() -> Callable[[str], Any]:
    """``shared_case(name)`` -> a fresh copy of tests/data/cases/<name>/event.json (copied from
    the shared failing inputs of issue #10; each folder's expected.md says what is right)."""

    def load(name: str) -> Any:
        return json.loads((CASES / name / "event.json").read_text(encoding="utf-8"))

    return load


# -- fake DynamoDB Streams -------------------------------------------------------------------------
@pytest.fixture
def fake_streams() -> type[FakeStreams]:
    return FakeStreams


@pytest.fixture(name="wire_record")
def wire_record_fixture() -> Callable[..., dict[str, Any]]:
    return wire_record


@pytest.fixture
def stream_data() -> Path:
    return STREAM_DATA


# -- sources ---------------------------------------------------------------------------------------
@pytest.fixture
def moto() -> Iterator[Any]:
    """The harness's moto source in-process, started and stopped around one test."""
    from harness.backends.base import started
    from harness.backends.moto_source import MotoSource

    with started(MotoSource()) as source:
        yield source


@pytest.fixture
def moto_server() -> Iterator[Any]:
    """moto's threaded server (an endpoint URL a `replicator` subprocess can reach)."""
    from harness.backends.base import started
    from harness.backends.moto_source import MotoServerSource

    with started(MotoServerSource()) as source:
        yield source


@pytest.fixture(scope="module")
def dynamodb_local() -> Iterator[Any]:
    """One DynamoDB Local per test module (it takes ~2-3 s to start); stopped even on failure."""
    from harness.backends.base import started
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    with started(DynamoDBLocalSource()) as source:
        yield source


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's mock of every AWS service (SSM, Secrets Manager, ...) for boto3 clients made during
    the test, with test credentials and no profile; skipped where moto is not installed.

    ``mock_aws`` empties boto3's default session, so the first ``boto3.client(...)`` of each test
    makes a new one, as it does in a fresh process (reading the environment the test set); here
    that session shares botocore's parsed models with every other
    (replicator.boto_session.new_session): a fresh loader re-parses them, ~0.15 s of CPU each."""
    moto = pytest.importorskip("moto")
    import boto3

    from replicator.boto_session import new_session

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def setup_default_session(**options: Any) -> None:
        boto3.DEFAULT_SESSION = new_session(**options)

    monkeypatch.setattr(boto3, "setup_default_session", setup_default_session)
    with moto.mock_aws():
        yield


@pytest.fixture
def users_table(aws: None) -> Any:
    """A boto3 DynamoDB client on moto with the table ``users`` (key ``id``, S, on demand): the
    table a Kinesis test's Replicator reads back to decide an equal-timestamp tie
    (``DynamoDBItemReader(users_table, "users")``; docs/kinesis.md). Made by the harness's
    ``make_client`` (one boto3 session per region, the same dummy credentials as ``aws`` sets): a
    ``boto3.client`` under ``mock_aws`` makes a new default session per test, which re-parses
    botocore's JSON models (~0.15 s of CPU and a full GC's worth of cycles each)."""
    from harness.backends.moto_source import make_client

    client = make_client("dynamodb", region="us-east-1")
    client.create_table(TableName="users", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return client


# -- targets ---------------------------------------------------------------------------------------
@pytest.fixture
def mongo_db() -> Any:
    """A fresh, empty mongomock database (through the harness's adapter)."""
    return mongomock_client()["replica"]


@pytest.fixture(scope="session")
def mongoeco_server_uri() -> Iterator[str]:
    """``mongodb://127.0.0.1:<port>/`` of the harness's mongoeco wire server, one per session
    (each test uses its own database). mongoeco needs Python >= 3.13: skipped on older ones."""
    pytest.importorskip("mongoeco", reason="mongoeco (the embedded MongoDB target) needs Python >= 3.13")
    from harness.backends.mongoeco_target import MongoecoServer

    server = MongoecoServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongoeco_client(mongoeco_server_uri: str) -> Iterator[Any]:
    """A real ``pymongo.MongoClient`` on the session's mongoeco wire server."""
    from pymongo import MongoClient

    client: Any = MongoClient(mongoeco_server_uri, serverSelectionTimeoutMS=3000)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def mongoeco_db(mongoeco_client: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh database on the session's mongoeco server, dropped afterwards."""
    name = "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    mongoeco_client.drop_database(name)
    yield mongoeco_client[name]
    mongoeco_client.drop_database(name)


# -- the distributed export copy -------------------------------------------------------------------
@pytest.fixture
def export_copy_lambda(monkeypatch: pytest.MonkeyPatch, mongoeco_server_uri: str,
                       mongoeco_db: Any) -> Iterator[Any]:
    """The export copy's Lambda functions (replicator/export_copy_handler.py) configured as
    deploy/export-copy.yaml configures them -- the MongoDB URI, database, collection ``items``,
    key schema ``pk`` -- on the session's mongoeco server (a fresh database), with AWS
    credentials for moto's in-process mock (the ``moto`` fixture). Yields the target collection;
    the functions' cached clients are dropped afterwards."""
    from replicator import export_copy_handler

    for name, value in {
        "MONGODB_URI": mongoeco_server_uri, "MONGODB_DATABASE": mongoeco_db.name,
        "MONGODB_COLLECTION": "items", "REPLICATOR_KEY_SCHEMA": "pk",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # botocore sends DynamoDB Streams calls to an account-based endpoint moto does not serve
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "MONGODB_URI_SECRET_ARN",
                 "MONGODB_URI_PARAMETER"):
        monkeypatch.delenv(name, raising=False)
    export_copy_handler.reset()
    try:
        yield mongoeco_db["items"]
    finally:
        export_copy_handler.reset()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """cli.main() configures logging as a process should (JSON or text handlers, the secrets'
    redaction, the replicator logger's level): undo it after the test."""
    import logging

    from replicator.redact import uninstall_log_redaction

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    replicator_level = logging.getLogger("replicator").level
    yield
    uninstall_log_redaction()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("replicator").setLevel(replicator_level)
