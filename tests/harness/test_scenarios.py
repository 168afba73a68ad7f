"""Every shipped scenario meets its expectation, on the embedded stack and on DynamoDB Local.

The embedded stack is moto + the default target, mongoeco (a wire-protocol server, driven by the
real pymongo client); the dev kit needs Python >= 3.13 for it. The migration scenarios
(initial-sync, gap-recovery, gap-recovery-export) run through the same entry, harness.run.run_any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mongoeco", reason="the mongoeco target needs Python >= 3.13")

from harness.backends.base import DEFAULT_TARGET
from harness.run import run_any
from harness.runner import run_scenario
from harness.scenario import SCENARIO_DIR, list_scenarios, load_scenario

# "load" (50,000 events) is run by nox -s load; a small version of it is in test_load.py.
SCENARIOS = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml") if p.stem != "load")
MIGRATION_SCENARIOS = sorted(s.name for _, s in list_scenarios() if s.migration)
STREAM_SCENARIOS = [name for name in SCENARIOS if name not in MIGRATION_SCENARIOS]
REQUIRED = {"smoke", "crud-mix", "attribute-removal", "type-zoo", "hot-keys", "composite-keys",
            "large-items", "batch-and-transactions", "baseline-defects", "standalone", "sharded",
            "initial-sync", "gap-recovery", "gap-recovery-export", "merge-mode"}


def test_the_required_scenarios_are_shipped_and_valid() -> None:
    assert set(SCENARIOS) >= REQUIRED
    assert all(scenario.description for _, scenario in list_scenarios())


def test_the_migration_scenarios_are_the_three_of_issue_12() -> None:
    kinds = {s.name: (s.kind, s.migration.get("method")) for _, s in list_scenarios()
             if s.migration}
    assert kinds == {"initial-sync": ("initial-sync", None),
                     "gap-recovery": ("gap-recovery", "re-copy"),
                     "gap-recovery-export": ("gap-recovery", "export")}


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAM_SCENARIOS)
def test_scenario_meets_its_expectation_on_moto_and_the_default_target(name: str) -> None:
    assert DEFAULT_TARGET == "mongoeco"
    result = run_scenario(load_scenario(name), source="moto", target=DEFAULT_TARGET)
    report = result.as_dict()
    assert result.met, report["handlers"]
    assert report["counts"]["stream_records"] > 0
    for handler in report["handlers"]:
        assert handler["driver"]["discarded_records"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", MIGRATION_SCENARIOS)
def test_migration_scenario_meets_its_expectation_on_moto_and_the_default_target(
    name: str
) -> None:
    result = run_any(load_scenario(name), source="moto")
    report = result.as_dict()
    assert result.target == DEFAULT_TARGET
    assert result.met, (report["diff"], report["checks"], report["details"])
    assert report["checks"]["verify"] is True
    assert report["counts"]["documents"] == report["counts"]["expected_documents"] > 0
    assert sum(report["counts"]["workload"]["live_writes"].values()) > 0
    details = report["details"]
    assert details.get("resync_required", True)  # gap-recovery: the poller saw the gap first
    if load_scenario(name).migration.get("kill_at"):
        assert details["killed"] is True and details["killed_at"]


def test_run_scenario_names_the_entry_for_a_migration_scenario() -> None:
    with pytest.raises(ValueError, match=r"initial-sync is a migration scenario.*run_any"):
        run_scenario(load_scenario("initial-sync"))


@pytest.mark.slow
def test_baseline_defects_names_the_diverging_paths() -> None:
    result = run_scenario(load_scenario("baseline-defects"), source="moto", target=DEFAULT_TARGET)
    by_handler = {o.handler: o for o in result.outcomes}
    baseline, core = by_handler["baseline"], by_handler["replicator"]
    assert core.diff.converged and not baseline.diff.converged
    fields = [f for d in baseline.diff.changed for f in d.fields]
    # decimals became floats
    assert any(f.path == "price" and isinstance(f.actual, float) for f in fields)
    # binary stayed base64 text
    assert any(f.path == "checksum" and isinstance(f.expected, bytes) and isinstance(f.actual, str)
               for f in fields)
    # attributes DynamoDB removed were kept
    assert any(f.expected == "<missing>" for f in fields)


@pytest.mark.slow
def test_merge_mode_scenario_in_replace_mode_loses_the_applications_fields() -> None:
    # the scenario's MongoDB-only writer, against a replicator that replaces whole documents
    # (expected to diverge: a lane expected to converge is waited for, up to run.timeout_s)
    scenario = load_scenario("merge-mode", {"replicator.write_mode": "replace",
                                            "expect.result": "diverge"})
    result = run_scenario(scenario, source="moto", target=DEFAULT_TARGET)
    (outcome,) = result.outcomes
    assert outcome.expectation == "diverge" and not outcome.diff.converged
    lost = [f for d in outcome.diff.changed for f in d.fields]
    assert lost and all(f.path == "mongo_only_*" for f in lost)
    assert not outcome.diff.missing and not outcome.diff.extra


@pytest.mark.dynamodb_local
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in ("large-items", "kinesis")]
                         + ["large-items"])  # kinesis: moto's Kinesis only (docs/sources.md)
def test_scenario_meets_its_expectation_on_dynamodb_local(name: str, tmp_path: Path,
                                                         dynamodb_local: Any) -> None:
    scenario = load_scenario(name)
    # The module's DynamoDB Local (a JVM start costs seconds of CPU; each scenario's table has a
    # unique name, harness.runner.provision); a migration scenario starts its own source.
    shared = None if scenario.migration else {"endpoint_url": dynamodb_local.endpoint_url()}
    result = run_any(scenario, source="dynamodb-local", target=DEFAULT_TARGET, source_options=shared)
    assert result.met, result.as_dict()["handlers"]
