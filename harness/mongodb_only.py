"""Another MongoDB application, for write_mode="merge" runs: it adds fields of its own to the
replicated documents between batches, and checks that the replicator keeps them.

The original design's second use case ("more fields or converted fields ... so you can use other
applications designed for MongoDB", issue 23) is what merge mode is for. :class:`MongoOnlyWriter`
plays that application deterministically: it is called with the records of each completed batch
(the event source mapping's ``on_complete``, which runs before that shard's next batch is sent,
so the interleaving depends on the batching only, never on timing), then

1. forgets the documents of every key the batch REMOVEd: a REMOVE deletes the document in merge
   mode too, with the fields other applications added (docs/write-modes.md);
2. checks every other document of the batch's keys that it wrote before: it must still exist and
   hold the writer's fields (else it is ``lost``);
3. ``$set``\\ s its fields (names starting with :data:`PREFIX`, no upsert) on every ``every``-th
   stored document, by ``_id`` order, rotating with the round.

Convergence then compares everything but the writer's fields strictly (``mongodb_only=PREFIX``,
harness/convergence.py), so an attribute DynamoDB removed that stayed behind is still found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from replicator.diff import id_key, same
from replicator.errors import RecordError
from replicator.events import EventName, parse_records
from replicator.plan import Planner

#: The names of the fields the writer adds (no table attribute of the harness's workloads or
#: captures starts with it).
PREFIX = "mongo_only_"


class MongoOnlyWriter:
    """``collection``: the target the replicator writes; ``planner``: the lane's (for the ``_id``
    of a record's keys); ``every``: writes go to one stored document in ``every``."""

    def __init__(self, collection: Any, planner: Planner, *, every: int = 2) -> None:
        self.collection = collection
        self.key_mapper = planner.key_mapper
        self.every = max(1, every)
        self.rounds = 0
        #: id_key -> (_id, the fields the writer set and believes stored)
        self.written: dict[Any, tuple[Any, dict[str, Any]]] = {}
        #: (_id, what was missing) for each document that lost a writer's field without a REMOVE
        self.lost: list[tuple[Any, str]] = []
        #: how many $set writes landed on a document
        self.writes = 0

    def after_batch(self, _at: float, records: Sequence[Mapping[str, Any]]) -> None:
        """The event source mapping's ``on_complete``: check the batch's keys, then write."""
        removed: set[Any] = set()
        touched: set[Any] = set()
        changes, _bad = parse_records(list(records))
        for change in changes:
            try:
                key = id_key(self.key_mapper.document_id(change.keys))
            except RecordError:
                continue  # quarantined by the replicator: it wrote nothing for it
            touched.add(key)
            if change.event_name is EventName.REMOVE:
                removed.add(key)
        for key in removed:
            self.written.pop(key, None)
        self._check(touched - removed)
        self._write()

    def finish(self) -> list[tuple[Any, str]]:
        """After the last batch: every document the writer wrote and still believes stored is
        checked once more; the lost ones (all so far: calling it again adds only new ones)."""
        self._check(set(self.written))
        return self.lost

    def _check(self, keys: set[Any]) -> None:
        for key in keys:
            entry = self.written.get(key)
            if entry is None:
                continue
            document_id, fields = entry
            stored = self.collection.find_one({"_id": document_id})
            if stored is None:
                self.lost.append((document_id, "the document is gone without a REMOVE"))
                del self.written[key]
                continue
            missing = [name for name, value in fields.items()
                       if name not in stored or not same(value, stored[name])]
            if missing:
                self.lost.append((document_id, f"fields lost: {', '.join(sorted(missing))}"))
                del self.written[key]

    def _write(self) -> None:
        self.rounds += 1
        ids = sorted((d["_id"] for d in self.collection.find({}, {"_id": 1})), key=_order)
        for position, document_id in enumerate(ids):
            if position % self.every != self.rounds % self.every:
                continue
            fields = {f"{PREFIX}round": self.rounds,
                      f"{PREFIX}note": {"by": "another application", "tags": ["x", self.rounds]}}
            if position % 3 == 0:
                fields[f"{PREFIX}since_{self.rounds}"] = True  # a new name each round
            done = self.collection.update_one({"_id": document_id}, {"$set": fields})
            if done.matched_count:
                self.writes += 1
                key = id_key(document_id)
                previous = self.written.get(key, (document_id, {}))[1]
                self.written[key] = (document_id, {**previous, **fields})


def _order(value: Any) -> str:
    """A total order of any ``_id``\\ s (deterministic across runs)."""
    return repr(id_key(value))
