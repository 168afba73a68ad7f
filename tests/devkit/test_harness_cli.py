"""The harness CLI as a user meets it: exit codes, one clear message, reports on disk."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from harness.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dynamodb-local"
runner = CliRunner()


def test_run_smoke_writes_json_and_junit_reports(tmp_path: Path) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    result = runner.invoke(app, ["run", "smoke", "--report-json", str(report), "--junit", str(junit)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["converged"] is True
    assert data["counts"]["stream_records"] > 0 and data["counts"]["documents"] > 0
    assert data["throughput"]["events_per_s"] > 0
    assert data["lag"]["p50_s"] is not None and data["lag"]["p99_s"] >= data["lag"]["p50_s"]
    assert data["diff"]["missing_ids"] == [] and data["diff"]["changed"] == []
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"


def test_a_bad_scenario_file_names_the_file_the_key_and_what_was_expected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ndescription = "x"\n[table]\npartition_key = {name = "id", '
                   'type = "X"}\n[workload]\noperations = 5\n[expect]\nresult = "converge"\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output
    assert "table.partition_key.type" in result.output
    assert "'X' is not one of" in result.output


def test_an_unknown_key_in_a_scenario_lists_the_allowed_keys(tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text('name = "typo"\ndescription = "x"\n[table]\npartition_key = {name = "id", '
                   'type = "S"}\n[workload]\noperations = 5\n[driver]\nbatchsize = 3\n'
                   '[expect]\nresult = "converge"\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "driver" in result.output and "batch_size" in result.output


def test_a_diverging_expectation_that_converges_fails_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('name = "wrong"\ndescription = "expects the core to diverge"\n[table]\n'
                        'partition_key = {name = "id", type = "S"}\n[workload]\noperations = 10\n'
                        'keys = 3\n[expect]\nresult = "diverge"\n')
    result = runner.invoke(app, ["run", str(scenario)])
    assert result.exit_code == 1
    assert "NOT met" in result.output


def test_missing_java_gives_one_clear_message_and_nothing_left_running() -> None:
    env = {**os.environ, "PATH": "/nonexistent", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "smoke", "--source", "dynamodb-local"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "java" in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("case", ["seed_table", "attribute_removal", "type_zoo", "composite_key"])
def test_replay_matches_and_dumps_canonical_extended_json(case: str, tmp_path: Path) -> None:
    dump = tmp_path / "out.jsonl"
    folder = FIXTURES / case
    result = runner.invoke(app, [
        "replay", "--table", str(folder / "table.json"), "--events", str(folder / "events.json"),
        "--expect-items", str(folder / "final_items.json"), "--batch-size", "2",
        "--dump-target", str(dump),
    ])
    assert result.exit_code == 0, result.output
    lines = dump.read_text().splitlines()
    expected = json.loads((folder / "final_items.json").read_text())
    assert len(lines) == len(expected)
    assert all(line.startswith('{"_id": ') for line in lines)


def test_replay_of_the_baseline_diverges_with_a_diff_naming_field_paths() -> None:
    folder = FIXTURES / "attribute_removal"
    result = runner.invoke(app, [
        "replay", "--table", str(folder / "table.json"), "--events", str(folder / "events.json"),
        "--expect-items", str(folder / "final_items.json"), "--handler", "baseline",
    ])
    assert result.exit_code == 1
    assert "diverged" in result.output
    assert "missing" in result.output  # a removed attribute is <missing> in the source


def test_replay_of_keys_only_quarantines_clearly(caplog: pytest.LogCaptureFixture) -> None:
    # Issue #10: records the configuration cannot handle are quarantined per record, with the fix
    # logged once (no batch-wide ConfigurationError any more).
    folder = FIXTURES / "keys_only"
    with caplog.at_level(logging.WARNING, logger="replicator"):
        result = runner.invoke(app, [
            "replay", "--table", str(folder / "table.json"), "--events", str(folder / "events.json"),
        ])
    assert result.exit_code == 0, result.output
    configuration = [r.getMessage() for r in caplog.records
                     if r.getMessage().startswith("configuration")]
    assert len(configuration) == 1 and "KEYS_ONLY" in configuration[0]
    assert "item reader" in configuration[0]


def test_chaos_command_reports_no_divergence(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    result = runner.invoke(app, ["chaos", "--schedules", "5", "--report-json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["schedules"] == 5 and data["divergences"] == []


def test_a_malformed_target_uri_gives_a_clean_error_without_the_password() -> None:
    # a password with an unescaped "@" and "/": pymongo refuses the URI
    uri = "mongodb://user:p@ss/w0rdX@127.0.0.1:1/x"
    result = runner.invoke(app, ["run", "smoke", "--target-uri", uri])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert "MongoDB" in output and "Traceback" not in output
    for piece in ("w0rdX", "p@ss", "ss:27017"):
        assert piece not in output
