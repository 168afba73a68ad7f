"""harness record / shrink and chaos recordings: capture, anonymize, replay, minimize, reproduce."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.captures.format import load_capture_dir
from harness.captures.recording import Anonymizer, anonymize, read_recording, record_workload, write_recording
from harness.captures.replay import replay
from harness.captures.shrink import ddmin, diverges, items_from_records, shrink
from harness.cli import app
from harness.scenario import load_scenario

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dynamodb-local"
runner = CliRunner()


@pytest.fixture(autouse=True)
def quiet_replicator() -> Any:
    # Replays of the baseline and injected faults log every failed record; the tests assert on data.
    log = logging.getLogger("replicator")
    level = log.level
    log.setLevel(logging.CRITICAL)
    yield
    log.setLevel(level)


def _mongomock() -> Any:
    from harness.backends.mongomock_target import mongomock_client

    return mongomock_client()["t"]["c"]


def _strings_and_binaries(value: Any, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("S", "B", "SS", "BS", "N", "NS"):
            ((tag, inner),) = value.items()
            out.append((tag, inner))
        else:
            for inner in value.values():
                _strings_and_binaries(inner, out)
    elif isinstance(value, list):
        for inner in value:
            _strings_and_binaries(inner, out)
    return out


# -- anonymizing -----------------------------------------------------------------------------------
def test_anonymizing_keeps_types_sizes_and_key_consistency() -> None:
    original = read_recording(FIXTURES / "type_zoo")
    masked = anonymize(original, b"key-1")
    before = _strings_and_binaries([original.records, original.final_items], [])
    after = _strings_and_binaries([masked.records, masked.final_items], [])
    assert [tag for tag, _ in before] == [tag for tag, _ in after]  # every type in its place
    changed = 0
    for (tag, old), (_, new) in zip(before, after, strict=True):
        if tag == "S":
            assert len(new.encode()) == len(old.encode())
            changed += old != new
        elif tag == "B":
            assert len(base64.b64decode(new)) == len(base64.b64decode(old))
            changed += old != new
        elif tag in ("SS", "BS"):
            assert len(set(new)) == len(set(old)) == len(new)  # members stay distinct
        else:
            assert old == new  # numbers kept
    assert changed > 20
    text = json.dumps([masked.records, masked.final_items])
    assert "Rome" not in text and "person-s-7" not in text
    # The same value gets the same replacement everywhere: keys and images still agree.
    for record in masked.records:
        body = record["dynamodb"]
        image = body.get("NewImage") or body.get("OldImage")
        if image:
            assert all(image[name] == value for name, value in body["Keys"].items())


def test_anonymizing_is_deterministic_per_key() -> None:
    first, second, other = Anonymizer(b"k"), Anonymizer(b"k"), Anonymizer(b"other")
    assert first.string("alice@example.com") == second.string("alice@example.com")
    assert first.string("alice@example.com") != other.string("alice@example.com")
    assert first.binary(b"\x00\x01") == second.binary(b"\x00\x01")
    # Injective while replacements of that size remain: 70 distinct one-byte strings stay distinct.
    one = Anonymizer(b"k")
    assert len({one.string(chr(33 + n)) for n in range(70)}) == 70 and one.merged == 0
    assert one.string("") == ""


def test_an_anonymized_recording_still_replays_and_converges(tmp_path: Path) -> None:
    masked = anonymize(read_recording(FIXTURES / "composite_key"), b"k")
    capture = load_capture_dir(write_recording(masked, tmp_path / "masked"))
    result = replay(capture, _mongomock())
    assert result.ok and result.diff is not None and result.diff.converged


# -- recording -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_recorded_moto_workload_replays_and_converges(tmp_path: Path) -> None:
    recording = record_workload("moto", load_scenario("smoke"))
    assert recording.records and recording.final_items
    assert recording.metadata["shards"][0]["records"] == len(recording.records)
    write_recording(recording, tmp_path / "smoke")
    assert {p.name for p in (tmp_path / "smoke").iterdir()} == {
        "table.json", "events.json", "final_items.json", "recording.json"}
    result = replay(load_capture_dir(tmp_path / "smoke"), _mongomock())
    assert result.ok and result.diff is not None and result.diff.converged


@pytest.mark.dynamodb_local
@pytest.mark.slow
def test_record_on_dynamodb_local_then_replay_converges(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    recorded = runner.invoke(app, ["record", "--scenario", "smoke", "--source", "dynamodb-local",
                                   "--out", str(out)])
    if recorded.exit_code == 2 and "Java" in recorded.output:
        pytest.skip(recorded.output)
    assert recorded.exit_code == 0, recorded.output
    assert json.loads((out / "recording.json").read_text())["source"] == "dynamodb-local"
    replayed = runner.invoke(app, ["replay", "--table", str(out / "table.json"), "--events",
                                   str(out / "events.json"), "--expect-items",
                                   str(out / "final_items.json")])
    assert replayed.exit_code == 0, replayed.output
    assert "converged" in replayed.output


@pytest.mark.parametrize("arguments, message", [
    ([], "give --scenario"),
    (["--scenario", "smoke", "--table", "t"], "give --scenario"),
    (["--scenario", "smoke", "--source", "motto"], "unknown source 'motto'"),
    (["--table", "t", "--source", "moto"], "--table needs --source aws or an emulator"),
    (["--scenario", "smoke", "--anonymize"], "--anonymize needs a key"),
])
def test_record_usage_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], message: str
) -> None:
    monkeypatch.delenv("HARNESS_ANONYMIZE_KEY", raising=False)
    result = runner.invoke(app, ["record", "--out", str(tmp_path / "o"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# -- shrinking -------------------------------------------------------------------------------------
def test_ddmin_finds_a_one_minimal_subset_with_few_tests() -> None:
    calls: list[list[int]] = []

    def fails(subset: list[int]) -> bool:
        calls.append(subset)
        return 3 in subset and 17 in subset

    assert ddmin(list(range(40)), fails) == [3, 17]
    assert len(calls) < 60
    assert len({tuple(c) for c in calls}) == len(calls)  # no subset replayed twice
    with pytest.raises(ValueError, match="does not fail"):
        ddmin([1, 2], lambda subset: False)


def test_items_from_records_follow_the_last_record_per_key() -> None:
    capture = load_capture_dir(FIXTURES / "attribute_removal")
    derived = items_from_records(capture.records, capture.table.key_schema)
    result = replay(capture, _mongomock())
    assert result.diff is not None and result.diff.converged
    assert len(derived) == len(capture.final_items or [])


@pytest.mark.slow
def test_shrink_reduces_a_baseline_divergence_to_a_few_records(tmp_path: Path) -> None:
    recording = record_workload("moto", load_scenario("smoke"))
    assert len(recording.records) > 100
    result = shrink(recording, "baseline")
    assert 1 <= len(result.kept) <= 3
    out = write_recording(result.recording, tmp_path / "minimal")
    minimal = load_capture_dir(out)
    assert len(minimal.records) == len(result.kept)
    # The minimal recording still diverges for the baseline, and converges for the replicator.
    assert diverges(minimal, "baseline", _mongomock)[0]
    assert not diverges(minimal, "replicator", _mongomock)[0]


def test_shrink_cli_on_a_captured_fixture(tmp_path: Path) -> None:
    out = tmp_path / "small"
    result = runner.invoke(app, ["shrink", str(FIXTURES / "attribute_removal"), "--out", str(out),
                                 "--handler", "baseline"])
    assert result.exit_code == 0, result.output
    assert "18 records -> 2" in result.output
    assert len(json.loads((out / "events.json").read_text())["Records"]) == 2
    assert json.loads((out / "recording.json").read_text())["shrunk"]["handler"] == "baseline"


def test_shrink_shrinks_the_replicators_failure_by_default(tmp_path: Path) -> None:
    # attribute_removal converges for the replicator: without --handler there is nothing to shrink
    result = runner.invoke(app, ["shrink", str(FIXTURES / "attribute_removal"), "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "does not fail" in result.output and "handler: replicator" in result.output
    # the handler a recording names (recording.json) is the default for it
    named = tmp_path / "named"
    shutil.copytree(FIXTURES / "attribute_removal", named)
    (named / "recording.json").write_text(json.dumps({"handler": "baseline"}))
    result = runner.invoke(app, ["shrink", str(named), "--out", str(tmp_path / "small")])
    assert result.exit_code == 0, result.output
    assert "18 records -> 2" in result.output and "baseline:" in result.output


def test_shrink_refuses_a_recording_that_does_not_fail(tmp_path: Path) -> None:
    result = runner.invoke(app, ["shrink", str(FIXTURES / "attribute_removal"), "--out",
                                 str(tmp_path / "x"), "--handler", "replicator"])
    assert result.exit_code == 2
    assert "does not fail" in result.output


# -- chaos recordings ------------------------------------------------------------------------------
NO_GUARD_DIVERGING_SEED = 7  # found with `harness chaos --no-guard --schedules 16` (S key, 1 lane)


@pytest.mark.slow
def test_a_no_guard_chaos_recording_reproduces_its_divergence(tmp_path: Path) -> None:
    from harness.backends.base import source_backend, started
    from harness.chaos import replay_recording, run_schedule

    with started(source_backend("moto")) as source:
        original = run_schedule(source, NO_GUARD_DIVERGING_SEED, guard=False, recordings=tmp_path)
    assert original.diverged and original.recording is not None
    directory = Path(original.recording)
    schedule = json.loads((directory / "schedule.json").read_text())
    assert schedule["guard"] is False and schedule["esm"]["report_batch_item_failures"] is True
    assert schedule["faults"] == original.faults

    replayed = replay_recording(directory)
    assert replayed.diverged
    assert replayed.diff == original.diff
    assert replayed.injected == original.injected

    # `harness replay` on it applies the faults (exit 1: diverged) ...
    events = ["--table", str(directory / "table.json"), "--events", str(directory / "events.json"),
              "--expect-items", str(directory / "final_items.json")]
    result = runner.invoke(app, ["replay", *events])
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output
    # ... and --no-faults shows that the records alone replicate fine.
    result = runner.invoke(app, ["replay", "--no-faults", *events])
    assert result.exit_code == 0, result.output


def test_record_a_table_with_the_users_aws_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--source aws` uses boto3's default configuration: moto's mock stands in for AWS here.
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1",
                        # moto serves no account-based Streams endpoint (docs/sources.md)
                        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="orders", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for n in range(3):
            client.put_item(TableName="orders", Item={"id": {"S": f"o{n}"}, "n": {"N": str(n)}})
        client.delete_item(TableName="orders", Key={"id": {"S": "o1"}})
        result = runner.invoke(app, ["record", "--table", "orders", "--source", "aws",
                                     "--out", str(tmp_path / "aws")])
    assert result.exit_code == 0, result.output
    recording = read_recording(tmp_path / "aws")
    assert [r["eventName"] for r in recording.records] == ["INSERT"] * 3 + ["REMOVE"]
    assert recording.metadata["source"] == "aws"
    assert ":eu-west-1:" in recording.metadata["stream_arn"]  # the user's region was used
    assert replay(load_capture_dir(tmp_path / "aws"), _mongomock()).ok
