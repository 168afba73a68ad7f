"""The Lambda function's configuration, checked at cold start (replicator/environment.py,
uri_source.checked_uri, Settings.from_env): one error naming the variable, secret or parameter,
never the value; every Settings field settable from the environment; README lists them all."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pymongo
import pytest

from replicator import handler, uri_source
from replicator.environment import LambdaEnvironment
from replicator.errors import ConfigurationError
from replicator.settings import ENVIRONMENT, Settings
from support.fast_set import fast_first

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pa55-w0rd"
URI = f"mongodb://app:{PASSWORD}@db.example.com:27017/?w=majority"
BASE = {"MONGODB_DATABASE": "app", "MONGODB_COLLECTION": "users"}

#: A valid value other than the default for every Settings field, as its variable spells it, and
#: the value Settings then holds. A new field fails test_every_setting_... until it is added here.
SAMPLES: dict[str, tuple[str, Any]] = {
    "key_schema": ("pk, sk", ("pk", "sk")),
    "id_mapping": ("replicator.keys:identity", "replicator.keys:identity"),
    "guard": ("false", False),
    "sequence_field": ("_seq", "_seq"),
    "transforms": ("replicator.transforms.example", ("replicator.transforms.example",)),
    "numbers": ("float", "float"),
    "ttl_deletes": ("archive", "archive"),
    "archive_collection": ("users_expired", "users_expired"),
    "bad_records": ("fail", "fail"),
    "quarantine_collection": ("users_bad", "users_bad"),
    "shard_key": ("tenant,pk", ("tenant", "pk")),
    "tombstones": ("off", False),
    "tombstone_collection": ("users_deleted", "users_deleted"),
    "tombstone_retention_s": ("259200", 259200),
    "source_table": ("users", "users"),
    "deadline_margin_s": ("0.5", 0.5),
    "source": ("kinesis", "kinesis"),
    "stream_retention_s": ("172800", 172800),
    "write_mode": ("merge", "merge"),
}


# -- every field from the environment ------------------------------------------------------------
def test_every_setting_can_be_set_from_the_environment() -> None:
    """A field added to Settings must get a variable in settings.ENVIRONMENT (and a sample here)."""
    names = {field.name for field in dataclasses.fields(Settings)}
    assert set(ENVIRONMENT) == names, "give every Settings field a REPLICATOR_* variable"
    assert set(SAMPLES) == names
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)
    for name, (raw, expected) in SAMPLES.items():
        assert expected != getattr(Settings(), name), f"the sample of {name} is its default"
        settings = Settings.from_env({ENVIRONMENT[name]: f" {raw}\n"})
        assert getattr(settings, name) == expected, ENVIRONMENT[name]
    every = Settings.from_env({ENVIRONMENT[name]: raw for name, (raw, _) in SAMPLES.items()})
    assert every == Settings(**{name: value for name, (_, value) in SAMPLES.items()})


def test_the_readme_settings_table_lists_every_variable() -> None:
    from replicator import environment

    table = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\|[^|\n]*", table, flags=re.MULTILINE))
    cells = " ".join(listed)
    variables = [*ENVIRONMENT.values(), *uri_source.VARIABLES, environment.DATABASE,
                 environment.COLLECTION, environment.TIMEOUT_MS, environment.READ_BACK_TABLE]
    missing = [v for v in variables if f"`{v}`" not in cells]
    assert not missing, f"README's settings table lacks {missing}"


@pytest.mark.parametrize(("variable", "raw", "says"), [
    ("REPLICATOR_NUMBERS", "flaot", "must be one of lossless, float"),
    ("REPLICATOR_TTL_DELETES", "forever", "must be one of delete, ignore, archive"),
    ("REPLICATOR_BAD_RECORDS", "skip-it", "must be one of quarantine, fail"),
    ("REPLICATOR_GUARD", "maybe", "must be true or false"),
    ("REPLICATOR_TOMBSTONE_RETENTION_S", "2days", "must be a whole number"),
    ("REPLICATOR_TOMBSTONE_RETENTION_S", "3600", "24-hour retention"),
    ("REPLICATOR_DEADLINE_MARGIN_S", "soonish", "must be a number of seconds"),
    ("REPLICATOR_KEY_SCHEMA", "aa,bb,cc", "one or two attributes"),
    ("REPLICATOR_SEQUENCE_FIELD", "meta.seq", "plain top-level field name"),
])
def test_a_bad_setting_names_its_variable_not_its_value(variable: str, raw: str,
                                                        says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({variable: raw})
    message = str(raised.value)
    assert message.startswith(variable) and says in message
    assert raw not in message


# -- the URI: whitespace, pymongo's parser, the source named -------------------------------------
def _parameter(value: str, name: str = "/app/mongo-uri") -> str:
    import boto3

    boto3.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    return name


def _secret(value: str) -> str:
    import boto3

    answer = boto3.client("secretsmanager").create_secret(Name="mongo", SecretString=value)
    return str(answer["ARN"])


@pytest.mark.slow
def test_a_trailing_newline_from_ssm_or_a_json_secret_is_removed(aws: None) -> None:
    parameter = _parameter(f"{URI}\n")
    assert uri_source.mongodb_uri({"MONGODB_URI_PARAMETER": parameter}) == URI
    arn = _secret(json.dumps({"uri": f"\t{URI}\r\n"}))
    assert uri_source.mongodb_uri({"MONGODB_URI_SECRET_ARN": arn}) == URI
    assert uri_source.mongodb_uri({"MONGODB_URI": f"{URI}\n"}) == URI


@pytest.mark.parametrize(("uri", "says"), fast_first([
    (f"mongodb://app:{PASSWORD}@db.example.com/?w=majority&appName=a b", "whitespace"),
    (f"mongodb://app:{PASSWORD}@db.example.com/\x00", "control character"),
    (f"mongodb://app:{PASSWORD}@db.example.com/?maxPoolSize=lots", "maxpoolsize must be an integer"),
    (f"mongodb://app:{PASSWORD}@db.example.com/?tls=perhaps", "tls must be 'true' or 'false'"),
    (f"mongodb://app:{PASSWORD}@db.example.com/?replicaSett=rs0", "Unknown option"),
    (f"mongodb://app:{PASSWORD}@@db.example.com/", "must be escaped"),
    (f"mongodb://app:{PASSWORD}@db.example.com:99999/", "Port must be an integer"),
    (f"mongodb+srv://app:{PASSWORD}@cluster0.example.com:27017/", "must not include a port"),
    (f"postgres://app:{PASSWORD}@db.example.com/", "does not hold a mongodb://"),
]))
def test_a_uri_pymongo_refuses_names_the_source_never_the_value(aws: None, uri: str,
                                                                 says: str) -> None:
    sources = {
        "MONGODB_URI": ({"MONGODB_URI": uri}, "MONGODB_URI"),
        "parameter": ({"MONGODB_URI_PARAMETER": _parameter(uri)},
                      "MONGODB_URI_PARAMETER=/app/mongo-uri"),
        "secret": ({"MONGODB_URI_SECRET_ARN": (arn := _secret(json.dumps({"uri": uri})))},
                   f"secret {arn}"),
    }
    for environ, named in sources.values():
        with pytest.raises(ConfigurationError) as raised:
            LambdaEnvironment.from_env({**BASE, **environ})
        message = str(raised.value)
        assert message.startswith(named) and says in message, message
        assert PASSWORD not in message and "db.example.com" not in message
        assert "cluster0" not in message


def test_the_rest_is_checked_before_the_secret_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_aws(service: str) -> Any:
        raise AssertionError(f"{service} was called before the configuration was checked")

    environ = {**BASE, "MONGODB_URI_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x",
               "REPLICATOR_NUMBERS": "flaot"}
    with pytest.raises(ConfigurationError, match=r"^REPLICATOR_NUMBERS"):
        LambdaEnvironment.from_env(environ, client=no_aws)


@pytest.mark.parametrize(("variable", "raw", "says"), [
    ("MONGODB_DATABASE", "my shop", "database name has no whitespace"),
    ("MONGODB_DATABASE", "shop.eu", "database name"),
    ("MONGODB_DATABASE", "x" * 64, "shorter than 64 bytes"),
    ("MONGODB_COLLECTION", "users$", "collection name"),
    ("MONGODB_COLLECTION", "system.users", "does not start with system."),
    ("MONGODB_COLLECTION", "users\x07", "control character"),
    ("MONGODB_TIMEOUT_MS", "10s", "whole number of milliseconds"),
    ("MONGODB_TIMEOUT_MS", "0", "above 0"),
    ("REPLICATOR_READ_BACK_TABLE", "users table", "whitespace"),
])
def test_a_bad_target_value_names_its_variable(variable: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        LambdaEnvironment.from_env({**BASE, "MONGODB_URI": URI, variable: raw})
    message = str(raised.value)
    assert message.startswith(variable) and says in message
    assert PASSWORD not in message


def test_names_lose_their_surrounding_whitespace() -> None:
    config = LambdaEnvironment.from_env({
        "MONGODB_URI": f" {URI}\n", "MONGODB_DATABASE": "app\n", "MONGODB_COLLECTION": " users ",
        "MONGODB_TIMEOUT_MS": "2500\n", "REPLICATOR_READ_BACK_TABLE": "users\n",
        "REPLICATOR_NUMBERS": "float\n"})
    assert (config.uri, config.database, config.collection, config.timeout_ms,
            config.read_back_table, config.settings.numbers) == (
        URI, "app", "users", 2500, "users", "float")
    assert PASSWORD not in repr(config)


# -- the deployed path: SSM's trailing newline no longer fails every write -------------------------
def test_the_handler_writes_with_a_uri_from_ssm_that_kept_its_newline(
    aws: None, mongoeco_client: Any, monkeypatch: pytest.MonkeyPatch, stream_record: Any,
) -> None:
    """``...&w=majority\\n`` as stored: pymongo would send the write concern ``"majority\\n"``,
    which the server refuses on every write. The handler strips it and the write lands."""
    host, port = mongoeco_client.address
    stored = f"mongodb://{host}:{port}/?directConnection=true&w=majority\n"
    with (pymongo.MongoClient(stored, serverSelectionTimeoutMS=3000) as raw,
          pytest.raises(pymongo.errors.OperationFailure)):
        raw["envcheck"]["probe"].insert_one({"_id": 1})
    for name in ("MONGODB_URI", "MONGODB_URI_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONGODB_URI_PARAMETER", _parameter(stored))
    monkeypatch.setenv("MONGODB_DATABASE", "envcheck\n")
    monkeypatch.setenv("MONGODB_COLLECTION", "users\n")
    record = stream_record("100", keys={"id": {"S": "u1"}},
                           new={"id": {"S": "u1"}, "name": {"S": "Ada"}})
    handler.reset()
    try:
        assert handler.lambda_handler({"Records": [record]}) == {"batchItemFailures": []}
    finally:
        handler.reset()
    document = mongoeco_client["envcheck"]["users"].find_one({"_id": "u1"})
    assert document is not None and document["name"] == "Ada"
    mongoeco_client.drop_database("envcheck")
