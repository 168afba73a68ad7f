"""No secret in any log line, report or error: the Lambda handler, the poller CLI, the harness CLI.

A MongoDB URI with a password (pointing at a port where nothing listens) and distinctive AWS keys in
the environment; every log record (all loggers, DEBUG), every captured stdout/stderr and every
report file written is searched for the password, the secret key, the session token and the access
key id. Also: usage errors of both CLIs (argparse and click echo the bad argument, case
``secret-in-argparse-error``) and botocore's DEBUG lines of the handler's read-back client (the
signed request carries the session token and the access key id, case
``session-token-in-debug-log``), each with a control showing the leak the redaction prevents.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from support.fast_set import fast_first

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "dynamodb-local"
PASSWORD = "S3cr3tP4ss"
ENCODED_PASSWORD = "S3cr3t%25P4ss%40x"  # "S3cr3t%P4ss@x" once decoded
DECODED_PASSWORD = "S3cr3t%P4ss@x"
SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-NOTREAL-SECRET"
ACCESS_KEY = "AKIAIOSFODNN7NOTREAL"
SESSION_TOKEN = "FwoGZXIvYXdzENOTREALSESSIONTOKEN0123456789"
UNREACHABLE = f"mongodb://user:{PASSWORD}@127.0.0.1:1/db?serverSelectionTimeoutMS=300"
SECRETS = (PASSWORD, SECRET_KEY, SESSION_TOKEN, ACCESS_KEY, DECODED_PASSWORD, ENCODED_PASSWORD)


def assert_clean(text: str, where: str, secrets: tuple[str, ...] = SECRETS) -> None:
    # Also with whitespace removed: rich wraps long lines, which could split a secret.
    for candidate in (text, "".join(text.split()).replace("│", "")):
        for secret in secrets:
            assert secret not in candidate, f"{where} shows a secret ({secret[:4]}...):\n{text[-3000:]}"


def secret_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MONGODB_", "REPLICATOR_"))}
    env.update(PYTHONPATH=str(ROOT), AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_SESSION_TOKEN=SESSION_TOKEN, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _no_redaction_left_behind() -> Iterator[None]:
    """The handler installs a log record factory for the process: take it away around each test
    (the controls below need a process without it; other test modules should not inherit it)."""
    from replicator.redact import uninstall_log_redaction

    uninstall_log_redaction()
    yield
    uninstall_log_redaction()


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


# The event of case session-token-in-debug-log: one KEYS_ONLY INSERT, read back from the table.
KEYS_ONLY_EVENT = {"Records": [{
    "eventID": "k1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/secret-t/stream/x",
    "dynamodb": {"Keys": {"id": {"S": "zz"}}, "SequenceNumber": "200", "StreamViewType": "KEYS_ONLY"},
}]}


@pytest.mark.parametrize("redaction", ["installed", "control-without"])
def test_lambda_handler_at_debug_logs_no_aws_credential_on_the_read_back_path(
    moto_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    aws_secrets: None, fresh_handler: Any, redaction: str,
) -> None:
    """Root logger at DEBUG (what AWS_LAMBDA_LOG_LEVEL=DEBUG gives) and REPLICATOR_READ_BACK_TABLE
    set: the handler's real boto3 client signs its BatchGetItem with the session token and the
    access key id, and botocore logs the canonical request and the headers. The control (the
    handler without its redaction) shows they are there to leak."""
    monkeypatch.setenv("MONGODB_URI", UNREACHABLE)
    monkeypatch.setenv("MONGODB_DATABASE", "db")
    monkeypatch.setenv("MONGODB_COLLECTION", "secret-t")
    monkeypatch.setenv("MONGODB_TIMEOUT_MS", "300")
    monkeypatch.setenv("REPLICATOR_READ_BACK_TABLE", "secret-t")
    # botocore's service-specific endpoint variable: the handler's boto3.client("dynamodb") is
    # built exactly as in Lambda and still talks to moto's server.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_server.endpoint_url())
    if redaction == "control-without":
        monkeypatch.setattr(fresh_handler, "install_log_redaction", lambda *secrets: None)
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    try:  # MongoDB is unreachable: a failure response, or an error escaping the handler
        seen.append(repr(fresh_handler.lambda_handler(KEYS_ONLY_EVENT, None)))
    except Exception as error:  # its text must be clean too
        import traceback

        seen.append("".join(traceback.format_exception(error)))
    text = "\n".join([*seen, caplog.text, *(r.getMessage() for r in caplog.records)])
    # The read-back request was signed and logged, and answered by moto (the item was found).
    assert "Sending http request" in text and "DynamoDB_20120810.BatchGetItem" in text, text[-3000:]
    assert '{"Responses": {"secret-t": [{"id": {"S": "zz"}' in text
    if redaction == "control-without":
        assert SESSION_TOKEN in text and ACCESS_KEY in text
        return
    assert "X-Amz-Security-Token': b'***'" in text and "x-amz-security-token:***" in text
    assert "Credential=***/" in text and "Signature=***" in text
    assert_clean(text, "the Lambda handler at DEBUG (read-back)")


# -- the poller CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_server() -> Iterator[Any]:
    from harness.backends.base import TableSpec, started
    from harness.backends.moto_source import MotoServerSource

    with started(MotoServerSource()) as source:
        source.create_table(TableSpec("users", ("id", "S")))
        source.dynamodb().put_item(TableName="users", Item={"id": {"S": "u1"}})
        source.create_table(TableSpec("secret-t", ("id", "S")))  # the read-back table
        source.dynamodb().put_item(TableName="secret-t", Item={"id": {"S": "zz"}, "n": {"N": "1"}})
        yield source


@pytest.mark.parametrize("how", fast_first(["option", "environment"]))
@pytest.mark.parametrize("command", fast_first(["run", "resync", "checkpoints"]))
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
    assert done.returncode == 4, done.stderr  # could not run (docs/migration.md, "Exit codes")
    assert "ServerSelectionTimeoutError" in done.stderr and "127.0.0.1:1" in done.stderr
    assert_clean(done.stdout + done.stderr, f"replicator {command} ({how})")


@pytest.mark.parametrize("password", fast_first(["S3cr3t:P4ss", "S3cr3t/P4ss", "S3cr3t@P4ss"]))
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


def test_the_redaction_covers_uris_environment_secrets_and_sigv4() -> None:
    from replicator.redact import redact, secrets_in_argv, secrets_of

    secrets = secrets_of(f"mongodb+srv://user:{ENCODED_PASSWORD}@h/db", secret_env())
    text = (f"mongodb://user:{PASSWORD}@h/db and mongodb+srv://user:{ENCODED_PASSWORD}@h/db said "
            f"{DECODED_PASSWORD} with {SECRET_KEY} and {SESSION_TOKEN} as {ACCESS_KEY}")
    redacted = redact(text, secrets)
    assert_clean(redacted, "redact()")
    assert "mongodb://***@h/db" in redacted
    assert secrets_of("mongodb://u:pa/ss@h/db", {}) == ["pa/ss"]
    # Short access key ids (moto's "testing") are not masked: AWS's have 16+ characters.
    assert secrets_of(None, {"AWS_ACCESS_KEY_ID": "testing"}) == []
    assert secrets_in_argv(["--mongodb=mongodb://u:p w@h", "mongodb://v:x%40y@h"]) == [
        "x%40y", "p w", "x@y"]
    # What botocore logs at DEBUG for a SigV4 request (canonical request, headers, signature).
    signed = ("x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLE+/=\n"
              "'X-Amz-Security-Token': b'IQoJb3JpZ2luX2VjEXAMPLE+/=', 'Authorization': "
              "b'AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEYID0001/20261130/us-east-1/dynamodb/"
              "aws4_request, SignedHeaders=host, Signature=" + "ab12" * 16 + "'\nSignature:\n"
              + "cd34" * 16 + "\n?X-Amz-Credential=ASIAEXAMPLEKEYID0001%2F20261130&"
              "X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLE%2B&X-Amz-Signature=" + "ef56" * 16)
    clean = redact(signed)
    for secret in ("IQoJb3JpZ2lu", "ASIAEXAMPLEKEYID0001", "ab12ab12", "cd34cd34", "ef56ef56"):
        assert secret not in clean, clean
    assert "Credential=***/20261130" in clean and "X-Amz-Credential=***%2F20261130" in clean
    # Credentials as fields: an STS AssumeRole response body (XML or JSON), a config line.
    fields = ("<SecretAccessKey>wJalrSTSsecretEXAMPLE</SecretAccessKey><SessionToken>FwoSTStokenEXAMPLE"
              "</SessionToken> {\"SecretAccessKey\": \"wJalrSTSsecretEXAMPLE\", \"SessionToken\": "
              "\"FwoSTStokenEXAMPLE\"} aws_secret_access_key = wJalrSTSsecretEXAMPLE "
              "aws_session_token=FwoSTStokenEXAMPLE")
    clean = redact(fields)
    assert "STSsecret" not in clean and "STStoken" not in clean, clean
    assert "<SecretAccessKey>***</SecretAccessKey>" in clean and '"SessionToken": "***"' in clean


def test_the_log_record_factory_is_idempotent_chains_and_masks_tracebacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from replicator.redact import install_log_redaction

    seen: list[str] = []
    original = logging.getLogRecordFactory()

    def previous(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        seen.append(record.name)
        return record

    monkeypatch.setattr(logging, "_logRecordFactory", previous)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    install_log_redaction(["extra-secret"])
    install_log_redaction(["another-secret"])
    caplog.set_level(logging.DEBUG, logger="t")
    log = logging.getLogger("t")
    log.debug("token %s, %s and %s", SESSION_TOKEN, "extra-secret", "another-secret")
    try:
        raise RuntimeError(f"failed at mongodb://user:{PASSWORD}@h/db")
    except RuntimeError:
        log.exception("with traceback")
    assert seen == ["t", "t"]  # the previous factory is chained, once (the second call added)
    assert caplog.records[0].getMessage() == "token ***, *** and ***"
    assert_clean(caplog.text, "a logged traceback")
    assert "mongodb://***@h/db" in caplog.text


# -- usage errors: argparse and click echo the argument they refuse ---------------------------------
# Case secret-in-argparse-error: a typo in a systemd unit or container spec must not put the
# password in the journal. The passwords: the case's, one with raw "/" and "@", one with a space
# (no URI pattern can find its end: the command line's own URIs are masked literally).
USAGE_PASSWORDS = {"case": "S3cr3t-P%40ss", "raw-slash-at": "S3cr3t/P4ss@x", "space": "S3cr3t P4ss"}


def _uri(password: str) -> str:
    return f"mongodb://admin:{password}@db.example.net:27017/app"


REPLICATOR_USAGE_ERRORS = {
    "mistyped-option": (["run", "--table", "t", "--mongo-uri", "{uri}"], "unrecognized arguments"),
    "positional": (["run", "--table", "t", "{uri}"], "unrecognized arguments"),
    "ambiguous-prefix": (["run", "--table", "t", "--mongodb={uri}"], "ambiguous option"),
    "as-the-command": (["{uri}", "run", "--table", "t"], "invalid choice"),
    "as-a-number": (["run", "--table", "t", "--mongodb-timeout-ms", "{uri}"], "invalid int value"),
    "as-a-choice": (["checkpoints", "--table", "t", "--log-level", "{uri}"], "invalid choice"),
}


@pytest.mark.parametrize("password", USAGE_PASSWORDS.values(), ids=USAGE_PASSWORDS.keys())
@pytest.mark.parametrize("mistake", REPLICATOR_USAGE_ERRORS, ids=REPLICATOR_USAGE_ERRORS.keys())
def test_replicator_usage_errors_do_not_echo_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, aws_secrets: None,
    mistake: str, password: str,
) -> None:
    from replicator import cli

    monkeypatch.delenv("MONGODB_URI", raising=False)
    template, expected = REPLICATOR_USAGE_ERRORS[mistake]
    with pytest.raises(SystemExit) as exited:
        cli.main([part.replace("{uri}", _uri(password)) for part in template])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert expected in captured.err and "db.example.net" in captured.err, captured.err
    assert_clean(captured.out + captured.err, f"replicator ({mistake})", (*SECRETS, password))


def test_replicator_usage_error_in_a_real_process_does_not_echo_the_password() -> None:
    """The case as reported: `replicator run --mongo-uri <URI>` written to the process's stderr."""
    password = USAGE_PASSWORDS["case"]
    done = subprocess.run(
        [sys.executable, "-m", "replicator.cli", "run", "--table", "t", "--mongo-uri",
         _uri(password)], capture_output=True, text=True, env=secret_env(), cwd=ROOT, timeout=120,
        check=False)
    assert done.returncode == 2
    assert "unrecognized arguments: --mongo-uri mongodb://***@db.example.net" in done.stderr
    assert_clean(done.stdout + done.stderr, "replicator (real process)", (*SECRETS, password))


