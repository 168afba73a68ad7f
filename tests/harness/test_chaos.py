"""Randomized fault schedules: none diverges with the core, on both embedded targets; switching the
guard off is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import mongoeco_target
from harness.captures.format import load_capture_dir
from harness.captures.replay import replay
from harness.chaos import run_chaos
from harness.chaos.shape import WORKLOADS

TARGETS = [
    "mongomock",
    pytest.param("mongoeco", marks=pytest.mark.skipif(
        not mongoeco_target.available(), reason="mongoeco is not installed (Python 3.13 only)")),
]


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fault_schedules_neither_diverge_nor_lose_records(target: str) -> None:
    # Given 24 seeded schedules with every fault kind at random rates, on the target
    report = run_chaos(24, seed=1000, target=target)
    # Then none diverged or lost a record
    assert report["schedules"] == 24
    assert report["divergences"] == [], report["divergences"][:1]
    assert report["lost_records"] == 0
    # And the faults really happened (the schedules are not trivially clean)
    injected = report["faults_injected"]
    for kind in ("transient_error", "crash_mid_batch", "write_concern_error", "duplicate_delivery",
                 "late_retry", "handler_timeout", "concurrent_retry", "overlap:after_retry",
                 "overlap:during_retry"):
        assert injected.get(kind, 0) > 0, (kind, injected)
    assert sum(v for k, v in injected.items() if k.startswith("malformed:")) > 0
    # And the schedules ran with several lanes per shard, split shards and every workload kind
    shapes = report["shapes"]
    assert shapes.get("shard_split", 0) > 0, shapes
    assert any(shapes.get(f"parallelization_factor:{n}", 0) for n in (5, 10)), shapes
    assert {f"workload:{kind}" for kind in WORKLOADS} <= set(shapes), shapes


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fault_schedules_in_merge_mode_neither_diverge_nor_lose_records(target: str) -> None:
    # Given seeded schedules with every fault kind, the replicator in write_mode="merge"
    report = run_chaos(12, seed=2000, target=target, shape_overrides={"write_mode": "merge"})
    # Then none diverged (on the table's part of each document), lost or regressed
    assert report["schedules"] == 12
    assert report["divergences"] == [], report["divergences"][:1]
    assert (report["lost_records"], report["regressions"], report["resurrections"]) == (0, 0, 0)
    assert sum(report["faults_injected"].values()) > 0


@pytest.mark.slow
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
