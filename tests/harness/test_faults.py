"""The write-side fault kinds (issue 13): what each does to a collection, that the core retries or
quarantines rather than loses under it, and, with a bug planted, that chaos catches it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
)
from pymongo.operations import ReplaceOne

from harness.backends.mongomock_target import mongomock_client
from harness.chaos import run_chaos
from harness.faults import (
    PERMANENT_CODES,
    BulkWriteShim,
    FaultLog,
    FaultPlan,
    FaultyCollection,
    FaultySideCollection,
    faulty_sides,
)
from replicator import apply
from replicator.core import Replicator
from replicator.settings import Settings
from replicator.tombstones import TombstoneOutcome, TombstoneStore

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"


def lambda_record(n: int, key: str, *, name: str = "MODIFY") -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": {"id": {"S": key}}, "SequenceNumber": f"{n:021d}",
                            "SizeBytes": 20, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    if name != "REMOVE":
        body["NewImage"] = {"id": {"S": key}, "n": {"N": str(n)}}
    return {"eventID": f"e{n}", "eventName": name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "eventSourceARN": ARN,
            "dynamodb": body}


def fresh() -> Any:
    return mongomock_client()["faults"]


def upserts(count: int) -> list[ReplaceOne[dict[str, Any]]]:
    return [ReplaceOne({"_id": f"k{i}"}, {"_id": f"k{i}", "_ddb_seq": f"{i:040d}"}, upsert=True)
            for i in range(count)]


# -- the main collection ---------------------------------------------------------------------
def test_permanent_errors_fail_the_chosen_operations_alone_and_again_on_redelivery() -> None:
    # Given a plan that makes about half the operations permanently invalid
    database = fresh()
    faulty = FaultyCollection(BulkWriteShim(database["items"]),
                              FaultPlan(seed=3, permanent_error_rate=0.5))
    # When an unordered bulk of 20 upserts is written
    with pytest.raises(BulkWriteError) as caught:
        faulty.bulk_write(upserts(20), ordered=False)
    errors = caught.value.details["writeErrors"]
    # Then the rejected ones carry a permanent code, and every other one was applied
    assert 0 < len(errors) < 20
    assert {e["code"] for e in errors} <= set(PERMANENT_CODES)
    rejected = {e["index"] for e in errors}
    stored = {d["_id"] for d in database["items"].find({})}
    assert stored == {f"k{i}" for i in range(20) if i not in rejected}
    assert caught.value.details["nUpserted"] == 20 - len(rejected)
    # And the same operations are rejected again (a validator does not pass with time)
    with pytest.raises(BulkWriteError) as again:
        faulty.bulk_write(upserts(20), ordered=False)
    assert {e["index"] for e in again.value.details["writeErrors"]} == rejected
    assert {entry["sequence"] for entry in faulty.log.rejected} == {
        f"{i:040d}" for i in rejected}


def test_a_partial_bulk_applies_an_arbitrary_subset_not_only_a_prefix() -> None:
    # Given bulks that are always cut off (or retried by pymongo) after a random subset
    subsets = []
    for seed in range(30):
        database = fresh()
        faulty = FaultyCollection(BulkWriteShim(database["items"]),
                                  FaultPlan(seed=seed, partial_bulk_rate=1.0),
                                  rng=random.Random(seed))
        # When a bulk of 6 is written
        try:
            faulty.bulk_write(upserts(6), ordered=False)
        except AutoReconnect:
            subsets.append(sorted(int(d["_id"][1:]) for d in database["items"].find({})))
        else:
            # pymongo's retry sent it again: everything is there
            assert database["items"].count_documents({}) == 6
    # Then some cut-off bulk left a subset that is not a prefix of the bulk
    assert subsets
    assert any(s != list(range(len(s))) for s in subsets), subsets


class ScriptedRandom(random.Random):
    """Draws the given numbers, then ``then`` for ever: a fault chosen, not drawn."""

    def __init__(self, draws: list[float], then: float = 0.99) -> None:
        super().__init__(0)
        self.draws = list(draws)
        self.then = then

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else self.then


#: a partial bulk of one statement (roll 0.0 < partial_bulk_rate) that ran (0.0 < 0.5) and that
#: pymongo's retryable write then sent again (0.0 < 0.5); every later bulk meets no fault
RETRIED_AFTER_THE_FIRST_STATEMENT = [0.0, 0.0, 0.0]


def test_pymongos_retry_of_a_partial_bulk_answers_the_executed_statements_with_their_results(
        ) -> None:
    # Given a bulk cut off after its first statement, an upsert that inserted, then retried
    database = fresh()
    faulty = FaultyCollection(BulkWriteShim(database["items"]),
                              FaultPlan(seed=0, partial_bulk_rate=0.5),
                              # the fault, its first statement run alone, pymongo's retry
                              rng=ScriptedRandom([0.0, 0.0, 0.99, 0.99, 0.0]))
    guarded = [ReplaceOne({"_id": f"k{i}", "_ddb_seq": {"$lt": f"{i:040d}"}},
                          {"_id": f"k{i}", "_ddb_seq": f"{i:040d}"}, upsert=True)
               for i in range(3)]
    # When the retry is answered
    answer = faulty.bulk_write(guarded, ordered=False)
    # Then every upsert is reported as inserting its document -- the executed one too, not as
    # an E11000 on its own document (the server does not run an executed statement again)
    assert faulty.log.injected == {"partial_bulk:retried": 1}
    assert answer.upserted_ids == {i: f"k{i}" for i in range(3)}
    assert answer.upserted_count == 3
    assert database["items"].count_documents({}) == 3


def test_a_delete_landing_between_probe_and_a_partially_retried_insert_does_not_resurrect(
        ) -> None:
    # Given an insert whose bulk is cut off after it ran, then retried by pymongo, and the
    # delete of the same item (newer) landing between its tombstone probe and its bulk
    # (chaos seeds 419 and 815: a held concurrent retry)
    database = fresh()
    faulty = FaultyCollection(BulkWriteShim(database["items"]),
                              FaultPlan(seed=0, partial_bulk_rate=0.5),
                              rng=ScriptedRandom(RETRIED_AFTER_THE_FIRST_STATEMENT))
    deleter = Replicator(BulkWriteShim(database["items"]), Settings())
    delete = lambda_record(2, "a", name="REMOVE")

    class DeleteFirst:
        def __init__(self, inner: Any) -> None:
            self.inner, self.pending = inner, True

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def bulk_write(self, requests: Any, *args: Any, **kwargs: Any) -> Any:
            if self.pending:
                self.pending = False
                assert deleter.handle({"Records": [delete]}) == {"batchItemFailures": []}
            return self.inner.bulk_write(requests, *args, **kwargs)

    inserter = Replicator(DeleteFirst(faulty), Settings())
    # When the insert is delivered
    response = inserter.handle({"Records": [lambda_record(1, "a", name="INSERT")]})
    # Then its post-insert re-check saw the delete's tombstone and took the document back out
    assert faulty.log.injected == {"partial_bulk:retried": 1}
    assert response == {"batchItemFailures": []}
    assert database["items"].find_one({"_id": "a"}) is None


def test_a_rollback_restores_before_images_logs_them_first_and_fails_the_acknowledgement() -> None:
    # Given one stored document and a plan that rolls back every bulk
    database = fresh()
    database["items"].insert_one({"_id": "k0", "_ddb_seq": "0" * 40, "old": True})
    log = FaultLog()
    faulty = FaultyCollection(BulkWriteShim(database["items"]),
                              FaultPlan(seed=1, rollback_rate=1.0), log)
    # When a bulk updates it and inserts three more
    with pytest.raises(NotPrimaryError):
        faulty.bulk_write(upserts(4)[::-1], ordered=False)
    # Then the rolled-back documents are back as they were (or gone again), the rest applied
    (rollback,) = log.rollbacks
    restored = dict(rollback.restored)
    assert restored
    for i in range(4):
        document = database["items"].find_one({"_id": f"k{i}"})
        key = (str, f"k{i}")
        if key not in restored:
            assert document is not None and document["_ddb_seq"] == f"{i:040d}"
        elif i == 0:
            assert document == {"_id": "k0", "_ddb_seq": "0" * 40, "old": True}
            assert restored[key] == "0" * 40
        else:
            assert document is None and restored[key] is None


# -- the side collections --------------------------------------------------------------------
def test_side_faults_fail_before_applying_time_out_after_applying_and_fail_create_index() -> None:
    database = fresh()
    log = FaultLog()
    failing = FaultySideCollection(database["a"], "tombstones",
                                   FaultPlan(side_error_rate=1.0), log, random.Random(0))
    with pytest.raises(PyMongoError):
        failing.bulk_write(upserts(2), ordered=False)
    with pytest.raises(PyMongoError):
        list(failing.find({}))
    assert database["a"].count_documents({}) == 0
    late = FaultySideCollection(database["b"], "quarantine",
                                FaultPlan(side_timeout_rate=1.0), log, random.Random(0))
    with pytest.raises(NetworkTimeout):
        late.bulk_write(upserts(2), ordered=False)
    assert database["b"].count_documents({}) == 2  # applied; only the answer was lost
    index = FaultySideCollection(database["c"], "tombstones",
                                 FaultPlan(index_error_rate=1.0), log, random.Random(0))
    with pytest.raises((AutoReconnect, OperationFailure)):
        index.create_index("deleted_at", expireAfterSeconds=60)
    assert set(log.injected) == {"side_error:tombstones", "side_timeout:quarantine",
                                 "index_error:tombstones"}


@pytest.mark.parametrize("rates", [{"side_error_rate": 1.0}, {"index_error_rate": 1.0}])
def test_a_failing_tombstone_collection_makes_the_core_retry_the_batch(rates: dict[str, float],
                                                                      ) -> None:
    # Given a Replicator whose tombstone collection always fails
    database = fresh()
    plan = FaultPlan.from_dict(rates)
    replicator = Replicator(BulkWriteShim(database["items"]), Settings(),
                            **faulty_sides(database, plan, FaultLog()))
    # When a batch is delivered
    response = replicator.handle({"Records": [lambda_record(1, "a"),
                                              lambda_record(2, "b", name="REMOVE")]})
    # Then it is reported for redelivery from its first record, and nothing was written
    assert response == {"batchItemFailures": [{"itemIdentifier": f"{1:021d}"}]}
    assert database["items"].count_documents({}) == 0


def test_a_failing_quarantine_makes_the_core_retry_not_lose_the_bad_record() -> None:
    database = fresh()
    quarantine = FaultySideCollection(database["items_quarantine"], "quarantine",
                                      FaultPlan(side_error_rate=1.0), FaultLog(),
                                      random.Random(0))
    replicator = Replicator(BulkWriteShim(database["items"]), Settings(), quarantine=quarantine)
    bad = lambda_record(5, "a")
    bad["dynamodb"]["Keys"] = {"id": {"N": "12e"}}
    response = replicator.handle({"Records": [lambda_record(4, "b"), bad]})
    assert response == {"batchItemFailures": [{"itemIdentifier": f"{5:021d}"}]}


def test_plans_round_trip_and_old_recordings_load_without_the_new_kinds() -> None:
    plan = FaultPlan.random(random.Random(7), 7)
    assert FaultPlan.from_dict(plan.as_dict()) == plan
    assert FaultPlan.random(random.Random(7), 7) == plan  # seeded
    legacy = {k: v for k, v in plan.as_dict().items() if not k.startswith(
        ("side_", "index_", "permanent_", "partial_", "rollback"))}
    assert FaultPlan.from_dict(legacy).rollback_rate == 0.0
    drawn = [FaultPlan.random(random.Random(s), s) for s in range(40)]
    for name in ("side_error_rate", "side_timeout_rate", "index_error_rate",
                 "permanent_error_rate", "partial_bulk_rate", "rollback_rate"):
        assert any(getattr(p, name) > 0 for p in drawn), name


# -- chaos with one fault kind and a planted bug ---------------------------------------------
@pytest.fixture
def focused(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``focused(**rates)``: chaos schedules draw only their workload; the plan is these rates
    (with the schedule's seed)."""

    def use(**rates: Any) -> None:
        monkeypatch.setattr(FaultPlan, "random", classmethod(
            lambda cls, rng, seed: cls(seed=seed, **rates)))

    yield use


