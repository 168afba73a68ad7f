"""The stale-write guard's filter, ``{_id, field: {$not: {$gte: ours}}}`` (writes.guard_condition,
issue 21), on the default target: which stored sequence fields a write replaces, on both planners
(the C accelerator's and the Python reference), and how the readers of a filter find its bound."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from replicator import accelerator
from replicator.core import Replicator
from replicator.settings import SEQUENCE_FIELD, Settings
from replicator.tombstones import DELETED_AT, SEQUENCE, TombstoneStore
from replicator.writes import PlannedWrite, guard_bound, guard_condition

OURS = "500".zfill(40)

#: stored sequence field -> whether a write of OURS replaces the document. Strings compare as
#: strings; a missing field and every non-string scalar are older (events.order_relation).
STORED: dict[str, tuple[Any, bool]] = {
    "missing": (None, True),
    "older": ("100".zfill(40), True),
    "empty string": ("", True),
    "same": (OURS, False),
    "newer": ("900".zfill(40), False),
    "kinesis key": ("K1795712760000000.x", False),
    "null": (None, True),
    "number": (7, True),
    "array of older": (["100".zfill(40)], True),
    "array holding a newer": (["100".zfill(40), "900".zfill(40)], False),
}


def keys(key: str) -> dict[str, Any]:
    return {"id": {"S": key}}


def item(key: str, value: int) -> dict[str, Any]:
    return {"id": {"S": key}, "v": {"N": str(value)}}


@pytest.fixture(params=["C", "Python"])
def planner_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "C" and accelerator.native is None:
        pytest.skip("the C accelerator is not built")
    if request.param == "Python":
        monkeypatch.setattr(accelerator, "native", None)
    return str(request.param)


@pytest.mark.parametrize("case", list(STORED))
def test_which_stored_sequence_fields_a_write_replaces(
    mongoeco_db: Any, stream_record: Any, planner_kind: str, case: str
) -> None:
    stored, replaced = STORED[case]
    collection = mongoeco_db["items"]
    document: dict[str, Any] = {"_id": "a", "id": "a", "v": 1}
    if case != "missing":
        document[SEQUENCE_FIELD] = stored
    collection.insert_one(document)
    replicator = Replicator(collection, Settings(tombstones=False))
    assert (replicator.planner._native_plan is None) == (planner_kind == "Python")
    result = replicator.process([stream_record("500", "MODIFY", keys("a"), new=item("a", 2))])
    after = collection.find_one({"_id": "a"})
    assert after is not None
    if replaced:
        assert result.lambda_response() == {"batchItemFailures": []}
        assert (after["v"], after[SEQUENCE_FIELD], result.applied) == (2, OURS, 1)
    else:
        # refused by the filter: the upsert's insert hits E11000, and the read-back decides
        assert after == document
        assert result.applied == 0


def test_a_non_string_sequence_field_is_no_longer_retried_for_ever(
    mongoeco_db: Any, stream_record: Any
) -> None:
    # Before issue 21's filter, {seq: null} matched neither $lt nor $exists: false; the read-back
    # then called it older and the write failed (redelivered) on every delivery.
    collection = mongoeco_db["items"]
    collection.insert_one({"_id": "a", "id": "a", "v": 1, SEQUENCE_FIELD: None})
    result = Replicator(collection).process(
        [stream_record("500", "REMOVE", keys("a"), old=item("a", 1))])
    assert result.lambda_response() == {"batchItemFailures": []}
    assert collection.find_one({"_id": "a"}) is None


def test_guard_bound_reads_the_guard_at_the_top_and_in_a_tie_s_or() -> None:
    guarded = {"_id": "a", SEQUENCE_FIELD: guard_condition(OURS)}
    assert guard_bound(guarded, SEQUENCE_FIELD) == OURS
    tie = {"_id": "a", "$or": [{SEQUENCE_FIELD: guard_condition(OURS)},
                               {SEQUENCE_FIELD: "K1.x"}]}
    assert guard_bound(tie, SEQUENCE_FIELD) == OURS
    assert guard_bound({"_id": "a"}, SEQUENCE_FIELD) is None
    assert guard_bound({"_id": "a", SEQUENCE_FIELD: {"$lt": OURS}}, SEQUENCE_FIELD) is None
    assert guard_bound(guarded, "other") is None


# -- the tombstone marker: one $max of the sequence number and the deletion time (issue 21) -----
@pytest.mark.parametrize("native", [True, False])
def test_a_marker_keeps_the_newest_sequence_number_and_the_latest_deletion_time(
    mongoeco_db: Any, native: bool
) -> None:
    if native and accelerator.native is None:
        pytest.skip("the C accelerator is not built")
    store = TombstoneStore(mongoeco_db["items_tombstones"])
    later = datetime(2100, 1, 1)
    earlier = datetime(2000, 1, 1)
    mongoeco_db["items_tombstones"].insert_many([
        {"_id": "kept", SEQUENCE: "900".zfill(40), DELETED_AT: later},
        {"_id": "raised", SEQUENCE: "100".zfill(40), DELETED_AT: earlier},
    ])
    writes = [PlannedWrite.delete({"_id": key, SEQUENCE_FIELD: guard_condition(OURS)}, ("500",))
              for key in ("kept", "raised", "new")]
    before = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=1)
    outcome = store.guard(writes, accelerator.native if native else None)
    assert outcome.clear == writes and outcome.failed == [] and outcome.rejected == []
    found = {d["_id"]: d for d in mongoeco_db["items_tombstones"].find()}
    assert (found["kept"][SEQUENCE], found["kept"][DELETED_AT]) == ("900".zfill(40), later)
    for key in ("raised", "new"):
        assert found[key][SEQUENCE] == OURS
        assert found[key][DELETED_AT] >= before  # now, not the earlier stamp
