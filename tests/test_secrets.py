"""No secret in any log line, report or error: the Lambda handler, the poller CLI, the harness CLI.

A MongoDB URI with a password (pointing at a port where nothing listens) and distinctive AWS keys in
the environment; every log record (all loggers, DEBUG), every captured stdout/stderr and every
report file written is searched for the password and the secret key.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "dynamodb-local"
PASSWORD = "S3cr3tP4ss"
ENCODED_PASSWORD = "S3cr3t%25P4ss%40x"  # "S3cr3t%P4ss@x" once decoded
DECODED_PASSWORD = "S3cr3t%P4ss@x"
SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-NOTREAL-SECRET"
ACCESS_KEY = "AKIAIOSFODNN7NOTREAL"
SESSION_TOKEN = "FwoGZXIvYXdzENOTREALSESSIONTOKEN0123456789"
UNREACHABLE = f"mongodb://user:{PASSWORD}@127.0.0.1:1/db?serverSelectionTimeoutMS=300"
SECRETS = (PASSWORD, SECRET_KEY, SESSION_TOKEN, DECODED_PASSWORD, ENCODED_PASSWORD)


def assert_clean(text: str, where: str) -> None:
    # Also with whitespace removed: rich wraps long lines, which could split a secret.
    for candidate in (text, "".join(text.split()).replace("│", "")):
        for secret in SECRETS:
            assert secret not in candidate, f"{where} shows a secret ({secret[:4]}...):\n{text[-3000:]}"


def secret_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MONGODB_", "REPLICATOR_"))}
    env.update(PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_SESSION_TOKEN=SESSION_TOKEN, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(extra)
    return env


@pytest.fixture
def aws_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in secret_env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def _record(seq: str, key: str) -> dict[str, Any]:
    return {"eventID": f"e{seq}", "eventName": "INSERT", "eventSource": "aws:dynamodb",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
            "dynamodb": {"Keys": {"id": {"S": key}}, "NewImage": {"id": {"S": key}},
                         "SequenceNumber": seq, "StreamViewType": "NEW_AND_OLD_IMAGES",
                         "ApproximateCreationDateTime": 1767225600}}


# -- the Lambda handler --------------------------------------------------------------------------------
@pytest.fixture
def fresh_handler() -> Iterator[Any]:
    from replicator import handler

    handler.reset()
    yield handler
    handler.reset()


@pytest.mark.parametrize("password", [PASSWORD, ENCODED_PASSWORD], ids=["plain", "percent-encoded"])
def test_lambda_handler_failing_to_reach_mongodb_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, aws_secrets: None,
    fresh_handler: Any, password: str,
) -> None:
    monkeypatch.setenv("MONGODB_URI", f"mongodb://user:{password}@127.0.0.1:1/db")
    monkeypatch.setenv("MONGODB_DATABASE", "db")
    monkeypatch.setenv("MONGODB_COLLECTION", "users")
    monkeypatch.setenv("MONGODB_TIMEOUT_MS", "300")
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    try:
        response = fresh_handler.lambda_handler(
            {"Records": [_record("100", "a"), _record("101", "b")]}, None)
        seen.append(repr(response))
        assert response["batchItemFailures"] == [{"itemIdentifier": "100"}]
    except Exception as error:  # an error escaping the handler must be clean too
        import traceback

        seen.append("".join(traceback.format_exception(error)))
    seen += [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert any("Connection refused" in text or "ServerSelectionTimeout" in text for text in seen), seen
    for text in seen:
        assert_clean(text, "the Lambda handler")
    assert_clean(repr(fresh_handler._get_replicator().collection), "the handler's collection repr")


# -- the poller CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_server() -> Iterator[Any]:
    from harness.backends.base import TableSpec, started
    from harness.backends.moto_source import MotoServerSource

    with started(MotoServerSource()) as source:
        source.create_table(TableSpec("users", ("id", "S")))
        source.dynamodb().put_item(TableName="users", Item={"id": {"S": "u1"}})
        yield source


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("command", ["run", "resync", "checkpoints"])
def test_poller_cli_failing_to_reach_mongodb_shows_no_secret(moto_server: Any, how: str,
                                                             command: str) -> None:
    args = [sys.executable, "-m", "replicator.cli", command, "--table", "users",
            "--endpoint-url", moto_server.endpoint_url(), "--log-level", "DEBUG"]
    args += {"run": ["--once"], "resync": ["--yes"], "checkpoints": []}[command]
    env = secret_env()
    if how == "option":
        args += ["--mongodb-uri", UNREACHABLE]
    else:
        env["MONGODB_URI"] = UNREACHABLE
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "ServerSelectionTimeoutError" in done.stderr and "127.0.0.1:1" in done.stderr
    assert_clean(done.stdout + done.stderr, f"replicator {command} ({how})")


@pytest.mark.parametrize("password", ["S3cr3t:P4ss", "S3cr3t/P4ss", "S3cr3t@P4ss"])
def test_poller_cli_with_an_unusable_uri_shows_no_secret(moto_server: Any, password: str) -> None:
    """Unescaped ":", "/" or "@" in the password: pymongo refuses the URI (exit 2), and whatever
    it says, the password is not in it."""
    done = subprocess.run(
        [sys.executable, "-m", "replicator.cli", "run", "--table", "users", "--once",
         "--endpoint-url", moto_server.endpoint_url(),
         "--mongodb-uri", f"mongodb://user:{password}@127.0.0.1:1/db"],
        capture_output=True, text=True, env=secret_env(), cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "MongoDB URI is not usable" in done.stderr
    assert password not in done.stdout + done.stderr
    assert_clean(done.stdout + done.stderr, "replicator run (unusable URI)")


def test_the_cli_redaction_covers_uris_and_environment_secrets() -> None:
    from replicator.cli import redact, secrets_of

    secrets = secrets_of(f"mongodb+srv://user:{ENCODED_PASSWORD}@h/db", secret_env())
    text = (f"mongodb://user:{PASSWORD}@h/db and mongodb+srv://user:{ENCODED_PASSWORD}@h/db said "
            f"{DECODED_PASSWORD} with {SECRET_KEY} and {SESSION_TOKEN}")
    redacted = redact(text, secrets)
    assert_clean(redacted, "redact()")
    assert "mongodb://***@h/db" in redacted
    assert secrets_of("mongodb://u:pa/ss@h/db", {}) == ["pa/ss"]


# -- the harness CLI -------------------------------------------------------------------------------------
def test_harness_cli_with_a_password_in_the_target_uri_shows_no_secret(tmp_path: Path) -> None:
    """``harness run smoke`` and ``harness replay`` against an unreachable URI target, started
    together (each waits for the server selection timeout)."""
    uri = "mongodb://user:S3cr3tP4ss@127.0.0.1:1/x"
    fixture = FIXTURES / "composite_key"
    commands = {
        "run": ["run", "smoke", "--target-uri", uri, "--report-json", str(tmp_path / "run.json"),
                "--junit", str(tmp_path / "run.xml")],
        "replay": ["replay", "--table", str(fixture / "table.json"), "--events",
                   str(fixture / "events.json"), "--expect-items", str(fixture / "final_items.json"),
                   "--target-uri", uri, "--report-json", str(tmp_path / "replay.json"),
                   "--dump-target", str(tmp_path / "dump.jsonl")],
    }
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=secret_env(COLUMNS="200"),
                               cwd=ROOT)
        for name, args in commands.items()
    }
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name] = (process.communicate(timeout=180), process.returncode)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, ((stdout, stderr), code) in outputs.items():
        assert code == 2, (name, stdout, stderr)
        text = stdout + stderr
        assert "127.0.0.1:1" in text, (name, text)
        assert_clean(text, f"harness {name}")
    for written in tmp_path.iterdir():
        assert_clean(written.read_text(errors="replace"), f"report file {written.name}")
