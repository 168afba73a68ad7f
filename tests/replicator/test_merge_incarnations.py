"""write_mode="merge": an INSERT starts a new item (docs/write-modes.md, "An INSERT starts a new
item"). A stored document older than an INSERT was written about an earlier item of that key
(DynamoDB emits an INSERT only for an item that did not exist just before), so the fields other
applications added to it do not carry over -- whether the REMOVE between them was applied first,
coalesced with the INSERT, or (Kinesis) delivered after it. What is not a change of the table
(a copy's record, a document no change wrote) keeps them.

On mongoeco through pymongo."""

from __future__ import annotations

import random
from typing import Any

import pytest

from replicator.core import Replicator
from replicator.events import EventName, parse_records
from replicator.item_records import COPY_SEQUENCE, after, item_record
from replicator.settings import FIELDS_FIELD, SEQUENCE_FIELD, Settings
from support.fast_set import fast_first
from support.fixtures import lambda_stream_record as record
from support.kinesis import T0_MS, Changes, event
from support.merge_mode import app_fields, stored

MERGE = Settings(write_mode="merge")


# -- Kinesis: a re-INSERT delivered before its REMOVE ---------------------------------------------
@pytest.mark.parametrize("layout", [
    "insert-then-remove",           # two batches, the newer change first
    "insert-and-remove",            # one batch, the newer change first
    "insert-modify-then-remove",    # the new item's INSERT and a MODIFY, then the late REMOVE
    "insert-then-modify-remove",    # the late REMOVE batched with the new item's MODIFY
    "remove-never-arrives",         # the REMOVE not (yet) delivered at all
])
@pytest.mark.parametrize("fields", [{"app": "kept"}, {"app_a": 1, "app_b": {"x": [1, 2]}}],
                         ids=["one-field", "two-fields"])
def test_a_reinsert_overtaking_its_remove_keeps_none_of_the_deleted_items_fields(
        mongoeco_db: Any, layout: str, fields: dict[str, Any]) -> None:
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    c = Changes()
    replicator.process(event(c.insert("a", 1, T0_MS)))
    replicator.process(event(c.modify("a", 1, 5, T0_MS + 3)))
    collection.update_one({"_id": "a"}, {"$set": fields})
    remove, insert = c.remove("a", 5, T0_MS + 7), c.insert("a", 2, T0_MS + 9)
    modify = c.modify("a", 2, 3, T0_MS + 12)
    batches = {
        "insert-then-remove": [[insert], [remove]],
        "insert-and-remove": [[insert, remove]],
        "insert-modify-then-remove": [[insert], [modify], [remove]],
        "insert-then-modify-remove": [[insert], [modify, remove]],
        "remove-never-arrives": [[insert]],
    }[layout]
    for batch in batches:
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
    final = 3 if any(modify in b for b in batches) else 2
    assert stored(collection, "a") == {"_id": "a", "id": "a", "v": final,
                                       FIELDS_FIELD: ["id", "v"]}


# more seeds of the same random histories: two in the fast set, all eight in the whole suite
@pytest.mark.parametrize("seed", fast_first(range(8), n=2))
def test_late_removes_and_duplicates_keep_only_the_current_items_fields(
        mongoeco_db: Any, seed: int) -> None:
    """Seeded histories of items deleted and re-inserted (distinct times), delivered with every
    REMOVE late by a random distance and 30 % of the records again at random later places, in
    random batches (a change of the new item delivered before its INSERT is the limit
    docs/write-modes.md states); after each batch another application writes a field on every
    document, its value the order key the document held. At the end each document holds exactly
    the fields written while it held a state of its item's last incarnation (its last INSERT on)."""
    rng = random.Random(seed)
    c = Changes()
    clock = {f"i{n}": T0_MS for n in range(3)}
    state: dict[str, int | None] = dict.fromkeys(clock)
    history: list[dict[str, Any]] = []
    last_insert: dict[str, str] = {}
    for _ in range(30):
        name = rng.choice(sorted(clock))
        clock[name] += rng.randint(1, 3)
        old = state[name]
        if old is None:
            new: int | None = rng.randint(1, 4)
            assert new is not None
            history.append(c.insert(name, new, clock[name]))
        elif rng.random() < 0.35:
            new = None
            history.append(c.remove(name, old, clock[name]))
        else:
            new = rng.choice([v for v in range(1, 5) if v != old])
            history.append(c.modify(name, old, new, clock[name]))
        state[name] = new
    parsed, _ = parse_records(history)
    for change in parsed:
        if change.event_name is EventName.INSERT:
            last_insert[change.keys["id"]["S"]] = change.order_key or ""
    # REMOVEs late, the rest in order; then duplicates anywhere
    delivered: list[dict[str, Any]] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    for position, (raw, change) in enumerate(zip(history, parsed, strict=True)):
        if change.event_name is EventName.REMOVE:
            pending.append((position + rng.randint(1, 6), raw))
        else:
            delivered.append(raw)
        for due in [p for p in pending if p[0] <= position]:
            delivered.append(due[1])
            pending.remove(due)
    delivered += [change for _, change in pending]
    for change in [r for r in history if rng.random() < 0.3]:  # again, after the first time
        delivered.insert(rng.randint(delivered.index(change) + 1, len(delivered)), change)

    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    written: dict[str, dict[str, str]] = {}  # _id -> app field -> the order key it was set on
    round_ = 0
    while delivered:
        size = rng.randint(1, 4)
        batch, delivered = delivered[:size], delivered[size:]
        result = replicator.process(event(*batch))
        assert result.quarantined == [] and result.failures == []
        round_ += 1
        for document in collection.find():
            collection.update_one({"_id": document["_id"]},
                                  {"$set": {f"app_{round_}": document[SEQUENCE_FIELD]}})
            written.setdefault(document["_id"], {})[f"app_{round_}"] = document[SEQUENCE_FIELD]
    final = {k: v for k, v in state.items() if v is not None}
    documents = {d["_id"]: d for d in collection.find()}
    assert {i: d["v"] for i, d in documents.items()} == final
    for id_, document in documents.items():
        expected = {name for name, key in written.get(id_, {}).items()
                    if key >= last_insert[id_]}
        assert set(app_fields(document)) == expected, id_


