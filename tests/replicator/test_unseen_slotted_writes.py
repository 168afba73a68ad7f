"""Unseen inputs for the slotted PlannedWrite (issue 21): the C accelerator fills and reads a
PlannedWrite's slots directly. Here it reads PlannedWrites it did not build -- the Python
planner's shard key moves, archive writes, Kinesis writes with an order key, ties' writes with
``decided_over``, ``dataclasses.replace`` / copy / pickle copies, subclasses -- and must answer
what the Python functions answer; the writes it builds must behave as ordinary dataclass
instances (copy, pickle, replace, ==); whole batches through the Replicator on mongoeco must leave
the same documents, tombstones and quarantine with and without it; nothing leaks; and a module
whose ``configure_planner`` failed or never ran must not crash a reader.

Skipped where the extension is not built (as tests/replicator/test_speedups.py).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo.operations import DeleteOne, ReplaceOne, UpdateMany, UpdateOne

from replicator import accelerator
from replicator import tombstones as tombstone_module
from replicator.core import Replicator
from replicator.events import parse_kinesis_record, parse_records
from replicator.expected import planner_for
from replicator.operations import operation
from replicator.plan import Planner
from replicator.quarantine import quarantine_write
from replicator.settings import SEQUENCE_FIELD, Settings
from replicator.ties import _allowing
from replicator.writes import PlannedWrite, main_write
from support.fast_set import fast_first
from support.kinesis import T0_MS, Changes, change_json, event, item, keys, kinesis_record
from support.planned_writes import OtherDefault, slots_of

try:
    native: Any = importlib.import_module("replicator._speedups")
except ImportError as error:  # not built, or built for another Python
    if os.environ.get("REPLICATOR_REQUIRE_SPEEDUPS", "") == "1":
        raise
    pytest.skip(f"replicator._speedups is not built ({error})", allow_module_level=True)
accelerator.configure(native)  # as test_speedups: these tests always test it

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/users/stream/2026-01-01T00:00:00.000"
NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


# -- the comparisons -------------------------------------------------------------------------------
def _deep(value: Any) -> Any:
    """A value type for type at every node, dicts in their order (== ignores it)."""
    if isinstance(value, dict):
        return "dict", [(k, _deep(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [_deep(v) for v in value]
    return type(value).__name__, repr(value)


def _slots(operation_: Any) -> Any:
    names = [n for klass in type(operation_).__mro__ for n in vars(klass).get("__slots__", ())]
    return type(operation_).__name__, [(n, _deep(getattr(operation_, n, "<unset>")))
                                       for n in names]


def _python_or_error(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as error:  # the reference's own error: C must raise the same kind
        return error


def assert_readers_agree(writes: list[Any]) -> None:
    """native.operations / tombstone_operations / covered_sequences on ``writes`` against
    operations.operation, tombstones._operations and the set comprehension: None (Python
    decides) or exactly the reference's answer; a reference error, the same kind from C."""
    expected_operations = _python_or_error(lambda: [operation(w) for w in writes])
    if isinstance(expected_operations, Exception):
        with pytest.raises(type(expected_operations)):
            built = native.operations(writes)
            if built is None:  # Python would then raise it
                [operation(w) for w in writes]
    else:
        built = native.operations(writes)
        if built is not None:
            assert [_slots(o) for o in built] == [_slots(o) for o in expected_operations]

    expected_tombstones = _python_or_error(tombstone_module._operations, writes, NOW)
    if isinstance(expected_tombstones, Exception):
        with pytest.raises(type(expected_tombstones)):
            if native.tombstone_operations(writes, NOW, tombstone_module.SEQUENCE,
                                           tombstone_module.DELETED_AT) is None:
                tombstone_module._operations(writes, NOW)
    else:
        built = native.tombstone_operations(writes, NOW, tombstone_module.SEQUENCE,
                                            tombstone_module.DELETED_AT)
        if built is not None:
            deletes, upserts, operations_ = built
            assert [id(w) for w in deletes] == [id(w) for w in expected_tombstones[0]]
            assert [id(w) for w in upserts] == [id(w) for w in expected_tombstones[1]]
            assert [_slots(o) for o in operations_] == [_slots(o) for o in expected_tombstones[2]]

    expected_covered = _python_or_error(lambda: {s for w in writes for s in w.sequence_numbers})
    if isinstance(expected_covered, Exception):
        with pytest.raises(type(expected_covered)):
            if native.covered_sequences(writes) is None:
                {s for w in writes for s in w.sequence_numbers}
    else:
        covered = native.covered_sequences(writes)
        assert covered is None or covered == expected_covered


