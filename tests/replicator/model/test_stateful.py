"""Stateful model check: the replicator against an in-memory DynamoDB table (harness.model).

A Hypothesis RuleBasedStateMachine writes to a :class:`harness.model.ModelTable` (put, update,
delete on a small key space, values of every DynamoDB type) and drives a Replicator the way Lambda
does: the next k undelivered records as a batch, and on a batch item failure or an invocation error
again from the reported sequence number. It also redelivers arbitrary earlier records (a duplicate
batch, a late retry, an operator replaying an old capture, in any order) and injects target faults
(harness.faults.FaultyCollection over BulkWriteShim: nothing applied, a crash after k of n writes,
a write concern error, a Lambda timeout after the writes).

After every step:

(a) MONOTONIC: every document equals the state its item had after SOME delivered record, at a
    position in the item's history not before the one the document showed last time, and not
    before its key's newest record that Lambda has checkpointed (nothing acknowledged is lost;
    while a newer record of the key is delivered but still to be retried, the document may lag
    behind the checkpoint, never behind itself); an absent document is "absent" at such a
    position (so a deleted document never comes back from an older change). With the guard on,
    the document's sequence field also never decreases and names a delivered record of that key
    whose state is exactly the document.
(b) no invented values: no document for a key never written, no state the item never had.

MergeMachine runs the same checks in write_mode="merge" with another MongoDB application adding
fields of its own; at the end they must still be there unless a REMOVE may have deleted them.

At the end (teardown) everything not yet delivered is delivered and the collection must equal the
table (harness.convergence.check). The same machine with the guard off, or with tombstones off,
must FIND a regression: the check is proven able to fail.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pymongo.errors import PyMongoError

from harness.backends.mongomock_target import mongomock_client
from harness.convergence import check, compare, expected_documents, read_target
from harness.faults import BulkWriteShim, FaultPlan, FaultyCollection
from harness.model import ModelTable
from harness.mongodb_only import PREFIX
from replicator.core import BatchResult, Replicator
from replicator.events import pad_sequence_number
from replicator.keys import identity
from replicator.plan import Planner
from replicator.settings import Settings, WriteMode
from support.strategies import PARTITIONS, SORTS, attribute_names, attributes


class WentBackInTime(AssertionError):
    """A document moved to an older state of its item, or came back after a newer delete."""


class InventedState(AssertionError):
    """A document that matches no state its item ever had after a delivered record."""


FAULTS = ("transient", "crash_mid_batch", "write_concern", "timeout")
_RATE = {
    "transient": "transient_error_rate",
    "crash_mid_batch": "crash_mid_batch_rate",
    "write_concern": "write_concern_error_rate",
}


class ReplicationMachine(RuleBasedStateMachine):
    """Guard and tombstones on (Settings defaults), single partition key, faults through the shim."""

    key_schema: ClassVar[tuple[str, ...]] = ("pk",)
    view_type: ClassVar[str] = "NEW_AND_OLD_IMAGES"
    guard: ClassVar[bool] = True
    tombstones: ClassVar[bool] = True
    #: True: the replicator writes through FaultyCollection(BulkWriteShim(mongomock)), with
    #: faults; False: straight to the harness's mongomock adapter, no faults.
    shim: ClassVar[bool] = True
    write_mode: ClassVar[WriteMode] = "replace"

    def __init__(self) -> None:
        super().__init__()
        self.table = ModelTable(self.key_schema, view_type=self.view_type)
        self.settings = Settings(
            key_schema=self.key_schema, guard=self.guard, tombstones=self.tombstones,
            write_mode=self.write_mode,
        )
        self.raw = mongomock_client()["db"]["items"]
        self.faulty = FaultyCollection(BulkWriteShim(self.raw), FaultPlan())
        self.replicator = Replicator(self.faulty if self.shim else self.raw, self.settings)
        self.planner = Planner(self.settings)
        self.cursor = 0  # the next record Lambda delivers
        self.delivered: set[int] = set()  # record indexes delivered at least once
        self.high_water = 0  # 1 + the highest record index ever delivered
        self.position: dict[str, int] = {}  # key_id -> lowest history position consistent so far
        self.last_sequence: dict[str, str] = {}  # key_id -> the document's sequence field last seen
        self._expected: dict[tuple[str, int], Any] = {}
        self._healthy = True  # False once a step or a check raised: teardown then stays quiet

    # -- table writes ----------------------------------------------------------------------------
    # A key is drawn as a number and made by the machine, so subclasses can change the key schema.
    KEY_SPACE = len(PARTITIONS) * len(SORTS)

    def _key(self, number: int) -> dict[str, Any]:
        key = {self.key_schema[0]: {"S": PARTITIONS[number % len(PARTITIONS)]}}
        if len(self.key_schema) == 2:
            key[self.key_schema[1]] = {"N": SORTS[number // len(PARTITIONS) % len(SORTS)]}
        return key

    @rule(key=st.integers(0, KEY_SPACE - 1), item=attributes)
    def put(self, key: int, item: dict[str, Any]) -> None:
        self.table.put({**item, **self._key(key)})

    @rule(
        key=st.integers(0, KEY_SPACE - 1),
        set_attributes=attributes,
        remove=st.lists(attribute_names, max_size=2, unique=True),
    )
    def update(self, key: int, set_attributes: dict[str, Any], remove: list[str]) -> None:
        self.table.update(
            self._key(key), set_attributes, [n for n in remove if n not in set_attributes]
        )

    @rule(key=st.integers(0, KEY_SPACE - 1), ttl=st.booleans())
    def delete(self, key: int, ttl: bool) -> None:
        """A DeleteItem, or a TTL expiry (ttl_deletes="delete": the same for the collection)."""
        if ttl:
            self.table.expire(self._key(key))
        else:
            self.table.delete(self._key(key))

    # -- deliveries ------------------------------------------------------------------------------
    @precondition(lambda self: self.cursor < len(self.table.records))
    @rule(k=st.integers(1, 8))
    def deliver(self, k: int) -> None:
        """Lambda's next batch: up to k records from the checkpoint."""
        self._healthy = False
        self._deliver_next(k)
        self._healthy = True

    @precondition(lambda self: self.high_water > 0)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """An earlier range again (duplicate / late retry), or any earlier records in any order
        and with repeats (an operator replaying an old capture, a backfill racing the stream)."""
        self._healthy = False
        if data.draw(st.booleans(), label="contiguous"):
            start = data.draw(st.integers(0, self.high_water - 1), label="start")
            end = data.draw(st.integers(start + 1, self.high_water), label="end")
            indexes = list(range(start, end))
        else:
            indexes = data.draw(
                st.lists(st.integers(0, self.high_water - 1), min_size=1, max_size=8),
                label="replayed",
            )
        result = self._process(indexes)
        assert not result.failures, f"a redelivery without faults failed: {result.failures}"
        self._healthy = True

    @precondition(lambda self: self.shim and self.cursor < len(self.table.records))
    @rule(fault=st.sampled_from(FAULTS), k=st.integers(1, 8), seed=st.integers(0, 2**16))
    def deliver_with_fault(self, fault: str, k: int, seed: int) -> None:
        """The next batch, with every bulk write on the target failing the chosen way."""
        self._healthy = False
        if fault == "timeout":
            # The invocation dies after its writes: Lambda retries the whole batch.
            start = self.cursor
            self._deliver_next(k)
            self.cursor = start
        else:
            self.faulty.plan = FaultPlan(seed=seed, **{_RATE[fault]: 1.0})
            self.faulty.rng = random.Random(seed)
            try:
                self._deliver_next(k, expect_success=False)
            finally:
                self.faulty.plan = FaultPlan()
        self._healthy = True

    def redeliver_records(self, indexes: list[int]) -> None:
        """Directed tests: deliver these records again (not a rule)."""
        result = self._process(indexes)
        assert not result.failures, result.failures

    def _deliver_next(self, k: int, *, expect_success: bool = True) -> None:
        start = self.cursor
        indexes = list(range(start, min(start + k, len(self.table.records))))
        try:
            result = self._process(indexes)
        except PyMongoError:
            # An invocation error: Lambda retries the whole batch from its first record.
            assert not expect_success, "the replicator raised without an injected fault"
            self.cursor = start
            return
        if not result.failures:
            self.cursor = indexes[-1] + 1
            return
        assert not expect_success, f"a batch without faults failed: {result.failures}"
        # batchItemFailures: Lambda checkpoints before the reported record, redelivers from it.
        reported = result.lambda_response()["batchItemFailures"][0]["itemIdentifier"]
        sequences = [self.table.records[i]["dynamodb"]["SequenceNumber"] for i in indexes]
        assert reported in sequences, f"reported {reported}, not in the batch {sequences}"
        self.cursor = indexes[sequences.index(reported)]

    def _process(self, indexes: list[int]) -> BatchResult:
        batch = self.table.lambda_event(self.table.records[i] for i in indexes)
        self.delivered.update(indexes)
        self.high_water = max(self.high_water, max(indexes) + 1)
        result = self.replicator.process(batch)
        assert not result.quarantined, [str(b.error) for b in result.quarantined]
        return result

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def documents_never_go_back(self) -> None:
        self._healthy = False
        self._check_documents()
        self._healthy = True

    def _check_documents(self) -> None:
        sequence_field = self.settings.sequence_field
        documents = {identity(d["_id"]): d for d in read_target(self.raw, [])}
        allowed: dict[str, list[int]] = {}
        for index in sorted(self.delivered):
            where = self.table.positions[index]
            allowed.setdefault(where.key_id, []).append(where.position)
        # Lambda has checkpointed every record before the cursor: none of them may be lost, so each
        # document is at least at the state of its key's newest checkpointed record -- unless a
        # newer record of the key was delivered and is still to be retried: a tombstone written for
        # a delete whose own write then failed holds back the changes before that delete (they
        # count as superseded, and the document keeps its older state until the retried delete
        # lands; never a state older than it showed, which the position check below still holds).
        floor: dict[str, int] = {}
        for where in self.table.positions[: self.cursor]:
            floor[where.key_id] = where.position
        for index in self.delivered:
            if index >= self.cursor:
                floor.pop(self.table.positions[index].key_id, None)
        for key_id in self.table.key_ids():
            document_id = self.planner.key_mapper.document_id(self.table.keys_for(key_id))
            document = documents.pop(identity(document_id), None)
            sequence = document.pop(sequence_field, None) if document is not None else None
            positions = sorted({0, *allowed.get(key_id, [])})
            before = self.position.get(key_id, 0)
            lowest = max(before, floor.get(key_id, 0))
            matching = [p for p in positions if self._matches(key_id, p, document)]
            later = [p for p in matching if p >= lowest]
            if not later:
                history = self.table.history(key_id)
                shown = "absent" if document is None else document
                if matching:
                    why = (
                        f"showed the state after {history[before][0]} (position {before}) before"
                        if before >= lowest
                        else f"Lambda has checkpointed past {history[lowest][0]} (position {lowest})"
                    )
                    raise WentBackInTime(
                        f"{document_id!r}: the document {why}, and is now the state after "
                        f"{[history[p][0] for p in matching]}: {shown!r}"
                    )
                raise InventedState(
                    f"{document_id!r}: {shown!r} is no state the item had after a delivered "
                    f"record; its history: {history}, delivered positions {positions}"
                )
            self.position[key_id] = later[0]
            if self.guard and document is not None:
                self._check_sequence_field(key_id, document_id, document, sequence, positions)
        assert not documents, f"documents for keys never written: {list(documents.values())}"

    def _check_sequence_field(
        self,
        key_id: str,
        document_id: Any,
        document: dict[str, Any],
        sequence: Any,
        positions: list[int],
    ) -> None:
        history = self.table.history(key_id)
        by_sequence = {
            pad_sequence_number(seq): p for p, (seq, _) in enumerate(history) if seq is not None
        }
        assert sequence in by_sequence, (
            f"{document_id!r}: sequence field {sequence!r} names no record of this key"
        )
        position = by_sequence[sequence]
        assert position in positions, f"{document_id!r}: written by an undelivered record {sequence}"
        previous = self.last_sequence.get(key_id, "")
        if sequence < previous:
            raise WentBackInTime(f"{document_id!r}: sequence field went from {previous} to {sequence}")
        self.last_sequence[key_id] = sequence
        assert self._matches(key_id, position, document), (
            f"{document_id!r}: the document is not the state its sequence field {sequence} names"
        )

    def _matches(self, key_id: str, position: int, document: dict[str, Any] | None) -> bool:
        state = self.table.state_at(key_id, position)
        if state is None or document is None:
            return state is None and document is None
        cached = self._expected.get((key_id, position))
        if cached is None:
            cached = self._expected[(key_id, position)] = expected_documents([state], self.planner)
        return compare(cached, [document]).converged

    def teardown(self) -> None:
        if not self._healthy:
            return  # a step already failed: let its error stand
        records = self.table.records
        while self.cursor < len(records):
            self._deliver_next(7)
        self._check_documents()
        diff = check(self.table.items(), self.raw, self.planner)
        assert diff.converged, f"the collection does not equal the table: {diff.as_dict()}"