def test_the_argparse_redaction_has_something_to_hide() -> None:
    """Control: plain argparse puts the URI, password included, in its usage errors."""
    import argparse

    class Plain(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise RuntimeError(message)

    parser = Plain(prog="plain")
    parser.add_argument("--mongodb-uri")
    parser.add_argument("--mongodb-timeout-ms")
    uri = _uri(USAGE_PASSWORDS["case"])
    for argv in (["--mongo-uri", uri], [uri], ["--mongodb=" + uri]):
        with pytest.raises(RuntimeError) as refused:
            parser.parse_args(argv)
        assert USAGE_PASSWORDS["case"] in str(refused.value), argv


HARNESS_USAGE_ERRORS = {
    "extra-argument": (["replay", "--table", "x", "--events", "y", "{uri}"], "unexpected extra"),
    "as-the-command": (["{uri}"], "No such command"),
    "as-a-scenario-path": (["run", "{uri}"], "no such scenario"),
    "as-a-number": (["replay", "--table", "x", "--events", "y", "--batch-size", "{uri}"],
                    "Invalid value"),
}


@pytest.mark.parametrize("mistake", fast_first(HARNESS_USAGE_ERRORS), ids=HARNESS_USAGE_ERRORS.keys())
def test_harness_usage_errors_do_not_echo_the_password(mistake: str) -> None:
    """typer/click echo the bad argument in a rich panel, wrapped at the terminal's width (40
    columns here, so a password would be split across lines: assert_clean joins them)."""
    password = USAGE_PASSWORDS["case"]
    template, expected = HARNESS_USAGE_ERRORS[mistake]
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli",
         *(part.replace("{uri}", _uri(password)) for part in template)],
        capture_output=True, text=True, env=secret_env(COLUMNS="40"), cwd=ROOT, timeout=120,
        check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in " ".join((done.stdout + done.stderr).replace("│", "").split()), done.stderr
    assert_clean(done.stdout + done.stderr, f"harness ({mistake})", (*SECRETS, password))


