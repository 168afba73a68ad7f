"""Kill the poller at random points and restart it, on DynamoDB Local, while a workload writes.

A real SIGKILL of a process cannot be followed by a check of an in-memory MongoDB (mongomock dies
with it) and no real MongoDB runs here, so the crash is simulated in-process: a
:class:`SimulatedCrash` (a BaseException nothing in the poller catches) is raised at a seeded
random point -- before a bulk write, after k of its n operations, after the write but before the
checkpoint, before or after the checkpoint write, before a GetRecords call -- and a fresh Poller
(new StreamReader, new Replicator) is started over the same mongomock collection and checkpoint
collection, exactly what a restarted process would find. What a SIGKILL adds beyond that (nothing
runs after the signal) is what the simulated crash already assumes: the poller's state in memory
is lost; only MongoDB and the stream remain.

Checked after every write and every crash: no document's sequence number ever goes down (a
regression). Checked at the end of each seed: the collection equals the table (nothing lost).
"""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import pytest
from poller_helpers import (
    Crasher,
    CrashingCheckpoints,
    CrashingCollection,
    CrashingStreams,
    RegressionWatch,
    SimulatedCrash,
    diff,
    make_table,
)

from harness.backends.mongomock_target import mongomock_client
from harness.faults import BulkWriteShim
from harness.workload import WorkloadSpec, run_workload
from replicator.poller import Poller
from replicator.settings import Settings

SEEDS = int(os.environ.get("POLLER_KILL_SEEDS", "30"))
MIX = {"put_new": 4, "put_overwrite": 2, "update_set": 3, "update_remove": 2, "delete": 2,
       "batch_write": 1, "transaction": 1}


def _one_seed(source: Any, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    sort = seed % 3 == 0
    table = make_table(source, f"kill{seed}", sort=sort)
    database = mongomock_client()["replica"]
    target = database[table.spec.name]
    watch = RegressionWatch(target, database[f"{table.spec.name}_tombstones"])
    crasher = Crasher(seed, rate=rng.choice([0.03, 0.05, 0.08]))
    settings = Settings(key_schema=table.spec.key_schema)
    workload = WorkloadSpec(operations=rng.choice([60, 90, 120]), keys=rng.choice([8, 20, 40]),
                            mix=MIX, seed=seed, rate_per_s=rng.choice([400.0, 800.0]))
    outcome: dict[str, Any] = {}

    def write() -> None:
        outcome["result"] = run_workload(source.dynamodb(), table.spec, workload)

    writer = threading.Thread(target=write, name=f"workload-{seed}", daemon=True)
    writer.start()
    restarts = 0
    runs = 0

    def start_poller() -> Poller:
        return Poller(
            CrashingStreams(source.streams(), crasher), source.dynamodb(), table.spec.name,
            CrashingCollection(BulkWriteShim(target), crasher, watch.observe), settings,
            CrashingCheckpoints(database[f"{table.spec.name}_checkpoints"], crasher,
                                table=table.spec.name),
            batch_size=rng.choice([1, 3, 10, 50]), poll_interval=0.02, log_interval=3600,
            backoff_base_s=0.001, backoff_max_s=0.01,
        )

    while True:
        finished_writing = not writer.is_alive()
        if finished_writing:
            crasher.enabled = False  # the last run drains without crashes
        runs += 1
        try:
            start_poller().run(once=True)
        except SimulatedCrash:
            # Runs repeat only while the writer writes (however long a loaded machine makes
            # that); once it has finished, crashes are off and the next run must be the last.
            assert not finished_writing, f"seed {seed}: a crash after crashes were switched off"
            restarts += 1
            watch.observe()
            continue
        if finished_writing:
            break
    writer.join()
    assert outcome["result"].ok, outcome["result"].errors[:3]
    watch.observe()
    found = diff(source, table, target)
    assert found.converged, (seed, found.as_dict())
    assert not watch.regressions, (seed, watch.regressions[:5])
    source.delete_table(table)
    return {"restarts": restarts, "runs": runs, "crashes": dict(crasher.crashes),
            "observations": watch.observations}


@pytest.mark.dynamodb_local
@pytest.mark.slow
def test_killed_at_random_points_and_restarted_it_loses_nothing_and_nothing_regresses(
    dynamodb_local: Any,
) -> None:
    totals: dict[str, int] = {}
    restarts = 0
    for seed in range(SEEDS):
        report = _one_seed(dynamodb_local, seed)
        restarts += report["restarts"]
        for site, count in report["crashes"].items():
            totals[site] = totals.get(site, 0) + count
    assert restarts >= SEEDS, f"too few crashes to mean anything: {restarts}"
    # every kind of crash point was hit at least once over the seeds
    assert set(totals) >= {"before the write", "mid-bulk", "after the write, before the checkpoint",
                           "before the checkpoint", "after the checkpoint", "GetRecords"}, totals
    print(f"\n{SEEDS} seeds, {restarts} crashes and restarts: {totals}")