@pytest.mark.slow
def test_chaos_with_write_side_faults_only_neither_diverges_nor_loses(focused: Any) -> None:
    focused(side_error_rate=0.2, side_timeout_rate=0.1, index_error_rate=0.5,
            permanent_error_rate=0.1, partial_bulk_rate=0.2, rollback_rate=0.2, late_retry_rate=0.2,
            max_batch=5)
    report = run_chaos(8, seed=500)
    assert report["divergences"] == [], report["divergences"][:1]
    assert report["lost_records"] == report["regressions"] == report["resurrections"] == 0
    injected = report["faults_injected"]
    for prefix in ("side_error:", "side_timeout:", "index_error:", "permanent_error:",
                   "partial_bulk:", "rollback"):
        assert any(k.startswith(prefix) for k in injected), (prefix, injected)


def _let_failed_tombstone_writes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: when the tombstone collection fails, the writes go ahead unguarded."""
    original = TombstoneStore.guard

    def guard(self: TombstoneStore, writes: Any, native: Any = None) -> TombstoneOutcome:
        outcome = original(self, writes, native)
        outcome.clear.extend(w for w, _ in outcome.failed)
        outcome.failed = []
        return outcome

    monkeypatch.setattr(TombstoneStore, "guard", guard)


@pytest.mark.slow
@pytest.mark.parametrize("rates", [{"side_error_rate": 0.5}, {"index_error_rate": 1.0}],
                         ids=["tombstone-writes-fail", "tombstone-index-fails"])
def test_chaos_catches_a_core_that_writes_on_when_the_tombstones_fail(
        focused: Any, monkeypatch: pytest.MonkeyPatch, rates: dict[str, float]) -> None:
    _let_failed_tombstone_writes_through(monkeypatch)
    focused(late_retry_rate=0.5, max_batch=2, **rates)
    report = run_chaos(6, seed=0)
    # Found by the per-delivery check: a late retry brings a deleted document back (a later
    # delivery may delete it again, so the final state alone can miss it)
    assert report["resurrections"] > 0, report["faults_injected"]


@pytest.mark.slow
def test_chaos_catches_a_core_that_drops_a_record_it_could_not_quarantine(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = apply.write

    def write(collection: Any, writes: Any, **kwargs: Any) -> apply.WriteResult:
        outcome = original(collection, writes, **kwargs)
        if getattr(collection, "role", None) == "quarantine":
            outcome.failed = []  # planted bug: a failed quarantine write counts as kept
        return outcome

    monkeypatch.setattr("replicator.core.apply.write", write)
    focused(side_error_rate=0.5, malformed_rate=0.5, max_batch=5)
    report = run_chaos(5, seed=0)
    assert report["lost_records"] > 0, report["faults_injected"]


@pytest.mark.slow
def test_chaos_catches_a_core_that_drops_permanently_rejected_writes(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Replicator, "_quarantine_rejected", lambda self, *args: None)
    focused(permanent_error_rate=0.2, max_batch=5)
    report = run_chaos(5, seed=0)
    assert report["lost_records"] > 0
    assert any("permanently rejected write not quarantined" in lost
               for d in report["divergences"] for lost in d["lost_records"])


def _treat_a_lost_connection_as_success(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: a bulk that raised a connection error is taken as applied."""
    original = apply._bulk_write

    def bulk_write(collection: Any, writes: Any, sequence_field: str,
                   native: Any = None) -> apply.WriteResult:
        outcome = original(collection, writes, sequence_field, native)
        if outcome.failed and all("AutoReconnect" in why or "NotPrimary" in why
                                  for _, why in outcome.failed):
            outcome.applied.extend(w for w, _ in outcome.failed)
            outcome.failed = []
        return outcome

    monkeypatch.setattr(apply, "_bulk_write", bulk_write)


