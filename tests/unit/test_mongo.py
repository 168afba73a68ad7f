"""replicator.mongo.connect: the one MongoClient factory (options, timeout precedence, redaction)."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest

from replicator.errors import ConfigurationError
from replicator.mongo import APPNAME, DEFAULT_TIMEOUT_MS, connect

PASSWORD = "s3cr3t-Pa55"


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(uri: str, **options: Any) -> object:
        calls.append((uri, options))
        return object()

    monkeypatch.setattr(pymongo, "MongoClient", fake)
    return calls


def test_every_client_gets_the_appname_driver_info_retryable_writes_and_a_timeout(
    made: list[tuple[str, dict[str, Any]]],
) -> None:
    connect("mongodb://h/db", appname=f"{APPNAME}-poller")
    ((uri, options),) = made
    assert uri == "mongodb://h/db"
    assert options["appname"] == f"{APPNAME}-poller"
    assert options["driver"].name == APPNAME
    assert options["retryWrites"] is True
    assert options["serverSelectionTimeoutMS"] == DEFAULT_TIMEOUT_MS


def test_the_uri_timeout_is_kept_unless_the_caller_overrides_it(
    made: list[tuple[str, dict[str, Any]]],
) -> None:
    connect("mongodb://h/db?serverSelectionTimeoutMS=300")
    connect("mongodb://h/db?serverSelectionTimeoutMS=300", server_selection_timeout_ms=50)
    connect("mongodb://h/db", directConnection=True, retryWrites=False)
    assert "serverSelectionTimeoutMS" not in made[0][1]
    assert made[1][1]["serverSelectionTimeoutMS"] == 50
    # the caller's own options win over the defaults
    assert made[2][1]["directConnection"] is True and made[2][1]["retryWrites"] is False


@pytest.mark.parametrize("uri", [
    f"mongodb://app:{PASSWORD}@db.example:notaport/",  # pymongo: Port contains non-digit ...
    f"mongodb://app:{PASSWORD}@x@db.example/",  # an unescaped "@" in the password
])
def test_an_unusable_uri_is_a_configuration_error_without_the_password(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="the MongoDB URI is not usable") as raised:
        connect(uri)
    assert PASSWORD not in str(raised.value)