def test_harness_usage_error_through_clirunner_is_redacted_too() -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    password = USAGE_PASSWORDS["raw-slash-at"]
    result = CliRunner().invoke(app, ["replay", "--table", "x", "--events", "y", _uri(password)])
    assert result.exit_code == 2
    assert "mongodb://***@db.example.net" in result.output
    assert_clean(result.output, "harness via CliRunner", (*SECRETS, password))


# -- the harness CLI -------------------------------------------------------------------------------------
@pytest.mark.slow
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


# -- the one redaction, unit level ------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("DOCKER_HOST=tcp://docker:hunter22@build.example:2376", "tcp://***@build.example:2376"),
    ("mongodb+srv://app:p%40ss/w@c.example/db", "mongodb+srv://***@c.example/db"),
    # an "@" after the host (a path or query) is no userinfo: left as it is
    ("see https://docs.example/a?from=me@example.com", "https://docs.example/a?from=me@example.com"),
])
def test_uri_userinfo_of_any_scheme_is_masked(text: str, expected: str) -> None:
    from replicator.redact import redact

    assert expected in redact(text)


def test_an_error_quoting_a_piece_of_the_password_is_withheld() -> None:
    from replicator.redact import error_detail

    uri = "mongodb://app:first@second@db.example/"  # unescaped "@": pymongo may name "second@db..."
    detail = error_detail(ValueError("cannot resolve host second@db.example"), uri)
    assert "second" not in detail and detail.startswith("ValueError (details withheld")
    assert error_detail(ValueError("Port must be an integer"), uri) == "Port must be an integer"
