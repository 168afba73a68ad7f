"""The optional C accelerator, ``replicator._speedups``, found in one place.

``replicator/_speedups.c`` (built by ``setup.py`` where a C compiler exists; the build is optional)
does what the pure-Python reference code in :mod:`replicator.events`, :mod:`replicator.convert`
and :mod:`replicator.plan` does for well-formed input, several times faster, and answers "not
mine" (None) for anything else, so the reference always decides errors and odd shapes. Without
it everything works the same, slower: another platform's wheel, no compiler, or
``REPLICATOR_PURE_PYTHON=1`` (the tests run both ways; the benchmark reports both).

This is the only module that knows the C module exists. The reference modules take it as an
argument (``Converter(native=)``, ``parse_records(native=)``, ``Planner(native_batches=)``,
``operations(native=)``, ``apply.write(native=)``), never importing it: the Replicator's planner
(:func:`replicator.expected.planner_for`) and the Replicator hand in :data:`native`, configured
here once (:func:`configure`) with what it builds: their classes and tables.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo.operations import DeleteOne, ReplaceOne, UpdateMany, UpdateOne

from replicator import events
from replicator.events import TTL_PRINCIPAL, Change, EventName, StreamViewType
from replicator.settings import Settings
from replicator.writes import PlannedWrite


def configure(module: Any) -> None:
    """Hand the C module what it builds with (done once when it loads; the tests call it to test
    the C module directly even in a pure-Python run): Decimal128 / Decimal for the converter,
    the parser's Change class and tables (creation times come from ``events.EPOCHS``, a time it
    has not seen is left to ``parse_record``), the planner's PlannedWrite, and how pymongo's
    operations (the planner's, and the tombstones' UpdateOne / UpdateMany) fill their slots
    (:func:`slot_template`)."""
    module.configure(Decimal128, Decimal)
    module.configure_events(
        Change,
        events.EVENT_NAMES,
        events.VIEW_TYPES,
        events.EPOCHS,
        TTL_PRINCIPAL,
        EventName.REMOVE,
        StreamViewType.NEW_AND_OLD_IMAGES,
        StreamViewType.NEW_IMAGE,
    )
    module.configure_planner(PlannedWrite, planned_write_slots())
    module.configure_operations(
        ReplaceOne, DeleteOne, UpdateOne,
        slot_template(ReplaceOne, {}, {}, upsert=True), slot_template(DeleteOne, {}),
    )
    # The tombstones' markers and probe (TombstoneStore.guard(native=)); an update names an
    # operator, hence the example's {"$max": {}}.
    module.configure_tombstones(
        UpdateOne, UpdateMany,
        slot_template(UpdateOne, {}, {"$max": {}}, upsert=True),
        slot_template(UpdateMany, {}, {"$max": {}}),
    )


def _load() -> tuple[Any, str]:
    """The C module (configured), or None and why."""
    if os.environ.get("REPLICATOR_PURE_PYTHON", "") not in ("", "0"):
        return None, "REPLICATOR_PURE_PYTHON is set"
    try:
        from replicator import _speedups  # type: ignore[attr-defined]
    except ImportError as error:
        return None, f"replicator._speedups is not built for this platform ({error})"
    configure(_speedups)
    return _speedups, ""


# -- the gate: which settings the C planner implements --------------------------------------------
def _any_value(settings: Settings) -> bool:
    return True


#: Every setting that changes what the planner plans, and whether the C planner (plan_records)
#: implements the value it has. Planner.plan_records uses the C path only when all say yes. A new
#: planning setting must be added here (tests/replicator/test_speedups.py fails until every Settings
#: field is in C_PLANNING or NOT_PLANNING), so the C path can never silently ignore one.
C_PLANNING: dict[str, Callable[[Settings], bool]] = {
    # handed to plan_records as arguments
    "key_schema": _any_value,
    "guard": _any_value,
    "sequence_field": _any_value,
    # plan_records takes a TTL delete only when TTL deletes are plain deletes (ttl_as_delete), and
    # declines a batch with any bad record, so the bad_records mode never applies there
    "ttl_deletes": _any_value,
    "bad_records": _any_value,
    # not implemented in C: Python plans
    "numbers": lambda settings: settings.numbers == "lossless",
    "transforms": lambda settings: not settings.transforms,
    "id_mapping": lambda settings: settings.id_mapping is None,
    "shard_key": lambda settings: not settings.shard_key,
    "write_mode": lambda settings: settings.write_mode == "replace",
}
#: Settings that do not change the plan: where writes go, the tombstone store, the table pin
#: (the Replicator hands plan_records its pinned stream ARN; C declines any other), and the
#: deadline of the writes (I/O only).
NOT_PLANNING = frozenset({
    "archive_collection", "quarantine_collection", "tombstones", "tombstone_collection",
    "tombstone_retention_s", "source_table", "deadline_margin_s",
    # Kinesis: the Replicator never hands plan_records a Kinesis batch (core._plan), and
    # parse_records keeps Kinesis records from parse_changes; the source pin only screens
    "source", "stream_retention_s",
})


def declined_by(settings: Settings) -> list[str]:
    """The planning settings whose values the C planner does not implement ([]: it may run)."""
    return [name for name, implemented in C_PLANNING.items() if not implemented(settings)]


def planning_path(settings: Settings) -> str:
    """Which path plans batches with these settings, and why (logged once at cold start)."""
    if native is None:
        return f"pure Python ({unavailable})"
    declined = declined_by(settings)
    if declined:
        return f"pure Python (the C accelerator does not implement: {', '.join(declined)})"
    return ("C accelerator (replicator._speedups) for well-formed batches, pure Python for the "
            "rest")


_UNSET = object()


def planned_write_slots() -> tuple[Any, ...]:
    """PlannedWrite's member descriptors in field order, which the C planner fills and reads
    (``configure_planner`` checks them against the class's own constructor)."""
    return tuple(vars(PlannedWrite)[f.name] for f in dataclasses.fields(PlannedWrite))


def slot_template(cls: type, operation_filter: Any, *rest: Any, **options: Any) -> Any:
    """How ``cls(operation_filter, *rest, **options)`` fills the slots of a pymongo operation, so
    the C planner can fill them the same way without running ``__init__`` (whose checks, a
    mapping filter and a bool upsert, hold by construction there): ``(descriptors, values,
    filter_index, document_index, unset)``; the planner puts its filter (and document) at those
    indexes and the example's values everywhere else. None when the class is not made of plain
    ``__slots__`` (instances with a ``__dict__``, its own ``__new__``); the C module then calls
    the class. It also compares what it builds with the class's own result before using it."""
    if cls.__new__ is not object.__new__ or cls.__dictoffset__:  # type: ignore[comparison-overlap]
        return None  # its own __new__, or instances with a __dict__
    descriptors: list[Any] = []
    for klass in cls.__mro__[:-1]:
        names = vars(klass).get("__slots__")
        if names is None:
            if klass.__basicsize__ != object.__basicsize__:
                return None  # a base with state of its own (typing.Generic, a C type in 3.12+, has none)
            continue
        for name in (names,) if isinstance(names, str) else names:
            if name == "__dict__":
                return None
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # name mangling
            if name != "__weakref__":
                descriptors.append(vars(klass)[name])
    example = cls(operation_filter, *rest, **options)
    values = tuple(getattr(example, d.__name__, _UNSET) for d in descriptors)
    where = [next((i for i, v in enumerate(values) if v is probe), None)
             for probe in (operation_filter, *rest)]
    if None in where:
        return None
    return tuple(descriptors), values, where[0], where[1] if rest else -1, _UNSET


#: the C module (typed Any: it has no stubs), configured, or None where it is not built or
#: turned off
native: Any
#: why ``native`` is None ("" when it is loaded)
unavailable: str
native, unavailable = _load()