def python_plan(settings: Settings, records: list[Any]) -> list[PlannedWrite]:
    changes, bad = parse_records(records)
    assert bad == []
    return Planner(settings).plan(changes).writes


# -- records ---------------------------------------------------------------------------------------
def record(seq: str, name: str, id_: str = "u1", *, new: dict[str, Any] | None = None,
           old: dict[str, Any] | None = None, ttl: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": {"id": {"S": id_}}, "SequenceNumber": seq,
                            "StreamViewType": "NEW_AND_OLD_IMAGES",
                            "ApproximateCreationDateTime": 1795712760}
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    raw: dict[str, Any] = {"eventID": f"e{seq}", "eventName": name, "eventSource": "aws:dynamodb",
                           "eventSourceARN": ARN, "dynamodb": body}
    if ttl:
        raw["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return raw


def image(id_: str, tenant: str = "t1", v: int = 1, extra: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    return {"id": {"S": id_}, "tenant": {"S": tenant}, "v": {"N": str(v)}, **(extra or {})}


def shard_key_moves() -> list[PlannedWrite]:
    settings = Settings(key_schema=("id",), shard_key=("tenant",))
    writes = python_plan(settings, [
        record("100", "INSERT", "a", new=image("a", "t1")),
        record("200", "MODIFY", "a", new=image("a", "t2", 2), old=image("a", "t1")),
        record("300", "MODIFY", "b", new=image("b", "t3", 5, extra={"$x": {"S": "d"}}),
               old=image("b", "t1")),
        record("400", "REMOVE", "c", old=image("c", "t9")),
    ])
    assert any(w.shard_key_move is not None for w in writes)
    return writes


def archive_writes() -> list[PlannedWrite]:
    writes = python_plan(Settings(ttl_deletes="archive"), [
        record("7", "REMOVE", "a", old=image("a"), ttl=True),
        record("8", "INSERT", "b", new=image("b", extra={"$odd": {"N": "1"}})),
        record("000000000000000000009", "REMOVE", "c", old=image("c"), ttl=True),
    ])
    assert {w.collection for w in writes} == {"main", "archive"}
    return writes


def kinesis_writes() -> list[PlannedWrite]:
    c = Changes()
    changes = [parse_kinesis_record(r) for r in (
        c.insert("a", 1, T0_MS), c.modify("a", 1, 2, T0_MS + 1), c.remove("b", 3, T0_MS + 2),
        c.insert("d", 4, T0_MS + 3))]
    writes = Planner(Settings()).plan(changes).writes
    assert writes and all(w.order_key is not None for w in writes)
    return writes


def tie_writes() -> list[PlannedWrite]:
    """What ties._allowing turns a Kinesis write into: a filter with "$or" and decided_over."""
    stored = "K01796601600000000.0123456789abcdef"
    writes = [_allowing(w, stored, SEQUENCE_FIELD) for w in kinesis_writes()]
    assert any(w.decided_over == stored for w in writes)
    return writes


def c_writes() -> list[PlannedWrite]:
    """PlannedWrites the C planner built (inserts, a modify, a $-named image, a REMOVE)."""
    records = [record("11", "INSERT", "a", new=image("a")),
               record("12", "MODIFY", "a", new=image("a", v=2), old=image("a")),
               record("13", "INSERT", "b", new=image("b", extra={"$p": {"S": "x"}})),
               record("14", "REMOVE", "c", old=image("c"))]
    built = native.plan_records(records, ("id",), True, SEQUENCE_FIELD, True, ARN)
    assert built is not None and [type(w) for w in built] == [PlannedWrite] * 3
    return list(built)


def quarantine_writes() -> list[PlannedWrite]:
    """quarantine.quarantine_write's upserts ($set / $setOnInsert: C builds their UpdateOne)."""
    bad = parse_records([{"eventID": "x", "eventName": "NOPE", "dynamodb": {"SequenceNumber": "5"}},
                         {"eventID": "y", "dynamodb": {"SequenceNumber": "6"}}])[1]
    assert len(bad) == 2
    return [quarantine_write(b) for b in bad]


@dataclasses.dataclass(frozen=True, slots=True)
class SlottedSub(PlannedWrite):
    note: str = "slotted"


@dataclasses.dataclass(frozen=True)
class DictSub(PlannedWrite):  # a subclass with a __dict__ again
    note: str = "dict"


class PlainSub(PlannedWrite):
    pass


def subclassed(writes: list[PlannedWrite], cls: type) -> list[Any]:
    return [cls(*(getattr(w, f.name) for f in dataclasses.fields(PlannedWrite))) for w in writes]


KINDS = {
    "shard key moves": shard_key_moves,
    "archive writes": archive_writes,
    "kinesis writes": kinesis_writes,
    "tie writes": tie_writes,
    "c planner writes": c_writes,
    "main_write": lambda: [main_write("replace", {"_id": 1}, {"_id": 1}, ("5",)),
                           main_write("delete", {"_id": 2}, None, ("06",)),
                           main_write("replace", {"_id": 3}, {"_id": 3}, ("7",), "K1.ab")],
    "quarantine writes": lambda: quarantine_writes(),
}
COPIES = {
    "as built": lambda ws: ws,
    "dataclasses.replace": lambda ws: [dataclasses.replace(w) for w in ws],
    "replace, kind and sequence numbers": lambda ws: [
        dataclasses.replace(w, sequence_numbers=(*w.sequence_numbers, "99"),
                            kind="update" if w.kind == "replace" else w.kind) for w in ws],
    "copy.copy": lambda ws: [copy.copy(w) for w in ws],
    "copy.deepcopy": lambda ws: copy.deepcopy(ws),
    "pickled": lambda ws: pickle.loads(pickle.dumps(ws)),
    "slotted subclass": lambda ws: subclassed(ws, SlottedSub),
    "dict subclass": lambda ws: subclassed(ws, DictSub),
    "plain subclass": lambda ws: subclassed(ws, PlainSub),
    "mixed with the built": lambda ws: [*ws, *subclassed(ws, PlainSub), *ws],
}


@pytest.mark.parametrize("copies", list(COPIES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_c_readers_read_writes_python_built_as_python_does(kind: str, copies: str) -> None:
    writes: list[Any] = COPIES[copies](KINDS[kind]())  # type: ignore[no-untyped-call]
    assert_readers_agree(writes)
    # each write alone, and with the C planner's (exact-class, slot-read) writes around it
    for write in writes:
        assert_readers_agree([write])
        assert_readers_agree([*c_writes(), write])


def test_odd_field_values_are_left_to_python_or_fail_as_python_fails() -> None:
    base = main_write("replace", {"_id": 1}, {"_id": 1}, ("5",))
    replace: Any = dataclasses.replace  # values outside the fields' types, on purpose
    odd = [
        replace(base, kind="".join(["re", "place"])),  # equal, not the interned one
        replace(base, kind="delete", document={"_id": 1}),
        replace(base, kind="bogus"),
        replace(base, upsert=1),
        replace(base, upsert=False),
        replace(base, document=[{"$set": {"a": 1}}]),
        replace(base, filter={"other": 1}),
        replace(base, sequence_numbers=("x",)),
        replace(base, sequence_numbers=["5"]),
        replace(base, order_key=""),  # falsy: the order is the padded number
        replace(base, decided_over="K1.-"),
    ]
    for write in odd:
        assert_readers_agree([write])
        assert_readers_agree([base, write, base])
    assert_readers_agree(odd)


def test_a_write_whose_slots_were_never_set_fails_as_in_python() -> None:
    """object.__new__ without __init__: every slot empty; C raises AttributeError, as Python.
    (A write with only some slots set, which only object.__setattr__ can make, is not compared:
    C reads kind, filter, document and upsert before deciding, and did so before the slots.)"""
    empty = object.__new__(PlannedWrite)
    for writes in ([empty], [c_writes()[0], empty], [None], [c_writes()[0], 5]):
        assert_readers_agree(writes)


# -- the writes the C planner builds are ordinary instances --------------------------------------
def test_c_built_writes_copy_pickle_replace_and_compare_as_python_built_ones() -> None:
    built = c_writes()
    # the same writes through the Python planner
    changes, _ = parse_records([record("11", "INSERT", "a", new=image("a")),
                                record("12", "MODIFY", "a", new=image("a", v=2),
                                       old=image("a")),
                                record("13", "INSERT", "b",
                                       new=image("b", extra={"$p": {"S": "x"}})),
                                record("14", "REMOVE", "c", old=image("c"))])
    expected = Planner(Settings(key_schema=("id",))).plan(changes).writes
    assert built == expected
    assert [repr(w) for w in built] == [repr(w) for w in expected]
    assert not hasattr(built[0], "__dict__") and PlannedWrite.__slots__
    for write, reference in zip(built, expected, strict=True):
        assert copy.copy(write) == write and copy.deepcopy(write) == reference
        assert pickle.loads(pickle.dumps(write)) == reference
        assert dataclasses.replace(write) == reference
        assert dataclasses.astuple(write) == dataclasses.astuple(reference)
        assert write.order == reference.order and write.document_id == reference.document_id
        assert write.order_key is None and write.decided_over is None
        with pytest.raises(dataclasses.FrozenInstanceError):
            write.kind = "delete"  # type: ignore[misc]
        with pytest.raises(TypeError):  # a dict in it: unhashable, as before
            hash(write)


def test_the_class_fields_are_descriptors_and_their_defaults_are_the_constructors() -> None:
    """Anything that read ``PlannedWrite.order_key`` as a class default now finds a member
    descriptor; the defaults live in __init__ (what configure_planner's check compares)."""
    assert type(vars(PlannedWrite)["order_key"]).__name__ == "member_descriptor"
    assert type(PlannedWrite.order_key).__name__ == "member_descriptor"  # type: ignore[misc]
    assert {f.name: f.default for f in dataclasses.fields(PlannedWrite)
            if f.default is not dataclasses.MISSING} == {
        "collection": "main", "shard_key_move": None, "order_key": None, "decided_over": None}
    for path in [*(ROOT / "replicator").rglob("*.py"), *(ROOT / "harness").rglob("*.py")]:
        text = path.read_text()
        for field in ("order_key", "decided_over", "collection", "shard_key_move"):
            assert f"PlannedWrite.{field} " not in text and f"PlannedWrite.{field})" not in text, (
                path, field)


# -- reference counts and memory --------------------------------------------------------------------
def test_planning_and_reading_many_batches_leaks_nothing() -> None:
    records = [record(str(n + 1), "INSERT", str(n % 7), new=image(str(n % 7), v=n))
               for n in range(40)] + [record("99", "REMOVE", "z", old=image("z"))]
    python_built = kinesis_writes() + tie_writes() + shard_key_moves()

    def once() -> None:
        built = native.plan_records(records, ("id",), True, SEQUENCE_FIELD, True, ARN)
        assert built is not None
        native.operations(built)
        native.tombstone_operations(built, NOW, "seq", "deleted_at")
        native.covered_sequences(built)
        native.operations(python_built)
        native.tombstone_operations(python_built, NOW, "seq", "deleted_at")
        native.covered_sequences(python_built)
        with pytest.raises(AttributeError):  # an empty slot: the error, nothing kept
            native.covered_sequences([object.__new__(PlannedWrite)])

    def kept() -> int:  # the objects a leak here would keep (other threads make none of them)
        kinds = (PlannedWrite, ReplaceOne, DeleteOne, UpdateOne, UpdateMany)
        return sum(1 for o in gc.get_objects() if isinstance(o, kinds))

    for _ in range(50):  # warm every cache
        once()
    gc.collect()
    # Only what this test's own calls allocate is counted (a frame of this file in the
    # allocation's traceback): the process's other threads -- pymongo's monitors, the wire
    # servers of earlier tests -- allocate meanwhile, as much as the machine's load lets them.
    tracemalloc.start(64)
    try:
        before = tracemalloc.take_snapshot()
        objects = kept()
        for _ in range(500):
            once()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    mine = [tracemalloc.Filter(True, __file__, all_frames=True)]
    grown = sum(stat.size_diff for stat in after.filter_traces(mine).compare_to(
        before.filter_traces(mine), "filename"))
    # a write of 9 slots leaked per batch would be 500 * 7 * ~120 bytes: ~400 KB
    assert grown < 50_000, grown
    assert kept() - objects < 100
    # the inputs' reference counts are back where they were
    write = python_built[0]
    counts = [sys.getrefcount(getattr(write, f.name)) for f in dataclasses.fields(write)]
    for _ in range(100):
        native.operations([write])
        native.tombstone_operations([write], NOW, "seq", "deleted_at")
        native.covered_sequences([write])
    assert [sys.getrefcount(getattr(write, f.name)) for f in dataclasses.fields(write)] == counts


# -- a module not (fully) configured ------------------------------------------------------------------
def _run_fresh(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a new interpreter whose C module nothing configured (REPLICATOR_PURE_PYTHON=1
    keeps replicator.accelerator from configuring it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REPLICATOR_PURE_PYTHON": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


PRELUDE = """
    from pymongo.operations import DeleteOne, ReplaceOne, UpdateMany, UpdateOne
    from replicator import _speedups as m, accelerator
    from replicator.writes import PlannedWrite
    writes = [PlannedWrite.replace({"_id": 1}, {"_id": 1}, ("1",)),
              PlannedWrite.delete({"_id": 2}, ("2",))]
    def operations():
        m.configure_operations(
            ReplaceOne, DeleteOne, UpdateOne,
            accelerator.slot_template(ReplaceOne, {}, {}, upsert=True),
            accelerator.slot_template(DeleteOne, {}))
    def tombstones():
        m.configure_tombstones(
            UpdateOne, UpdateMany,
            accelerator.slot_template(UpdateOne, {}, {"$max": {}}, upsert=True),
            accelerator.slot_template(UpdateMany, {}, {"$max": {}}))
    def read():
        print(sorted(m.covered_sequences(writes)))
        print([type(o).__name__ for o in m.operations(writes)])
        print([type(o).__name__ for o in m.tombstone_operations(writes, 0, "seq", "at")[2]])
        try:
            print(m.plan_records([], None, True, "_seq", True))
        except RuntimeError as error:  # its documented answer: "... must be called first"
            print(type(error).__name__)
"""


@pytest.mark.parametrize("before", fast_first([  # each a subprocess: the first in the fast set
    "",  # configure_planner never called
    "m.configure_planner(object, accelerator.planned_write_slots())",  # refused: not its slots
    "m.configure_planner(PlannedWrite, accelerator.planned_write_slots()[:3])",  # too few
    "m.configure_planner(PlannedWrite)",  # a wrong call
]))
def test_the_readers_answer_without_a_configured_planner(before: str) -> None:
    """The readers need only configure_operations / configure_tombstones (the planner's class
    is not theirs): with configure_planner never run, or refused, they read the writes by
    attribute lookup; plan_records raises its RuntimeError (configure first)."""
    done = _run_fresh(PRELUDE + f"""
    try:
        {before or "pass"}
    except TypeError as error:
        print("refused:", type(error).__name__)
    operations()
    tombstones()
    read()
    """)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert lines[-4:] == ["['1', '2']", "['ReplaceOne', 'DeleteOne']",
                          "['UpdateOne', 'UpdateMany']", "RuntimeError"], done.stdout


def test_a_planner_refused_after_a_good_one_declines_and_reads_as_before() -> None:
    """configure_planner's check failing after a good configuration (another class, its slots
    and another default): plan_records refuses to plan (RuntimeError: configure first, never a
    write of the refused class), the readers read every write as Python does, and configuring
    the real class again plans as before."""
    records = [record("1", "INSERT", "a", new=image("a"))]
    try:
        with pytest.raises(TypeError):
            native.configure_planner(OtherDefault, slots_of(OtherDefault))
        with pytest.raises(RuntimeError):
            native.plan_records(records, ("id",), True, SEQUENCE_FIELD, True, ARN)
        other = OtherDefault("replace", {"_id": 1}, {"_id": 1}, True, ("1",))
        assert native.covered_sequences([other, *kinesis_writes()]) is not None
        assert_readers_agree([other, *kinesis_writes(), *tie_writes()])
    finally:
        accelerator.configure(native)
    assert native.plan_records(records, ("id",), True, SEQUENCE_FIELD, True, ARN) == python_plan(
        Settings(key_schema=("id",)), records)


# -- whole batches on mongoeco, with and without the accelerator ----------------------------------
def _replicator(collection: Any, settings: Settings, accelerated: bool, **options: Any
                ) -> Replicator:
    replicator = Replicator(collection, settings, **options)
    if not accelerated:
        replicator.native = None
        replicator.planner = planner_for(replicator.settings, accelerate=False)
    else:
        assert replicator.native is native or accelerator.native is None
    return replicator


def _state(db: Any, name: str) -> dict[str, Any]:
    """Documents, tombstones (their deletion time aside: the clock's) and quarantine (its first
    time aside), in _id order, type for type."""
    def rows(collection: str, *volatile: str) -> list[Any]:
        return [_deep({k: v for k, v in d.items() if k not in volatile})
                for d in db[collection].find().sort("_id", 1)]

    return {
        "documents": rows(name),
        "tombstones": rows(f"{name}_tombstones", "deleted_at"),
        "quarantine": rows(f"{name}_quarantine", "quarantined_at"),
        "archive": rows(f"{name}_archive") if f"{name}_archive" in db.list_collection_names()
        else [],
    }


def _outcome(result: Any, collection: Any) -> Any:
    """A batch's counts and failures, the collection's own name aside (each path has its own)."""
    own = f"{collection.database.name}.{collection.name} "
    return (result.applied, result.stale, len(result.quarantined),
            [(s, why.replace(own, "<collection> ")) for s, why in result.failures])


def _both_ways(db: Any, settings: Settings, batches: Any, **options: Any) -> dict[str, Any]:
    """``batches`` (a callable giving the batches, fresh each time: some histories are drawn)
    through a Replicator with and without the accelerator, each into its own collection;
    asserts the two gave the same outcome per batch and the same final state, and returns it."""
    states, results = [], []
    for accelerated in (True, False):
        name = "c" if accelerated else "py"
        replicator = _replicator(db[name], settings, accelerated, **options)
        results.append([_outcome(replicator.process(batch), db[name]) for batch in batches()])
        states.append(_state(db, name))
    assert results[0] == results[1]
    assert states[0] == states[1]
    return states[0]


def _dynamodb_batches() -> list[list[dict[str, Any]]]:
    return [
        [record("100", "INSERT", "a", new=image("a")), record("101", "INSERT", "b",
                                                                new=image("b", "t2"))],
        # a shard key move, a $-named image, a TTL delete (archived), a duplicate
        [record("200", "MODIFY", "a", new=image("a", "t2", 2), old=image("a")),
         record("201", "INSERT", "d", new=image("d", extra={"$p": {"S": "x"}})),
         record("202", "REMOVE", "b", old=image("b", "t2"), ttl=True),
         record("200", "MODIFY", "a", new=image("a", "t2", 2), old=image("a"))],
        # stale redeliveries, a late INSERT of the removed item, a bad record
        [record("150", "MODIFY", "a", new=image("a", "t1", 9), old=image("a")),
         record("190", "INSERT", "b", new=image("b", "t2", 7)),
         {"eventID": "bad", "eventName": "MODIFY", "eventSourceARN": ARN,
          "dynamodb": {"SequenceNumber": "300", "Keys": {"id": {"N": "not a number"}}}}],
        [record("000000000000000000400", "REMOVE", "a", old=image("a", "t2", 2)),
         record("401", "INSERT", "e", new=image("e", v=1)),
         record("402", "MODIFY", "e", new=image("e", v=2), old=image("e", v=1))],
    ]


@pytest.mark.parametrize("settings", [
    Settings(key_schema=("id",)),
    Settings(key_schema=("id",), ttl_deletes="archive"),
    Settings(key_schema=("id",), shard_key=("tenant",)),
    Settings(key_schema=("id",), ttl_deletes="archive", shard_key=("tenant",)),
], ids=["plain", "archive", "shard-key", "archive+shard-key"])
def test_dynamodb_batches_leave_the_same_state_with_and_without_c(mongoeco_db: Any,
                                                                  settings: Settings) -> None:
    state = _both_ways(mongoeco_db, settings, _dynamodb_batches)
    assert state["documents"] and state["tombstones"] and state["quarantine"]


def _kinesis_batches() -> list[list[dict[str, Any]]]:
    c = Changes()
    us = T0_MS * 1000

    def micro(old: int, new: int, at_us: int) -> Any:
        return kinesis_record(change_json("MODIFY", keys("a"), old=item("a", old),
                                          new=item("a", new), created=at_us,
                                          precision="MICROSECOND",
                                          event_id=f"us{at_us}"), 900 + at_us % 1000)

    return [
        [c.insert("a", 1, T0_MS - 10), c.insert("b", 1, T0_MS - 10), c.insert("x", 1, T0_MS)],
        [micro(1, 2, us - 5000)],
        # a MILLISECOND change and a MICROSECOND one inside its millisecond: a tie the table
        # decides (ties._allowing: decided_over)
        [c.modify("a", 2, 3, T0_MS), micro(2, 4, us + 300)],
        [c.remove("b", 1, T0_MS + 5), c.modify("b", 0, 9, T0_MS + 1),
         c.insert("x", 5, T0_MS), c.modify("x", 1, 2, T0_MS + 7)],
        [c.insert("b", 6, T0_MS + 5), c.remove("x", 2, T0_MS + 8)],
    ]


def test_kinesis_batches_with_ties_leave_the_same_state_with_and_without_c(
        mongoeco_db: Any, users_table: Any) -> None:
    from replicator.readback import DynamoDBItemReader

    users_table.put_item(TableName="users", Item=item("a", 4))
    users_table.put_item(TableName="users", Item=item("b", 6))
    state = _both_ways(mongoeco_db, Settings(),
                       lambda: [event(*batch) for batch in _kinesis_batches()],
                       item_reader=DynamoDBItemReader(users_table, "users"))
    assert state["tombstones"]


def _dynamodb_history(seed: int) -> list[list[dict[str, Any]]]:
    """A seeded history of four items (inserts, modifies moving the tenant, removes, TTL
    removes), 30 % redelivered, shuffled, in batches of 1-6: what a retried, reordered
    delivery looks like."""
    import random

    rng = random.Random(seed)
    state: dict[str, dict[str, Any] | None] = {f"i{n}": None for n in range(4)}
    records = []
    for n in range(40):
        name = rng.choice(sorted(state))
        old = state[name]
        seq = str(1000 + n).zfill(rng.choice((4, 21)))
        if old is None:
            new: dict[str, Any] | None = image(name, rng.choice("ab"), n)
            records.append(record(seq, "INSERT", name, new=new))
        elif rng.random() < 0.25:
            new = None
            records.append(record(seq, "REMOVE", name, old=old, ttl=rng.random() < 0.5))
        else:
            new = image(name, rng.choice("ab"), n,
                        extra={"$d": {"S": "x"}} if rng.random() < 0.2 else None)
            records.append(record(seq, "MODIFY", name, new=new, old=old))
        state[name] = new
    delivered = records + [r for r in records if rng.random() < 0.3]
    rng.shuffle(delivered)
    batches = []
    while delivered:
        size = rng.randint(1, 6)
        batches.append(delivered[:size])
        delivered = delivered[size:]
    return batches


@pytest.mark.parametrize("seed", fast_first(range(4)))
@pytest.mark.parametrize("settings", [
    Settings(key_schema=("id",), ttl_deletes="archive"),
    Settings(key_schema=("id",), shard_key=("tenant",)),
], ids=["archive", "shard-key"])
def test_shuffled_dynamodb_histories_leave_the_same_state_with_and_without_c(
        mongoeco_db: Any, settings: Settings, seed: int) -> None:
    _both_ways(mongoeco_db, settings, lambda: _dynamodb_history(seed))


@pytest.mark.parametrize("seed", fast_first(range(3)))
def test_shuffled_kinesis_histories_leave_the_same_state_with_and_without_c(
        mongoeco_db: Any, users_table: Any, seed: int) -> None:
    from replicator.readback import DynamoDBItemReader
    from support.kinesis import shuffled_history

    def batches() -> list[dict[str, Any]]:
        rng, delivered, _ = shuffled_history(seed, users_table)  # the table too, each time
        out = []
        while delivered:
            size = rng.randint(1, 6)
            out.append(event(*delivered[:size]))
            delivered = delivered[size:]
        return out

    _both_ways(mongoeco_db, Settings(), batches,
               item_reader=DynamoDBItemReader(users_table, "users"))