@pytest.mark.slow
def test_chaos_catches_a_core_that_trusts_a_partially_applied_bulk(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _treat_a_lost_connection_as_success(monkeypatch)
    focused(partial_bulk_rate=0.5, max_batch=10)
    report = run_chaos(5, seed=0)
    assert report["diverged"] > 0, report["faults_injected"]
    assert report["faults_injected"].get("partial_bulk:dropped", 0) > 0


@pytest.mark.slow
def test_chaos_catches_a_core_that_ignores_a_failed_acknowledgement_after_a_rollback(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _treat_a_lost_connection_as_success(monkeypatch)
    focused(rollback_rate=0.5, max_batch=10)
    report = run_chaos(5, seed=0)
    assert report["diverged"] > 0, report["faults_injected"]
    assert report["faults_injected"].get("rollback", 0) > 0


def test_a_failing_archive_keeps_the_document_until_its_ttl_delete_is_archived() -> None:
    # Given ttl_deletes="archive" and an archive collection that fails every write
    database = fresh()
    archive = FaultySideCollection(database["items_ttl_archive"], "archive",
                                   FaultPlan(side_error_rate=1.0), FaultLog(), random.Random(0))
    replicator = Replicator(BulkWriteShim(database["items"]), Settings(ttl_deletes="archive"),
                            archive=archive)
    assert replicator.handle({"Records": [lambda_record(1, "a")]}) == {"batchItemFailures": []}
    expiry = lambda_record(2, "a", name="REMOVE")
    expiry["dynamodb"]["OldImage"] = {"id": {"S": "a"}, "n": {"N": "1"}}
    expiry["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    # When the item's TTL expiry is delivered
    response = replicator.handle({"Records": [expiry]})
    # Then it is retried and the document stays (deleting it now would lose the item)
    assert response == {"batchItemFailures": [{"itemIdentifier": f"{2:021d}"}]}
    assert database["items"].find_one({"_id": "a"}) is not None
    # And once the archive answers, the redelivery archives it and deletes the document
    archive.plan = FaultPlan()
    assert replicator.handle({"Records": [expiry]}) == {"batchItemFailures": []}
    assert database["items"].find_one({"_id": "a"}) is None
    assert database["items_ttl_archive"].count_documents({}) == 1


@pytest.mark.slow
def test_a_recording_replays_the_write_side_faults_and_the_same_loss(
        focused: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from harness.chaos import replay_recording

    # Given a failing schedule (rejected writes dropped) with every write-side fault on
    monkeypatch.setattr(Replicator, "_quarantine_rejected", lambda self, *args: None)
    focused(permanent_error_rate=0.2, side_error_rate=0.2, side_timeout_rate=0.1,
            index_error_rate=0.5, partial_bulk_rate=0.2, rollback_rate=0.2, max_batch=5)
    report = run_chaos(3, seed=0, recordings=tmp_path)
    failing = report["divergences"][0]
    # When its recording is replayed
    replayed = replay_recording(failing["recording"])
    # Then the same faults happen and the same records are lost
    assert replayed.faults == failing["faults"]
    assert replayed.lost_records == failing["lost_records"]
    assert replayed.injected == json.loads(
        (Path(failing["recording"]) / "schedule.json").read_text())["injected"]


@pytest.mark.slow
def test_chaos_catches_tombstones_switched_off(focused: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Planted bug: no delete is remembered and no upsert is probed
    monkeypatch.setattr(TombstoneStore, "guard",
                        lambda self, writes, native=None: TombstoneOutcome(clear=list(writes)))
    focused(late_retry_rate=0.5, max_batch=2)
    report = run_chaos(6, seed=0)
    assert report["resurrections"] > 0, report["faults_injected"]


@pytest.mark.slow
def test_chaos_catches_the_probe_skipped_once_the_insert_recheck_is_skipped_too(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Planted bug: deletes are remembered, but no upsert is probed. Alone it is harmless with
    # one delivery at a time: the re-check after an insert (Replicator._undo_resurrections)
    # removes the resurrected document in the same delivery (30 schedules: nothing seen). With
    # the re-check skipped too, the per-delivery check sees the resurrection.
    original = TombstoneStore.guard

    def guard(self: TombstoneStore, writes: Any, native: Any = None) -> TombstoneOutcome:
        deletes = [w for w in writes if w.kind == "delete"]
        outcome = original(self, deletes, native)
        outcome.clear.extend(w for w in writes if w.kind != "delete")
        return outcome

    monkeypatch.setattr(TombstoneStore, "guard", guard)
    monkeypatch.setattr(Replicator, "_undo_resurrections", lambda self, *args: set())
    focused(late_retry_rate=0.5, max_batch=2)
    report = run_chaos(6, seed=0)
    assert report["resurrections"] > 0, report["faults_injected"]
