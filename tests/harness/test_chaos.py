"""Randomized fault schedules: none diverges with the core; switching the guard off is caught."""

from __future__ import annotations

import json
from pathlib import Path

from harness.chaos import run_chaos
from harness.fixtures import load_capture_dir
from harness.replay import replay


def test_fault_schedules_neither_diverge_nor_lose_records() -> None:
    # Given 40 seeded schedules with every fault kind at random rates
    report = run_chaos(40, seed=1000)
    # Then none diverged or lost a record
    assert report["schedules"] == 40
    assert report["divergences"] == [], report["divergences"][:1]
    assert report["lost_records"] == 0
    # And the faults really happened (the schedules are not trivially clean)
    injected = report["faults_injected"]
    for kind in ("transient_error", "crash_mid_batch", "write_concern_error", "duplicate_delivery",
                 "late_retry", "handler_timeout"):
        assert injected.get(kind, 0) > 0, (kind, injected)
    assert sum(v for k, v in injected.items() if k.startswith("malformed:")) > 0


def test_without_the_stale_write_guard_chaos_finds_a_divergence(tmp_path: Path) -> None:
    # Given the same kind of schedules but the stale-write guard switched off
    report = run_chaos(40, seed=0, guard=False, recordings=tmp_path)
    # Then at least one schedule diverges, and it comes with a replayable recording
    assert report["divergences"], "chaos did not notice the guard was off"
    failing = report["divergences"][0]
    recording = Path(failing["recording"])
    schedule = json.loads((recording / "schedule.json").read_text())
    assert schedule["seed"] == failing["seed"]
    assert "--no-guard" in schedule["reproduce"]
    assert failing["diff"] is not None
    # And replaying the recorded stream through the core (guard on, no faults) converges
    capture = load_capture_dir(recording)
    from harness.backends.mongomock_target import mongomock_client

    collection = mongomock_client()["replay"]["items"]
    assert replay(capture, collection, batch_size=3).ok