class CompositeKeyMachine(ReplicationMachine):
    """A partition + sort key (the _id is an embedded document)."""

    key_schema = ("pk", "sk")


class NewImageMachine(ReplicationMachine):
    """A NEW_IMAGE stream (no old images), straight to the mongomock adapter (no faults)."""

    view_type = "NEW_IMAGE"
    shim = False


class MergeMachine(ReplicationMachine):
    """write_mode="merge", faults through the shim, and another MongoDB application that adds
    fields of its own (names starting with harness.mongodb_only.PREFIX) between steps. The
    checks compare everything but those fields; at the end each application field must still be
    there unless a REMOVE of its key may have been applied after it was written."""

    write_mode = "merge"

    def __init__(self) -> None:
        super().__init__()
        #: key_id -> each write of the application, in order: (the first record index not
        #: checkpointed when it was written, its fields)
        self.app_fields: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    @rule(key=st.integers(0, ReplicationMachine.KEY_SPACE - 1), value=st.integers(0, 5))
    def mongodb_application_writes(self, key: int, value: int) -> None:
        keys = self._key(key)
        document_id = self.planner.key_mapper.document_id(keys)
        fields = {f"{PREFIX}v": value, f"{PREFIX}n{value % 3}": {"list": [value]}}
        if self.raw.update_one({"_id": document_id}, {"$set": fields}).matched_count:
            # kept per write: a REMOVE between two writes takes the first one's fields only
            self.app_fields.setdefault(self.table.key_id(keys), []).append((self.cursor, fields))

    def _matches(self, key_id: str, position: int, document: dict[str, Any] | None) -> bool:
        if document is not None:
            document = {k: v for k, v in document.items() if not k.startswith(PREFIX)}
        return super()._matches(key_id, position, document)

    def teardown(self) -> None:
        if not self._healthy:
            return
        super().teardown()
        diff = check(self.table.items(), self.raw, self.planner, mongodb_only=PREFIX)
        assert diff.converged, f"strictly, but for the application's fields: {diff.as_dict()}"
        for key_id, writes in self.app_fields.items():
            fields = {}
            for since, written in writes:
                if any(where.key_id == key_id and record["eventName"] == "REMOVE"
                       for where, record in zip(self.table.positions[since:],
                                                self.table.records[since:], strict=True)):
                    continue  # a REMOVE after the write deletes the document, its fields with it
                fields.update(written)
            if not fields:
                continue
            document_id = self.planner.key_mapper.document_id(self.table.keys_for(key_id))
            stored = self.raw.find_one({"_id": document_id})
            assert stored is not None and {k: stored.get(k) for k in fields} == fields, (
                f"{document_id!r}: another application's fields {fields} were lost: {stored}")


