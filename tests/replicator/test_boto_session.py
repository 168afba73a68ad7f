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


# -- other inputs of the same kind: profiles, configured endpoints, threads, the aws fixture -------
def test_a_profile_from_the_config_files_is_read_per_call(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[profile north]\nregion = eu-north-1\n[profile south]\nregion = af-south-1\n")
    credentials.write_text("[north]\naws_access_key_id = AKIANORTH\naws_secret_access_key = n\n"
                           "[south]\naws_access_key_id = AKIASOUTH\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "north")
    north = aws_client(args(), {}, "dynamodb")
    monkeypatch.setenv("AWS_PROFILE", "south")
    south = aws_client(args(), {}, "dynamodb")
    assert (north.meta.region_name, access_key(north)) == ("eu-north-1", "AKIANORTH")
    assert (south.meta.region_name, access_key(south)) == ("af-south-1", "AKIASOUTH")
    assert north._loader is south._loader


def test_a_configured_endpoint_of_the_environment_is_read_per_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8111")
    configured = aws_client(args(region="us-west-2"), {}, "dynamodb")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")
    plain = aws_client(args(region="us-west-2"), {}, "dynamodb")
    assert configured.meta.endpoint_url == "http://127.0.0.1:8111"
    assert plain.meta.endpoint_url == "https://dynamodb.us-west-2.amazonaws.com"


def test_sessions_made_in_threads_at_once_share_one_loader() -> None:
    from concurrent.futures import ThreadPoolExecutor

    paths = list(new_session()._loader.search_paths)
    with ThreadPoolExecutor(8) as pool:
        loaders = list(pool.map(lambda _: new_session().client(
            "sqs", region_name="us-east-1", aws_access_key_id="a",
            aws_secret_access_key="b")._loader, range(16)))
    assert all(loader is loaders[0] for loader in loaders)
    assert loaders[0].search_paths == paths


def test_the_aws_fixtures_default_session_reads_the_environment_the_test_set(
        aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFIXTURE")
    client = boto3.client("sqs")
    assert client.meta.region_name == "eu-west-3" and access_key(client) == "AKIAFIXTURE"
    assert client.create_queue(QueueName="q")["QueueUrl"].endswith("/q")  # moto's mock answers
    assert client._loader is new_session()._loader
