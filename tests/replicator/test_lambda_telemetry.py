"""The Lambda handler's output, as CloudWatch Logs would receive it: per invocation (one batch)
exactly one Embedded Metric Format line with the batch's figures and one JSON summary line, never a
line per record; JSON logs still redacted. The handler runs against a mongoeco server."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from replicator import handler, lambda_telemetry
from replicator.redact import install_log_redaction, uninstall_log_redaction

FIGURES = ["Records", "Applied", "AlreadyNewer", "Quarantined", "Failed", "RoundTrips",
           "BatchDuration", "ReplicationLag"]


@pytest.fixture
def lambda_on_mongoeco(mongoeco_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The handler's environment pointing at the session's mongoeco server; the handler's cached
    client (and JSON logs) reset around the test."""
    host, port = mongoeco_db.client.address
    monkeypatch.setenv("MONGODB_URI", f"mongodb://{host}:{port}/")
    monkeypatch.setenv("MONGODB_DATABASE", mongoeco_db.name)
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    monkeypatch.delenv("REPLICATOR_READ_BACK_TABLE", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    # Powertools would add a "service" dimension from this; the alarms name Table+Collection only
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "somebody-elses-service")
    handler.reset()
    yield mongoeco_db["users"]
    handler.reset()


def lines_of(text: str) -> list[dict[str, Any]]:
    """Every stdout line, parsed (each must be one JSON object)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def emf_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "_aws" in line]


def summary_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "batch" in line]


def item(id_: str, v: int) -> dict[str, Any]:
    return {"id": {"S": id_}, "v": {"N": str(v)}}


def test_one_emf_line_and_one_summary_line_per_batch(
    lambda_on_mongoeco: Any, stream_record: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a batch of 4 records created a minute ago: a inserted then modified (one write), b
    # inserted, and a malformed record (no keys), the newest of all
    created = int(time.time()) - 60
    bad = stream_record("103", "INSERT", {}, new=item("c", 1), created=created + 30)
    records = [
        stream_record("100", "INSERT", {"id": {"S": "a"}}, new=item("a", 1), created=created),
        stream_record("101", "INSERT", {"id": {"S": "b"}}, new=item("b", 1), created=created + 1),
        stream_record("102", "MODIFY", {"id": {"S": "a"}}, new=item("a", 2), created=created + 2),
        bad,
    ]

    # when Lambda invokes the handler with it
    before = time.time()
    response = handler.lambda_handler({"Records": records})
    after = time.time()

    # then the output holds exactly one EMF line, in the namespace, with exactly Table+Collection
    assert response == {"batchItemFailures": []}
    lines = lines_of(capsys.readouterr().out)
    (emf,) = emf_lines(lines)
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "DdbMongoReplicator"
    assert directive["Dimensions"] == [["Table", "Collection"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        **dict.fromkeys(FIGURES[:6], "Count"), "BatchDuration": "Milliseconds",
        "ReplicationLag": "Milliseconds"}
    assert (emf["Table"], emf["Collection"]) == ("users", "users")
    assert "service" not in emf
    # with the batch's figures
    figures = {name: emf[name][0] for name in FIGURES}
    assert figures["Records"] == 4
    assert figures["Applied"] == 2  # a's two records are one write
    assert (figures["AlreadyNewer"], figures["Quarantined"], figures["Failed"]) == (0, 1, 0)
    assert figures["RoundTrips"] >= 2  # the quarantine write and the bulk write at least
    assert 0 < figures["BatchDuration"] < (after - before) * 1000 + 1
    # the lag is measured from the newest record APPLIED (102), not the quarantined one (103)
    assert (before - (created + 2)) * 1000 <= figures["ReplicationLag"] \
        <= (after - (created + 2)) * 1000
    # and one JSON summary line: shard unknown to Lambda, the sequence range, the same figures
    (summary,) = summary_lines(lines)
    assert summary["level"] == "WARNING" and summary["service"] == "replicator"
    assert summary["batch"] == {
        "table": "users", "collection": "users", "shard_id": None,
        "first_sequence_number": "100", "last_sequence_number": "103", "records": 4,
        "applied": 2, "already_newer": 0, "quarantined": 1, "failed": 0,
        "round_trips": figures["RoundTrips"], "duration_ms": summary["batch"]["duration_ms"],
        "replication_lag_ms": summary["batch"]["replication_lag_ms"]}
    assert "SequenceNumber 100..103" in summary["message"]
    assert "quarantined: record index 3" in summary["message"]
    assert sorted(d["_id"] for d in lambda_on_mongoeco.find()) == ["a", "b"]

    # when the same batch is delivered again (a warm container)
    handler.lambda_handler({"Records": records})

    # then its output is exactly two lines: its EMF line and its summary (none per record)
    lines = lines_of(capsys.readouterr().out)
    assert len(lines) == 2
    (emf,) = emf_lines(lines)
    assert (emf["Applied"], emf["AlreadyNewer"]) == ([0.0], [2.0])
    assert "ReplicationLag" not in emf  # nothing applied: no lag to report
    assert summary_lines(lines)[0]["batch"]["replication_lag_ms"] is None


def test_the_namespace_comes_from_the_environment(
    lambda_on_mongoeco: Any, stream_record: Any, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Team/Replication")
    handler.lambda_handler({"Records": [stream_record("100", "INSERT", {"id": {"S": "a"}},
                                                      new=item("a", 1))]})
    (emf,) = emf_lines(lines_of(capsys.readouterr().out))
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Team/Replication"


def test_a_batch_without_records_publishes_nothing_and_fails_nothing(
    lambda_on_mongoeco: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Powertools' "No application metrics" warning
        response = handler.lambda_handler({"Records": []})
    assert response == {"batchItemFailures": []}
    lines = lines_of(capsys.readouterr().out)
    assert emf_lines(lines) == []
    (summary,) = summary_lines(lines)
    assert summary["batch"]["records"] == 0 and summary["level"] == "INFO"


PASSWORD = "Pa55-w0rd-S3cret"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What the handler installs at cold start: the redaction and Powertools' JSON logs."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://app:{PASSWORD}@db.example:27017/")
    install_log_redaction()
    lambda_telemetry.install_json_logs()
    try:
        yield
    finally:
        lambda_telemetry.uninstall_json_logs()
        uninstall_log_redaction()


def test_json_logs_are_redacted(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("replicator.core")
    uri = f"mongodb://app:{PASSWORD}@db.example:27017/"
    log.warning("cannot reach %s with key %s", uri, SECRET_KEY, extra={"batch": {"records": 1}})
    try:
        raise ConnectionError(f"refused: {uri} (key {SECRET_KEY})")
    except ConnectionError:
        log.exception("write failed")
    out = capsys.readouterr().out
    first, second = lines_of(out)
    assert first["message"] == "cannot reach mongodb://***@db.example:27017/ with key ***"
    assert first["batch"] == {"records": 1} and first["level"] == "WARNING"
    assert second["exception_name"] == "ConnectionError" and "***" in second["exception"]
    assert PASSWORD not in out and SECRET_KEY not in out


def test_json_logs_are_undone_by_reset(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_telemetry.uninstall_json_logs()
    logging.getLogger("replicator").warning("plain again")
    assert capsys.readouterr().out == ""
    assert not any(type(f).__name__ == "SuppressFilter"
                   for h in logging.getLogger().handlers for f in h.filters)
