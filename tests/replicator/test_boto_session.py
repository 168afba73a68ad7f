"""replicator.boto_session.new_session and the replicator CLI's clients (cli/endpoints.aws_client):
botocore's parsed models are shared by every session; credentials, region and endpoint are still
read per client, as a fresh ``boto3.session.Session()`` reads them."""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

pytest.importorskip("boto3")

from replicator.boto_session import new_session
from replicator.cli.endpoints import aws_client

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_DATA_PATH",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(autouse=True)
def no_aws_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's AWS configuration nor the instance metadata service."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def args(endpoint_url: str | None = None, region: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(endpoint_url=endpoint_url, region=region)


def access_key(client: Any) -> str:
    """The access key the client signs with (botocore keeps it on its request signer)."""
    return str(client._request_signer._credentials.access_key)


def test_the_clients_of_two_calls_share_the_parsed_models() -> None:
    streams = aws_client(args("http://127.0.0.1:9"), {}, "dynamodbstreams")
    dynamodb = aws_client(args("http://127.0.0.1:9"), {}, "dynamodb")
    # one data loader: botocore's JSON models were read and parsed once (was one per call)
    assert streams._loader is dynamodb._loader
    assert aws_client(args(region="eu-west-1"), {}, "sqs")._loader is streams._loader


def test_each_call_reads_the_credentials_as_they_are_now(monkeypatch: pytest.MonkeyPatch) -> None:
    local = aws_client(args("http://127.0.0.1:9"), {}, "dynamodb")
    assert access_key(local) == "local"  # none configured: the local endpoint's dummy ones
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    first = aws_client(args("http://127.0.0.1:9"), {}, "dynamodb")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASECOND")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
    second = aws_client(args("http://127.0.0.1:9"), {}, "dynamodb")
    assert (access_key(first), access_key(second)) == ("AKIAFIRST", "AKIASECOND")
    assert access_key(local) == "local"  # an earlier client keeps its own


def test_each_call_gets_its_own_endpoint_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    one = aws_client(args("http://127.0.0.1:9"), {}, "dynamodb")
    other = aws_client(args("http://127.0.0.1:10"), {}, "dynamodb")
    aws = aws_client(args(region="eu-west-1"), {}, "dynamodb")
    from_environ = aws_client(args(), {"AWS_REGION": "ap-south-1"}, "dynamodb")
    assert (one.meta.endpoint_url, other.meta.endpoint_url) == (
        "http://127.0.0.1:9", "http://127.0.0.1:10")
    assert one.meta.region_name == "us-east-1"  # a local endpoint without a region
    assert aws.meta.region_name == "eu-west-1" and "eu-west-1" in aws.meta.endpoint_url
    assert from_environ.meta.region_name == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert aws_client(args(), {}, "dynamodb").meta.region_name == "ca-central-1"


def test_another_data_path_gets_its_own_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    shared = new_session()._loader
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    own = new_session()._loader
    assert own is not shared and str(tmp_path) in own.search_paths
    assert new_session()._loader is own
    monkeypatch.delenv("AWS_DATA_PATH")
    assert new_session()._loader is shared


def test_many_sessions_leave_the_shared_loaders_search_paths_as_they_were() -> None:
    paths = list(new_session()._loader.search_paths)
    for _ in range(5):
        new_session(region_name="us-west-2")
    assert new_session()._loader.search_paths == paths
    assert len(set(paths)) == len(paths)