class GuardOffMachine(ReplicationMachine):
    guard = False


class TombstonesOffMachine(ReplicationMachine):
    tombstones = False


def _settings(max_examples: int, **extra: Any) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **extra,
    )


def _searching() -> settings:
    """For the machines that must fail: no shrinking (slow, and not needed), one bug reported."""
    return _settings(200, phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "machine",
    [ReplicationMachine, CompositeKeyMachine, NewImageMachine, MergeMachine],
    ids=["single-key", "composite-key", "new-image", "merge"],
)
def test_replication_never_goes_back_and_converges(machine: type[ReplicationMachine]) -> None:
    examples = 80 if machine is ReplicationMachine else 30
    run_state_machine_as_test(machine, settings=_settings(examples))


@pytest.mark.slow
def test_replication_long_run(request: pytest.FixtureRequest) -> None:
    """Minutes: runs only when asked for (``pytest -m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a long run; select it with -m slow")
    run_state_machine_as_test(
        ReplicationMachine,
        settings=settings(
            max_examples=1000, stateful_step_count=60, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- the check can fail -------------------------------------------------------------------------
def test_without_the_guard_the_machine_finds_a_regression() -> None:
    """Searching (no directed steps): the machine finds a late delivery that regresses a document."""
    with pytest.raises(WentBackInTime):
        run_state_machine_as_test(GuardOffMachine, settings=_searching())


def _directed(machine: ReplicationMachine) -> None:
    key = 0
    machine.put(key, {"a": {"N": "1"}})
    machine.put(key, {"a": {"N": "2"}})
    machine.deliver(2)
    machine.documents_never_go_back()
    machine.redeliver_records([0])  # a late retry of the first put
    machine.documents_never_go_back()


def _directed_delete(machine: ReplicationMachine) -> None:
    key = 0
    machine.put(key, {"a": {"S": "x"}})
    machine.delete(key, ttl=False)
    machine.deliver(2)
    machine.documents_never_go_back()
    machine.redeliver_records([0])  # the put again, after the delete
    machine.documents_never_go_back()


def test_directed_late_retry_regresses_without_the_guard() -> None:
    with pytest.raises(WentBackInTime):
        _directed(GuardOffMachine())
    guarded = ReplicationMachine()
    _directed(guarded)  # with the guard it does not
    guarded.teardown()


def test_directed_old_put_resurrects_without_tombstones() -> None:
    with pytest.raises(WentBackInTime):
        _directed_delete(TombstonesOffMachine())
    guarded = ReplicationMachine()
    _directed_delete(guarded)
    guarded.teardown()


def test_a_value_the_item_never_had_is_found() -> None:
    machine = ReplicationMachine()
    machine.put(0, {"a": {"N": "1"}})
    machine.deliver(1)
    machine.documents_never_go_back()
    machine.raw.update_one({"_id": "k0"}, {"$set": {"a": 2}})
    with pytest.raises(InventedState):
        machine.documents_never_go_back()


def test_a_document_for_a_key_never_written_is_found() -> None:
    machine = ReplicationMachine()
    machine.put(0, {"a": {"N": "1"}})
    machine.deliver(1)
    machine.raw.insert_one({"_id": "k9", "a": 1})
    with pytest.raises(AssertionError, match="keys never written"):
        machine.documents_never_go_back()


def test_without_tombstones_the_machine_finds_a_resurrection() -> None:
    with pytest.raises(WentBackInTime):
        run_state_machine_as_test(TombstonesOffMachine, settings=_searching())



def test_merge_mode_a_remove_between_two_application_writes_takes_the_first_ones_fields() -> None:
    """Hypothesis found this in the model (not the replicator): the application wrote to k1, a
    REMOVE of k1 was applied (its fields gone with the document), the item came back and the
    application wrote again; only the second write's fields must remain, and the check knows."""
    machine = MergeMachine()
    steps = [
        lambda: machine.put(key=1, item={}), lambda: machine.deliver(k=1),
        lambda: machine.delete(key=1, ttl=False),
        lambda: machine.mongodb_application_writes(key=1, value=0),
        lambda: machine.put(key=1, item={}), lambda: machine.deliver(k=1),
        lambda: machine.deliver(k=1),
        lambda: machine.mongodb_application_writes(key=1, value=1),
        lambda: machine.redeliver_records([0, 1]),
    ]
    for step in steps:
        step()
        machine.documents_never_go_back()
    machine.teardown()
    document_id = machine.planner.key_mapper.document_id(machine._key(1))
    stored = machine.raw.find_one({"_id": document_id})
    assert stored is not None and f"{PREFIX}n0" not in stored, stored
    assert stored[f"{PREFIX}n1"] == {"list": [1]}, stored
