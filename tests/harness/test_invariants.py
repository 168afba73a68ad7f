"""The per-delivery check (harness.invariants): what it reports, what it excuses, and that chaos
with it catches what the final state alone does not."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import harness.chaos.drive
from harness.backends.mongomock_target import mongomock_client
from harness.chaos import run_chaos
from harness.convergence import Diff
from harness.faults import FaultLog, FaultPlan
from harness.invariants import DeliveryChecker, excuse
from harness.model import TTL_IDENTITY
from replicator import apply
from replicator.keys import identity
from replicator.plan import Planner
from replicator.settings import SEQUENCE_FIELD, Settings
from replicator.writes import guard_bound

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"


def seq(n: int) -> str:
    return f"{n:040d}"


def remove(n: int, key: str) -> dict[str, Any]:
    return {"eventID": f"e{n}", "eventName": "REMOVE", "eventSourceARN": ARN,
            "dynamodb": {"Keys": {"id": {"S": key}}, "SequenceNumber": str(n),
                         "StreamViewType": "NEW_AND_OLD_IMAGES"}}


def checker(log: FaultLog | None = None, **options: Any) -> tuple[DeliveryChecker, Any]:
    collection = mongomock_client()["invariants"]["items"]
    return DeliveryChecker(collection, Planner(Settings()), log or FaultLog(), **options), collection


def test_a_document_going_back_to_an_older_sequence_number_is_a_regression() -> None:
    check, collection = checker()
    collection.insert_one({"_id": "a", "_ddb_seq": seq(7)})
    assert check.after_delivery({"Records": []}) == []
    # When a delivery leaves the document at an older version
    collection.replace_one({"_id": "a"}, {"_id": "a", "_ddb_seq": seq(5)})
    (violation,) = check.after_delivery({"Records": []})
    # Then the violation names the document, both sequence numbers and the delivery
    assert violation.as_dict() == {"kind": "regression", "_id": "'a'", "before": seq(7),
                                   "after": seq(5), "delivery": 2}
    assert (check.regressions, check.resurrections) == (1, 0)
    # And moving forward again is no violation
    collection.replace_one({"_id": "a"}, {"_id": "a", "_ddb_seq": seq(9)})
    assert check.after_delivery({"Records": []}) == []


def test_a_deleted_document_coming_back_older_than_its_delete_is_a_resurrection() -> None:
    check, collection = checker()
    collection.insert_one({"_id": "a", "_ddb_seq": seq(3)})
    check.after_delivery({"Records": []})
    # When the delete with sequence number 8 is delivered and applied
    collection.delete_one({"_id": "a"})
    assert check.after_delivery({"Records": [remove(8, "a")]}) == []
    # Then a version older than the delete coming back is a resurrection
    collection.insert_one({"_id": "a", "_ddb_seq": seq(6)})
    (violation,) = check.after_delivery({"Records": []})
    assert (violation.kind, violation.before, violation.after, violation.delivery) == (
        "resurrection", seq(8), seq(6), 3)
    # And a version newer than the delete is the key written again, not a resurrection
    collection.delete_one({"_id": "a"})
    check.after_delivery({"Records": [remove(10, "a")]})
    collection.insert_one({"_id": "a", "_ddb_seq": seq(11)})
    assert check.after_delivery({"Records": []}) == []


def modify(n: int, key: str) -> dict[str, Any]:
    return {"eventID": f"e{n}", "eventName": "MODIFY", "eventSourceARN": ARN,
            "dynamodb": {"Keys": {"id": {"S": key}}, "NewImage": {"id": {"S": key}},
                         "SequenceNumber": str(n), "StreamViewType": "NEW_AND_OLD_IMAGES"}}


def test_with_lanes_a_delivery_checks_its_own_lanes_documents_only() -> None:
    # Given two lanes, each with one key seen at sequence number 7
    collection = mongomock_client()["invariants"]["items"]
    check = DeliveryChecker(collection, Planner(Settings()), FaultLog(),
                            lane_of=lambda event: event["lane"])
    for key in ("a", "b"):
        collection.insert_one({"_id": key, "_ddb_seq": seq(7)})
        check.after_delivery({"lane": key, "Records": [modify(7, key)]})
    # When lane b is in the middle of a delivery that shows an older version for a while
    collection.replace_one({"_id": "b"}, {"_id": "b", "_ddb_seq": seq(5)})
    # Then a delivery of lane a ending meanwhile does not judge lane b's document (what it would
    # see depends on thread timing)
    assert check.after_delivery({"lane": "a", "Records": [modify(8, "a")]}) == []
    # And lane b's own delivery ending does
    (violation,) = check.after_delivery({"lane": "b", "Records": [modify(9, "b")]})
    assert (violation.kind, violation.document_id) == ("regression", "b")


@pytest.mark.parametrize(("mode", "violations"), [("ignore", 0), ("delete", 1)])
def test_a_ttl_expiry_the_core_keeps_is_no_delete(mode: str, violations: int) -> None:
    # Given the core's ttl_deletes mode
    collection = mongomock_client()["invariants"]["items"]
    check = DeliveryChecker(collection, Planner(Settings(ttl_deletes=mode)), FaultLog())
    # When a TTL expiry (seq 8) is delivered before the key's older write (seq 6) landed
    expiry = {**remove(8, "a"), "userIdentity": dict(TTL_IDENTITY)}
    check.after_delivery({"Records": [expiry]})
    collection.insert_one({"_id": "a", "_ddb_seq": seq(6)})
    # Then under "ignore" the write landing is right (the document is kept), under "delete" it
    # is a resurrection
    assert len(check.after_delivery({"Records": []})) == violations


def test_an_injected_rollback_is_excused_unless_the_checker_ignores_it() -> None:
    for ignore, expected in ((False, []), (True, ["regression", "resurrection"])):
        log = FaultLog()
        check, collection = checker(log, ignore_rollbacks=ignore)
        collection.insert_one({"_id": "a", "_ddb_seq": seq(4)})
        collection.insert_one({"_id": "b", "_ddb_seq": seq(2)})
        check.after_delivery({"Records": []})
        collection.replace_one({"_id": "a"}, {"_id": "a", "_ddb_seq": seq(9)})
        collection.delete_one({"_id": "b"})
        check.after_delivery({"Records": [remove(5, "b")]})
        # When a failover rolls both back (logged first, as FaultyCollection does)
        log.rolled_back([(identity("a"), seq(4)), (identity("b"), seq(2))])
        collection.replace_one({"_id": "a"}, {"_id": "a", "_ddb_seq": seq(4)})
        collection.insert_one({"_id": "b", "_ddb_seq": seq(2)})
        found = check.after_delivery({"Records": []})
        # Then nothing is reported -- unless the rollback is ignored (the planted bug)
        assert sorted(v.kind for v in found) == expected


def test_excuse_drops_only_the_given_documents_from_a_diff() -> None:
    diff = Diff(missing=["a", "b"], extra=["c"], expected_count=2, actual_count=1)
    excused = excuse(diff, {identity("a"), identity("c")})
    assert (excused.missing, excused.extra, excused.converged) == (["b"], [], False)
    assert excuse(diff, {identity(k) for k in "abc"}).converged


@pytest.fixture
def focused(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(**rates: Any) -> None:
        monkeypatch.setattr(FaultPlan, "random", classmethod(
            lambda cls, rng, seed: cls(seed=seed, **rates)))

    return use


@pytest.mark.slow
def test_chaos_excuses_rollbacks_and_catches_a_checker_that_ignores_them(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given schedules with failover rollbacks only
    focused(rollback_rate=0.5, max_batch=5)
    # Then the check excuses every rollback: no violation, and everything converges
    clean = run_chaos(4, seed=0)
    assert clean["faults_injected"].get("rollback", 0) > 0
    assert clean["divergences"] == [], clean["divergences"][:1]
    # And a checker told nothing of the rollbacks (the planted bug) reports regressions
    monkeypatch.setattr(harness.chaos.drive, "DeliveryChecker",
                        functools.partial(DeliveryChecker, ignore_rollbacks=True))
    planted = run_chaos(4, seed=0)
    assert planted["regressions"] > 0
    violation = planted["divergences"][0]["violations"][0]
    assert set(violation) == {"kind", "_id", "before", "after", "delivery"}


@pytest.mark.slow
def test_the_per_delivery_check_catches_a_guard_filter_that_lets_older_versions_in(
        focused: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a planted bug: the stale-write guard's filter is dropped on the way to the server,
    # while documents still carry their sequence number
    original = apply.operations

    def unguarded(writes: Any, native: Any = None) -> list[Any]:
        built = original(writes, native)
        for operation in built:
            operation._filter = {k: v for k, v in operation._filter.items()
                                 if guard_bound({k: v}, SEQUENCE_FIELD) is None}
        return built

    monkeypatch.setattr(apply, "operations", unguarded)
    # When old batches are delivered again after newer ones
    focused(late_retry_rate=0.5, max_batch=2)
    report = run_chaos(5, seed=0)
    # Then the check after each delivery sees documents go back in time
    assert report["regressions"] > 0
