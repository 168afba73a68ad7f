"""The MongoDB URI from Secrets Manager or SSM (moto), read once per container, never echoed."""

from __future__ import annotations

import json
from typing import Any

import mongomock
import pymongo
import pytest

from replicator import handler, uri_source
from replicator.errors import ConfigurationError

moto = pytest.importorskip("moto")

URI = "mongodb://app:pa55-w0rd@db.example.com:27017/?tls=true"


def _secret(value: str) -> str:
    import boto3

    return str(boto3.client("secretsmanager").create_secret(Name="mongo", SecretString=value)["ARN"])


@pytest.mark.parametrize("stored", [URI, json.dumps({"uri": URI, "note": "rotated monthly"}),
                                    f"  {URI}\n"], ids=["plain", "json", "padded"])
def test_the_uri_comes_from_secrets_manager(aws: None, stored: str) -> None:
    arn = _secret(stored)
    assert uri_source.mongodb_uri({"MONGODB_URI_SECRET_ARN": arn}) == URI


def test_the_uri_comes_from_an_ssm_secure_string(aws: None) -> None:
    import boto3

    boto3.client("ssm").put_parameter(Name="/app/mongo-uri", Value=URI, Type="SecureString")
    assert uri_source.mongodb_uri({"MONGODB_URI_PARAMETER": "/app/mongo-uri"}) == URI


def test_the_secret_wins_over_a_plain_variable(aws: None) -> None:
    arn = _secret(URI)
    assert uri_source.mongodb_uri(
        {"MONGODB_URI_SECRET_ARN": arn, "MONGODB_URI": "mongodb://other/"}) == URI


@pytest.mark.parametrize("stored, message", [
    ("pa55-w0rd", "does not hold a mongodb:// or mongodb+srv:// URI"),
    (json.dumps({"url": URI}), 'without a "uri" key'),
    ("{pa55-w0rd", "looks like JSON but does not parse"),
])
def test_a_wrong_secret_is_named_without_its_value(aws: None, stored: str, message: str) -> None:
    arn = _secret(stored)
    with pytest.raises(ConfigurationError) as raised:
        uri_source.mongodb_uri({"MONGODB_URI_SECRET_ARN": arn})
    assert message in str(raised.value)
    assert "pa55-w0rd" not in str(raised.value)


def test_a_missing_secret_names_the_variable_and_the_aws_error(aws: None) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(ConfigurationError) as raised:
        uri_source.mongodb_uri({"MONGODB_URI_SECRET_ARN": arn})
    assert "MONGODB_URI_SECRET_ARN" in str(raised.value)
    assert "ResourceNotFoundException" in str(raised.value)


def test_the_handler_reads_the_secret_once_per_container(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    arn = _secret(URI)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("MONGODB_URI_SECRET_ARN", arn)
    monkeypatch.setenv("MONGODB_DATABASE", "app")
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    reads: list[str] = []

    class Counting:
        def __init__(self, service: str) -> None:
            self.client = boto3.client(service)

        def get_secret_value(self, **request: Any) -> Any:
            reads.append(request["SecretId"])
            return self.client.get_secret_value(**request)

    clients: list[str] = []

    def fake_client(uri: str, **_: Any) -> Any:
        clients.append(uri)
        return mongomock.MongoClient()

    monkeypatch.setattr(uri_source, "_boto3_client", Counting)
    monkeypatch.setattr(pymongo, "MongoClient", fake_client)
    handler.reset()
    try:
        for _ in range(3):
            assert handler.lambda_handler({"Records": []}) == {"batchItemFailures": []}
    finally:
        handler.reset()
    assert reads == [arn]
    assert clients == [URI]
