"""The harness CLI as a user meets it: exit codes, one clear message, reports on disk."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from harness.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dynamodb-local"
runner = CliRunner()


@pytest.mark.slow
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


def test_an_error_naming_a_long_path_keeps_the_path_whole(tmp_path: Path) -> None:
    """The error line is never cut at the console's width (80 columns off a terminal): a path
    longer than that stays on one line, as the operator would copy it."""
    deep = tmp_path / "customer-migrations" / "2026-12-07" / "orders-table" / "staging-scenarios"
    deep.mkdir(parents=True)
    bad = deep / "bad.toml"
    bad.write_text('name = "bad"\ndescription = "x"\n[table]\npartition_key = {name = "id", '
                   'type = "X"}\n[workload]\noperations = 5\n[expect]\nresult = "converge"\n')
    assert len(f"error: {bad}") > 80
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert str(bad) in line and "table.partition_key.type" in line


def test_an_unknown_key_in_a_scenario_lists_the_allowed_keys(tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text('name = "typo"\ndescription = "x"\n[table]\npartition_key = {name = "id", '
                   'type = "S"}\n[workload]\noperations = 5\n[driver]\nbatchsize = 3\n'
                   '[expect]\nresult = "converge"\n')
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "driver" in result.output and "batch_size" in result.output


@pytest.mark.slow
def test_a_diverging_expectation_that_converges_fails_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('name = "wrong"\ndescription = "expects the core to diverge"\n[table]\n'
                        'partition_key = {name = "id", type = "S"}\n[workload]\noperations = 10\n'
                        'keys = 3\n[expect]\nresult = "diverge"\n')
    result = runner.invoke(app, ["run", str(scenario)])
    assert result.exit_code == 1
    assert "NOT met" in result.output


@pytest.mark.slow
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


@pytest.mark.slow
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


# Issue #14 part 5: the rough edges a new user hits.


@pytest.mark.parametrize(("option", "typo", "valid"), [
    ("--source", "motoo", "moto-server"), ("--target", "mongoo", "mongomock"),
])
def test_a_mistyped_source_or_target_is_one_line_naming_the_valid_ones(
    option: str, typo: str, valid: str
) -> None:
    result = runner.invoke(app, ["run", "smoke", option, typo])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a KeyError
    line = next(line for line in result.output.splitlines() if typo in line)
    # The console wraps the message at its width: the names may go on the next line.
    assert "valid:" in line and valid in " ".join(result.output.split())


def test_replay_target_typo_is_refused_before_the_replay() -> None:
    folder = FIXTURES / "seed_table"
    result = runner.invoke(app, ["replay", "--table", str(folder / "table.json"),
                                 "--events", str(folder / "events.json"), "--target", "mongoo"])
    assert result.exit_code == 2 and "valid:" in result.output and "mongoeco" in result.output


def test_replay_quarantines_a_record_without_sequence_number_and_goes_on(tmp_path: Path) -> None:
    folder = FIXTURES / "seed_table"
    events = json.loads((folder / "events.json").read_text())
    del events["Records"][1]["dynamodb"]["SequenceNumber"]
    (tmp_path / "events.json").write_text(json.dumps(events))
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["replay", "--table", str(folder / "table.json"),
                                 "--events", str(tmp_path / "events.json"),
                                 "--report-json", str(report)])
    assert result.exit_code == 0, result.output
    assert not isinstance(result.exception, KeyError)
    data = json.loads(report.read_text())
    assert data["records"] == len(events["Records"]) and data["error"] is None


@pytest.mark.slow
def test_reports_go_into_missing_folders_and_their_paths_are_printed(tmp_path: Path) -> None:
    report, junit, plot = (tmp_path / "a" / "r.json", tmp_path / "b" / "c" / "j.xml",
                           tmp_path / "d" / "lag.png")
    result = runner.invoke(app, ["run", "smoke", "--report-json", str(report), "--junit", str(junit),
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")
    for path in (report, junit, plot):
        assert path.is_file()
        assert str(path.resolve()) in output


def test_a_report_path_that_is_a_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "smoke", "--report-json", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output.replace("\n", "")
    assert "Scenario smoke" not in result.output  # refused before anything ran


def test_all_skips_scenarios_that_need_a_real_topology(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.scenario as scenario_module

    tiny = tmp_path / "tiny.toml"
    tiny.write_text('name = "tiny"\ndescription = "x"\n[table]\npartition_key = {name = "id", '
                    'type = "S"}\n[workload]\noperations = 5\nkeys = 2\n[expect]\nresult = "converge"\n')
    shipped = [(scenario_module.resolve(n), scenario_module.load_scenario(n))
               for n in ("sharded", "standalone")]
    monkeypatch.setattr(scenario_module, "list_scenarios",
                        lambda: [*shipped, (tiny, scenario_module.load_scenario(tiny))])
    result = runner.invoke(app, ["run", "--all"])
    assert result.exit_code == 0, result.output
    assert "skipped sharded: needs target testcontainers-sharded" in result.output
    assert "skipped standalone: needs target testcontainers-standalone" in result.output
    assert "Scenario tiny: PASS" in result.output
    assert "Scenario sharded" not in result.output


def test_scenarios_name_their_own_target_and_hold_no_leftover_note() -> None:
    from harness.scenario import SCENARIO_DIR, load_scenario

    for name, target in (("sharded", "testcontainers-sharded"),
                         ("standalone", "testcontainers-standalone")):
        assert load_scenario(name).target["name"] == target
        assert "the lead wires" not in (SCENARIO_DIR / f"{name}.toml").read_text()


def test_a_refused_target_is_probed_with_a_short_server_selection_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pymongo
    from pymongo.errors import ServerSelectionTimeoutError

    from harness.backends.uri_target import PROBE_TIMEOUT_MS

    timeouts: list[int] = []

    class RefusingClient:
        def __init__(self, uri: str, serverSelectionTimeoutMS: int, **_: object) -> None:
            timeouts.append(serverSelectionTimeoutMS)
            self.admin = self

        def command(self, name: str) -> None:
            raise ServerSelectionTimeoutError(
                "127.0.0.1:1: [Errno 111] Connection refused, Timeout: 2.0s, Topology Description: "
                "<TopologyDescription id: 1, topology_type: Unknown, servers: [...]>")

        def close(self) -> None:
            pass

    monkeypatch.setattr(pymongo, "MongoClient", RefusingClient)
    result = runner.invoke(app, ["run", "smoke", "--target-uri", "mongodb://127.0.0.1:1/"])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert "cannot reach MongoDB" in output and "Connection refused" in output
    assert "Topology Description" not in output  # one line, not pymongo's topology dump
    assert PROBE_TIMEOUT_MS <= 2_000 and min(timeouts) == PROBE_TIMEOUT_MS


def test_a_refused_target_uri_ends_in_one_clean_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends import uri_target

    # pymongo retries the refused connection (refused at once on 127.0.0.1:1) until the probe's
    # server selection timeout: a shorter one ends in the same error, 2 s sooner
    monkeypatch.setattr(uri_target, "PROBE_TIMEOUT_MS", 200)
    result = runner.invoke(app, ["run", "smoke", "--target-uri", "mongodb://127.0.0.1:1/"])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert output.startswith("error: smoke: cannot reach MongoDB") and "Traceback" not in output


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_built_wheel_ships_the_scenarios_and_runs_outside_a_checkout(tmp_path: Path) -> None:
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = {Path(n).name for n in names if n.startswith("harness/data/scenarios/")}
        assert shipped == {p.name for p in (ROOT / "scenarios").glob("*.toml")}
        assert "harness/schema/scenario.schema.json" in names
        archive.extractall(tmp_path / "site")
    # the unpacked wheel first on the path, run from a folder that is not a checkout
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-c", "import sys, harness.cli, harness.scenario as s; "
         "print(s.SCENARIO_DIR); print(harness.cli.__file__); "
         "sys.argv = ['harness', 'run', 'smoke']; harness.cli.main()"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(tmp_path / "site" / "harness" / "data" / "scenarios")
    assert done.stdout.splitlines()[1].startswith(str(tmp_path / "site"))
    assert "Scenario smoke: PASS" in done.stdout


@functools.cache
def load_noxfile() -> Any:
    """noxfile.py, loaded once (nox registers each session as the module runs)."""
    pytest.importorskip("nox")
    import importlib.util

    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    return noxfile


class NoxSession:
    """What the noxfile's sessions call on a nox session, recorded."""

    def __init__(self, venv: Path) -> None:
        self.virtualenv = type("Venv", (), {"location": str(venv)})()
        self.installs: list[tuple[str, ...]] = []
        self.runs: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.posargs: list[str] = []

    def install(self, *args: str) -> None:
        self.installs.append(args)

    def log(self, message: str) -> None:
        pass

    def run(self, *args: str, **kwargs: Any) -> None:
        self.runs.append((args, kwargs))


