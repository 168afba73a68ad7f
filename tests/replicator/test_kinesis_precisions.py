"""Mixed ApproximateCreationDateTime precisions (docs/kinesis.md, "Mixed precisions"): after
``UpdateKinesisStreamingDestination`` changes the precision, a MILLISECOND record's time is the
start of its millisecond, and a MICROSECOND change inside that millisecond may have come before
or after it. Such a pair is a tie (the table decides, else both are quarantined), never ordered
by the start of the millisecond -- within a batch, and a MILLISECOND record against a stored
MICROSECOND key. On mongoeco through pymongo; read-back reads moto's DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from replicator.core import Replicator
from replicator.readback import DynamoDBItemReader
from replicator.settings import SEQUENCE_FIELD
from support.kinesis import T0_MS, change_json, event, item, keys, kinesis_record

T0_US = T0_MS * 1000


def micro(old: int, new: int, at_us: int, n: int) -> dict[str, Any]:
    return kinesis_record(change_json("MODIFY", keys("a"), old=item("a", old), new=item("a", new),
                                      created=at_us, precision="MICROSECOND",
                                      event_id=f"us{n}"), n)


def milli(old: int, new: int, at_ms: int, n: int) -> dict[str, Any]:
    return kinesis_record(change_json("MODIFY", keys("a"), old=item("a", old), new=item("a", new),
                                      created=at_ms, event_id=f"ms{n}"), n)


def value(collection: Any) -> int | None:
    found = collection.find_one({"_id": "a"})
    return None if found is None else int(found["v"])


# the MICROSECOND change's offset into the MILLISECOND change's millisecond
OFFSETS = [1, 300, 999]


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("last", ["milli", "micro"])
@pytest.mark.parametrize("layout", ["micro-stored-first", "one-batch", "one-batch-reversed"])
def test_a_millisecond_change_and_a_microsecond_one_inside_it_are_decided_by_the_table(
        mongoeco_db: Any, users_table: Any, offset: int, last: str, layout: str) -> None:
    # the table went 1 -> 2 -> 3 or 1 -> 3 -> 2 within one millisecond, one change recorded in
    # microseconds, the other in milliseconds; the item now holds the last one's state
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    replicator.process(event(micro(0, 1, T0_US - 5000, 1)))
    mine, other = (milli(1, 2, T0_MS, 2), micro(1, 3, T0_US + offset, 3))
    final = 2 if last == "milli" else 3
    users_table.put_item(TableName="users", Item=item("a", final))
    batches = {"micro-stored-first": [[other], [mine]], "one-batch": [[other, mine]],
               "one-batch-reversed": [[mine, other]]}[layout]
    for batch in batches:
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == final


@pytest.mark.parametrize("offset", OFFSETS)
def test_without_read_back_such_a_pair_is_quarantined_not_guessed(
        mongoeco_db: Any, offset: int) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    replicator.process(event(micro(1, 2, T0_US + offset, 1)))
    result = replicator.process(event(milli(1, 3, T0_MS, 2)))
    assert len(result.quarantined) == 1 and result.applied == 0
    assert "equal ApproximateCreationDateTime" in str(result.quarantined[0].error)
    assert value(collection) == 2  # kept, never a guess


@pytest.mark.parametrize("offset_us", [-1, 1000, 1001, 5000, 500])
def test_outside_the_millisecond_the_times_order_them(mongoeco_db: Any, offset_us: int) -> None:
    # a MICROSECOND time before the millisecond, or at or after its end: ordered, no tie; and
    # one half-way into it, where a Kinesis copy's key sits (taken as the copy's: the limit)
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    replicator.process(event(micro(1, 2, T0_US + offset_us, 1)))
    result = replicator.process(event(milli(1, 3, T0_MS, 2)))
    assert result.quarantined == []
    assert value(collection) == (3 if offset_us < 0 else 2)
    stored = collection.find_one({"_id": "a"})[SEQUENCE_FIELD]
    assert stored.startswith("K")
