"""Fewer cyclic garbage collections while a copy or an export load runs.

Why: a copy allocates many containers per item (the parsed page, the record, the document, the
write) that live for one page and are freed by reference counting, never by the cyclic GC. Yet
each 2,000 allocations (CPython's default ``gen0`` threshold) start a young collection that
walks them, and every tenth of those walks the older generation too -- and, in a long-lived
process, every full collection walks every object allocated at start-up (modules, botocore's
service models, pymongo). Measured: 19 % of the copy's CPU (issue 21, BENCHMARKS.md
``bench_parse.py``).

What: on entry, ``gc.freeze()`` moves every object alive now (start-up state) to the permanent
generation, which collections skip, and the ``gen0`` threshold goes up to 50,000 allocations (a
young collection per ~50 items instead of per ~2); on exit both are restored. The GC stays on,
so reference cycles made during the copy are still collected. Nested or concurrent scopes (two
copies in threads) share one: the first in sets, the last out restores.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between young collections during a copy (CPython's default: 2,000).
GEN0_THRESHOLD = 50_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Freeze the start-up objects and raise the ``gen0`` threshold for the ``with`` body."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(GEN0_THRESHOLD, _saved[0]), *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
