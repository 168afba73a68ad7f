"""Breaking "Mixed precisions" (docs/kinesis.md) with inputs of the kind of
tests/replicator/test_kinesis_precisions.py but new ones: REMOVEs and INSERTs (not only MODIFYs),
three changes in one millisecond in every delivery order and batching, duplicates, tombstones,
the millisecond's edges (.000, .999, the copy's .500) and merge mode. On mongoeco through
pymongo; read-back reads moto's DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from replicator.core import Replicator
from replicator.readback import DynamoDBItemReader
from replicator.settings import Settings
from support.batchings import batchings
from support.kinesis import T0_MS, change_json, event, item, keys, kinesis_record

T0_US = T0_MS * 1000


def rec(name: str, n: int, *, at: int, micro: bool, old: int | None = None,
        new: int | None = None) -> dict[str, Any]:
    return kinesis_record(change_json(
        name, keys("a"), new=None if new is None else item("a", new),
        old=None if old is None else item("a", old), created=at,
        precision="MICROSECOND" if micro else None, event_id=f"e{n}"), n)


def value(collection: Any) -> int | None:
    found = collection.find_one({"_id": "a"})
    return None if found is None else int(found["v"])


@pytest.mark.parametrize("offset", [1, 999])
@pytest.mark.parametrize("present", [True, False], ids=["reinserted", "removed"])
@pytest.mark.parametrize("layout", ["micro-stored-first", "one-batch"])
def test_a_millisecond_remove_and_a_microsecond_insert_inside_it(
        mongoeco_db: Any, users_table: Any, offset: int, present: bool, layout: str) -> None:
    # the item is deleted (MILLISECOND) and re-inserted (MICROSECOND) within one millisecond, in
    # either order: the table tells which came last
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    if present:
        users_table.put_item(TableName="users", Item=item("a", 2))
    remove = rec("REMOVE", 2, at=T0_MS, micro=False, old=1)
    insert = rec("INSERT", 3, at=T0_US + offset, micro=True, new=2)
    batches = {"micro-stored-first": [[insert], [remove]], "one-batch": [[remove, insert]]}[layout]
    for batch in batches:
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == (2 if present else None)


@pytest.mark.parametrize("present", [True, False], ids=["reinserted", "removed"])
@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_a_millisecond_insert_after_a_microsecond_remove_inside_it(
        mongoeco_db: Any, users_table: Any, present: bool, mode: str) -> None:
    # the REMOVE (MICROSECOND, at .300) applied first and left a tombstone; the MILLISECOND
    # INSERT of that millisecond arrives next: before or after the REMOVE, the table says (the
    # tombstone the table decided the INSERT is newer than must not block it)
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(write_mode=mode),
                            item_reader=DynamoDBItemReader(users_table, "users"))
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    if present:
        users_table.put_item(TableName="users", Item=item("a", 2))
    for batch in ([rec("REMOVE", 2, at=T0_US + 300, micro=True, old=1)],
                  [rec("INSERT", 3, at=T0_MS, micro=False, new=2)]):
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == (2 if present else None)


@pytest.mark.slow
@pytest.mark.parametrize("last", [0, 2], ids=["milli-last", "micro-last"])
@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_three_changes_of_one_millisecond_in_every_order_and_batching(
        mongoeco_db: Any, users_table: Any, last: int, mode: str) -> None:
    # one MILLISECOND change and two MICROSECOND ones (.000 and .999) of one millisecond: the
    # MICROSECOND ones are ordered, the MILLISECOND one may be anywhere, so the last one is the
    # .999 one or the MILLISECOND one; the table holds its state
    changes = [rec("MODIFY", 2, at=T0_MS, micro=False, old=1, new=2),
               rec("MODIFY", 3, at=T0_US, micro=True, old=1, new=3),
               rec("MODIFY", 4, at=T0_US + 999, micro=True, old=3, new=4)]
    final = 2 + last
    users_table.put_item(TableName="users", Item=item("a", final))
    for number, batches in enumerate(batchings(changes)):
        collection = mongoeco_db[f"c{number}"]
        replicator = Replicator(collection, Settings(write_mode=mode),
                                item_reader=DynamoDBItemReader(users_table, "users"))
        replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
        for batch in batches:
            result = replicator.process(event(*batch))
            assert result.quarantined == [] and result.failures == [], batches
        milli_batch = next(i for i, b in enumerate(batches) if changes[0] in b)
        if last == 0 and any(changes[2] in b for b in batches[milli_batch + 1:]):
            # the documented limit: the .999 record after a stored MILLISECOND key of its
            # millisecond wins (xfailed below)
            assert value(collection) == 4
            continue
        assert value(collection) == final, batches


@pytest.mark.parametrize("offset", [0, 999])
def test_a_duplicated_millisecond_change_with_a_microsecond_one_is_still_a_tie(
        mongoeco_db: Any, users_table: Any, offset: int) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    users_table.put_item(TableName="users", Item=item("a", 2))
    milli = rec("MODIFY", 2, at=T0_MS, micro=False, old=1, new=2)
    micro = rec("MODIFY", 3, at=T0_US + offset, micro=True, old=1, new=3)
    # (the MICROSECOND one is not redelivered alone after: against the stored MILLISECOND key it
    # would win -- the documented limit, xfailed below)
    for batch in ([micro, milli, milli], [milli], [milli, micro]):
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == 2


def test_the_same_state_from_both_precisions_is_no_tie(mongoeco_db: Any) -> None:
    # both leave v=2: nothing to decide, no read-back needed
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    for batch in ([rec("MODIFY", 3, at=T0_US + 400, micro=True, old=1, new=2)],
                  [rec("MODIFY", 2, at=T0_MS, micro=False, old=1, new=2)]):
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == 2


@pytest.mark.parametrize("previous_ms", [True, False], ids=["prev-ms", "prev-us"])
def test_the_previous_millisecond_orders_without_a_tie(mongoeco_db: Any,
                                                       previous_ms: bool) -> None:
    # .999 of the millisecond before: strictly older than a MILLISECOND change of the next one
    collection = mongoeco_db["items"]
    replicator = Replicator(collection)
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    earlier = (rec("MODIFY", 2, at=T0_MS - 1, micro=False, old=1, new=2) if previous_ms
               else rec("MODIFY", 2, at=T0_US - 1, micro=True, old=1, new=2))
    later = rec("MODIFY", 3, at=T0_MS, micro=False, old=2, new=3)
    for batch in ([later], [earlier], [earlier, later]):
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    assert value(collection) == 3


@pytest.mark.xfail(strict=True, reason=(
    "documented limit (docs/kinesis.md, 'Mixed precisions'): a stored key does not say its "
    "precision, so a MICROSECOND record against a stored MILLISECOND key of its millisecond is "
    "ordered by the start of the millisecond -- the result depends on the batching: in one "
    "batch the pair is a tie the table decides"))
def test_a_microsecond_change_after_a_stored_millisecond_key_depends_on_batching(
        mongoeco_db: Any, users_table: Any) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, item_reader=DynamoDBItemReader(users_table, "users"))
    replicator.process(event(rec("INSERT", 1, at=T0_US - 5000, micro=True, new=1)))
    users_table.put_item(TableName="users", Item=item("a", 2))  # the MILLISECOND change came last
    for batch in ([rec("MODIFY", 2, at=T0_MS, micro=False, old=1, new=2)],
                  [rec("MODIFY", 3, at=T0_US + 200, micro=True, old=1, new=3)]):
        replicator.process(event(*batch))
    assert value(collection) == 2


def test_order_relation_and_end_across_the_millisecond() -> None:
    # pure functions (Python 3.11 too): a MILLISECOND key against stored keys at .000/.500/.999
    from replicator.events import kds_order_key, order_relation, order_time_end

    new2, new3 = {"id": {"S": "a"}, "v": {"N": "2"}}, {"id": {"S": "a"}, "v": {"N": "3"}}
    ours = kds_order_key(T0_US, new2)
    assert order_relation(kds_order_key(T0_US + 999, new3), ours, 1000) == "tie"
    assert order_relation(kds_order_key(T0_US + 999, new2), ours, 1000) == "newer"  # same state
    assert order_relation(kds_order_key(T0_US + 500, new3), ours, 1000) == "newer"  # a copy's
    assert order_relation(kds_order_key(T0_US + 1000, new3), ours, 1000) == "newer"
    assert order_relation(kds_order_key(T0_US + 999, new3), ours, 1) == "newer"
    end = order_time_end(ours, 1000)
    assert kds_order_key(T0_US + 999, new3) < end < kds_order_key(T0_US + 1000, None)
    assert order_time_end(ours) < kds_order_key(T0_US + 1, None)
