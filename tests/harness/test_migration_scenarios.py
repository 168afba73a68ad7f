"""The migration scenarios (initial-sync, gap-recovery) are scenarios like the others: `harness list`
shows them, `harness run` runs them and reports in the common shape (table, JSON, JUnit), a bad
`[migration]` table or `--set` override is one message naming the key; and the commands that
replaced the dev kit's `python -m` entry points (`harness generate`, `harness dynamodb-local`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.convergence import Diff
from harness.junit import write_junit
from harness.lag import LagStats
from harness.runner import HandlerOutcome, RunResult
from harness.scenario import ScenarioError, load_scenario, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MIGRATION = 'name = "m"\ndescription = "x"\n[migration]\nkind = "initial-sync"\n'


# -- listed and loaded ---------------------------------------------------------------------------
def test_harness_list_shows_the_migration_scenarios() -> None:
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("initial-sync", "gap-recovery", "gap-recovery-export"):
        assert name in result.output


def test_a_migration_scenario_loads_with_its_own_table_and_no_workload() -> None:
    scenario = load_scenario("initial-sync")
    assert scenario.kind == "initial-sync"
    assert scenario.table.partition_key == ("pk", "S") and scenario.table.sort_key is None
    assert scenario.workload == {}
    assert load_scenario("smoke").kind == "stream" and not load_scenario("smoke").migration


def test_a_migration_scenario_with_a_table_names_the_key_to_remove(tmp_path: Path) -> None:
    bad = _write(tmp_path / "m.toml", MIGRATION + '[table]\npartition_key = {name = "id", '
                 'type = "S"}\n[expect]\nresult = "converge"\n')
    with pytest.raises(ScenarioError, match=r"m\.toml: key table: a migration scenario .* "
                                            r"remove table"):
        load_scenario(bad)


def test_migration_keys_are_checked_by_the_schema(tmp_path: Path) -> None:
    bad = _write(tmp_path / "m.toml", MIGRATION + 'itemz = 3\n[expect]\nresult = "converge"\n')
    with pytest.raises(ScenarioError, match=r"key migration: .*itemz.*expected one of: .*items"):
        load_scenario(bad)
    both = _write(tmp_path / "k.toml", MIGRATION + 'kill_at = [0, 1]\nkill_random = 3\n'
                  '[expect]\nresult = "converge"\n')
    with pytest.raises(ScenarioError, match="kill_at or kill_random, not both"):
        load_scenario(both)
    diverging = _write(tmp_path / "d.toml", MIGRATION + '[expect]\nresult = "diverge"\n')
    with pytest.raises(ScenarioError, match=r"key expect: a migration scenario expects"):
        load_scenario(diverging)


def test_overrides_are_set_before_the_schema_checks_them() -> None:
    overrides = parse_overrides(["migration.items=20000", "migration.kill_at=[2, 3]",
                                 "migration.method=export"])
    assert overrides == {"migration.items": 20000, "migration.kill_at": [2, 3],
                         "migration.method": "export"}
    scenario = load_scenario("gap-recovery", overrides)
    assert scenario.migration["items"] == 20000 and scenario.migration["kill_at"] == [2, 3]
    assert scenario.migration["method"] == "export"
    assert load_scenario("gap-recovery").migration["items"] == 100  # the file is unchanged
    with pytest.raises(ScenarioError, match=r"key migration.items: 0 is less than the minimum"):
        load_scenario("initial-sync", {"migration.items": 0})
    with pytest.raises(ScenarioError, match="give KEY=VALUE"):
        parse_overrides(["migration.items"])


def test_a_bad_override_on_the_command_line_exits_2_naming_the_key() -> None:
    result = runner.invoke(app, ["run", "initial-sync", "--set", "migration.segments=0"])
    assert result.exit_code == 2
    assert "migration.segments" in result.output


def test_the_kill_point_is_given_or_drawn_among_the_pages_and_checked_before_the_run() -> None:
    from harness.migration import kill_point

    sizes = {"items": 20000, "segments": 4, "page_size": 500}
    assert kill_point({**sizes, "kill_at": [3, 9]}) == (3, 9)
    drawn = {kill_point({**sizes, "kill_random": seed}) for seed in range(30)}
    assert len(drawn) > 5 and all(0 <= s < 4 and 1 <= p <= 10 for s, p in drawn)
    assert kill_point(sizes) is None
    result = runner.invoke(app, ["run", "initial-sync", "--set", "migration.kill_at=[5, 1]"])
    assert result.exit_code == 2
    assert "segment 5 is not one of the 2 segments" in " ".join(result.output.split())


def test_handler_does_not_apply_to_a_migration_scenario() -> None:
    result = runner.invoke(app, ["run", "initial-sync", "--handler", "baseline"])
    assert result.exit_code == 2
    assert "migration scenario" in result.output


# -- the common report -----------------------------------------------------------------------------
def _migration_result(*, verify: bool) -> RunResult:
    result = RunResult("initial-sync", "moto", "mongoeco", 12)
    result.outcomes.append(HandlerOutcome("replicator", "converge", Diff(), LagStats(), {}, "c"))
    result.checks = {"verify": verify, "no_regression_after_handover": True}
    return result


def test_a_failed_check_fails_the_scenario_and_its_junit_case(tmp_path: Path) -> None:
    passed, failed = _migration_result(verify=True), _migration_result(verify=False)
    assert passed.met and not failed.met
    assert failed.as_dict()["expectation_met"] is False
    write_junit(tmp_path / "j.xml", [failed])
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "converged, but failed: verify"


@pytest.mark.slow
def test_harness_run_initial_sync_exits_0_with_the_common_json_report(tmp_path: Path) -> None:
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "initial-sync", "--set", "migration.items=40",
         "--set", "migration.page_size=10", "--report-json", str(report), "--junit", str(junit)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Scenario initial-sync: PASS" in done.stdout
    data: dict[str, Any] = json.loads(report.read_text())
    # the shape of every scenario's report (a stream scenario's keys), plus what a migration adds
    assert set(data) == set(RunResult("s", "moto", "mongoeco", 1).as_dict())
    assert data["scenario"] == "initial-sync" and data["target"] == "mongoeco"
    assert data["expectation_met"] is True and data["converged"] is True
    assert data["checks"] == {"verify": True, "no_regression_after_handover": True}
    assert data["counts"]["workload"]["items"] == 40
    assert data["counts"]["documents"] == data["counts"]["expected_documents"] > 0
    assert [h["handler"] for h in data["handlers"]] == ["replicator"]
    assert data["details"]["killed"] is True and data["details"]["killed_at"] == [1, 1]
    assert data["details"]["resumed_segments"] > 0
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "initial-sync[replicator]"


# -- the commands that replaced python -m entry points ----------------------------------------------
def test_generate_writes_a_scenario_stream_as_a_recording(tmp_path: Path) -> None:
    from harness.captures.recording import read_recording

    scenario = _write(tmp_path / "w.toml", 'name = "w"\ndescription = "x"\n[table]\n'
                      'partition_key = {name = "id", type = "S"}\n[workload]\noperations = 500\n'
                      'keys = 10\nseed = 3\nmix = {put_new = 2, put_overwrite = 3, delete = 1}\n'
                      '[expect]\nresult = "converge"\n')
    result = runner.invoke(app, ["generate", str(scenario), str(tmp_path / "rec"),
                                 "--set", "workload.operations=30"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    recording = read_recording(tmp_path / "rec")
    assert printed["records"] == len(recording.records) > 0
    assert recording.metadata["workload"]["operations"] == 30


def test_generate_refuses_a_migration_scenario(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "initial-sync", str(tmp_path / "rec")])
    assert result.exit_code == 2
    assert "no workload" in result.output


def test_dynamodb_local_where_says_how_to_install_when_missing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dynamodb-local", "where", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "harness dynamodb-local install" in result.output
    jar_dir = tmp_path / "lib" / "dynamodb_local_2026-01-16"
    (jar_dir / "DynamoDBLocal_lib").mkdir(parents=True)
    (jar_dir / "DynamoDBLocal.jar").write_bytes(b"")
    found = runner.invoke(app, ["dynamodb-local", "where", "--cache-dir", str(tmp_path)])
    assert found.exit_code == 0 and found.stdout.strip() == str(jar_dir)
