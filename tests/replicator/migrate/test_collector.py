"""replicator/migrate/collector.py: the GC scope of a copy is restored on the way out, also when
nested or left by an exception, and the GC stays on (cycles made inside are still collected)."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from replicator.migrate.collector import GEN0_THRESHOLD, fewer_collections


def test_the_thresholds_and_the_frozen_objects_come_back_after_nested_scopes() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with fewer_collections():
        assert gc.get_threshold()[0] >= GEN0_THRESHOLD
        assert gc.get_freeze_count() > frozen  # the start-up objects are skipped
        with fewer_collections():
            assert gc.get_threshold()[0] >= GEN0_THRESHOLD
        assert gc.get_threshold()[0] >= GEN0_THRESHOLD  # the inner exit left the outer's
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_an_exception_inside_restores_the_collector() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("copy failed")
    assert gc.get_threshold() == before


def test_cycles_made_inside_are_still_collected() -> None:
    class Node:
        other: object = None

    collected = threading.Event()
    with fewer_collections():
        assert gc.isenabled()
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, collected.set)
        del a, b
        gc.collect()
    assert collected.is_set()