# -- DynamoDB Streams (in order) ------------------------------------------------------------------
def k(id_: str) -> dict[str, Any]:
    return {"id": {"S": id_}}


@pytest.mark.parametrize("gap", ["kept-ttl-expiry", "quarantined-remove", "remove-in-batch"])
@pytest.mark.parametrize("values", [("1", "2"), ("7", "7")], ids=["other-values", "same-values"])
def test_a_dynamodb_streams_insert_over_an_older_document_starts_it_anew(
        mongoeco_db: Any, gap: str, values: tuple[str, str]) -> None:
    # ttl_deletes="ignore" keeps the expired item's document; "archive" without an old image
    # quarantines the expiry and leaves it: either way the next INSERT is a new item, as it is
    # when the REMOVE is batched with it
    ttl = {"kept-ttl-expiry": "ignore", "quarantined-remove": "archive"}.get(gap, "delete")
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, Settings(write_mode="merge", ttl_deletes=ttl))
    first, second = values
    replicator.process([record("100", "INSERT", k("u"), new={**k("u"), "n": {"N": first}})])
    collection.update_one({"_id": "u"}, {"$set": {"app": 1}})
    expiry = record("101", "REMOVE", k("u"), ttl=True, view="KEYS_ONLY")
    insert = record("102", "INSERT", k("u"), new={**k("u"), "n": {"N": second}})
    if gap == "remove-in-batch":
        replicator.process([record("101", "REMOVE", k("u")), insert])
    else:
        replicator.process([expiry])
        replicator.process([insert])
    assert stored(collection, "u") == {"_id": "u", "id": "u", "n": int(second),
                                       FIELDS_FIELD: ["id", "n"]}


def test_an_insert_keeps_what_no_change_of_the_table_wrote(mongoeco_db: Any) -> None:
    # a document another application made before the item existed (no sequence field), and the
    # initial copy's documents (sequence number "0"): neither is known to be an earlier item's
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    collection.insert_one({"_id": "pre", "app": "made first"})
    copy = item_record({**k("copied"), "n": {"N": "1"}}, ("id",), COPY_SEQUENCE, "copy-1")
    replicator.process({"Records": [copy]})
    collection.update_one({"_id": "copied"}, {"$set": {"app": "on the copy"}})
    replicator.process([record("200", "INSERT", k("pre"), new={**k("pre"), "n": {"N": "1"}}),
                        record("201", "INSERT", k("copied"), new={**k("copied"), "n": {"N": "2"}})])
    assert app_fields(stored(collection, "pre")) == {"app": "made first"}
    assert app_fields(stored(collection, "copied")) == {"app": "on the copy"}


def test_a_recovery_copy_merges_over_existing_documents(mongoeco_db: Any) -> None:
    # a copy's record is the item as it is, not a new item: recover's re-copy (after(S)) and
    # resync keep other applications' fields (docs/write-modes.md, "Checking")
    collection = mongoeco_db["items"]
    replicator = Replicator(collection, MERGE)
    replicator.process([record("100", "INSERT", k("u"), new={**k("u"), "n": {"N": "1"}})])
    collection.update_one({"_id": "u"}, {"$set": {"app": 1}})
    copy = item_record({**k("u"), "n": {"N": "4"}}, ("id",), after("150"), "recover-1")
    assert replicator.process({"Records": [copy]}).applied == 1
    assert stored(collection, "u") == {"_id": "u", "id": "u", "n": 4, "app": 1,
                                       FIELDS_FIELD: ["id", "n"]}