def test_nox_sessions_reinstall_only_when_the_project_definition_changed(tmp_path: Path) -> None:
    noxfile = load_noxfile()

    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "venv").mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    session = NoxSession(tmp_path / "venv")
    for _ in range(3):
        noxfile._install(session, root=project)
    assert session.installs == [("-e", ".[dev]")]  # the reused environment is not reinstalled
    (project / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["y"]\n')
    noxfile._install(session, root=project)
    assert len(session.installs) == 2  # a changed pyproject.toml is installed again
    noxfile._install(session, spec=".[harness]", root=project)
    assert len(session.installs) == 3  # so is another extra


def test_the_fast_session_writes_bytecode_even_where_the_shell_says_not_to(tmp_path: Path) -> None:
    """pytest keeps its rewritten test modules in __pycache__ only where bytecode is written:
    without it every fast run rewrote and compiled them all again (~5 s of CPU)."""
    noxfile = load_noxfile()
    (tmp_path / "venv").mkdir()
    session = NoxSession(tmp_path / "venv")
    noxfile.fast(session)
    ((args, kwargs),) = [run for run in session.runs if run[0][0] == "pytest"]
    assert args == ("pytest", *noxfile.FAST_TESTS)
    assert kwargs["env"]["PYTHONDONTWRITEBYTECODE"] == ""  # empty: Python writes bytecode


def test_default_output_folders_are_ignored_by_git() -> None:
    for path in ("chaos-recordings/seed-3/events.json", "chaos-report.json", "reports/r.json"):
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, timeout=60)
        assert done.returncode == 0, f"{path} is not ignored"
