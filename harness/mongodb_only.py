"""Another MongoDB application, for write_mode="merge" runs: it adds fields of its own to the
replicated documents between batches, and checks that the replicator keeps them.

The original design's second use case ("more fields or converted fields ... so you can use other
applications designed for MongoDB", issue 23) is what merge mode is for. :class:`MongoOnlyWriter`
plays that application deterministically: it is called with the records of each completed batch
(the event source mapping's ``on_complete``, which runs before that shard's next batch is sent,
so the interleaving depends on the batching only, never on timing), then

1. forgets the documents of every key the batch REMOVEd: a REMOVE deletes the document in merge
   mode too, with the fields other applications added (docs/write-modes.md); and, of a key the
   batch INSERTed, the fields it wrote while the document held an older change than the INSERT
   (the document of an earlier item of the key: an INSERT starts a new item, docs/write-modes.md);
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
from replicator.events import (
    EventName,
    order_time_end,
    pad_sequence_number,
    parse_records,
)
from replicator.item_records import COPY_SEQUENCE, is_copy
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
        self.sequence_field = planner.settings.sequence_field
        self.every = max(1, every)
        self.rounds = 0
        #: id_key -> (_id, the fields the writer set and believes stored)
        self.written: dict[Any, tuple[Any, dict[str, Any]]] = {}
        #: id_key -> field name -> the document's sequence field when the writer set it
        self.held: dict[Any, dict[str, Any]] = {}
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
            elif change.event_name is EventName.INSERT and not is_copy(change):
                self._forget_older(key, change.order_key or change.sequence_number,
                                   change.order_span)
        for key in removed:
            self.written.pop(key, None)
            self.held.pop(key, None)
        self._check(touched - removed)
        self._write()

    def finish(self) -> list[tuple[Any, str]]:
        """After the last batch: every document the writer wrote and still believes stored is
        checked once more; the lost ones (all so far: calling it again adds only new ones)."""
        self._check(set(self.written))
        return self.lost

    def _forget_older(self, key: Any, order: str, span: int = 1) -> None:
        """Forget the fields set while the document held a change older than an INSERT of
        ``order`` (a Kinesis order key or a DynamoDB Streams sequence number): the INSERT may
        have started the document anew without them (``span``: a MILLISECOND INSERT's, its
        whole millisecond, as the replicator's bounds)."""
        entry, held = self.written.get(key), self.held.get(key, {})
        if entry is None:
            return
        if order.startswith("K"):
            above, below = "K", order_time_end(order, span)
        else:
            above, below = pad_sequence_number(COPY_SEQUENCE), pad_sequence_number(order)
        older = {name for name, at in held.items()
                 if isinstance(at, str) and above < at < below}
        if older:
            document_id, fields = entry
            self.written[key] = (document_id,
                                 {n: v for n, v in fields.items() if n not in older})

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
                self.held.pop(key, None)
                continue
            missing = [name for name, value in fields.items()
                       if name not in stored or not same(value, stored[name])]
            if missing:
                self.lost.append((document_id, f"fields lost: {', '.join(sorted(missing))}"))
                del self.written[key]
                self.held.pop(key, None)

    def _write(self) -> None:
        self.rounds += 1
        held = {id_key(d["_id"]): d.get(self.sequence_field)
                for d in self.collection.find({}, {"_id": 1, self.sequence_field: 1})}
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
                self.held.setdefault(key, {}).update(dict.fromkeys(fields, held.get(key)))


def _order(value: Any) -> str:
    """A total order of any ``_id``\\ s (deterministic across runs)."""
    return repr(id_key(value))
